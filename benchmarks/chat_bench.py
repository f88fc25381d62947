"""Do the chat defaults give replies that fit a chat? Loops and length on a fixed set of prompts.

    python -m benchmarks.chat_bench [--backend vllm] [--variants '{"old": {...}, "new": {...}}']

A real daemon answers 20 fixed chat prompts (greetings, small questions,
requests) once per variant of the chat settings (`serve.*` overrides as JSON,
each variant its own daemon); sampled as a user would get them, with a fixed
seed per prompt. Printed per variant: the share of replies that repeat a
5-gram of words (a loop: "I'm just a little bit by accident" four times), the
median and p90 reply length in words, and how many replies hit the token limit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import httpx

from benchmarks._daemon import running_daemon

PROMPTS = [
    "Hi!", "Hello there, how are you?", "Good morning!", "What's up?", "Thanks for your help.",
    "Can you recommend a book for a rainy weekend?", "How do I make a cup of tea?", "Tell me a fun fact about octopuses.",
    "What should I cook tonight?", "I'm feeling a bit tired today.", "Write a short poem about the sea.",
    "What is the capital of Norway?", "Explain what a rainbow is in one or two sentences.", "Give me three names for a cat.",
    "How can I sleep better?", "What's a good way to start running?", "I just got a new puppy!",
    "Can you help me plan my Saturday?", "What is 12 times 7?", "Bye, talk later!",
]  # fmt: skip
DEFAULT_VARIANTS = {
    "before (max_tokens 256, no penalty)": {"max_tokens": 256, "frequency_penalty": 0.0},
    "after (the defaults: max_tokens 160, frequency_penalty 0.5)": {},
}


def repeats_a_5gram(text: str) -> bool:
    words = text.lower().split()
    grams = [tuple(words[i : i + 5]) for i in range(len(words) - 4)]
    return len(grams) != len(set(grams))


def run(backend: str, name: str, serve: dict) -> dict:
    env = {f"SLEEPTRAIN_SERVE__{k.upper()}": str(v) for k, v in serve.items()}
    with tempfile.TemporaryDirectory() as tmp, running_daemon(Path(tmp) / "state", backend, **env) as (url, _):
        http = httpx.Client(timeout=600)
        lengths, loops, truncated = [], 0, 0
        for i, prompt in enumerate(PROMPTS):
            r = http.post(url + "/v1/chat/completions", json={"model": "base", "seed": i,
                                                              "messages": [{"role": "user", "content": prompt}]})  # fmt: skip
            r.raise_for_status()
            choice = r.json()["choices"][0]
            text = choice["message"]["content"]
            lengths.append(len(text.split()))
            loops += repeats_a_5gram(text)
            truncated += choice["finish_reason"] == "length"
    lengths.sort()
    return {"variant": name, "loops": loops / len(PROMPTS), "median_words": statistics.median(lengths),
            "p90_words": lengths[int(0.9 * (len(lengths) - 1))], "hit_limit": truncated}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="vllm", choices=["vllm", "embedded"])
    ap.add_argument("--variants", type=json.loads, default=DEFAULT_VARIANTS, help="JSON {name: {serve.* settings}}")
    args = ap.parse_args()
    for name, serve in args.variants.items():
        r = run(args.backend, name, serve)
        print(f"{name:40s} loops {r['loops']:.2f}  median {r['median_words']:.0f} words  p90 {r['p90_words']} words  "
              f"hit the limit {r['hit_limit']}/{len(PROMPTS)}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
