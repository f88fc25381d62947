"""The episodic store: every turn, memory, decision, sleep and adapter, in one SQLite file.

Owns the schema (through `memory.migrations`) and all reads and writes of
`state/sleeptrain.db`; nothing else in SleepTrain opens that file.

Concurrency. One daemon process with several threads (HTTP handlers, the
hippocampus worker, the sleep cycle) shares one `Store`. Each thread gets its
own SQLite connection; the file is in WAL mode, so readers never block the
writer nor each other. Writes from this process are serialised by a
process-wide lock and run as `BEGIN IMMEDIATE` transactions, so a write never
fails half-way with "database is locked"; other processes (the CLI while the
daemon runs) wait up to `busy_timeout_ms` for the write lock.

Input is checked before it reaches SQLite: text must be encodable as UTF-8 (a
lone surrogate is refused with its position), at most `max_text_bytes` long,
and JSON fields must be JSON objects or lists. NUL bytes and empty turns are
stored faithfully. A refused write raises `InvalidInput` and writes nothing.
"""

from __future__ import annotations

import array
import contextlib
import datetime as dt
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from memory.errors import InvalidInput, NotFound, TooLarge
from memory.migrations import migrate

ROLES = ("user", "assistant", "system")
MEMORY_STATUSES = ("pending", "consolidated", "superseded", "rejected", "forgotten")
MEMORY_KINDS = ("personal", "third_party", "preference", "plan", "world")
DECISIONS = ("STORE", "REJECT", "CORRECT", "REINFORCE")
SLEEP_STATUSES = ("running", "promoted", "rejected", "failed")
MAX_ID_CHARS = 200
DEFAULT_USER = "default"
_JSON_COLUMNS = {
    "turns": ("meta",),
    "memories": ("source_turns", "meta"),
    "decisions": ("reasons", "scores"),
    "sleeps": ("details",),
    "adapters": ("scores",),
}


