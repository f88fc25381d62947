"""The offline judge (`extractor`, the default without a key): statements read with a real parser.

For a user turn it returns one STORE verdict per statement worth keeping
(`memory.statements.Reader` does the reading), or one REJECT that says why
nothing is: a question, small talk, a reaction, an instruction to the agent,
a remark about the conversation, general knowledge, a claim that contradicts
well-known facts, or (`memory.guards`) an injection attempt or a secret.

Importance is scored from content, not phrasing: what kind of thing the
statement is about (the user, their people and animals, their plans and
tastes, a fact they teach), how specific it is (names, numbers, dates,
things: its anchors), whether the user asked to remember it, and hedges.
Statements about other people and the world are kept as told unless they
contradict `data/reality.yaml`; a generic claim with no one in it ("water is
wet", "dogs are loyal": a bare plural or mass-noun subject, nothing named, no
first or second person in the sentence) is not a memory.
Comparing with existing memories (repeat, correction) is the hippocampus' job.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from memory import guards
from memory.mentions import Resolver
from memory.statements import Reader, Statement
from memory.verdicts import Context, Fact, Verdict

CORE = {"name", "lives in", "occupation", "works at", "age", "birthday", "born in", "born on", "grew up in",
        "married to", "allergic to", "studies", "likes", "dislikes", "fan of", "supports", "comes from"}  # fmt: skip
HEDGES = {"maybe", "perhaps", "probably", "might", "kinda", "sorta", "guess"}
WHY = {
    "personal": "a fact about the user",
    "preference": "one of the user's tastes",
    "plan": "one of the user's plans",
    "third_party": "a fact about someone or something in the user's life",
    "world": "a fact the user told about the world",
}
REJECTS = {
    "question": "a question: nothing to remember",
    "smalltalk": "small talk: nothing to remember",
    "reaction": "a reaction to the conversation: nothing to remember",
    "instruction": "an instruction to the agent, not a fact",
    "remark": "a remark about the conversation",
}


class ExtractorJudge:
    """Reads turns into statement verdicts; `embed` (texts -> unit vectors) powers the reality check."""

    name = "extractor"
    uses_related = False  # it reads the turn itself; the hippocampus compares with memories afterwards

    def __init__(self, embed: Callable | None = None, false_claim_similarity: float = 0.75):
        self.reader = Reader()
        self.reality = guards.Reality(embed, false_claim_similarity)

    def judge(self, text: str, context: Context) -> list[Verdict]:
        guarded = guard(text)
        if guarded is not None:
            return [guarded]
        resolver = context.resolver if context.resolver is not None else Resolver()
        reading = self.reader.read(text, context.when or dt.datetime.now(dt.UTC), resolver)
        verdicts: list[Verdict] = []
        world_rejects: list[Verdict] = []
        statements = _without_context_clauses(reading.statements)
        claims = [s for s in statements if not s.about_user]
        truths = dict(zip(map(id, claims), self.reality.contradictions([s.source for s in claims]), strict=True))
        for s in statements:
            if truth := truths.get(id(s)):
                world_rejects.append(Verdict(decision="REJECT", importance=0.0, kind="world",
                                             reasons=[f"contradicts a well-known fact: {truth}"]))  # fmt: skip
                continue
            if s.generic and not s.names:
                world_rejects.append(Verdict(decision="REJECT", importance=0.15, kind="world",
                                             reasons=["general knowledge, not a memory about the user or anyone named"]))  # fmt: skip
                continue
            verdicts.append(self._verdict(s, reading.cues))
        if verdicts:
            return verdicts + world_rejects
        if world_rejects:
            return world_rejects[:1]
        first = reading.rejected[0] if reading.rejected else None
        if first is None:
            return [Verdict(decision="REJECT", importance=0.1, kind="other",
                            reasons=["no statement about the user, their life or the world was found"])]  # fmt: skip
        reasons = [REJECTS.get(first.kind, first.reason)] + [f"{r.kind}: {r.sentence[:80]}" for r in reading.rejected[:2]]
        return [Verdict(decision="REJECT", importance=0.05, kind=first.kind, reasons=reasons[:4])]

    def _verdict(self, s: Statement, cues: set[str]) -> Verdict:
        importance, why = importance_of(s, "explicit" in cues)
        fact = Fact(text=s.text[:600], subject=s.subject[:120] or "user", relation=(s.relation or None) and s.relation[:60],
                    value=(s.value or None) and s.value[:240], you=s.you[:600], entities=s.entities[:12],
                    value_type=s.value_type, time=(s.time or {}).get("iso"), tense=s.tense)  # fmt: skip
        return Verdict(decision="STORE", importance=importance, kind=s.kind, reasons=why, fact=fact,
                       correction_cue="correction" in cues, negated=list(s.negated), change=s.change)  # fmt: skip


def guard(text: str) -> Verdict | None:
    """The REJECT of a turn that must never be stored (injection, secret), else None."""
    from memory.language import parse

    doc = parse([text[:5000]])[0] if text.strip() else None
    if guards.injection(text, doc):
        return Verdict(decision="REJECT", importance=0.0, kind="injection",
                       reasons=["an instruction aimed at the agent (prompt injection), not a fact"])  # fmt: skip
    if guards.secret(text, doc):
        return Verdict(decision="REJECT", importance=0.0, kind="secret",
                       reasons=["looks like a secret (a password, PIN or its hint, a code, key or account number): "
                                "never stored"])  # fmt: skip
    return None


def importance_of(s: Statement, explicit: bool) -> tuple[float, list[str]]:
    """Importance in [0, 1] from content, with the reasons that made it."""
    reasons = [WHY.get(s.kind, "a statement worth keeping")]
    score = 0.35
    named = [a for a in s.names if not a[:1].isdigit()]
    if named:
        score += 0.15
        reasons.append(f"names {', '.join(dict.fromkeys(named[:3]))}")
    if s.time or any(a[:1].isdigit() for a in s.anchors) or s.value_type in ("date", "number"):
        score += 0.1
        reasons.append("a number or a date")
    if s.relation in CORE:
        score += 0.15
        reasons.append(f"their {s.relation}" if s.about_user else f"{s.subject}'s {s.relation}")
    if s.kind in ("third_party",) and any(e.startswith("user ") for e in s.entities):
        score += 0.1
    score += 0.05 * min(3, max(0, len(s.anchors) - 1))
    if explicit:
        score += 0.2
        reasons.append("the user asked to remember it")
    if HEDGES & {w.lower() for w in s.source.split()}:
        score -= 0.1
        reasons.append("hedged")
    return round(max(0.0, min(1.0, score)), 3), reasons[:4]


def _without_context_clauses(statements: list[Statement]) -> list[Statement]:
    """"Leif moved last month, he lives in Tromsø now": a change verb with no value of its own is the
    context of the statement beside it about the same entity, not a memory of its own."""
    out = []
    def context(s: Statement) -> bool:
        return s.change and (not s.value or s.value_type in (None, "thing"))

    for s in statements:
        if context(s) and any(o is not s and not context(o) and set(o.entities) & set(s.entities) - {"user"}
                              for o in statements):  # fmt: skip
            continue
        out.append(s)
    return out
