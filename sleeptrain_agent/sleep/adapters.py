"""Adapter directories under `state/adapters/`: one lineage per user, versions, promotion, rejection,
recovery, weakening.

Layout:
- `<user>/vNNNN/`: the user's promoted versions, recorded in the store; versions are numbered across
  users (zero-padded, never reused), so a version names one adapter (`adapters activate v0007`, the
  `adapter` of a logged reply);
- `<user>/.tmp-sleep-NNNN/`: a sleep's candidate while it trains and is gated;
- `<user>/rejected/sleep-NNNN/`: candidates the gate refused, kept for inspection;
- `orphaned/`: directories found at start-up that the store does not know
  (a crash between the rename and the recording transaction).
`<user>` is the user id where it is a plain file name, else a slug of it with a hash (`user_dir`).

A candidate becomes a version by fsync + atomic rename on one filesystem, so a
crash leaves either the temp directory or the complete version, never half of
one; nothing is recorded in the store here (the sleep cycle does that in one
transaction after the hot-swap).

`migrate_layout` moves a state directory from before per-user lineages (`adapters/vNNNN/`): a lineage
that consolidated one user's memories moves into that user's directory; one shared by several users
is erased (migration `m007_user_adapters` already made those users' next sleep deep).

`weaken_adapter` writes a copy of an adapter with the change its sleep made
scaled down (the gate's fallback).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from pathlib import Path

from memory.store import Store, now

log = logging.getLogger(__name__)
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_RESERVED = re.compile(r"(orphaned|rejected|v\d+)")


def user_dir(user: str) -> str:
    """The directory name of `user`'s lineage: the id itself when it is a plain file name that cannot be
    mistaken for anything else under `adapters/`, else a slug and a hash of the id (distinct ids,
    distinct directories)."""
    if _PLAIN.fullmatch(user) and not _RESERVED.fullmatch(user):
        return user
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", user).strip("._")[:40] or "user"
    return f"{slug}-{hashlib.sha256(user.encode()).hexdigest()[:10]}"


class AdapterFiles:
    """The adapter directories of one state directory, a lineage per user."""

    def __init__(self, adapters_dir: Path, store: Store):
        self.dir = adapters_dir
        self.store = store

    def lineage(self, user: str) -> Path:
        return self.dir / user_dir(user)

    def scratch(self, user: str, sleep_id: int) -> Path:
        """A sleep's (empty) candidate directory; a leftover of the same sleep is removed first."""
        path = self.lineage(user) / f".tmp-sleep-{sleep_id:04d}"
        shutil.rmtree(path, ignore_errors=True)
        return path

    def next_version(self) -> str:
        """The next unused `vNNNN`: above every recorded version and every directory on disk, of any user."""
        numbers = [int(m[1]) for a in self.store.adapters() if (m := re.fullmatch(r"v(\d+)", a["version"]))]
        if self.dir.exists():
            for p in [*self.dir.iterdir(), *self.dir.glob("*/v*")]:
                if m := re.fullmatch(r"v(\d+)", p.name):
                    numbers.append(int(m[1]))
        return f"v{max(numbers, default=0) + 1:04d}"

    def promote(self, candidate: Path, version: str) -> Path:
        """Make `candidate` the directory of `version`, in its lineage (fsync, atomic rename, fsync of the parent)."""
        final = candidate.parent / version
        fsync_dir(candidate)
        candidate.rename(final)
        fsync_dir(candidate.parent)
        return final

    def reject(self, candidate: Path, sleep_id: int) -> Path:
        """Keep a refused candidate in its lineage's `rejected/sleep-NNNN/` for inspection."""
        kept = candidate.parent / "rejected" / f"sleep-{sleep_id:04d}"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(kept, ignore_errors=True)
        candidate.rename(kept)
        return kept

    def rejected(self, user: str, sleep_id: int) -> Path:
        return self.lineage(user) / "rejected" / f"sleep-{sleep_id:04d}"

    def set_aside_unknown(self) -> list[str]:
        """Move temp directories and versions the store does not know into `orphaned/`; returns notes."""
        notes: list[str] = []
        if not self.dir.exists():
            return notes
        known = {Path(a["path"]).resolve() for a in self.store.adapters()}
        lineages = [p for p in self.dir.iterdir() if p.is_dir() and p.name not in ("orphaned", "rejected")
                    and not p.name.startswith(".") and not re.fullmatch(r"v\d+", p.name)]  # fmt: skip
        for parent in (self.dir, *lineages):
            for p in parent.iterdir():
                unknown = re.fullmatch(r"v\d+", p.name) and p.resolve() not in known
                if p.is_dir() and (p.name.startswith(".tmp-") or unknown):
                    target = self.dir / "orphaned" / f"{p.name.lstrip('.')}-{int(time.time())}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    p.rename(target)
                    notes.append(f"set aside {parent.name}/{p.name} (not a recorded adapter) in {target}")
        return notes

    def migrate_layout(self) -> list[str]:
        """Move adapters of the shared layout (`adapters/vNNNN`) into their user's lineage; erase the ones
        several users' memories went into (served to nobody since `m007_user_adapters`). Returns notes."""
        notes: list[str] = []
        for a in self.store.adapters():
            path = Path(a["path"])
            if a.get("erased_at"):
                continue
            if a.get("user") is None:
                shutil.rmtree(path, ignore_errors=True)
                with self.store.transaction() as db:
                    db["adapters"].update(a["version"], {"erased_at": now(), "active": 0})
                notes.append(f"erased {a['version']}: it was trained on the memories of several users")
            elif path.parent.resolve() == self.dir.resolve():
                target = self.lineage(a["user"]) / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                if path.exists():
                    path.rename(target)
                with self.store.transaction() as db:
                    db["adapters"].update(a["version"], {"path": str(target)})
                notes.append(f"moved {a['version']} into the lineage of user {a['user']!r}")
        old = self.dir / "rejected"
        for kept in sorted(old.glob("sleep-*")) if old.exists() else []:
            m = re.fullmatch(r"sleep-(\d+)", kept.name)
            row = self.store.db.execute("select user from sleeps where id = ?", [int(m[1])]).fetchone() if m else None
            if row and row[0]:
                target = self.rejected(row[0], int(m[1]))
                target.parent.mkdir(parents=True, exist_ok=True)
                kept.rename(target)
            else:
                shutil.rmtree(kept, ignore_errors=True)
        if old.exists() and not any(old.iterdir()):
            old.rmdir()
        return notes


