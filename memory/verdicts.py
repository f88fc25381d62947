"""What a judge says about a user turn: one `Verdict` per candidate memory (or one
REJECT when there is nothing to keep). The same pydantic models are the JSON
schema the `llm` and `gemini` judges must answer in."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Decision = Literal["STORE", "REJECT", "CORRECT", "REINFORCE"]
Kind = Literal["personal", "third_party", "preference", "plan", "world", "question", "smalltalk", "injection",
               "secret", "other"]  # fmt: skip


class Fact(BaseModel):
    subject: str = Field(max_length=80, description="who or what the fact is about: 'user', \"user's dog\", or a name")
    relation: str = Field(max_length=40, description="short relation, e.g. 'name', 'lives in', 'occupation', 'likes'")
    value: str = Field(max_length=120, description="the value, e.g. 'Pilsner', 'Oslo'")
    text: str = Field(max_length=240, description="one self-contained sentence stating the fact in the third person")


class Verdict(BaseModel):
    decision: Decision
    importance: float = Field(ge=0.0, le=1.0)
    kind: Kind = "other"
    reasons: list[str] = Field(default_factory=list, max_length=3)
    fact: Fact | None = None
    supersedes: int | None = Field(None, description="id of the existing memory this one corrects or repeats")
    correction_cue: bool = Field(False, exclude=True)


class TurnAnalysis(BaseModel):
    """The answer schema of the LLM judges."""

    verdicts: list[Verdict] = Field(min_length=1, max_length=4)
