"""The agent's routing between the user's adapter and the base model (`serve.routing`).

The router itself (`memory/routing.py`) compares a conversation's recent user
messages with the keys of that user's consolidated memories; this module builds it
from the settings and answers batches of prompts the way the agent would
(the adapter for the routed ones, the base model for the rest), for the
evaluation and the gate.
"""

from __future__ import annotations

from memory.embeddings import Embedder
from memory.routing import MemoryRouter, Route
from memory.store import Store
from sleeptrain_agent.backends import EVAL_ACTIVE, Backend, GenerationParams
from sleeptrain_agent.config import Settings, data

ROUTED_STATUSES = ("consolidated",)  # the memories an adapter was trained on


def make_router(settings: Settings, embedder: Embedder) -> MemoryRouter | None:
    """The configured router, or None when `serve.routing` is off (the adapter answers everything)."""
    if not settings.serve.routing:
        return None
    templates = data("qa_templates.yaml")
    return MemoryRouter(embedder, templates, threshold=settings.serve.routing_similarity,
                        held_out=settings.sleep.probes_per_memory, turns=settings.serve.routing_turns,
                        personal=settings.serve.routing_personal)  # fmt: skip


def routes(router: MemoryRouter | None, store: Store, backend: Backend, prompts: list[list[dict]],
           user: str) -> list[Route | None]:  # fmt: skip
    """The route of each prompt of `user`: only their memories are keys, and only their adapter can be
    routed to. None for all when nothing is routed: routing off or no adapter of theirs (the base model
    answers them), or no consolidated memory of theirs (an adapter activated by hand answers; but after
    a forget, until their deep sleep, the base model answers). After a forget, until the deep sleep, no
    question goes to the adapter for being about the user (`serve.routing_personal`): only by its keys."""
    if router is None or backend.active_for(user) is None:
        return [None] * len(prompts)
    memories = store.memories(status=ROUTED_STATUSES, user=user)
    forgot = user in store.deep_sleep_due()  # their adapter still knows a forgotten memory until the deep sleep
    if not memories:  # an adapter activated by hand answers; one that still knows a forgotten memory does not
        return [Route(False) for _ in prompts] if forgot else [None] * len(prompts)
    return router.route(prompts, memories, personal=not forgot)


def evaluate_routed(backend: Backend, prompts: list[list[dict]], params: GenerationParams,
                    chosen: list[Route | None], adapter=EVAL_ACTIVE) -> list[str]:  # fmt: skip
    """Answer `prompts` as routed: `adapter` (`params.user`'s, or a candidate directory) for the prompts
    routed to it or not routed at all, the base model for the rest; each group in one batch."""
    base = {i for i, r in enumerate(chosen) if r is not None and not r.adapter}
    to_base, to_adapter = sorted(base), [i for i in range(len(prompts)) if i not in base]
    answers: list[str] = [""] * len(prompts)
    for group, which in ((to_adapter, adapter), (to_base, None)):
        if group:
            outs = backend.evaluate([prompts[i] for i in group], params, adapter=which)
            for i, a in zip(group, outs, strict=True):
                answers[i] = a
    return answers
