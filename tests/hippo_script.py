"""Feed a labelled hippocampus script and score the decisions (shared by tests and the benchmark).

Two scripts: `hippocampus_script.yaml` (48 turns, written with the first rules
judge) and `hippocampus_natural.yaml` (158 turns written from natural sources
before the statement extractor, with `tune` and `heldout` conversations).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from memory.answers import norm
from memory.store import Store

DATA = Path(__file__).parent / "data"
SCRIPT = DATA / "hippocampus_script.yaml"
NATURAL = DATA / "hippocampus_natural.yaml"
PRIORITY = {"CORRECT": 3, "STORE": 2, "REINFORCE": 1, "REJECT": 0}


def script(path: Path = SCRIPT, split: str | None = None) -> list[dict]:
    """The script's user turns in order, each with `user`, `conversation`, `text`, `expect` and the
    indexes of the turns it `corrects` or `repeats` (ids resolved), `mentions`, `not_mentions`, `split`."""
    data = yaml.safe_load(path.read_text())
    if "turns" in data:  # the first script: one conversation per user, references by index
        return [{**t, "conversation": f"script-{t['user']}", "split": "tune"} for t in data["turns"]]
    items: list[dict] = []
    index: dict[str, int] = {}
    for conv in data["conversations"]:
        for t in conv["turns"]:
            if "id" in t:
                index[t["id"]] = len(items)
            items.append({**t, "user": conv["user"], "conversation": f"natural-{conv['id']}", "split": conv["split"]})
    for item in items:
        for key in ("corrects", "repeats"):
            if key in item:
                item[key] = index[item[key]]
    return [i for i in items if split is None or i["split"] == split] if split else items


def turn_decision(decisions: list[dict]) -> str:
    """A turn's decision: the most significant of its decision rows."""
    return max((d["decision"] for d in decisions), key=PRIORITY.__getitem__, default="(none)")


def score(store: Store, turn_ids: list[int], items: list[dict] | None = None) -> dict:
    """Compare the store's decisions for the script's turns with the labels (all turns of the script,
    in order; `items` default to the first script). Splits are scored apart as well."""
    items = items if items is not None else script()
    wrong: list[dict] = []
    memory_of: dict[int, set[int]] = {}
    by_split: dict[str, list[int]] = {}
    for i, (item, tid) in enumerate(zip(items, turn_ids, strict=True)):
        decisions = store.decisions(turn_id=tid)
        got = turn_decision(decisions)
        memory_of[i] = {d["memory_id"] for d in decisions if d["memory_id"] is not None}
        texts = [store.memory(m)["text"] for m in memory_of[i]]
        why = ""
        ok = got == item["expect"]
        if ok and "corrects" in item:
            old = memory_of[item["corrects"]]
            ok = any(d["decision"] == "CORRECT" and d["supersedes"] in old for d in decisions)
            why = "" if ok else "superseded the wrong memory"
        if ok and "repeats" in item:
            ok = any(d["decision"] == "REINFORCE" and d["memory_id"] in memory_of[item["repeats"]] for d in decisions)
            why = "" if ok else "reinforced the wrong memory"
        if ok and item.get("mentions") and item["expect"] != "REJECT":
            missing = [w for w in item["mentions"] if not any(f" {norm(w)} " in f" {norm(t)} " for t in texts)]
            ok, why = not missing, f"no memory mentions {missing}" if missing else ""
        if ok and item.get("not_mentions"):
            present = [w for w in item["not_mentions"] if any(f" {norm(w)} " in f" {norm(t)} " for t in texts)]
            ok, why = not present, f"a memory mentions {present}" if present else ""
        by_split.setdefault(item.get("split", "tune"), []).append(int(ok))
        if not ok:
            wrong.append({"turn": i, "split": item.get("split"), "text": item["text"], "expected": item["expect"],
                          "got": got, "why": why, "memories": texts,
                          "reasons": [r for d in decisions for r in d["reasons"]]})  # fmt: skip
    return {"total": len(items), "correct": len(items) - len(wrong), "accuracy": 1 - len(wrong) / len(items),
            "splits": {k: round(sum(v) / len(v), 3) for k, v in by_split.items()}, "wrong": wrong}  # fmt: skip


def feed(store: Store, hippocampus, items: list[dict]) -> list[int]:
    """Log each turn in its conversation and run the hippocampus on it; returns the turn ids."""
    ids = []
    for item in items:
        conv = store.start_conversation(item["user"], conversation_id=item["conversation"])
        turn = store.log_turn(conv, "user", item["text"])
        hippocampus.process(turn)
        ids.append(turn["id"])
    return ids
