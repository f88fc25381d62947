"""Dreams: turn memories into training conversations, plus held-out probes.

For every memory (the seed's Phases 4, 5 and 8):
- question/answer conversations (`rehearsals`): the questions a person would
  ask about its statement, read from the parse (`memory.questions`: a
  wh-question for each part, its name, yes/no, a recitation), and for a
  relation with templates the `qa_templates.yaml` phrasings; `questions` of
  them, each answered with the memory's own words in the second person;
- `probes` held out: the value asked in a frame no trained question uses
  ("In which village ...", "What is it that ...", "What age ..."), then the
  templates' last phrasings; never trained on, in this sleep or any other;
- *contrast* for memories of one frame (`frame`: the dog's name and the
  cat's): a dialogue asking one next to the other, a yes/no question with the
  neighbour's value answered "No", and the neighbour's value forbidden in the
  memory's probes (a candidate that swaps them fails the gate);
- multi-turn dialogues (the seed's 6-turn format) that ask about memories of
  different entities in one conversation;
- for a CORRECTed memory, a correction dialogue ("Is it still Oslo?" ->
  "No, that changed: ...") so the old value is unlearned;
- *anchor* conversations: general prompts with the base model's own answers,
  so general behaviour is rehearsed too.
`order` interleaves entities (no two neighbouring examples about the same
entity: the seed's Phase 5 finding) or keeps them `sequential` for ablations.
`validate()` checks the set before any training (the seed's validators).
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from memory.answers import norm
from memory.errors import DreamError
from memory.mentions import FEMALE, KIN, MALE
from memory.questions import QA, ask, past_state

# relations that are nouns ("X's wife is Y", "X's birthday is Y"): the generic templates read well for them
RELATIONAL_NOUNS = MALE | FEMALE | KIN | {"birthday", "hobby", "job", "goal", "email", "address", "nickname",
                                          "profession", "pet", "car", "team", "school", "hometown", "surname"}  # fmt: skip


@dataclass
class Example:
    messages: list[dict]
    kind: str  # qa | dialogue | correction | anchor
    entity: str
    memory_ids: list[int] = field(default_factory=list)


@dataclass
class Probe:
    memory_id: int | None
    question: str
    expected: str  # the value that must appear in a correct answer
    answer: str  # a full reference answer
    kind: str  # new | replay | locality
    forbidden: str | list[str] | None = None  # values that must not appear: a correction's old value, a neighbour's


@dataclass
class DreamSet:
    examples: list[Example]
    probes: list[Probe]


def _mode(subject: str) -> tuple[str, dict]:
    if subject.lower() == "user":
        return "self", {}
    if subject.lower().startswith("user's "):
        return "owned", {"thing": subject[7:]}
    return "other", {"subject": subject}


def _article(value: str) -> tuple[str, str]:
    m = re.match(r"^(a|an)\s+(.+)$", value, re.I)
    if m:
        return m[1].lower(), m[2]
    return ("an" if value[:1].lower() in "aeiou" else "a"), value


def expected_value(memory: dict) -> str:
    """What an answer about the memory must contain: its value, else the most specific words of its
    statement (a name, a number, else its last content word)."""
    if memory.get("value"):
        return memory["value"]
    text = re.sub(r"^The user('s)?\s+", "", memory["text"]).rstrip(".!")
    names = re.findall(r"(?<!^)\b(?:[A-Z][\w'-]+|\d[\w.,-]*)(?:\s+(?:[A-Z][\w'-]+|\d[\w.,-]*))*", text)
    if names:
        return max(names, key=len)
    return text.split()[-1] if text.split() else memory["text"]


def _topic(memory: dict, mode: str, names: dict) -> str:
    if mode == "owned":
        return f"my {names['thing']}"
    if mode == "other":
        return names["subject"]
    return f"my {memory['value']}" if memory.get("value") and len(memory["value"].split()) <= 4 else "me"


def qa_pairs(memory: dict, templates: dict) -> list[tuple[str, str]]:
    """All (question, answer) phrasings for a memory, in template order. A memory whose relation has
    templates uses them; a statement with no relation (or a verb's own frame) is asked about by topic and
    answered with its own words in the second person (`meta.you`). Someone of the user's with a name
    ("user's sister Anna") is asked about both ways, "my sister" and "Anna", alternately."""
    m = re.match(r"^user's (\w[\w -]*?) ([A-Z][\w'-]*(?: [A-Z][\w'-]*)*)$", memory["subject"])
    if m and (memory.get("relation") == "name" or m[2] == memory.get("value")):
        return _qa_pairs({**memory, "subject": f"user's {m[1]}"}, templates)  # its name is what is asked
    if m:
        as_owned = _qa_pairs({**memory, "subject": f"user's {m[1]}"}, templates)
        as_named = _qa_pairs({**memory, "subject": m[2]}, templates)
        answer = as_owned[0][1].replace(f"Your {m[1]} ", f"Your {m[1]} {m[2]} ", 1)
        mixed = [q for pair in zip(as_owned, as_named, strict=False) for q, _ in pair]
        return [(q, answer) for q in dict.fromkeys(mixed)]
    return _qa_pairs(memory, templates)


def _qa_pairs(memory: dict, templates: dict) -> list[tuple[str, str]]:
    mode, names = _mode(memory["subject"])
    relation = memory.get("relation")
    spec = templates.get("relations", {}).get(relation, {}).get(mode) if relation else None
    if spec is None and relation and memory.get("value") and (relation.lower().startswith(("favourite", "favorite"))
                                                              or relation.lower().split()[-1] in RELATIONAL_NOUNS):
        spec = templates["generic"][mode]
    if spec is None:
        statement = templates["statement"]
        answer = (memory.get("meta") or {}).get("you") or memory["text"]
        topic = _topic(memory, mode, names)
        return [(q.format(topic=topic), answer) for q in statement["questions"]]
    article, value = _article(memory["value"]) if relation == "occupation" else ("", memory["value"])
    fields = {**names, "relation": relation, "value": value, "article": article}
    answer = spec["answer"].format(**fields).replace("  ", " ")
    answer = answer[0].upper() + answer[1:]
    return [(q.format(**fields), answer) for q in spec["questions"]]


TRAIN_FRAMES = ("wh", "who", "subject", "name")
REPLAY_QUESTIONS = 2  # trained questions of a replayed memory
HELD_FRAMES = ("which", "cleft", "age")


def rehearsals(memory: dict, templates: dict, questions: int = 5, probes: int = 2) -> tuple[list[QA], list[QA]]:
    """The trained (question, answer) pairs of a memory and its held-out probes.

    Questions come from the statement's parse (`memory.questions.ask`) and, for a relation with templates,
    from `qa_templates.yaml`. Trained, in this order, up to `questions`: the parsed question for the
    memory's value, the first template question, its name ("What is my daughter's name?"), the parsed
    questions for its other parts, a yes/no question, a recitation, the other template questions. Held
    out, `probes`: the value asked in a frame no trained question uses ("In which village ...", "What is
    it that ...", "What age ..."), then the templates' last phrasings. A probe that names its own answer
    is never chosen; the same memory always gets the same split, so a probe is never trained on in any sleep."""
    value = norm(expected_value(memory))
    parsed = ask(memory)
    # "we named the terrier Pickle" has the relation `name` about the user, but names the terrier: the
    # user's-name templates ("What is my name?" -> "Your name is Pickle.") would teach a falsehood
    names_a_thing = memory.get("subject") == "user" and any(qa.frame == "name" for qa in parsed)
    # a state said in the past ("I lived in Paris", "My father was a fisherman") or still to come ("I'll move
    # to Berlin", "If I get the job, ...") is never answered by the templates, which say it in the present
    # ("You live in Paris."); names and births are said as they are
    tense = memory.get("tense") or (memory.get("meta") or {}).get("tense")
    not_now = memory.get("relation") not in ("name", "born in", "birthday") and (
        tense in ("past", "future") or past_state(memory.get("text") or ""))  # fmt: skip
    spec_pairs = qa_pairs(memory, templates) if (_has_spec(memory, templates) and not names_a_thing and not not_now) \
        or not parsed else []  # fmt: skip
    expected = expected_value(memory)
    tpl = [QA(q, a, expected, "template", True) for q, a in spec_pairs]
    fair = lambda qa: not qa.value or not value or f" {value} " not in f" {norm(qa.question)} "  # noqa: E731
    held_tpl = [qa for qa in tpl if fair(qa)][-probes:] if len(tpl) > probes else []
    held = [qa for qa in parsed if qa.value and qa.frame in HELD_FRAMES and fair(qa)] + held_tpl
    held += [qa for qa in parsed if not qa.value and qa.frame in HELD_FRAMES and fair(qa)]
    main = [qa for qa in parsed if qa.frame in TRAIN_FRAMES]
    value_first = [qa for qa in main if qa.value][:1]
    name = [qa for qa in main if qa.frame == "name"][:1]
    # a name that is not the memory's value is asked once ("What is my son's name?"): its other phrasings
    # come last, after the yes/no and the recitation, which say the value ("My son Jonas is eleven" taught
    # twice as a name beside twice as an age: asked "How many years old is Jonas?", the model said "20")
    aside = [qa for qa in main if qa.frame == "name" and not qa.value and qa not in name]
    # the other questions round-robin over what they ask for (the value first): every part gets asked
    by_focus: dict[str, list[QA]] = {}
    for qa in sorted((qa for qa in main if qa not in value_first and qa not in aside), key=lambda qa: not qa.value):
        by_focus.setdefault(norm(qa.expected), []).append(qa)
    spread = [qa for row in _zip_all(list(by_focus.values())) for qa in row]
    ordered = value_first + tpl[:1] + name + spread + [qa for qa in parsed if qa.frame in ("yesno", "recite")] + \
        tpl[1:] + aside  # fmt: skip
    held_keys: set[str] = set()
    probes_out: list[QA] = []
    for qa in held:
        if len(probes_out) < probes and norm(qa.question) not in held_keys:
            probes_out.append(qa)
            held_keys.add(norm(qa.question))
    if not probes_out and len([qa for qa in ordered if qa.value and fair(qa)]) >= 2:
        last = [qa for qa in ordered if qa.value and fair(qa) and qa.frame != "recite"][-1:]
        probes_out, held_keys = last, {norm(qa.question) for qa in last}
    train: list[QA] = []
    for qa in ordered:
        key = norm(qa.question)
        if key not in held_keys and key not in {norm(t.question) for t in train}:
            train.append(qa)
    return train[:questions], probes_out


def _zip_all(groups: list[list]) -> list[list]:
    """Rows of the k-th item of every group that has one: [[a1, b1], [a2, b2], [a3]]."""
    return [[g[k] for g in groups if k < len(g)] for k in range(max((len(g) for g in groups), default=0))]


def _reworded(train: list[QA], held: list[QA], memory: dict, paraphrase: Callable[[str, int], list[str]],
              n: int) -> list[QA]:  # fmt: skip
    """A model's rewordings of the memory's first trained question, with its answer; none that is a probe,
    a trained question already, or that names the answer."""
    first = train[0]
    value = norm(first.expected)
    taken = {norm(qa.question) for qa in train + held}
    out = []
    for q in paraphrase(first.question, n):
        key = norm(q)
        if key and key not in taken and (not value or f" {value} " not in f" {key} "):
            taken.add(key)
            out.append(QA(q, first.answer, first.expected, "paraphrase", first.value))
    return out


def _has_spec(memory: dict, templates: dict) -> bool:
    relation = memory.get("relation")
    if not relation or not memory.get("value"):
        return False
    mode, _ = _mode(re.sub(r"^(user's \w[\w -]*?) [A-Z].*$", r"\1", memory["subject"]))
    if templates.get("relations", {}).get(relation, {}).get(mode):
        return True
    return relation.lower().startswith(("favourite", "favorite")) or relation.lower().split()[-1] in RELATIONAL_NOUNS


def entity(memory: dict) -> str:
    return f"{memory['user']}:{memory['subject'].lower()}"


def dream(
    new: list[dict],
    replay: list[dict],
    templates: dict,
    anchors: list[tuple[str, str]],
    *,
    system_prompt: str,
    questions: int = 3,
    probes: int = 2,
    dialogues: float = 0.34,
    corrections: dict[int, str] | None = None,
    order: str = "interleaved",
    seed: int = 0,
    paraphrase: Callable[[str, int], list[str]] | None = None,
    paraphrases: int = 0,
) -> DreamSet:
    """Training examples and probes for the new and replayed memories.

    `corrections` maps a new memory's id to the value it superseded.
    `dialogues` is the number of 6-turn dialogues per memory (0.34: one per three).
    `paraphrase(question, n)`: a capable model's rewordings (`memory.paraphrase.Paraphraser`); each
    memory's first trained question gets `paraphrases` more, trained with the same answer, never one
    that is a held-out probe or names its own answer.
    """
    rng = random.Random(seed)
    corrections = corrections or {}
    system = [{"role": "system", "content": system_prompt}]
    examples: list[Example] = []
    out_probes: list[Probe] = []
    pairs_of: dict[int, list[tuple[str, str]]] = {}
    memories = new + replay
    neighbours = _neighbours(memories)
    for kind, group in (("new", new), ("replay", replay)):
        for m in group:
            # a replayed memory is rehearsed, not learned: its first two questions keep it (and cost little)
            train, held = rehearsals(m, templates, questions if kind == "new" else min(questions, REPLAY_QUESTIONS), probes)
            if paraphrase is not None and paraphrases > 0 and train:
                train = train + _reworded(train, held, m, paraphrase, paraphrases)
            pairs_of[m["id"]] = [(qa.question, qa.answer) for qa in train]
            old = corrections.get(m["id"])
            near = list(dict.fromkeys(theirs for _, theirs, _ in neighbours.get(m["id"], [])))
            for qa in held:
                forbidden = [v for v in [old, *near] if v] if qa.value else []
                out_probes.append(Probe(m["id"], qa.question, qa.expected, qa.answer, kind,
                                        forbidden=(forbidden[0] if len(forbidden) == 1 else forbidden) or None))  # fmt: skip
            for qa in train:
                examples.append(Example(system + [{"role": "user", "content": qa.question},
                                                  {"role": "assistant", "content": qa.answer}],
                                        "qa", entity(m), [m["id"]]))  # fmt: skip
            if old is not None:
                q, a = pairs_of[m["id"]][0]
                for cq in templates["corrections"]["questions"]:
                    question = f"{q} {cq.format(old=old)}"
                    reply = templates["corrections"]["answer"].format(answer=a)
                    examples.append(Example(system + [{"role": "user", "content": question},
                                                      {"role": "assistant", "content": reply}],
                                            "correction", entity(m), [m["id"]]))  # fmt: skip
    examples += _contrast(memories, neighbours, pairs_of, system)
    n_dialogues = math.ceil(len(memories) * dialogues) if len(memories) >= 2 else 0
    for _ in range(n_dialogues):
        by_entity: dict[str, list[dict]] = defaultdict(list)
        for m in memories:
            by_entity[entity(m)].append(m)
        picks = [rng.choice(ms) for ms in rng.sample(list(by_entity.values()), k=min(3, len(by_entity)))]
        if len(picks) < 2:
            picks = rng.sample(memories, k=min(3, len(memories)))
        messages = list(system)
        for m in picks:
            q, a = rng.choice(pairs_of[m["id"]])
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        examples.append(Example(messages, "dialogue", "dialogue:" + "+".join(entity(m) for m in picks),
                                [m["id"] for m in picks]))  # fmt: skip
    for prompt, answer in anchors:
        examples.append(Example(system + [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                                "anchor", f"anchor:{prompt}"))  # fmt: skip
    return DreamSet(arrange(examples, order, rng), out_probes)


BROAD_TYPES = ("place", "date", "number", "person")  # values of one kind are confused whatever the relation


def frames(memory: dict) -> list[tuple[tuple, str]]:
    """Memories of one frame can be confused with each other: both naming something or someone of the
    user's (the dog's name, the cat's, a husband's; said in apposition, "called" or "named"), both holding
    a place, a date, a number or a person (the town the user grew up in and the city a sister lives in:
    asked about one, a small model gives the other), or the same
    relation otherwise. Each frame's key with the value a neighbour's answer must not give; a memory can be
    in two ("My sister Petra lives in Gdańsk": a name and a place)."""
    out = []
    asked = ask(memory) if memory.get("text") else []
    named = next((qa for qa in asked if qa.frame == "name"), None)
    if named is not None:
        out.append(((memory.get("user"), "name"), named.expected))
    # a place is the one a "Where" question is answered with: "My sister Greta has a flat in Bergen" is
    # contrasted with "My brother Henrik lives in Lisbon" as "Bergen", not "flat in Bergen" (no "Does my
    # brother live in flat in Bergen?"; asked "Which city is Henrik living in?", a small model said
    # "Bergen"), and a memory whose value is no place but answers "Where" joins the places' frame
    where = next((qa for qa in asked if qa.value and qa.question.startswith("Where")), None)
    if memory.get("relation") and memory.get("value"):
        value_type = memory.get("value_type") or (memory.get("meta") or {}).get("value_type") or ""
        if named is None and memory["relation"].lower() == "name":
            # "My husband is called Tomasz" beside "We named the terrier Pickle": one frame of names
            out.append(((memory.get("user"), "name"), expected_value(memory)))
        elif value_type in BROAD_TYPES:
            place = where.expected if value_type == "place" and where is not None else None  # "Bergen", not "flat in Bergen"
            out.append(((memory.get("user"), "type", value_type), place or expected_value(memory)))
        elif named is None:
            out.append(((memory.get("user"), memory["relation"].lower(), value_type), expected_value(memory)))
    if where is not None and not any(key[1:] == ("type", "place") for key, _ in out):
        out.append(((memory.get("user"), "type", "place"), where.expected))
    return out


def _neighbours(memories: list[dict], most: int = 2) -> dict[int, list[tuple[dict, str, str]]]:
    """Each memory's neighbours (at most `most` per frame): (neighbour, the value it must not be answered
    with, its own value in that frame)."""
    by_frame: dict[tuple, list[tuple[dict, str]]] = defaultdict(list)
    for m in memories:
        for key, value in frames(m):
            by_frame[key].append((m, value))
    out: dict[int, list[tuple[dict, str, str]]] = defaultdict(list)
    for group in by_frame.values():
        for at, (m, mine) in enumerate(group):
            # the nearest in the frame's ring first (the next, the one before, ...): each memory is in about
            # `most` pairs, not the first two memories of a large frame in every pair
            ring = sorted(range(len(group)), key=lambda j: min((j - at) % len(group), (at - j) % len(group)))
            others = [(n, theirs, mine) for n, theirs in (group[j] for j in ring) if n["id"] != m["id"]
                      and not _same_fact(m, n) and norm(theirs) != norm(mine)
                      and norm(theirs) not in norm(m.get("text") or "")
                      and norm(mine) not in norm(n.get("text") or "")]  # fmt: skip
            known = {(n["id"], theirs) for n, theirs, _ in out[m["id"]]}
            out[m["id"]] += [o for o in others if (o[0]["id"], o[1]) not in known][:most]
    return {k: v for k, v in out.items() if v}


def _same_fact(m: dict, n: dict) -> bool:
    """The same subject and relation: one fact's two values (an update), not two facts to tell apart."""
    return norm(m.get("subject") or "") == norm(n.get("subject") or "") and \
        norm(m.get("relation") or "") == norm(n.get("relation") or "")  # fmt: skip


