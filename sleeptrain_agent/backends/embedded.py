"""The embedded backend: transformers + PEFT inside the daemon process.

For machines where vLLM cannot run (macOS, no vllm installed) and for quick
tests. One generation runs at a time (`_lock`): PEFT's adapter swap mutates
the model, so it must not overlap a forward pass. A chat reply is one
generation; an evaluation (the gate's probes, the base model's answers to the
locality probes) runs `EVAL_BATCH` prompts to a forward pass: 0.18x the time of
one by one on 2 cores, the same greedy answers (`python -m benchmarks.sleep_bench
gate --backend embedded`, BENCHMARKS.md). Each user's adapter is a named PEFT adapter
of the one model; a generation selects its user's (`set_adapter`) or runs
with adapters disabled (the base model: no user, or a user with none). A swap
waits for the generation in progress, then loads the new adapter under a new
name (`load_adapter`) and deletes that user's previous one. The reply records
the version that produced it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from sleeptrain_agent.backends import EVAL_ACTIVE, GenerationParams, Reply, check_adapter, each_prompt
from sleeptrain_agent.config import Settings
from sleeptrain_agent.dtypes import describe, resolve
from sleeptrain_agent.errors import AdapterError, BackendError

log = logging.getLogger(__name__)

EVAL_BATCH = 32  # prompts to one forward pass in `evaluate` (`sleep_bench gate --backend embedded --concurrency 1 16 32`)


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, settings: Settings, model_path: Path):
        self.settings = settings
        self.model_path = model_path
        self.dtype = resolve(settings.model.dtype, serving=True)
        self.model = None
        self.tokenizer = None
        self._lock = threading.Lock()
        self._served: dict[str, tuple[str, str]] = {}  # user -> (version, PEFT adapter name)
        self._names = itertools.count(1)
        self._ready = threading.Event()

    def start(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=getattr(torch, self.dtype))
        except Exception as e:  # transformers raises many kinds for a bad directory
            raise BackendError(f"could not load the model from {self.model_path}: {e}") from e
        self.model.eval()
        self._ready.set()
        log.info("embedded backend ready (%s, %s)", self.model_path, describe(self.settings.model.dtype, serving=True))

    def stop(self) -> None:
        self._ready.clear()

    def healthy(self) -> bool:
        return self._ready.is_set()

    def busy(self) -> bool:
        return self._lock.locked()

    def wait_ready(self, timeout: float) -> None:
        if not self._ready.wait(timeout):
            raise BackendError("the embedded model is not loaded yet; try again shortly")

    def status(self) -> dict:
        return {"backend": self.name, "dtype": self.dtype, "adapters_loaded": len(self._served),
                "busy": self._lock.locked()}  # fmt: skip

    def active_for(self, user: str | None) -> str | None:
        served = self._served.get(user) if user is not None else None
        return served[0] if served else None

    @property
    def serving(self) -> dict[str, str]:
        return {u: v for u, (v, _) in self._served.items()}

    def generate(self, messages: list[dict], params: GenerationParams) -> Reply:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        self.wait_ready(self.settings.serve.request_timeout_s)
        if params.json_schema is not None:
            raise BackendError("JSON-schema constrained output needs the vllm backend (hippocampus.judge: llm)")
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=None)
        cancelled = threading.Event()

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return cancelled.is_set()

        kwargs = dict(
            **inputs,
            max_new_tokens=params.max_tokens,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_Cancel()]),
            pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        )
        if params.frequency_penalty:
            kwargs["logits_processor"] = LogitsProcessorList([_FrequencyPenalty(params.frequency_penalty,
                                                                                inputs["input_ids"].shape[1])])  # fmt: skip
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        # stop strings are applied to the text as it streams (`_deltas`), as vLLM applies them; transformers'
        # own stop_strings would stop before the text is seen and miss strings split across tokens

        self._lock.acquire()
        served = None if params.base or params.user is None else self._served.get(params.user)
        version, adapter_name = served or (None, None)
        reply = Reply(iter(()), version, on_close=cancelled.set)
        result: dict = {}

        def run() -> None:
            try:
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                with torch.inference_mode():
                    if adapter_name is not None:
                        self.model.set_adapter(adapter_name)
                        out = self.model.generate(**kwargs)
                    elif self._served:  # the base model: adapters of other users are loaded
                        with self.model.disable_adapter():
                            out = self.model.generate(**kwargs)
                    else:
                        out = self.model.generate(**kwargs)
                result["tokens"] = out.shape[1] - inputs["input_ids"].shape[1]
            except Exception as e:  # reported to the reader below
                result["error"] = e
                streamer.end()
            finally:
                self._lock.release()

        worker = threading.Thread(target=run, name="embedded-generate", daemon=True)
        worker.start()
        reply._deltas = self._deltas(streamer, reply, worker, cancelled, result, params, inputs["input_ids"].shape[1])
        return reply

    def _deltas(self, streamer, reply: Reply, worker: threading.Thread, cancelled: threading.Event, result: dict,
                params: GenerationParams, prompt_tokens: int) -> Iterator[str]:  # fmt: skip
        """The reply's text as it streams, as vLLM does it: a stop string ends the reply and is never
        emitted (a stop string's length of text is held back until it cannot start one), and the finish
        reason is known only once generation has ended ("length" when it used the whole budget)."""
        stops = [s for s in params.stop if s]
        hold = max((len(s) for s in stops), default=0)
        text, sent, stopped = "", 0, False
        for piece in streamer:
            text += piece
            cut = min((text.find(s) for s in stops if s in text), default=-1)
            if cut >= 0:
                if cut > sent:
                    yield text[sent:cut]
                text, stopped = text[:cut], True
                cancelled.set()  # the generation stops at its next token; the streamer is drained below
                break
            if len(text) - hold > sent:
                yield text[sent : len(text) - hold]
                sent = len(text) - hold
        for _ in streamer if stopped else ():
            pass
        worker.join()
        if "error" in result:
            raise BackendError(f"generation failed: {result['error']}") from result["error"]
        if not stopped and len(text) > sent:
            yield text[sent:]
        tokens = result.get("tokens", 0)
        reply.finish_reason = "stop" if stopped or tokens < params.max_tokens else "length"
        reply.prompt_tokens = prompt_tokens
        reply.completion_tokens = tokens or len(self.tokenizer(text)["input_ids"])

    def evaluate(self, prompts: list[list[dict]], params: GenerationParams | list[GenerationParams],
                 adapter=EVAL_ACTIVE) -> list[str]:  # fmt: skip
        """Answer prompts with `params.user`'s adapter (one by one, as served), or in batches with the base
        model (None) or a candidate directory; `params` is one for all prompts or one per prompt
        (`each_prompt`)."""
        each = each_prompt(params, prompts)
        if adapter == EVAL_ACTIVE:
            return [self.generate(m, p).text() for m, p in zip(prompts, each, strict=True)]
        if not prompts:
            return []
        if adapter is None:
            self.wait_ready(self.settings.serve.request_timeout_s)
            with self._lock:  # the served model, its adapters off: no generation may swap them meanwhile
                if self._served:
                    with self.model.disable_adapter():
                        return self._batched(self.model, prompts, each)
                return self._batched(self.model, prompts, each)
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        check_adapter(Path(adapter))
        base = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=getattr(torch, self.dtype))
        candidate = PeftModel.from_pretrained(base, str(adapter))
        candidate.eval()
        return self._batched(candidate, prompts, each)

    def _batched(self, model, prompts: list[list[dict]], each: list[GenerationParams]) -> list[str]:
        """Greedy or sampled answers, `EVAL_BATCH` prompts to a forward pass (left-padded, prompts of like
        length together), each cut at its first stop string as vLLM cuts it."""
        import torch

        answers: list[str] = [""] * len(prompts)
        texts = [self.tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in prompts]
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(each):
            groups.setdefault((p.max_tokens, p.temperature, p.top_p, tuple(s for s in p.stop if s)), []).append(i)
        for (max_tokens, temperature, top_p, stops), members in groups.items():
            members.sort(key=lambda i: len(texts[i]))
            kwargs = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
            if temperature > 0:
                kwargs = {"do_sample": True, "temperature": temperature, "top_p": top_p}
            if stops:  # transformers stops each sequence there; the text is cut at the stop string below
                kwargs |= {"stop_strings": list(stops), "tokenizer": self.tokenizer}
            for start in range(0, len(members), EVAL_BATCH):
                batch = members[start : start + EVAL_BATCH]
                inputs = self.tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True,
                                        padding_side="left", add_special_tokens=False)  # fmt: skip
                with torch.inference_mode():
                    out = model.generate(**inputs, max_new_tokens=max_tokens,
                                         pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                                         **kwargs)  # fmt: skip
                for i, row in zip(batch, out[:, inputs["input_ids"].shape[1]:], strict=True):
                    text = self.tokenizer.decode(row, skip_special_tokens=True)
                    answers[i] = text[: min((text.find(s) for s in stops if s in text), default=len(text))]
        return answers

    def swap(self, version: str | None, path: Path | None, user: str, lazy: bool = False) -> float:
        """Answer `user`'s new requests with `version` from `path` (None = the base model); returns seconds
        taken. (`lazy` is accepted for the interface; an adapter here is small and loaded at once.)"""
        from peft import PeftModel

        self.wait_ready(self.settings.serve.request_timeout_s)
        if version is not None:
            check_adapter(Path(path))
        with self._lock:  # waits for the generation in progress
            t0 = time.perf_counter()
            old = self._served.get(user)
            if version is None:
                self._served.pop(user, None)
            else:
                name = f"{version}_{next(self._names)}"
                try:
                    if isinstance(self.model, PeftModel):
                        self.model.load_adapter(str(path), adapter_name=name)
                    else:
                        self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
                except Exception as e:  # a corrupt adapter: every user keeps what they had
                    raise AdapterError(f"could not load adapter {version} from {path}: {e}") from e
                self._served[user] = (version, name)
            if old is not None:
                if self._served:
                    self.model.set_adapter(next(iter(self._served.values()))[1])  # never delete the active one
                    self.model.delete_adapter(old[1])
                else:  # no adapter left: back to the plain model
                    self.model = self.model.unload()
            elapsed = time.perf_counter() - t0
        log.info("user %s: now serving %s (swap took %.3f s)", user, version or "the base model", elapsed)
        return elapsed


class _FrequencyPenalty:
    """OpenAI's frequency penalty, as vLLM applies it: each token's logit is lowered by `penalty` times the
    number of times it was generated so far (the prompt does not count, so the end-of-turn token the chat
    template repeats is not penalised). transformers has no such processor; its repetition penalty also
    counts the prompt."""

    def __init__(self, penalty: float, prompt_length: int):
        self.penalty = penalty
        self.prompt_length = prompt_length

    def __call__(self, input_ids, scores):
        import torch

        generated = input_ids[:, self.prompt_length :]
        if generated.shape[1]:
            counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
            scores = scores - self.penalty * counts
        return scores
