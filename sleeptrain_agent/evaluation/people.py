"""The benchmark's people (`people_data.yaml`, shipped in `sleeptrain_agent/data/`): personas, facts, profiles, and the teaching plan.

`load()` validates the file with pydantic and checks what would make a run
meaningless: every teaching utterance must be one the rules judge extracts a
fact from, and no paraphrase (the generalisation test) may be a question the
dream templates would train on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memory.answers import norm
from memory.dreams import rehearsals
from memory.extractor import ExtractorJudge
from memory.verdicts import Context
from sleeptrain_agent import config
from sleeptrain_agent.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FactSpec(_Strict):
    id: str
    category: str
    value: str
    teach: str  # what the user types
    ask: str  # the direct question
    paraphrases: list[str] = []  # held out from the dream templates
    expect: list[str] | None = None  # accepted alternatives (default: the value)
    forbidden: list[str] = []  # values of memories of the same frame that a right answer must not give
    wave: int = Field(0, ge=0)  # 0: before the first sleep; k: before the (k+1)-th

    @property
    def alternatives(self) -> list[str]:
        return self.expect or [self.value]


class CorrectionSpec(_Strict):
    fact: str  # id of the fact it changes
    teach: str
    value: str
    ask: str
    expect: list[str] | None = None

    @property
    def alternatives(self) -> list[str]:
        return self.expect or [self.value]


class Persona(_Strict):
    id: str
    name: str
    fictional: bool = True
    free_form: bool = False  # said as people say it: a sentence the hippocampus does not store is a miss, not an error
    facts: list[FactSpec]
    correction: CorrectionSpec | None = None

    def fact(self, fact_id: str) -> FactSpec:
        for f in self.facts:
            if f.id == fact_id:
                return f
        raise KeyError(fact_id)

    @model_validator(mode="after")
    def _check(self):
        ids = [f.id for f in self.facts]
        if len(ids) != len(set(ids)):
            raise ValueError(f"persona {self.id}: duplicate fact ids")
        if self.correction and self.correction.fact not in ids:
            raise ValueError(f"persona {self.id}: the correction names unknown fact {self.correction.fact!r}")
        return self


class Profile(_Strict):
    personas: list[str]
    sleeps: int = Field(0, ge=0)  # further sleeps after the first (retention)
    facts_per_persona: int = Field(3, ge=1)  # wave-0 facts taught per persona
    extended_turns: int = Field(8, ge=1)  # filler turns before the extended conversation's questions
    max_tokens: int = Field(48, ge=8)  # answer length for every test
    sleep: dict = {}  # sleep.* overrides for this profile


class PeopleData(_Strict):
    personas: list[Persona]
    fillers: list[str] = Field(min_length=4)
    profiles: dict[str, Profile]

    def persona(self, persona_id: str) -> Persona:
        for p in self.personas:
            if p.id == persona_id:
                return p
        raise KeyError(persona_id)

    @model_validator(mode="after")
    def _check(self):
        ids = [p.id for p in self.personas]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate persona ids")
        for name, profile in self.profiles.items():
            unknown = [p for p in profile.personas if p not in ids]
            if unknown:
                raise ValueError(f"profile {name}: unknown personas {unknown}")
        return self


def load(path: Path | None = None, templates: dict | None = None) -> PeopleData:
    """Read and check the people file; a clear ConfigError names what is wrong."""
    path = Path(path or config.data_file("people_data.yaml"))
    try:
        raw = yaml.safe_load(path.read_text())
        data = PeopleData.model_validate(raw)
    except OSError as e:
        raise ConfigError(f"cannot read the people file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None
    templates = templates or config.data("qa_templates.yaml")
    judge = ExtractorJudge()
    for persona in data.personas:
        teachings = [(f.teach, f) for f in persona.facts]
        if persona.correction:
            teachings.append((persona.correction.teach, None))
        for text, fact in teachings:
            verdicts = [v for v in judge.judge(text, Context()) if v.fact is not None]
            if not verdicts and not persona.free_form:
                raise ConfigError(f"{path}: persona {persona.id}: the hippocampus finds no fact in {text!r}")
            if fact is None:
                continue
            trained = {norm(qa.question) for v in verdicts for qa in rehearsals(v.fact.model_dump(), templates, 99)[0]}
            leaked = [q for q in fact.paraphrases if norm(q) in trained]
            if leaked:
                raise ConfigError(f"{path}: persona {persona.id}, fact {fact.id}: paraphrase {leaked[0]!r} is a "
                                  "dream-template question; paraphrases must be held out")  # fmt: skip
    return data


@dataclass
class Taught:
    persona: Persona
    fact: FactSpec


@dataclass
class Plan:
    """What is taught before each sleep, and which facts each test asks about."""

    personas: list[Persona]
    waves: list[list[Taught]]  # waves[k]: facts taught before sleep k (k = 0 .. sleeps)
    corrections: list[tuple[Persona, CorrectionSpec]]  # taught in the last wave
    first: list[Taught] = field(default_factory=list)  # wave-0 facts the tests ask about

    @property
    def changed(self) -> set[tuple[str, str]]:
        """(persona id, fact id) of the facts a correction changes."""
        return {(p.id, c.fact) for p, c in self.corrections}

    def teach_texts(self, wave: int) -> dict[str, list[str]]:
        """Per persona id, the utterances of this wave, in order."""
        out: dict[str, list[str]] = {}
        for t in self.waves[wave]:
            out.setdefault(t.persona.id, []).append(t.fact.teach)
        if wave == len(self.waves) - 1:
            for persona, c in self.corrections:
                out.setdefault(persona.id, []).append(c.teach)
        return out


def plan(data: PeopleData, profile: Profile) -> Plan:
    personas = [data.persona(p) for p in profile.personas]
    waves: list[list[Taught]] = [[] for _ in range(profile.sleeps + 1)]
    for persona in personas:
        first = [f for f in persona.facts if f.wave == 0][: profile.facts_per_persona]
        waves[0] += [Taught(persona, f) for f in first]
        for f in persona.facts:
            if 0 < f.wave <= profile.sleeps:
                waves[f.wave].append(Taught(persona, f))
    corrections = [(p, p.correction) for p in personas if p.correction and
                   any(t.persona is p and t.fact.id == p.correction.fact for t in waves[0])]  # fmt: skip
    out = Plan(personas=personas, waves=waves, corrections=corrections)
    # with no further sleep the correction comes before the only sleep: its fact's old value is not tested
    out.first = [t for t in waves[0] if profile.sleeps > 0 or (t.persona.id, t.fact.id) not in out.changed]
    return out