def _contrast(memories: list[dict], neighbours: dict[int, list[tuple[dict, str, str]]], pairs_of: dict,
              system: list[dict]) -> list[Example]:  # fmt: skip
    """For memories of one frame: a dialogue asking each next to the other, and a yes/no question with the
    neighbour's value answered "No" with the memory's own words."""
    out: list[Example] = []
    by_id = {m["id"]: m for m in memories}
    done: set[tuple[int, int]] = set()
    for mid, others in neighbours.items():
        m = by_id[mid]
        for n, _, _ in others:
            pair = tuple(sorted((mid, n["id"])))
            if pair in done or not pairs_of.get(mid) or not pairs_of.get(n["id"]):
                continue
            done.add(pair)
            (qa, aa), (qb, ab) = pairs_of[mid][0], pairs_of[n["id"]][0]
            out.append(Example(system + [{"role": "user", "content": qa}, {"role": "assistant", "content": aa},
                                         {"role": "user", "content": qb}, {"role": "assistant", "content": ab}],
                               "contrast", f"contrast:{entity(m)}+{entity(n)}", [mid, n["id"]]))  # fmt: skip
        nearest: dict[str, str] = {}  # per frame (the memory's value in it): the nearest neighbour's value
        for _, theirs, mine in others:
            nearest.setdefault(mine, theirs)
        for mine, theirs in nearest.items():
            yes_no = next((qa for qa in ask(m) if qa.frame == "yesno"), None)
            if yes_no is not None and mine in yes_no.question and _swappable(mine) and _swappable(theirs):
                question = yes_no.question.replace(mine, theirs)
                answer = "No. " + yes_no.answer.removeprefix("Yes. ")
                out.append(Example(system + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                                   "contrast", entity(m), [mid]))  # fmt: skip
    return out


