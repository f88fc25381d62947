"""Forget, on the daemon's side of the store: the files that hold a forgotten memory go with it.

`memory.erasure.erase_memory` takes the memory's words out of the SQLite
file. What the state directory holds about it goes here, at once:
- the training data of every sleep that rehearsed it (`sleeps/NNNN/job.json`,
  the dream conversations, in the memory's own words);
- the candidates of those sleeps that the gate refused (`adapters/rejected/`);
- every adapter version trained on it that is not the one served: their
  directories are deleted and their rows marked `erased_at` (they can no
  longer be activated). The served adapter still knows the memory; the
  router no longer sends questions about it there (its keys are gone), and
  the user's next sleep is a deep sleep that trains a new adapter from the
  base model, after which `erase_superseded` deletes the rest of the lineage.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from memory.erasure import erase_memory, erase_user
from memory.store import Store, now

log = logging.getLogger(__name__)


def forget(store: Store, state_dir: Path, memory_id: int) -> dict:
    """Erase memory `memory_id` from the store and the state directory; returns the erased memory row
    with `erased` (what went: memory ids, turns redacted, sleep files, adapter versions)."""
    erased = erase_memory(store, memory_id)
    ids = set(erased["memories"])
    sleeps = [s for s in store.sleeps() if ids & set(_rehearsed(s))]
    files = []
    for s in sleeps:
        for path in (state_dir / "sleeps" / f"{s['id']:04d}", state_dir / "adapters" / "rejected" / f"sleep-{s['id']:04d}"):
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)
                files.append(str(path))
    first = min((s["id"] for s in sleeps), default=None)
    versions = []
    if first is not None:
        for a in store.adapters():
            if not a["active"] and not a.get("erased_at") and a.get("sleep_id") is not None and a["sleep_id"] >= first:
                versions.append(erase_adapter(store, a))
    log.info("forgot memory %s: %s", memory_id, {**erased, "files": len(files), "adapters": versions})
    return {**store.memory(memory_id), "erased": {**erased, "files": files, "adapters": versions}}


def _rehearsed(sleep: dict) -> list[int]:
    details = sleep.get("details") or {}
    return [int(i) for i in (details.get("new") or []) + (details.get("replay") or [])]


def erase_adapter(store: Store, adapter: dict) -> str:
    """Delete an adapter version's files and mark its row erased (never again activated)."""
    shutil.rmtree(adapter["path"], ignore_errors=True)
    with store.transaction() as db:
        db["adapters"].update(adapter["version"], {"erased_at": now()})
    return adapter["version"]


def erase_superseded(store: Store, state_dir: Path, keep: str) -> list[str]:
    """After a deep sleep that followed a forget: every adapter version but `keep` was continued from
    weights that knew the forgotten memory; delete them all, and the refused candidates."""
    erased = [erase_adapter(store, a) for a in store.adapters() if a["version"] != keep and not a.get("erased_at")]
    shutil.rmtree(state_dir / "adapters" / "rejected", ignore_errors=True)
    return erased


def forget_user(store: Store, state_dir: Path, user: str) -> dict:
    """Delete a user entirely (`sleeptrain users forget`): each memory forgotten as above (files, older
    adapters), then every row of the user (`memory.erasure.erase_user`). The adapter is shared, so
    the other users' next sleep is deep; when no memory of anyone is left, every adapter is erased
    now and `deactivate` is set (the daemon then serves the base model)."""
    for m in store.memories(user=user):  # none for an unknown user: erase_user raises NotFound
        forget(store, state_dir, m["id"])
    counts = erase_user(store, user)
    others = store.memories(status=("pending", "consolidated"), limit=1)
    with store.transaction() as db:
        db.execute("update users set deep_sleep_due = 1")
    erased, deactivate = [], False
    if not others:
        active = store.active_adapter()
        if active is not None:
            store.activate_adapter(None)
            deactivate = True
        erased = [erase_adapter(store, a) for a in store.adapters() if not a.get("erased_at")]
        shutil.rmtree(state_dir / "adapters" / "rejected", ignore_errors=True)
        store.clear_deep_sleep()
    log.info("forgot user %s: %s", user, {**counts, "adapters": erased})
    return {**counts, "adapters_erased": erased, "deactivate": deactivate}
