"""The offline `rules` judge: pattern-based fact extraction, guards and a reality check.

No network and no model beyond the sentence embedder. For each sentence of a
user turn it recognises, in this order:

- *guards*: instructions aimed at the agent (prompt injection) and secrets
  (passwords, keys, card numbers) -- rejected, never stored as facts;
- *questions* and *small talk* -- nothing to remember;
- *first-person facts* ("my dog is called Pilsner", "I live in Oslo", "I work
  as a nurse", "I love sushi", "I'm going to Rome in May");
- *third-party facts* about named people or the user's relatives ("my sister
  Anna lives in Oslo", "Anna works at Volvo", "she moved to Uppsala" with the
  pronoun resolved to the last person mentioned);
- *world claims* ("the Earth is flat", "Paris is the capital of Germany"),
  checked against `data/reality.yaml`: a contradiction is rejected with the
  fact it contradicts; other general knowledge is not a memory about the user.

Comparing with existing memories (repeat, correction) is the hippocampus'
job, on top of every judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from memory.answers import norm
from memory.verdicts import Fact, Verdict

NAME = r"[A-Z][\w'’-]*(?:\s+(?:van |de |von )?[A-Z][\w'’-]*)*"
RELATIVES = (
    "sister|brother|mother|mom|mum|father|dad|wife|husband|partner|girlfriend|boyfriend|son|daughter|"
    "friend|best friend|boss|colleague|cousin|aunt|uncle|grandmother|grandma|grandfather|grandpa|"
    "niece|nephew|neighbour|neighbor|roommate|flatmate|fiancé|fiancee|fiance|child|kid|baby|twin"
)
PETS = "dog|cat|puppy|kitten|horse|rabbit|bunny|parrot|bird|hamster|fish|snake|turtle|tortoise|pet"
SINGLE_VALUED = {
    "name", "lives in", "occupation", "works at", "age", "birthday", "born in", "born on", "email",
    "phone number", "studies", "is", "nationality", "height", "car",
}  # fmt: skip
INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b.{0,30}\b(previous|prior|above|earlier|all|your|the)\b.{0,20}"
    r"\b(instructions?|rules|prompts?|guidelines|messages?)\b"
    r"|\b(system prompt|developer mode|jailbreak|dan mode)\b"
    r"|\byou (are|must|will|should) now\b|\bfrom now on,? you\b|\bnew instructions?\b|\bact as (an? )?(admin|root|system)\b"
    r"|\bpretend (to be|you are)\b|\bi am your (admin|administrator|developer|creator|owner)\b",
    re.I,
)
SECRET = re.compile(
    r"\b(password|passwd|passcode|pin code|pin number|my pin|api[ _-]?key|secret key|access token|auth token|"
    r"private key|credit card|card number|cvv|social security|ssn|bank account|iban|seed phrase|2fa code)\b"
    r"|\bsk-[A-Za-z0-9_-]{8,}|\b(?:\d[ -]?){13,19}\b|\b[A-Fa-f0-9]{32,}\b",
    re.I,
)
SMALL_TALK = re.compile(
    r"^(hi|hello|hey|yo|hiya|howdy|good (morning|afternoon|evening|night)|thanks?( you)?( so much| a lot)?|"
    r"thank you( very much)?|cheers|ok(ay)?|cool|nice|great|awesome|lol|haha+|bye|goodbye|see you( later)?|"
    r"how are you( doing)?( today)?|what'?s up|sure|yes|yeah|yep|no|nope|alright|i see|interesting|"
    r"sounds good|that'?s (nice|great|cool|interesting|funny)|you'?re (welcome|funny|great)|never ?mind|hmm+)\b",
    re.I,
)
QUESTION_START = re.compile(
    r"^(what|who|whom|whose|where|when|why|how|which|do|does|did|can|could|would|will|is|are|am|should|shall|"
    r"may|might|have|has|tell me|explain|describe|list|give me|write|translate|summari[sz]e)\b",
    re.I,
)
LEAD = re.compile(
    r"^(?:(?:oh|ah|well|so|also|and|but|hey|ok(?:ay)?|um+|uh+|btw|by the way|fyi|just so you know|"
    r"for the record|correction|actually|no|sorry|wait|update|quick update|to be clear|in fact|"
    r"i misspoke|i meant|i was wrong|my bad|oops|let me correct that|"
    r"please remember(?: that)?|remember(?: that)?|don'?t forget(?: that)?|note that|keep in mind(?: that)?)"
    r"\s*[,:;.!-]?\s+)+",
    re.I,
)
EXPLICIT = re.compile(r"\b(remember|don'?t forget|keep in mind|note that|for the record)\b", re.I)
CORRECTION = re.compile(
    r"\b(actually|correction|not anymore|no longer|anymore|now|moved|changed|instead|i was wrong|"
    r"i meant|i misspoke|, not )\b",
    re.I,
)
TAIL = re.compile(
    r"(?:,?\s*(?:not|rather than|instead of)\s+[^,.;]+|\s+(?:now|these days|anymore|any more|again|too|as well|"
    r"actually|though|by the way|btw|i think|nowadays))+\s*$",
    re.I,
)


@dataclass
class Context:
    """What a judge may use besides the text: the user's related memories and the people recently mentioned."""

    user: str = "default"
    related: list[dict] = field(default_factory=list)  # memories with a "similarity" key, best first
    people: list[str] = field(default_factory=list)  # third-party subjects, most recent first