def _swappable(value: str) -> bool:
    """A value one can put in another's place in a question: a name or a number ("Greta", "Lake Virsa",
    "40"), not a phrase ("flat in Bergen" into "Does my brother live in ...?" says nothing)."""
    words = value.split()
    return 0 < len(words) <= 3 and all(w[:1].isupper() or w[:1].isdigit() for w in words)


def arrange(examples: list[Example], order: str, rng: random.Random) -> list[Example]:
    """`interleaved`: round-robin over shuffled entities (no neighbours share an entity where avoidable);
    `sequential`: all examples of one entity together."""
    if order not in ("interleaved", "sequential"):
        raise DreamError(f"order must be interleaved or sequential, not {order!r}")
    groups: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        groups[ex.entity].append(ex)
    keys = list(groups)
    rng.shuffle(keys)
    for k in keys:
        rng.shuffle(groups[k])
    if order == "sequential":
        return [ex for k in keys for ex in groups[k]]
    result: list[Example] = []
    last = None
    while any(groups.values()):
        candidates = sorted((k for k in keys if groups[k] and k != last), key=lambda k: -len(groups[k]))
        if not candidates:  # only the last entity has examples left
            candidates = [last]
        top = [k for k in candidates if len(groups[k]) == len(groups[candidates[0]])]
        k = rng.choice(top)
        result.append(groups[k].pop())
        last = k
    return result


