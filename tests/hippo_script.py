"""Feed the labelled hippocampus script and score the decisions (shared by tests and the benchmark)."""

from __future__ import annotations

from pathlib import Path

import yaml

from memory.store import Store

SCRIPT = Path(__file__).parent / "data" / "hippocampus_script.yaml"
PRIORITY = {"CORRECT": 3, "STORE": 2, "REINFORCE": 1, "REJECT": 0}


def script() -> list[dict]:
    return yaml.safe_load(SCRIPT.read_text())["turns"]


def turn_decision(decisions: list[dict]) -> str:
    """A turn's decision: the most significant of its decision rows."""
    return max((d["decision"] for d in decisions), key=PRIORITY.__getitem__, default="(none)")


def score(store: Store, turn_ids: list[int]) -> dict:
    """Compare the store's decisions for the script's turns with the labels."""
    items, wrong = script(), []
    memory_of: dict[int, set[int]] = {}
    for i, (item, tid) in enumerate(zip(items, turn_ids, strict=True)):
        decisions = store.decisions(turn_id=tid)
        got = turn_decision(decisions)
        memory_of[i] = {d["memory_id"] for d in decisions if d["memory_id"] is not None}
        ok = got == item["expect"]
        if ok and "corrects" in item:
            old = memory_of[item["corrects"]]
            ok = any(d["decision"] == "CORRECT" and d["supersedes"] in old for d in decisions)
        if ok and "repeats" in item:
            ok = any(d["decision"] == "REINFORCE" and d["memory_id"] in memory_of[item["repeats"]] for d in decisions)
        if not ok:
            wrong.append({"turn": i, "text": item["text"], "expected": item["expect"], "got": got,
                          "reasons": [r for d in decisions for r in d["reasons"]]})  # fmt: skip
    return {"total": len(items), "correct": len(items) - len(wrong), "accuracy": 1 - len(wrong) / len(items),
            "wrong": wrong}  # fmt: skip
