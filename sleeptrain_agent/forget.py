"""Forget, on the daemon's side of the store: the files that hold a forgotten memory go with it.

`memory.erasure.erase_memory` takes the memory's words out of the SQLite
file. What the state directory holds about it goes here, at once:
- the training data of every sleep that rehearsed it (`sleeps/NNNN/job.json`,
  the dream conversations, in the memory's own words);
- the candidates of those sleeps that the gate refused (`adapters/<user>/rejected/`);
- every version of the user's lineage trained on it that is not the one
  served: their directories are deleted and their rows marked `erased_at`
  (they can no longer be activated). The served adapter still knows the
  memory; the router no longer sends questions about it there (its keys are
  gone), and the user's next sleep is a deep sleep that trains a new adapter
  from the base model, after which `erase_superseded` deletes the rest of
  the lineage.
Only the user's own lineage is touched: another user's adapter never saw
their memories.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from memory.erasure import erase_memory, erase_user
from memory.store import Store, now
from sleeptrain_agent.sleep.adapters import AdapterFiles

log = logging.getLogger(__name__)


def forget(store: Store, state_dir: Path, memory_id: int) -> dict:
    """Erase memory `memory_id` from the store and the state directory; returns the erased memory row
    with `erased` (what went: memory ids, turns redacted, sleep files, adapter versions)."""
    user = store.memory(memory_id)["user"]
    erased = erase_memory(store, memory_id)
    ids = set(erased["memories"])
    sleeps = [s for s in store.sleeps(user=user) if ids & set(_rehearsed(s))]
    files, lineages = [], AdapterFiles(state_dir / "adapters", store)
    for s in sleeps:
        for path in (state_dir / "sleeps" / f"{s['id']:04d}", lineages.rejected(user, s["id"])):
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)
                files.append(str(path))
    first = min((s["id"] for s in sleeps), default=None)
    versions = []
    if first is not None:
        for a in store.adapters(user=user):
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


def erase_superseded(store: Store, state_dir: Path, keep: str, user: str) -> list[str]:
    """After `user`'s deep sleep that followed a forget: every version of their lineage but `keep` was
    continued from weights that knew the forgotten memory; delete them all, and the refused candidates."""
    erased = [erase_adapter(store, a) for a in store.adapters(user=user) if a["version"] != keep and not a.get("erased_at")]
    shutil.rmtree(AdapterFiles(state_dir / "adapters", store).lineage(user) / "rejected", ignore_errors=True)
    return erased


def forget_user(store: Store, state_dir: Path, user: str) -> dict:
    """Delete a user entirely (`sleeptrain users forget`): each memory forgotten as above (files, older
    adapters), every adapter of their lineage (files and rows) and sleep rows, then every other row of
    the user (`memory.erasure.erase_user`). Other users are untouched: their adapters never saw this
    user's memories. `deactivate` is set when the user had an active adapter (the daemon then stops
    serving it)."""
    for m in store.memories(user=user):  # none for an unknown user: erase_user raises NotFound
        forget(store, state_dir, m["id"])
    deactivate = store.active_adapter(user) is not None
    adapters = store.adapters(user=user)
    counts = erase_user(store, user)
    for a in adapters:
        shutil.rmtree(a["path"], ignore_errors=True)
    shutil.rmtree(AdapterFiles(state_dir / "adapters", store).lineage(user), ignore_errors=True)
    with store.transaction() as db:
        db.execute("delete from adapters where user = ?", [user])
        sleeps = [r[0] for r in db.execute("select id from sleeps where user = ?", [user])]
        db.execute("delete from sleeps where user = ?", [user])
    for sid in sleeps:
        shutil.rmtree(state_dir / "sleeps" / f"{sid:04d}", ignore_errors=True)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    erased = [a["version"] for a in adapters]
    log.info("forgot user %s: %s", user, {**counts, "adapters": erased})
    return {**counts, "adapters_erased": erased, "sleeps_deleted": len(sleeps), "deactivate": deactivate}