def now() -> str:
    """The current UTC time as ISO 8601 with microseconds; every timestamp in the store."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


class Store:
    """The SQLite file under the state directory, opened and migrated on construction."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000, max_text_bytes: int = 1_048_576):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_ms = busy_timeout_ms
        self.max_text_bytes = max_text_bytes
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.RLock()
        with self._write_lock:
            db = self.db
            db.execute("PRAGMA journal_mode=WAL")
            migrate(db)

    # -- connections -------------------------------------------------------

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection, opened on first use."""
        db = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_ms / 1000, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA secure_delete=ON")  # deleted and overwritten content is zeroed, not left in free pages
            db = sqlite_utils.Database(conn)
            self._local.db = db
            with self._connections_lock:
                self._connections.append(conn)
        return db

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite_utils.Database]:
        """A write transaction: process lock + BEGIN IMMEDIATE; commits or rolls back whole."""
        with self._write_lock:
            db = self.db
            if db.conn.in_transaction:  # nested call from inside another write
                with db.atomic():
                    yield db
                return
            db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.rollback()
                raise
            else:
                db.conn.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection (the store is unusable afterwards)."""
        with self._connections_lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()

    def integrity_check(self) -> str:
        """`PRAGMA integrity_check`: "ok" for a healthy file."""
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    def schema_version(self) -> list[str]:
        """Names of the applied migrations, oldest first."""
        from memory.migrations import applied

        return applied(self.db)

    # -- validation --------------------------------------------------------

    def check_text(self, field: str, value: Any, *, allow_empty: bool = True, max_bytes: int | None = None) -> str:
        if not isinstance(value, str):
            raise InvalidInput(f"{field} must be text, not {type(value).__name__}")
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise InvalidInput(
                f"{field} is not valid Unicode: lone surrogate {value[e.start]!r} at position {e.start}"
            ) from None
        limit = max_bytes or self.max_text_bytes
        if size > limit:
            raise TooLarge(f"{field} is {size:,} bytes; the limit is {limit:,} bytes")
        if not allow_empty and not value.strip():
            raise InvalidInput(f"{field} must not be empty")
        return value

    def _ident(self, field: str, value: Any) -> str:
        value = self.check_text(field, value, allow_empty=False, max_bytes=MAX_ID_CHARS)
        if any(ord(c) < 32 for c in value):
            raise InvalidInput(f"{field} must not contain control characters")
        return value

    def _json(self, field: str, value: Any, kind: type) -> str | None:
        if value is None:
            return None
        if isinstance(value, (str, bytes)):
            try:
                value = json.loads(value)
            except (ValueError, UnicodeDecodeError) as e:
                raise InvalidInput(f"{field} is not valid JSON: {e}") from None
        if not isinstance(value, kind):
            raise InvalidInput(f"{field} must be a JSON {'object' if kind is dict else 'list'}")
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise InvalidInput(f"{field} cannot be stored as JSON: {e}") from None
        return self.check_text(field, text)

    @staticmethod
    def _row(table: str, row: dict | None) -> dict | None:
        """Decode JSON columns; a value that is not JSON (hand-edited file) is returned as is."""
        if row is None:
            return None
        row = dict(row)
        row.pop("rowid", None)  # added by FTS search
        for col in _JSON_COLUMNS.get(table, ()):
            if isinstance(row.get(col), str):
                with contextlib.suppress(ValueError):
                    row[col] = json.loads(row[col])
        if table == "memories":
            row["has_embedding"] = row.pop("embedding", None) is not None
        return row

    # -- users and conversations ------------------------------------------

    def ensure_user(self, user: str = DEFAULT_USER) -> str:
        user = self._ident("user", user)
        with self._write() as db:
            db["users"].insert({"id": user, "created_at": now()}, ignore=True)
        return user

    def start_conversation(
        self, user: str = DEFAULT_USER, conversation_id: str | None = None, title: str | None = None
    ) -> str:
        """Create a conversation (a new id unless one is given); an existing id must belong to `user`.
        A refused request writes nothing (not even the user)."""
        user = self._ident("user", user)
        cid = self._ident("conversation id", conversation_id) if conversation_id else uuid.uuid4().hex
        title = self.check_text("title", title, max_bytes=1000) if title else None
        with self._write() as db:
            existing = self._get("conversations", cid)
            if existing is not None:
                if existing["user"] != user:
                    raise InvalidInput(f"conversation {cid!r} belongs to another user")
                return cid
            db["users"].insert({"id": user, "created_at": now()}, ignore=True)
            db["conversations"].insert({"id": cid, "user": user, "title": title, "created_at": now()})
        return cid

    def conversation(self, conversation_id: str) -> dict:
        row = self._get("conversations", conversation_id)
        if row is None:
            raise NotFound(f"no conversation {conversation_id!r}")
        return row

    def conversations(self, user: str | None = None, limit: int | None = None) -> list[dict]:
        """Conversations, newest first, each with its number of turns and last activity."""
        where, params = ("where c.user = ?", [user]) if user else ("", [])
        sql = f"""
            select c.id, c.user, c.title, c.created_at,
                   count(t.id) as turns, max(t.created_at) as last_turn_at
            from conversations c left join turns t on t.conversation_id = c.id
            {where} group by c.id order by coalesce(max(t.id), 0) desc, c.created_at desc
        """
        if limit:
            sql += f" limit {int(limit)}"
        return [dict(r) for r in self.db.query(sql, params)]

    # -- turns -------------------------------------------------------------

    def _turn_record(self, conversation_id: str, role: str, content: Any, adapter: str | None, meta: Any) -> dict:
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        return {
            "conversation_id": conversation_id,
            "role": role,
            "content": self.check_text("content", content),
            "adapter": self._ident("adapter", adapter) if adapter else None,
            "created_at": now(),
            "meta": self._json("meta", meta, dict),
            "hippocampus": "pending" if role == "user" else None,
        }

    def log_turn(
        self,
        conversation_id: str,
        role: str,
        content: str,
        *,
        adapter: str | None = None,
        meta: dict | str | None = None,
    ) -> dict:
        """Append one turn to a conversation and return it as stored."""
        record = self._turn_record(conversation_id, role, content, adapter, meta)
        with self._write() as db:
            conv = self._get("conversations", conversation_id)
            if conv is None:
                raise NotFound(f"no conversation {conversation_id!r}")
            record["user"] = conv["user"]
            tid = db["turns"].insert(record).last_pk
        return self.turn(tid)

    def log_turns(self, turns: Iterable[dict], batch_size: int = 1000) -> int:
        """Append many turns (dicts with conversation_id, role, content, optional adapter/meta) at once.

        All turns are validated before anything is written; returns the number written.
        """
        users: dict[str, str] = {}
        records = []
        for t in turns:
            cid = t["conversation_id"]
            if cid not in users:
                users[cid] = self.conversation(cid)["user"]
            record = self._turn_record(cid, t["role"], t["content"], t.get("adapter"), t.get("meta"))
            record["user"] = users[cid]
            records.append(record)
        with self._write() as db:
            db["turns"].insert_all(records, batch_size=batch_size)
        return len(records)

    def remove_turn(self, turn_id: int) -> None:
        """Delete a user turn that was never answered (the backend refused or failed before replying), with
        its conversation if nothing else is in it: a failed request leaves no orphan behind."""
        with self._write() as db:
            row = self._get("turns", turn_id)
            if row is None:
                return
            db["turns"].delete(turn_id)
            left = db.execute("select count(*) from turns where conversation_id = ?", [row["conversation_id"]]).fetchone()[0]
            if not left:
                db["conversations"].delete(row["conversation_id"])

    def repeated_turn(self, user: str, content: str, within_s: float, conversation_id: str | None = None) -> dict | None:
        """The user's last turn if it said exactly `content` less than `within_s` ago (in `conversation_id`
        when given): a client's retry of a request, not a new turn."""
        clauses, params = ["user = ?", "role = 'user'"], [user]
        if conversation_id is not None:
            clauses.append("conversation_id = ?")
            params.append(conversation_id)
        rows = list(self.db["turns"].rows_where(" and ".join(clauses), params, order_by="id desc", limit=1))
        if not rows or rows[0]["content"] != content:
            return None
        age = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(rows[0]["created_at"])).total_seconds()
        return self._row("turns", rows[0]) if age <= within_s else None

    def turn(self, turn_id: int) -> dict:
        row = self._row("turns", self._get("turns", turn_id))
        if row is None:
            raise NotFound(f"no turn {turn_id}")
        return row

    def turns(
        self,
        conversation_id: str | None = None,
        user: str | None = None,
        limit: int | None = None,
        after_id: int | None = None,
    ) -> list[dict]:
        """Turns in the order they were logged, optionally the last `limit` of them."""
        clauses, params = [], []
        for col, val in (("conversation_id", conversation_id), ("user", user)):
            if val is not None:
                clauses.append(f"{col} = ?")
                params.append(val)
        if after_id is not None:
            clauses.append("id > ?")
            params.append(after_id)
        where = " and ".join(clauses) or None
        if limit:
            rows = list(self.db["turns"].rows_where(where, params, order_by="id desc", limit=int(limit)))[::-1]
        else:
            rows = self.db["turns"].rows_where(where, params, order_by="id")
        return [self._row("turns", r) for r in rows]

    def search_turns(self, query: str, user: str | None = None, limit: int = 20) -> list[dict]:
        """Full-text search over turn contents, best match first."""
        return self._search("turns", query, user, limit)

    def pending_turns(self, max_attempts: int, limit: int | None = None) -> list[dict]:
        """User turns the hippocampus has not processed yet, oldest first."""
        rows = self.db["turns"].rows_where(
            "hippocampus = 'pending' and hippocampus_attempts < ?", [max_attempts], order_by="id", limit=limit
        )
        return [self._row("turns", r) for r in rows]

    def mark_turn(self, turn_id: int, status: str, attempts: int | None = None) -> None:
        """Record the hippocampus' progress on a turn: pending (retry), done or failed."""
        if status not in ("pending", "done", "failed"):
            raise InvalidInput(f"hippocampus status must be pending, done or failed, not {status!r}")
        fields: dict[str, Any] = {"hippocampus": status}
        if attempts is not None:
            fields["hippocampus_attempts"] = attempts
        with self._write() as db:
            db["turns"].update(turn_id, fields)

    def transaction(self):
        """One write transaction around several store calls (all or nothing)."""
        return self._write()

    def cached(self, key: str) -> str | None:
        row = self._get("judge_cache", key)
        return None if row is None else row["response"]

    def cache(self, key: str, judge: str, response: str) -> None:
        with self._write() as db:
            db["judge_cache"].upsert({"key": key, "judge": judge, "response": response, "created_at": now()}, pk="key")

    # -- memories ----------------------------------------------------------

    def add_memory(
        self,
        *,
        user: str = DEFAULT_USER,
        subject: str = "user",
        relation: str | None = None,
        value: str | None = None,
        text: str,
        kind: str | None = None,
        importance: float = 0.5,
        source_turns: list[int] | str | None = None,
        status: str = "pending",
        embedding: bytes | Iterable[float] | None = None,
        meta: dict | str | None = None,
    ) -> dict:
        """Record a new memory: its statement (`text`), and subject / relation / value as an index where
        they are known (`relation` and `value` may be None). `kind`: personal, third_party, preference, plan
        or world (default: personal for the user, third_party otherwise)."""
        if status not in MEMORY_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(MEMORY_STATUSES)}, not {status!r}")
        kind = kind or ("personal" if subject.strip().lower() in ("user", "") else "third_party")
        if kind not in MEMORY_KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(MEMORY_KINDS)}, not {kind!r}")
        record = {
            "user": self.ensure_user(user),
            "subject": self.check_text("subject", subject, allow_empty=False, max_bytes=10_000),
            "relation": None if relation is None else self.check_text("relation", relation, allow_empty=False, max_bytes=1_000),
            "value": None if value is None else self.check_text("value", value, allow_empty=False, max_bytes=10_000),
            "text": self.check_text("text", text, allow_empty=False),
            "kind": kind,
            "status": status,
            "importance": _unit("importance", importance),
            "source_turns": self._json("source_turns", source_turns or [], list),
            "created_at": now(),
            "embedding": _vector(embedding),
            "meta": self._json("meta", meta, dict),
        }
        record["updated_at"] = record["created_at"]
        with self._write() as db:
            mid = db["memories"].insert(record).last_pk
        return self.memory(mid)

    def memory(self, memory_id: int) -> dict:
        row = self._row("memories", self._get("memories", memory_id))
        if row is None:
            raise NotFound(f"no memory {memory_id}")
        return row

    def embedding(self, memory_id: int) -> list[float] | None:
        row = self.db.execute("select embedding from memories where id = ?", [memory_id]).fetchone()
        if row is None:
            raise NotFound(f"no memory {memory_id}")
        return None if row[0] is None else array.array("f", row[0]).tolist()

    def memories(
        self,
        status: str | Iterable[str] | None = None,
        user: str | None = None,
        limit: int | None = None,
        conversation_id: str | None = None,
    ) -> list[dict]:
        """Memories oldest first, filtered by status (one or several), user, and the conversation they came from."""
        clauses, params = [], []
        if conversation_id is not None:
            clauses.append(
                "exists (select 1 from json_each(memories.source_turns) j join turns t on t.id = j.value "
                "where t.conversation_id = ?)"
            )
            params.append(conversation_id)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            for s in statuses:
                if s not in MEMORY_STATUSES:
                    raise InvalidInput(f"status must be one of {', '.join(MEMORY_STATUSES)}, not {s!r}")
            clauses.append(f"status in ({', '.join('?' for _ in statuses)})")
            params.extend(statuses)
        if user is not None:
            clauses.append("user = ?")
            params.append(user)
        rows = self.db["memories"].rows_where(" and ".join(clauses) or None, params, order_by="id", limit=limit)
        return [self._row("memories", r) for r in rows]

    def update_memory(self, memory_id: int, **fields: Any) -> dict:
        """Change some fields of a memory (status, importance, superseded_by, replay bookkeeping...)."""
        allowed = {
            "status", "importance", "superseded_by", "text", "value", "source_turns", "meta",
            "consolidated_in", "times_replayed", "last_recall", "embedding",
        }  # fmt: skip
        unknown = set(fields) - allowed
        if unknown:
            raise InvalidInput(f"cannot update memory field(s): {', '.join(sorted(unknown))}")
        if "status" in fields and fields["status"] not in MEMORY_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(MEMORY_STATUSES)}, not {fields['status']!r}")
        if "importance" in fields:
            fields["importance"] = _unit("importance", fields["importance"])
        if "last_recall" in fields and fields["last_recall"] is not None:
            fields["last_recall"] = _unit("last_recall", fields["last_recall"])
        for key in ("text", "value"):
            if key in fields:
                fields[key] = self.check_text(key, fields[key], allow_empty=False)
        if "source_turns" in fields:
            fields["source_turns"] = self._json("source_turns", fields["source_turns"], list)
        if "meta" in fields:
            fields["meta"] = self._json("meta", fields["meta"], dict)
        if "embedding" in fields:
            fields["embedding"] = _vector(fields["embedding"])
        fields["updated_at"] = now()
        with self._write() as db:
            self.memory(memory_id)
            db["memories"].update(memory_id, fields)
        return self.memory(memory_id)

    def forget(self, memory_id: int) -> dict:
        """Erase a memory (`memory.erasure`): its words leave the file, its history with it; the user's next
        sleep is a deep one. Returns the erased row."""
        from memory.erasure import erase_memory

        erase_memory(self, memory_id)
        return self.memory(memory_id)

    def users(self) -> list[dict]:
        """Every user: id, created_at, memories (not forgotten), turns, their active adapter version (None:
        the base model answers them) and whether their next sleep is deep."""
        rows = self.db.execute(
            "select u.id, u.created_at, u.deep_sleep_due,"
            " (select count(*) from memories m where m.user = u.id and m.status != 'forgotten'),"
            " (select count(*) from turns t where t.user = u.id),"
            " (select a.version from adapters a where a.user = u.id and a.active = 1) from users u order by u.id"
        ).fetchall()
        return [{"id": r[0], "created_at": r[1], "deep_sleep_due": bool(r[2]), "memories": r[3], "turns": r[4],
                 "adapter": r[5]} for r in rows]  # fmt: skip

    def deep_sleep_due(self) -> list[str]:
        """Users whose adapter still knows a forgotten memory (their next sleep rebuilds it from the base)."""
        return [r[0] for r in self.db.execute("select id from users where deep_sleep_due = 1 order by id")]

    def clear_deep_sleep(self, users: list[str] | None = None) -> None:
        with self._write() as db:
            if users is None:
                db.execute("update users set deep_sleep_due = 0")
            else:
                for u in users:
                    db.execute("update users set deep_sleep_due = 0 where id = ?", [u])

    def search_memories(self, query: str, user: str | None = None, limit: int = 20) -> list[dict]:
        """Full-text search over subject, relation, value and text, best match first."""
        return self._search("memories", query, user, limit)

    def stats(self, user: str | None = None) -> dict:
        """Counts for `memory stats`: memories by status, turns, conversations, users, decisions."""
        where, params = ("where user = ?", [user]) if user else ("", [])
        by_status = {s: 0 for s in MEMORY_STATUSES}
        for status, n in self.db.execute(f"select status, count(*) from memories {where} group by status", params):
            by_status[status] = n
        one = lambda sql: self.db.execute(sql, params).fetchone()[0]  # noqa: E731
        return {
            "memories": sum(by_status.values()),
            "by_status": by_status,
            "turns": one(f"select count(*) from turns {where}"),
            "conversations": one(f"select count(*) from conversations {where}"),
            "users": 1 if user else one("select count(*) from users"),
            "decisions": one(
                "select count(*) from decisions"
                + (" where turn_id in (select id from turns where user = ?)" if user else "")
            ),
            "file_bytes": self.path.stat().st_size if self.path.exists() else 0,
        }

    # -- decisions (the hippocampus audit trail) ---------------------------

    def log_decision(
        self,
        *,
        turn_id: int | None,
        decision: str,
        judge: str,
        memory_id: int | None = None,
        supersedes: int | None = None,
        importance: float | None = None,
        reasons: list[str] | str | None = None,
        scores: dict | str | None = None,
    ) -> dict:
        if decision not in DECISIONS:
            raise InvalidInput(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
        record = {
            "turn_id": turn_id,
            "memory_id": memory_id,
            "decision": decision,
            "supersedes": supersedes,
            "importance": None if importance is None else _unit("importance", importance),
            "reasons": self._json("reasons", reasons or [], list),
            "scores": self._json("scores", scores or {}, dict),
            "judge": self._ident("judge", judge),
            "created_at": now(),
        }
        with self._write() as db:
            did = db["decisions"].insert(record).last_pk
        return self._row("decisions", self._get("decisions", did))

    def decisions(self, turn_id: int | None = None, memory_id: int | None = None) -> list[dict]:
        """Decisions oldest first; for a memory, those that made it and those that superseded it."""
        clauses, params = [], []
        if turn_id is not None:
            clauses.append("turn_id = ?")
            params.append(turn_id)
        if memory_id is not None:
            clauses.append("(memory_id = ? or supersedes = ?)")
            params.extend([memory_id, memory_id])
        rows = self.db["decisions"].rows_where(" and ".join(clauses) or None, params, order_by="id")
        return [self._row("decisions", r) for r in rows]

    # -- sleeps and adapters -----------------------------------------------

    def start_sleep(self, trigger: str, details: dict | None = None, user: str = DEFAULT_USER) -> dict:
        """Record a sleep of `user` (it learns into that user's adapter lineage) as running."""
        user = self._ident("user", user)
        with self._write() as db:
            sid = db["sleeps"].insert(
                {"status": "running", "trigger": trigger, "user": user, "started_at": now(),
                 "details": self._json("details", details or {}, dict)}  # fmt: skip
            ).last_pk
        return self.sleep(sid)

    def finish_sleep(
        self, sleep_id: int, status: str, *, adapter: str | None = None, details: dict | None = None, error: str | None = None
    ) -> dict:
        if status not in SLEEP_STATUSES:
            raise InvalidInput(f"sleep status must be one of {', '.join(SLEEP_STATUSES)}, not {status!r}")
        merged = {**(self.sleep(sleep_id).get("details") or {}), **(details or {})}
        fields = {"status": status, "finished_at": now(), "adapter": adapter, "details": self._json("details", merged, dict)}
        if error is not None:
            fields["error"] = self.check_text("error", error)
        with self._write() as db:
            db["sleeps"].update(sleep_id, fields)
        return self.sleep(sleep_id)

    def sleep(self, sleep_id: int) -> dict:
        row = self._row("sleeps", self._get("sleeps", sleep_id))
        if row is None:
            raise NotFound(f"no sleep {sleep_id}")
        return row

    def sleeps(self, limit: int | None = None, user: str | None = None) -> list[dict]:
        """Sleeps newest first (of `user` only, when given)."""
        where, params = ("user = ?", [user]) if user is not None else (None, [])
        return [self._row("sleeps", r) for r in self.db["sleeps"].rows_where(where, params, order_by="id desc", limit=limit)]

    def add_adapter(
        self, version: str, path: str | Path, *, user: str = DEFAULT_USER, sleep_id: int | None = None,
        parent: str | None = None, scores: dict | None = None,
    ) -> dict:
        """Record adapter `version` (numbered across users, so a version names one adapter) of `user`'s lineage."""
        with self._write() as db:
            db["adapters"].insert(
                {
                    "version": self._ident("version", version),
                    "user": self._ident("user", user),
                    "path": str(path),
                    "sleep_id": sleep_id,
                    "parent": parent,
                    "active": 0,
                    "created_at": now(),
                    "scores": self._json("scores", scores or {}, dict),
                }
            )
        return self.adapter(version)

    def adapter(self, version: str) -> dict:
        row = self._row("adapters", self._get("adapters", version))
        if row is None:
            raise NotFound(f"no adapter {version!r}")
        return row

    def adapters(self, user: str | None = None) -> list[dict]:
        """Adapter versions oldest first (of `user`'s lineage only, when given)."""
        where, params = ("user = ?", [user]) if user is not None else (None, [])
        return [self._row("adapters", r) for r in self.db["adapters"].rows_where(where, params, order_by="created_at, version")]

    def active_adapter(self, user: str) -> dict | None:
        """The adapter that answers `user` (None: the base model answers them)."""
        rows = list(self.db["adapters"].rows_where("active = 1 and user = ?", [user], limit=1))
        return self._row("adapters", rows[0]) if rows else None

    def active_adapters(self) -> list[dict]:
        """Every user's active adapter (one row per user that has one)."""
        return [self._row("adapters", r) for r in self.db["adapters"].rows_where("active = 1 and user is not null",
                                                                                 order_by="user")]  # fmt: skip

    def servable_adapter(self, version: str, user: str | None = None) -> dict:
        """Adapter `version`'s row if it may serve its user (and `user`, when given, is that user)."""
        row = self.adapter(version)
        if row.get("erased_at"):
            raise InvalidInput(f"adapter {version} was erased: it was trained on a memory that was forgotten")
        if row.get("user") is None:
            raise InvalidInput(f"adapter {version} was shared by several users and is served to nobody")
        if user is not None and row["user"] != user:
            raise InvalidInput(f"adapter {version} belongs to user {row['user']!r}, not {user!r}")
        return row

    def activate_adapter(self, version: str | None, user: str | None = None) -> dict | None:
        """Make `version` the one active adapter of its user; None (with `user`): that user is answered by
        the base model. Returns the user's active adapter."""
        with self._write() as db:
            if version is not None:
                user = self.servable_adapter(version, user)["user"]
            elif user is None:
                raise InvalidInput("name the user whose adapter to deactivate")
            db.execute("update adapters set active = 0 where active = 1 and user = ?", [user])
            if version is not None:
                db["adapters"].update(version, {"active": 1})
        return self.active_adapter(user)

    # -- helpers -----------------------------------------------------------

    def _get(self, table: str, pk: Any) -> dict | None:
        try:
            return self.db[table].get(pk)
        except sqlite_utils.db.NotFoundError:
            return None

    def _search(self, table: str, query: str, user: str | None, limit: int) -> list[dict]:
        """Every word of `query` as a literal FTS5 phrase (quotes, brackets, operators are text, never syntax)."""
        query = self.check_text("query", query, allow_empty=False, max_bytes=10_000)
        terms = [w.replace('"', '""') for w in query.replace("\x00", " ").split() if w.strip('"')]
        if not terms:
            return []
        where, params = ("user = :user", {"user": user}) if user else (None, None)
        match = " ".join(f'"{t}"' for t in terms)
        rows = self.db[table].search(match, where=where, where_args=params, limit=limit, quote=False)
        return [self._row(table, r) for r in rows]


def _unit(field: str, value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{field} must be a number in [0, 1], not {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise InvalidInput(f"{field} must be in [0, 1], not {value}")
    return value


def _vector(embedding: bytes | Iterable[float] | None) -> bytes | None:
    if embedding is None or isinstance(embedding, bytes):
        return embedding
    return array.array("f", [float(x) for x in embedding]).tobytes()
