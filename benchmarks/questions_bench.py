"""The dream question generator on the labelled sentences: how many of the questions people ask come near one
it generates.

    python -m benchmarks.questions_bench [--misses]

The measure is `tests/test_questions.py`'s (`coverage`): for each question of `tests/data/questions_dev.yaml`
and `questions_heldout.yaml`, a generated question whose answer holds the expected words within 0.75
cosine (all-MiniLM-L6-v2), the question asked as the agent passes it on. Prints each file's share;
`--misses` lists the dev file's misses. The held-out misses are never printed: that file is not to be
tuned on.
"""

from __future__ import annotations

import argparse

from memory.embeddings import Embedder
from tests.test_questions import coverage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--misses", action="store_true", help="list the dev file's misses (never the held-out's)")
    args = ap.parse_args()
    embedder = Embedder()
    for name in ("questions_dev.yaml", "questions_heldout.yaml"):
        share, misses = coverage(name, embedder)
        print(f"{name}: {share:.3f} ({len(misses)} misses)")
        if args.misses and name == "questions_dev.yaml":
            for said, question in misses:
                print(f"  {question!r} about {said!r}")


if __name__ == "__main__":
    main()
