"""What a judge says about a user turn, in one schema for every judge: one `Verdict` per candidate
memory (or one REJECT when there is nothing to keep), and the `Context` a judge may use.

A memory is a *statement*: one self-contained sentence of what was said, in the
third person ("The user rides an old green Vespa named Basil."). Its subject,
relation and value are an index where they can be found (for corrections,
dream templates and routing), not a precondition: a statement with no
relation is still a memory. The same pydantic models are the JSON schema the
`llm` and `gemini` judges answer in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

Decision = Literal["STORE", "REJECT", "CORRECT", "REINFORCE"]
Kind = Literal["personal", "third_party", "preference", "plan", "world", "question", "smalltalk", "reaction",
               "instruction", "remark", "injection", "secret", "other"]  # fmt: skip
MEMORY_KINDS = ("personal", "third_party", "preference", "plan", "world")
SINGLE_VALUED = {"name", "lives in", "occupation", "works at", "age", "birthday", "born in", "born on", "grew up in",
                 "married to", "email", "phone number", "studies", "nationality", "height", "comes from"}  # fmt: skip


class Fact(BaseModel):
    text: str = Field(max_length=600, description="one self-contained statement in the third person: 'The user's "
                      "cousin Leif lives in Narvik.' (pronouns resolved, relative times as dates)")  # fmt: skip
    subject: str = Field("user", max_length=120, description="who or what it is about: 'user', \"user's dog\", a name")
    relation: str | None = Field(None, max_length=60, description="short relation when there is one: 'name', "
                                 "'lives in', 'occupation', 'likes', 'age'")  # fmt: skip
    value: str | None = Field(None, max_length=240, description="the value when there is one: 'Pilsner', 'Oslo'")
    you: str | None = Field(None, max_length=600, description="the statement in the second person: 'Your cousin "
                            "Leif lives in Narvik.'")  # fmt: skip
    entities: list[str] = Field(default_factory=list, max_length=12, description="who and what it is about, lowercase")
    value_type: str | None = Field(None, max_length=20, description="date | number | place | person | name | thing")
    time: str | None = Field(None, max_length=20, description="ISO date (or YYYY-MM, YYYY) it refers to, if any")
    tense: Literal["past", "future"] | None = Field(None, description="past: what held once and may not now ('I "
                                                    "lived in Lagos as a kid'); future: a plan or a condition ('I'll "
                                                    "move to Bergen'); none: what is true now")  # fmt: skip


class Verdict(BaseModel):
    decision: Decision
    importance: float = Field(ge=0.0, le=1.0)
    kind: Kind = "other"
    reasons: list[str] = Field(default_factory=list, max_length=4)
    fact: Fact | None = None
    supersedes: int | None = Field(None, description="id of the existing memory this one corrects or repeats")
    correction_cue: bool = Field(False, exclude=True)  # the turn says something changed or was wrong
    negated: list[str] = Field(default_factory=list, exclude=True)  # values the turn says are wrong ("not Tilda")
    change: bool = Field(False, exclude=True)  # a change verb: "moved", "switched", "turned"


class TurnAnalysis(BaseModel):
    """The answer schema of the LLM judges."""

    verdicts: list[Verdict] = Field(min_length=1, max_length=8)


@dataclass
class Context:
    """What a judge may use besides the text: the user's related memories, the time the turn was said,
    and the conversation's mentions so far (for pronouns; the offline extractor keeps them)."""

    user: str = "default"
    related: list[dict] = field(default_factory=list)  # memories with a "similarity" key, best first
    when: dt.datetime | None = None
    resolver: Any = None  # memory.mentions.Resolver of the conversation


def single_valued(relation: str | None) -> bool:
    """A relation with one value at a time (a new value corrects the old one)."""
    relation = (relation or "").lower().strip()
    return relation in SINGLE_VALUED or relation.startswith(("favourite", "favorite"))
