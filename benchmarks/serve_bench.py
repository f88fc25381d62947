"""Serving overhead, hot-swap time and the served dtype, on the real stack.

    python -m benchmarks.serve_bench [--requests 20] [--max-tokens 32] [--backend vllm] [--dtypes float32 bfloat16]
    python -m benchmarks.serve_bench --users 8 [--requests 24] [--concurrency 4] [--max-loras N]
    python -m benchmarks.serve_bench --starts 3 [--requests 8]

For each dtype in `--dtypes` (`vllm.dtype`, or `model.dtype` for the embedded
backend) starts a real `sleeptrain daemon` (vLLM-CPU + SmolLM2) in a
temporary state directory, then sends the same greedy chat request, in turn,
through the daemon to the base model, straight to the vLLM server it
manages (same prompt, system prompt included, same length), and through the
daemon to a real PEFT adapter (rank 8 on q_proj, v_proj), and prints p50/p95 of each:
the daemon's overhead (daemon / direct, target <= 1.05) and the cost of
LoRA (adapter / base). Then swaps between two adapters several times through
`POST /v1/adapters/{v}/activate` (target < 1 s on this CPU). With two dtypes
it ends with bfloat16 / float32 p50, base and through the adapter (target
<= 0.7 on a CPU with native bf16).

With `--users N`: N users, each with an adapter of their own (rank 8, a
different seed each), on one daemon. First each user's first request (their
adapter assigned at start-up, loaded on that request: the cost of a cold
adapter, against the same user's warm p50); then rounds of `--concurrency`
concurrent requests, alternately all from one user (one adapter) and spread
over the N users, and prints p50 spread / one adapter (target <= 1.2).

With `--starts N`: starts the daemon N times with `vllm.cpu_single_worker`
false and true in turn (vLLM's own worker process, or the model in its
engine process), and prints the median time until /health is ok and the
reply p50, base and through an adapter, of each, and their ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from benchmarks._daemon import percentile, running_daemon
from memory.store import Store
from sleeptrain_agent.config import load_settings, model_dir
from sleeptrain_agent.dtypes import describe
from tests.adapters import make_adapter

QUESTION = "Tell me about the city of Paris."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20, help="requests per path")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--swaps", type=int, default=6)
    ap.add_argument("--backend", default="vllm", choices=["vllm", "embedded"])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                    choices=["auto", "float32", "bfloat16"], help="served dtypes to compare")  # fmt: skip
    ap.add_argument("--users", type=int, default=0, help="N users with an adapter each: multi-adapter latency")
    ap.add_argument("--concurrency", type=int, default=4, help="--users: concurrent requests")
    ap.add_argument("--max-loras", type=int, help="--users: vllm.max_loras (adapters in one batch)")
    ap.add_argument("--starts", type=int, default=0,
                    help="N starts each with vllm.cpu_single_worker false / true: start time and reply p50")  # fmt: skip
    args = ap.parse_args()
    if args.starts:
        run_starts(args)
        return
    if args.users:
        run_users(args)
        return
    p50: dict[str, dict[str, float]] = {}
    for dtype in args.dtypes:
        print(f"== {dtype}: {describe(dtype)}")
        p50[dtype] = run(args, dtype)
    if "float32" in p50 and "bfloat16" in p50:
        for path in ("base", "adapter"):
            print(f"bfloat16 / float32 p50, {path}: {p50['bfloat16'][path] / p50['float32'][path]:.2f}  (target <= 0.7)")


def run(args, dtype: str) -> dict[str, float]:
    settings = load_settings()
    model_path = model_dir(settings)
    section = "VLLM" if args.backend == "vllm" else "MODEL"
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        adapters = Path(tmp) / "adapters"
        store = Store(state / settings.store.filename)
        for i, version in enumerate(["v0001", "v0002"], 1):
            store.add_adapter(version, make_adapter(model_path, adapters / version, seed=i))
        store.close()
        with running_daemon(state, args.backend, **{f"SLEEPTRAIN_{section}__DTYPE": dtype}) as (url, health):
            http = httpx.Client(timeout=600)
            system = settings.serve.system_prompt
            body = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": QUESTION}],
                    "max_tokens": args.max_tokens, "temperature": 0}  # fmt: skip
            http.post(f"{url}/v1/adapters/v0001/activate").raise_for_status()
            paths = {"base": (url + "/v1/chat/completions", "base")}
            if args.backend == "vllm":
                vport = health["backend"]["port"]
                paths["direct vLLM"] = (f"http://127.0.0.1:{vport}/v1/chat/completions", "base")
            paths["adapter"] = (url + "/v1/chat/completions", "v0001")
            for target, model in paths.values():  # warm-up
                http.post(target, json={**body, "model": model}).raise_for_status()
            latencies: dict[str, list[float]] = {name: [] for name in paths}
            tokens: dict[str, list[int]] = {name: [] for name in paths}
            for _ in range(args.requests):
                for name, (target, model) in paths.items():  # interleaved, so drift hits all alike
                    start = time.perf_counter()
                    r = http.post(target, json={**body, "model": model})
                    latencies[name].append(time.perf_counter() - start)
                    r.raise_for_status()
                    tokens[name].append(r.json()["usage"]["completion_tokens"])
            for name, values in latencies.items():
                print(f"{name:>12}: p50 {statistics.median(values) * 1000:7.0f} ms   p95 {percentile(values, 0.95) * 1000:7.0f} ms"
                      f"   ({args.requests} requests, {statistics.mean(tokens[name]):.0f} tokens each)")  # fmt: skip
            medians = {name: statistics.median(values) for name, values in latencies.items()}
            if "direct vLLM" in medians:
                print(f"daemon / direct p50 ratio: {medians['base'] / medians['direct vLLM']:.3f}  (target <= 1.05)")
            print(f"adapter / base p50 ratio: {medians['adapter'] / medians['base']:.2f}")

            backend_s, http_s = [], []
            for i in range(args.swaps):
                version = ("v0002", "v0001")[i % 2]
                start = time.perf_counter()
                r = http.post(f"{url}/v1/adapters/{version}/activate")
                http_s.append(time.perf_counter() - start)
                r.raise_for_status()
                backend_s.append(r.json()["swap_seconds"])
            print(f"hot-swap ({args.swaps} swaps, rank-8 adapters): backend median {statistics.median(backend_s) * 1000:.0f} ms,"
                  f" HTTP round trip median {statistics.median(http_s) * 1000:.0f} ms, max {max(http_s) * 1000:.0f} ms"
                  "  (target < 1 s)")  # fmt: skip
    return medians


def run_starts(args) -> None:
    settings = load_settings()
    model_path = model_dir(settings)
    figures: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        adapter = make_adapter(model_path, Path(tmp) / "adapters" / "v0001", seed=1)
        for n in range(args.starts):
            for single in ("false", "true"):  # alternating, so drift hits both alike
                state = Path(tmp) / f"state-{n}-{single}"
                store = Store(state / settings.store.filename)
                store.add_adapter("v0001", adapter)
                store.close()
                with running_daemon(state, "vllm", SLEEPTRAIN_VLLM__CPU_SINGLE_WORKER=single) as (url, health):
                    http = httpx.Client(timeout=600)
                    http.post(f"{url}/v1/adapters/v0001/activate").raise_for_status()
                    body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": args.max_tokens,
                            "temperature": 0}  # fmt: skip
                    row = figures.setdefault(single, {"start": [], "base": [], "adapter": [], "rss": []})
                    row["start"].append(health["ready_s"])
                    server = psutil.Process(health["backend"]["pid"])
                    row["rss"].append(sum(p.memory_info().rss for p in [server, *server.children(recursive=True)]) / 2**30)
                    for model in ("base", "v0001"):
                        http.post(url + "/v1/chat/completions", json={**body, "model": model}).raise_for_status()
                    for _ in range(args.requests):
                        for name, model in (("base", "base"), ("adapter", "v0001")):
                            start = time.perf_counter()
                            http.post(url + "/v1/chat/completions", json={**body, "model": model}).raise_for_status()
                            row[name].append(time.perf_counter() - start)
    medians = {k: {m: statistics.median(v) for m, v in row.items()} for k, row in figures.items()}
    for single, row in medians.items():
        print(f"cpu_single_worker {single:>5}: ready {row['start']:5.1f} s (median of {args.starts}), reply p50 base"
              f" {row['base'] * 1000:5.0f} ms, adapter {row['adapter'] * 1000:5.0f} ms; vLLM processes' memory"
              f" {row['rss']:.2f} GiB")  # fmt: skip
    for key in ("start", "base", "adapter", "rss"):
        print(f"single / own worker process, {key}: {medians['true'][key] / medians['false'][key]:.2f}")


def run_users(args) -> None:
    from concurrent.futures import ThreadPoolExecutor

    settings = load_settings()
    model_path = model_dir(settings)
    users = [f"user{i:02d}" for i in range(1, args.users + 1)]
    env = {"SLEEPTRAIN_VLLM__MAX_LORAS": str(args.max_loras)} if args.max_loras else {}
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        store = Store(state / settings.store.filename)
        for i, user in enumerate(users, 1):
            version = f"v{i:04d}"
            store.add_adapter(version, make_adapter(model_path, Path(tmp) / "adapters" / version, seed=i), user=user)
            store.activate_adapter(version)
        store.close()
        with running_daemon(state, args.backend, **env) as (url, health):
            http = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=args.concurrency + 2))
            body = {"model": "sleeptrain", "messages": [{"role": "user", "content": QUESTION}],
                    "max_tokens": args.max_tokens, "temperature": 0}  # fmt: skip

            def ask(user: str) -> float:
                start = time.perf_counter()
                r = http.post(url + "/v1/chat/completions", json={**body, "user": user})
                r.raise_for_status()
                assert r.json()["adapter"] == f"v{users.index(user) + 1:04d}", r.json()["adapter"]  # theirs only
                return time.perf_counter() - start

            cold = [ask(u) for u in users]  # each adapter's first use: loaded now
            warm = [ask(u) for u in users for _ in range(2)]
            print(f"first request of a user (adapter loaded then): median {statistics.median(cold) * 1000:.0f} ms; "
                  f"warm median {statistics.median(warm) * 1000:.0f} ms; cold adapter costs "
                  f"{(statistics.median(cold) - statistics.median(warm)) * 1000:.0f} ms")  # fmt: skip
            one, spread = [], []
            with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                for r in range(args.requests // args.concurrency):  # alternate rounds, so drift hits both alike
                    one += pool.map(ask, [users[0]] * args.concurrency)
                    spread += pool.map(ask, [users[(r * args.concurrency + k) % len(users)] for k in range(args.concurrency)])
            p1, pn = statistics.median(one), statistics.median(spread)
            print(f"{args.concurrency} concurrent, one adapter: p50 {p1 * 1000:.0f} ms p95 {percentile(one, 0.95) * 1000:.0f} ms;"
                  f" spread over {len(users)} users' adapters: p50 {pn * 1000:.0f} ms p95 {percentile(spread, 0.95) * 1000:.0f} ms"
                  f" ({len(one)} + {len(spread)} requests, max_loras {args.max_loras or settings.vllm.max_loras})")  # fmt: skip
            print(f"spread / one adapter p50 ratio: {pn / p1:.2f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