@cache
def reality() -> dict:
    return yaml.safe_load((Path(__file__).parent / "data" / "reality.yaml").read_text())


def clean_value(value: str) -> str:
    value = value.strip().strip(" .!?,;:\"'")
    previous = None
    while previous != value:
        previous = value
        value = TAIL.sub("", value).strip().strip(" .!?,;:\"'")
        value = re.sub(r"^(actually|really|now|currently|on|the|called|named)\s+", "", value, flags=re.I).strip()
    return value


def sentences(text: str) -> list[str]:
    text = re.sub(r"\s+", " ", text.strip())
    parts = re.split(r"(?<=[.!?;:])\s+|,?\s+(?:and|but)\s+(?=(?:i|my|he|she|they|we)\b)|,\s+(?=(?:i|my|he|she|they)\b)",
                     text, flags=re.I)  # fmt: skip
    return [p.strip() for p in parts if p and p.strip()]


class RulesJudge:
    """Pattern-based judge; `embed` (texts -> unit vectors) powers the reality check."""

    name = "rules"

    def __init__(self, embed=None, false_claim_similarity: float = 0.75):
        self.embed = embed
        self.false_claim_similarity = false_claim_similarity
        self._false = None

    # -- public ----------------------------------------------------------------

    def judge(self, text: str, context: Context) -> list[Verdict]:
        guard = self.guard(text)
        if guard is not None:
            return [guard]
        verdicts: list[Verdict] = []
        explicit = bool(EXPLICIT.search(text))
        people = list(context.people)
        for sentence in sentences(text):
            verdict = self._sentence(sentence, explicit, people)
            if verdict is None:
                continue
            if verdict.fact and verdict.kind == "third_party" and verdict.fact.subject not in people:
                people.insert(0, verdict.fact.subject)
            verdicts.append(verdict)
        facts = [v for v in verdicts if v.fact is not None]
        if facts:
            return facts + [v for v in verdicts if v.fact is None and v.kind == "world"]
        if verdicts:
            return verdicts[:1]
        return [Verdict(decision="REJECT", importance=0.1, kind="other",
                        reasons=["no fact about the user or the people they know was found"])]  # fmt: skip

    def guard(self, text: str) -> Verdict | None:
        if INJECTION.search(text):
            return Verdict(decision="REJECT", importance=0.0, kind="injection",
                           reasons=["an instruction aimed at the agent (prompt injection), not a fact"])  # fmt: skip
        if SECRET.search(text):
            return Verdict(decision="REJECT", importance=0.0, kind="secret",
                           reasons=["looks like a secret (password, key, card number): never stored"])  # fmt: skip
        return None

    # -- sentences -------------------------------------------------------------

    def _sentence(self, sentence: str, explicit: bool, people: list[str]) -> Verdict | None:
        correction_cue = bool(CORRECTION.search(sentence))
        body = LEAD.sub("", sentence).strip()
        body = re.sub(r"\s+(actually|really|currently)\s+", " ", body, flags=re.I)
        if not body:
            return None
        if body.endswith("?") or (QUESTION_START.match(body) and not re.match(r"^(is|are)\s+\w+ing\b", body, re.I)):
            return Verdict(decision="REJECT", importance=0.1, kind="question",
                           reasons=["a question: nothing to remember"])  # fmt: skip
        if SMALL_TALK.match(body) and len(body.split()) <= 6:
            return Verdict(decision="REJECT", importance=0.05, kind="smalltalk",
                           reasons=["small talk: nothing to remember"])  # fmt: skip
        body = body.rstrip(".! ")
        for extract in (self._first_person, self._third_party, self._world):
            verdict = extract(body, people)
            if verdict is not None:
                if verdict.fact is not None:
                    reasons = list(verdict.reasons)
                    if explicit:
                        verdict.importance = min(1.0, verdict.importance + 0.2)
                        reasons.append("the user asked to remember it")
                    if correction_cue:
                        reasons.append("phrased as a correction")
                    verdict.reasons = reasons
                    verdict.correction_cue = correction_cue
                return verdict
        return None

    def _first_person(self, s: str, people: list[str]) -> Verdict | None:
        def fact(subject, relation, value, text, importance, kind="personal", why="a personal fact"):
            value = clean_value(value)
            if not value or len(value) > 200:
                return None
            bonus = 0.1 if re.search(r"\d|[A-Z]", value) else 0.0  # names, dates, numbers
            return Verdict(
                decision="STORE", importance=min(1.0, importance + bonus), kind=kind, reasons=[why],
                fact=Fact(subject=subject, relation=relation, value=value, text=text.format(v=value)),
            )  # fmt: skip

        m = re.match(r"^(?:my name is|my name's|i'?m called|i am called|call me|people call me)\s+(.+)$", s, re.I)
        if m:
            return fact("user", "name", m[1], "The user's name is {v}.", 0.85, why="the user's name")
        m = re.match(rf"^(?i:my) (?i:({RELATIVES}|{PETS}))(?i:'s name)?,?\s+(?i:(is called|is named|'s called|'s named|is|'s))\s+(.+)$", s)
        if m:
            value = clean_value(m[3])
            named = m[2].lower() not in ("is", "'s") or "'s name" in m[0].lower()
            if value and (named or re.fullmatch(NAME, value)):
                who = m[1].lower()
                return fact(f"user's {who}", "name", value, f"The user's {who} is called {{v}}.", 0.8,
                            why=f"the name of the user's {who}")  # fmt: skip
        m = re.match(rf"^(?i:my) (?i:({RELATIVES})),?\s+({NAME}),?\s+(.+)$", s)
        if m:
            verdict = self._third_party(f"{m[2]} {m[3]}", people)
            if verdict is not None and verdict.fact is not None:
                verdict.fact.text = verdict.fact.text.replace(m[2], f"{m[2]}, the user's {m[1].lower()},", 1)
                return verdict
        m = re.match(rf"^my ({RELATIVES}|{PETS})\s+(lives|works|is|was|moved|studies|loves|likes|has)\b\s*(.*)$", s, re.I)
        if m:
            verdict = self._predicate(f"user's {m[1].lower()}", f"The user's {m[1].lower()}", m[2], m[3])
            if verdict is not None:
                return verdict
        m = re.match(r"^my (birthday|birth ?date) is (?:on )?(.+)$", s, re.I)
        if m:
            return fact("user", "birthday", m[2], "The user's birthday is {v}.", 0.8, why="the user's birthday")
        m = re.match(r"^my ([\w' -]{2,40}?) (?:is|are|was)\s+(.+)$", s, re.I)
        if m:
            rel = m[1].lower().strip()
            return fact("user", rel, m[2], f"The user's {rel} is {{v}}.", 0.7, why=f"the user's {rel}")
        m = re.match(r"^i(?: am|'m)? (?:live|living|am living|'m living|reside|am based|'m based|stay) in\s+(.+)$", s, re.I)
        if m:
            return fact("user", "lives in", m[1], "The user lives in {v}.", 0.75, why="where the user lives")
        m = re.match(r"^i(?:'ve| have)? (?:just )?(?:moved|relocated) to\s+(.+)$", s, re.I)
        if m:
            return fact("user", "lives in", m[1], "The user lives in {v}.", 0.75, why="where the user lives")
        m = re.match(r"^i(?: am|'m)? (?:from|come from)\s+(.+)$", s, re.I)
        if m:
            return fact("user", "comes from", m[1], "The user comes from {v}.", 0.7, why="where the user is from")
        m = re.match(r"^i (?:work|am working|'m working) as (?:an? )?(.+)$", s, re.I)
        if m:
            return fact("user", "occupation", m[1], "The user works as {v}.", 0.75, why="the user's job")
        m = re.match(r"^i (?:work|am working|'m working) (?:at|for|in)\s+(.+)$", s, re.I)
        if m:
            return fact("user", "works at", m[1], "The user works at {v}.", 0.75, why="where the user works")
        m = re.match(r"^i (?:study|am studying|'m studying)\s+(.+)$", s, re.I)
        if m:
            return fact("user", "studies", m[1], "The user studies {v}.", 0.7, why="what the user studies")
        m = re.match(r"^i was born (in|on)\s+(.+)$", s, re.I)
        if m:
            rel = f"born {m[1].lower()}"
            return fact("user", rel, m[2], f"The user was {rel} {{v}}.", 0.8, why="where or when the user was born")
        m = re.match(r"^i(?:'m| am) (\d{1,3})(?: years old| years of age|yo)?$", s, re.I)
        if m:
            return fact("user", "age", m[1], "The user is {v} years old.", 0.7, why="the user's age")
        m = re.match(r"^i(?:'m| am) allergic to\s+(.+)$", s, re.I)
        if m:
            return fact("user", "allergic to", m[1], "The user is allergic to {v}.", 0.85, why="an allergy (health)")
        m = re.match(r"^i (?:really |absolutely )?(?:like|love|enjoy|adore|prefer)\s+(.+)$", s, re.I)
        if m:
            return fact("user", "likes", m[1], "The user likes {v}.", 0.55, kind="preference", why="a preference")
        m = re.match(r"^i (?:really )?(?:hate|dislike|can'?t stand|don'?t like|do not like)\s+(.+)$", s, re.I)
        if m:
            return fact("user", "dislikes", m[1], "The user dislikes {v}.", 0.55, kind="preference", why="a preference")
        m = re.match(rf"^i have an? ([\w -]+?) (?:called|named)\s+({NAME})$", s, re.I)
        if m:
            thing = m[1].lower()
            return fact(f"user's {thing}", "name", m[2], f"The user's {thing} is called {{v}}.", 0.8,
                        why=f"the name of the user's {thing}")  # fmt: skip
        m = re.match(r"^i (?:have|own|'ve got|have got)\s+((?:an?|one|two|three|four|five|\d+)\s+.+)$", s, re.I)
        if m:
            return fact("user", "has", m[1], "The user has {v}.", 0.6, why="something the user has")
        m = re.match(r"^i(?:'m| am) (?:going to|planning to|gonna|about to)\s+(.+)$|^i (?:will|'ll|plan to|intend to)\s+(.+)$", s, re.I)
        if m:
            return fact("user", "plans to", m[1] or m[2], "The user plans to {v}.", 0.6, kind="plan", why="a plan")
        m = re.match(r"^(?:next|this|on|in|tomorrow|tonight)\b[^,]{0,30},?\s+i(?:'m| am| will|'ll)\s+(?:going to\s+)?(.+)$", s, re.I)
        if m:
            when = s[: s.lower().find(" i")].strip(" ,")
            return fact("user", "plans to", f"{m[1]} {when.lower()}", "The user plans to {v}.", 0.6, kind="plan",
                        why="a plan")  # fmt: skip
        m = re.match(r"^i(?:'m| am) (?:an?|the)\s+([\w -]{2,40})$", s, re.I)
        if m and not re.search(r"\b(bit|little|lot|fan|huge|big fan)\b", m[1], re.I):
            return fact("user", "occupation", m[1], "The user is a {v}.", 0.7, why="what the user is or does")
        m = re.match(r"^i(?:'m| am) (?:a )?(vegetarian|vegan|pescatarian|left-handed|right-handed|married|single|divorced|retired|engaged)$", s, re.I)
        if m:
            return fact("user", "is", m[1], "The user is {v}.", 0.7, why="a personal fact")
        return None

    def _predicate(self, subject: str, phrase: str, verb: str, rest: str) -> Verdict | None:
        verb, rest = verb.lower(), rest.strip()
        patterns = [
            (r"^(?:lives|is living)$", r"^in\s+(.+)$", "lives in", "{p} lives in {v}."),
            (r"^moved$", r"^to\s+(.+)$", "lives in", "{p} lives in {v}."),
            (r"^works$", r"^as (?:an? )?(.+)$", "occupation", "{p} works as {v}."),
            (r"^works$", r"^(?:at|for)\s+(.+)$", "works at", "{p} works at {v}."),
            (r"^studies$", r"^(.+)$", "studies", "{p} studies {v}."),
            (r"^(?:is|was)$", r"^born (?:in|on)\s+(.+)$", "born in", "{p} was born in {v}."),
            (r"^is$", r"^(\d{1,3})(?: years old)?$", "age", "{p} is {v} years old."),
            (r"^is$", r"^(?:an?|the)\s+(.+)$", "occupation", "{p} is a {v}."),
            (r"^(?:loves|likes)$", r"^(.+)$", "likes", "{p} likes {v}."),
            (r"^has$", r"^(.+)$", "has", "{p} has {v}."),
        ]
        for verb_re, rest_re, relation, template in patterns:
            if re.match(verb_re, verb) and (m := re.match(rest_re, rest, re.I)):
                value = clean_value(m[1])
                if not value:
                    return None
                return Verdict(
                    decision="STORE", importance=0.7, kind="third_party", reasons=[f"a fact about {phrase.lower()}"],
                    fact=Fact(subject=subject, relation=relation, value=value,
                              text=template.format(p=phrase, v=value)),
                )  # fmt: skip
        return None

    def _third_party(self, s: str, people: list[str]) -> Verdict | None:
        m = re.match(r"^(he|she|they)\s+(\w+)\b\s*(.*)$", s, re.I)
        if m:
            if not people:
                return None
            who = people[0]
            phrase = who if not who.startswith("user's") else "The " + who.replace("user's", "user's")
            return self._predicate(who, phrase, m[2], m[3])
        m = re.match(rf"^({NAME})'s ([\w' -]{{2,30}}?) is\s+(.+)$", s)
        if m and not self._is_world_subject(m[1]):
            rel = m[2].lower()
            value = clean_value(m[3])
            return Verdict(decision="STORE", importance=0.65, kind="third_party", reasons=[f"a fact about {m[1]}"],
                           fact=Fact(subject=m[1], relation=rel, value=value,
                                     text=f"{m[1]}'s {rel} is {value}."))  # fmt: skip
        m = re.match(rf"^({NAME})\s+(lives|is living|moved|works|studies|is|was|loves|likes|has)\b\s*(.*)$", s)
        if m and not self._is_world_subject(m[1]):
            return self._predicate(m[1], m[1], m[2], m[3])
        return None

    @staticmethod
    def _is_world_subject(subject: str) -> bool:
        key = subject.lower().strip()
        return key in reality()["capitals"] or key in {c.lower() for c in reality()["capitals"].values()} or key in (
            "the", "earth", "the earth", "the sun", "the moon", "water", "i", "it", "this", "that", "there",
        )  # fmt: skip

    def _world(self, s: str, people: list[str]) -> Verdict | None:
        if re.match(r"^(i|i'm|i've|i'll|i'd|my|me|we|our)\b", s, re.I):
            return None
        truth = self._capital_contradiction(s) or self._false_claim(s)
        if truth:
            return Verdict(decision="REJECT", importance=0.0, kind="world",
                           reasons=[f"contradicts a well-known fact: {truth}"])  # fmt: skip
        if re.search(r"\b(is|are|was|were|has|have|orbits|causes|contains|equals)\b", s, re.I):
            return Verdict(decision="REJECT", importance=0.15, kind="world",
                           reasons=["general knowledge, not a memory about the user"])  # fmt: skip
        return None

    def _capital_contradiction(self, s: str) -> str | None:
        capitals = reality()["capitals"]
        m = re.match(r"^(?:the )?capital of ([\w .]+?) is\s+(.+)$", s, re.I) or None
        pair = (m[1], m[2]) if m else None
        if pair is None:
            m = re.match(r"^([\w .]+?) is the capital (?:city )?of\s+(.+)$", s, re.I)
            pair = (m[2], m[1]) if m else None
        if pair is None:
            return None
        country, city = norm(pair[0]), clean_value(pair[1])
        truth = capitals.get(country)
        if truth and norm(city) != norm(truth):
            return f"the capital of {pair[0].strip()} is {truth}"
        return None

    def _false_claim(self, s: str) -> str | None:
        if self.embed is None:
            return None
        if self._false is None:
            claims = reality()["false_claims"]
            self._false = (claims, self.embed([c["claim"] for c in claims]))
        claims, vectors = self._false
        scores = vectors @ self.embed([s])[0]
        best = int(scores.argmax())
        if scores[best] >= self.false_claim_similarity:
            return claims[best]["truth"]
        return None


def single_valued(relation: str) -> bool:
    relation = relation.lower().strip()
    return relation in SINGLE_VALUED or relation.startswith("favourite") or relation.startswith("favorite")
