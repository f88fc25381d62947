"""Inference backends: what answers a list of messages, with which adapter.

Every backend has the same small surface (`Backend`): start/stop, a health
check, `generate()` returning a `Reply` (iterate it for text deltas), the
adapter version serving each user (`active_for`, `serving`), and `swap()` to
hot-swap a user to another adapter version by path. Each user has their own
adapter: a request names its user (`GenerationParams.user`) and is answered
by that user's adapter, never another's; a request without a user, or for a
user with no adapter, is answered by the base model. Backends know nothing of
the store, sleep, API or CLI.

- `vllm` (`backends/vllm.py`, the default): a vLLM OpenAI server as a child
  process, adapters loaded at runtime under a new name per version.
- `embedded` (`backends/embedded.py`): transformers + PEFT in this process,
  for machines where vLLM cannot run and for quick tests.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sleeptrain_agent.config import Settings


@dataclass
class GenerationParams:
    max_tokens: int = 256
    temperature: float = 0.7
    stop: list[str] = field(default_factory=list)
    top_p: float = 1.0
    seed: int | None = None
    json_schema: dict | None = None  # constrain the reply to this JSON schema (vLLM structured outputs)
    base: bool = False  # answer with the base model, not the user's adapter (the agent's routing)
    user: str | None = None  # whose adapter answers; None: the base model (nothing else is anyone's)
    frequency_penalty: float = 0.0  # OpenAI's: each generated token's logit lowered by this times its count so far


class Reply:
    """One generation: iterate for text deltas. `adapter` is fixed when it starts;
    `finish_reason` and token counts are set once iteration ends."""

    def __init__(self, deltas: Iterator[str], adapter: str | None, on_close: Callable[[], None] | None = None):
        self._deltas = deltas
        self.adapter = adapter
        self.finish_reason: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> Iterator[str]:
        try:
            yield from self._deltas
        finally:
            self.close()

    def text(self) -> str:
        return "".join(self)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            close = getattr(self._deltas, "close", None)
            if close:
                close()
            if self._on_close:
                self._on_close()


EVAL_ACTIVE = "active"  # evaluate(): the adapter serving params.user now; None: the base model; a Path: a candidate


class Backend(Protocol):
    name: str
    dtype: str  # the resolved dtype the model is served in ("float32", "bfloat16"; `sleeptrain_agent/dtypes.py`)

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def healthy(self) -> bool: ...
    def busy(self) -> bool: ...  # generating right now
    def status(self) -> dict: ...
    def active_for(self, user: str | None) -> str | None: ...  # the version answering `user` (None: base)
    @property
    def serving(self) -> dict[str, str]: ...  # user -> the version answering them
    def generate(self, messages: list[dict], params: GenerationParams) -> Reply: ...
    def swap(self, version: str | None, path: Path | None, user: str, lazy: bool = False) -> float: ...
    def evaluate(self, prompts: list[list[dict]], params: GenerationParams | list[GenerationParams],
                 adapter: str | Path | None = EVAL_ACTIVE) -> list[str]: ...  # fmt: skip


def each_prompt(params: GenerationParams | list[GenerationParams], prompts: list) -> list[GenerationParams]:
    """`evaluate`'s params, one per prompt: the same for all, or as given (one per prompt, sharing
    `user` and `base`: one adapter answers a whole evaluation)."""
    if not isinstance(params, list):
        return [params] * len(prompts)
    if len(params) != len(prompts):
        raise ValueError(f"{len(params)} generation params for {len(prompts)} prompts")
    if len({(p.user, p.base) for p in params}) > 1:
        raise ValueError("one evaluation answers with one adapter: every prompt's params need the same user and base")
    return params


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def create_backend(settings: Settings, model_path: Path, log_dir: Path) -> Backend:
    """The configured backend (`serve.backend`; `auto` = vllm where it is installed)."""
    kind = settings.serve.backend
    if kind == "auto":
        kind = "vllm" if vllm_available() else "embedded"
    if kind == "vllm":
        from sleeptrain_agent.backends.vllm import VLLMBackend

        return VLLMBackend(settings, model_path, log_dir)
    from sleeptrain_agent.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(settings, model_path)


def check_adapter(path: Path, max_rank: int | None = None) -> None:
    """Refuse an adapter directory that no backend could serve (before touching the backend)."""
    import json

    from sleeptrain_agent.errors import AdapterError

    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError(f"{path} is not a LoRA adapter (no adapter_config.json)")
    try:
        config = json.loads(config_file.read_text())
    except ValueError as e:
        raise AdapterError(f"{config_file} is not valid JSON: {e}") from None
    if not any((path / name).is_file() for name in ("adapter_model.safetensors", "adapter_model.bin")):
        raise AdapterError(f"{path} has no adapter weights (adapter_model.safetensors)")
    if max_rank is not None and int(config.get("r", 0)) > max_rank:
        raise AdapterError(f"adapter rank {config.get('r')} is above the server's max_lora_rank {max_rank}")
    if config.get("modules_to_save"):
        raise AdapterError("adapters with modules_to_save cannot be hot-swapped into vLLM")
    if config.get("use_dora"):
        raise AdapterError("DoRA adapters cannot be served by vLLM")