def longest_run(examples: list[Example]) -> int:
    best = run = 0
    prev = None
    for ex in examples:
        run = run + 1 if ex.entity == prev else 1
        best, prev = max(best, run), ex.entity
    return best


def validate(dreams: DreamSet, memory_ids: list[int], count_tokens: Callable[[list[dict]], int], max_tokens: int) -> dict:
    """The seed's validators; raises `DreamError` naming the first problem. Returns counts."""
    if not dreams.examples:
        raise DreamError("no training examples were generated")
    probe_questions = {p.question.strip().lower() for p in dreams.probes}
    covered: set[int] = set()
    longest = 0
    for i, ex in enumerate(dreams.examples):
        roles = [m.get("role") for m in ex.messages]
        if roles[:1] != ["system"] or len(roles) < 3 or roles[1::2] != ["user"] * len(roles[1::2]) \
                or roles[2::2] != ["assistant"] * len(roles[2::2]):  # fmt: skip
            raise DreamError(f"example {i} ({ex.kind}) does not alternate system/user/assistant: {roles}")
        for m in ex.messages:
            if not isinstance(m.get("content"), str) or not m["content"].strip():
                raise DreamError(f"example {i} ({ex.kind}) has an empty {m.get('role')} message")
            if m["role"] == "user" and m["content"].strip().lower() in probe_questions:
                raise DreamError(f"example {i} trains on the held-out probe {m['content']!r}")
        tokens = count_tokens(ex.messages)
        longest = max(longest, tokens)
        if tokens > max_tokens:
            raise DreamError(f"example {i} ({ex.kind}) is {tokens} tokens; the limit is {max_tokens}")
        covered.update(ex.memory_ids)
    missing = sorted(set(memory_ids) - covered)
    if missing:
        raise DreamError(f"memories {missing} have no training example")
    kinds: dict[str, int] = defaultdict(int)
    for ex in dreams.examples:
        kinds[ex.kind] += 1
    return {"examples": len(dreams.examples), "probes": len(dreams.probes), "longest_tokens": longest,
            "longest_entity_run": longest_run(dreams.examples), **{f"{k}_examples": v for k, v in kinds.items()}}  # fmt: skip
