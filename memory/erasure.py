"""Forgetting that erases: a forgotten memory's words leave the SQLite file, not just its status.

`erase_memory(store, id)` in one transaction:
- the memory and every memory it superseded (the older values of the same
  fact) keep their rows (status `forgotten`, ids, links) but lose their
  statement, subject, relation, value, embedding and meta;
- the decisions that made, corrected or reinforced them, and every decision
  about their source turns, lose their reasons and scores;
- the source turns are redacted (content replaced, `meta.redacted` set; the
  row stays, so the conversation's shape does), and the memory's words are
  redacted in the other turns of those conversations (the agent's replies
  that repeated them);
- cached judge answers, sleep details and adapter scores that quote the
  words are scrubbed;
then the FTS indexes are rebuilt and the WAL is checkpointed into the file
(`PRAGMA secure_delete` zeroes freed pages), so the bytes are gone from disk.
The adapter weights still know the memory until the user's next sleep, which
is a deep sleep from the base model (`users.deep_sleep_due`); the daemon's
side (adapter files, dream files) is `sleeptrain_agent/forget.py`.
"""

from __future__ import annotations

import json
import re

from memory.store import Store, now

REDACTED = "[redacted]"
FORGOTTEN = "(forgotten)"


def _chain(store: Store, memory_id: int) -> list[dict]:
    """The memory and the ones it superseded, transitively (the same fact's history)."""
    out, todo, seen = [], [memory_id], set()
    while todo:
        mid = todo.pop()
        if mid in seen:
            continue
        seen.add(mid)
        out.append(store.memory(mid))
        todo += [r[0] for r in store.db.execute("select id from memories where superseded_by = ?", [mid])]
    return out


def words_of(memories: list[dict]) -> tuple[list[str], list[str]]:
    """What must not survive: (the fact's own words: each memory's statement, second-person form and
    value; the names in its statements). The fact's words are redacted in every turn of the user (a
    later reply that repeated the value), the names only in the conversations the memory came from
    (elsewhere a name is also other memories' subject)."""
    fact: set[str] = set()
    names: set[str] = set()
    for m in memories:
        meta = m.get("meta") if isinstance(m.get("meta"), dict) else {}
        for text in (m.get("text"), meta.get("you"), m.get("value")):
            if text and len(text.strip()) >= 3:
                fact.add(text.strip().rstrip("."))
        for name in re.findall(r"\b[A-Z][\w'-]{2,}(?:\s+[A-Z][\w'-]{2,})*", m.get("text") or ""):
            if name.split()[0] not in ("The", "User", "Your", "You"):
                names.add(name)
    longest = lambda terms: sorted(terms, key=len, reverse=True)  # noqa: E731
    return longest(fact), longest(fact | names)


def _like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def scrub(text: str, terms: list[str]) -> str:
    for term in terms:
        text = re.sub(re.escape(term), REDACTED, text, flags=re.I)
    return text


def erase_memory(store: Store, memory_id: int) -> dict:
    """Erase a memory (and its superseded history) from the store; returns what was erased."""
    chain = _chain(store, memory_id)
    if chain[0]["status"] == "forgotten" and chain[0]["text"] == FORGOTTEN:  # erased before: nothing left
        return {"memories": [], "turns": [], "decisions": 0, "terms": 0, "user": chain[0]["user"]}
    fact, terms = words_of(chain)
    ids = [m["id"] for m in chain]
    turns = sorted({int(t) for m in chain for t in (m.get("source_turns") or [])})
    marks = ",".join("?" * len(ids))
    with store.transaction() as db:
        for m in chain:
            db["memories"].update(m["id"], {"text": FORGOTTEN, "subject": FORGOTTEN, "relation": None, "value": None,
                                            "embedding": None, "meta": None, "status": "forgotten",
                                            "updated_at": now()})  # fmt: skip
        decision_ids = [r[0] for r in db.execute(
            f"select id from decisions where memory_id in ({marks}) or supersedes in ({marks})"
            + (f" or turn_id in ({','.join('?' * len(turns))})" if turns else ""), ids + ids + turns)]  # fmt: skip
        for did in decision_ids:
            db["decisions"].update(did, {"reasons": json.dumps([f"{FORGOTTEN}: the memory was erased"]), "scores": "{}"})
        conversations = set()
        for tid in turns:
            row = store.db["turns"].get(tid)
            meta = json.loads(row["meta"]) if row.get("meta") else {}
            db["turns"].update(tid, {"content": REDACTED, "meta": json.dumps({**meta, "redacted": True})})
            conversations.add(row["conversation_id"])
        for cid in conversations:  # the rest of those conversations (the agent's replies that repeated it)
            for row in db["turns"].rows_where("conversation_id = ?", [cid]):
                clean = scrub(row["content"], terms)
                if clean != row["content"]:
                    db["turns"].update(row["id"], {"content": clean})
        for term in fact:  # any other turn of the user quoting the fact ("Your dog is called Pilsner.")
            rows = db.execute("select id, content from turns where user = ? and content like ? escape '\\'",
                              [chain[0]["user"], "%" + _like(term) + "%"]).fetchall()  # fmt: skip
            for tid, content in rows:
                db["turns"].update(tid, {"content": scrub(content, fact)})
        for table, pk, column in (("judge_cache", "key", "response"), ("sleeps", "id", "details"), ("adapters", "version", "scores")):
            for row in db[table].rows:
                if row.get(column) and any(t.lower() in row[column].lower() for t in terms):
                    if table == "judge_cache":
                        db[table].delete(row[pk])
                    else:
                        db[table].update(row[pk], {column: scrub(row[column], [json.dumps(t)[1:-1] for t in terms])})
        user = chain[0]["user"]
        db.execute("update users set deep_sleep_due = 1 where id = ?", [user])
        for fts in ("memories_fts", "turns_fts"):
            db.execute(f"insert into {fts}({fts}) values ('rebuild')")
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"memories": ids, "turns": turns, "decisions": len(decision_ids), "terms": len(terms), "user": user}


def erase_user(store: Store, user: str) -> dict:
    """Delete a user entirely: every memory erased first (so the words leave the other tables too),
    then the user's memories, decisions, turns, conversations and row; the judge cache (answers keyed
    by prompts that quoted the user's turns; a cache only) is emptied. Raises NotFound for an
    unknown user. Returns counts."""
    from memory.errors import NotFound

    if store.db.execute("select 1 from users where id = ?", [user]).fetchone() is None:
        raise NotFound(f"no user {user!r}")
    memories = [m["id"] for m in store.memories(user=user)]
    for mid in memories:
        erase_memory(store, mid)
    with store.transaction() as db:
        turns = [r[0] for r in db.execute("select id from turns where user = ?", [user])]
        marks = lambda xs: ",".join("?" * len(xs))  # noqa: E731
        decisions = 0
        if turns or memories:
            decisions = db.execute(
                f"delete from decisions where turn_id in ({marks(turns)}) or memory_id in ({marks(memories)})"
                f" or supersedes in ({marks(memories)})", turns + memories + memories).rowcount  # fmt: skip
        db.execute("update memories set superseded_by = null where user = ?", [user])
        db.execute("delete from memories where user = ?", [user])
        db.execute("delete from turns where user = ?", [user])
        db.execute("delete from conversations where user = ?", [user])
        db.execute("delete from users where id = ?", [user])
        db.execute("delete from judge_cache")
        for fts in ("memories_fts", "turns_fts"):
            db.execute(f"insert into {fts}({fts}) values ('rebuild')")
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"user": user, "memories": len(memories), "turns": len(turns), "decisions": decisions}
