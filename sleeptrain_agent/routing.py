"""The agent's routing between the active adapter and the base model (`serve.routing`).

The router itself (`memory/routing.py`) compares a conversation's recent user
messages with the keys of the consolidated memories; this module builds it
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
                        held_out=settings.sleep.probes_per_memory, turns=settings.serve.routing_turns)  # fmt: skip


def routes(router: MemoryRouter | None, store: Store, backend: Backend, prompts: list[list[dict]],
           user: str | None = None) -> list[Route | None]:  # fmt: skip
    """The route of each prompt; None for all when nothing is routed: routing off, no adapter active, or
    no consolidated memory (an adapter activated by hand: the router has no keys, the adapter answers;
    but after a forget, until the deep sleep, the base model answers).

    With `user`, only that user's memories are keys: a question of one user never reaches the adapter
    through another user's memory, and a user with no consolidated memory of their own is answered by
    the base model while someone else's are."""
    if router is None or backend.active is None:
        return [None] * len(prompts)
    memories = store.memories(status=ROUTED_STATUSES)
    if not memories:  # an adapter activated by hand answers; one that still knows a forgotten memory does not
        return [Route(False) for _ in prompts] if store.deep_sleep_due() else [None] * len(prompts)
    own = [m for m in memories if user is None or m["user"] == user]
    if not own:
        return [Route(False) for _ in prompts]
    return router.route(prompts, own)


def evaluate_routed(backend: Backend, prompts: list[list[dict]], params: GenerationParams,
                    chosen: list[Route | None], adapter=EVAL_ACTIVE) -> list[str]:  # fmt: skip
    """Answer `prompts` as routed: `adapter` (the active one, or a candidate directory) for the prompts
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