def weaken_adapter(source: Path, target: Path, scale: float, start: Path | None = None) -> None:
    """Copy the PEFT LoRA adapter `source` with the change its sleep made scaled by `scale`: the change
    from `start` (the adapter the sleep continued; None: the base model), as weight-space
    interpolation from `start` (WiSE-FT). The result is re-factored at the adapter's rank, A's rows
    orthonormal directions (at the source's row norm), so every direction stays trainable in the
    next sleep."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    weights = target / "adapter_model.safetensors"
    tensors = load_file(weights)
    before = load_file(start / "adapter_model.safetensors") if start else {}
    for b_name in [k for k in tensors if ".lora_B." in k]:
        a_name = b_name.replace(".lora_B.", ".lora_A.")
        b, a = tensors[b_name].double(), tensors[a_name].double()
        b0, a0 = (before[b_name].double(), before[a_name].double()) if b_name in before else (b[:, :0], a[:0])
        u, s, vh = _lowrank_svd(torch.cat([b, -b0], 1), torch.cat([a, a0]))  # the change B·A - B0·A0
        u, s, vh = _lowrank_svd(torch.cat([b0, scale * u * s], 1), torch.cat([a0, vh]))
        rank, norm = a.shape[0], float(a.norm(dim=1).mean()) or 1.0
        new_b, new_a = (u * s)[:, :rank], vh[:rank]
        if len(s) < rank:  # fewer directions than the rank: complete A with orthonormal rows, B with zeros
            rest = torch.randn(rank - len(s), a.shape[1], generator=torch.Generator().manual_seed(0), dtype=a.dtype)
            q, _ = torch.linalg.qr((rest - rest @ vh.T @ vh).T)
            new_b, new_a = torch.cat([new_b, b.new_zeros(b.shape[0], rank - len(s))], 1), torch.cat([vh, q.T])
        tensors[b_name] = (new_b / norm).to(tensors[b_name].dtype)
        tensors[a_name] = (new_a * norm).to(tensors[a_name].dtype)
    save_file(tensors, weights, metadata={"format": "pt"})


def _lowrank_svd(b, a):
    """U, S, V^T of the product b @ a (b: out x m, a: m x in, m small) without forming it."""
    import torch

    qb, rb = torch.linalg.qr(b)
    qa, ra = torch.linalg.qr(a.T)
    u, s, vh = torch.linalg.svd(rb @ ra.T)
    return qb @ u, s, vh @ qa.T


def fsync_dir(path: Path) -> None:
    """fsync every file of a directory, then the directory itself (best effort)."""
    try:
        for f in path.iterdir() if path.is_dir() else []:
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        log.warning("fsync of %s failed: %s", path, e)
