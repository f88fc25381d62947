"""Dream generation and the dream-data validators (pure logic, real templates)."""

from __future__ import annotations

import collections
import random

import pytest

from memory.dreams import DreamError, Example, arrange, dream, longest_run, qa_pairs, validate
from memory.questions import ask
from sleeptrain_agent.config import data

TEMPLATES = data("qa_templates.yaml")
SYSTEM = "You are a helpful assistant."


def m(i, subject, relation, value, user="alice"):
    return {"id": i, "user": user, "subject": subject, "relation": relation, "value": value}


MEMORIES = [
    m(1, "user's dog", "name", "Pilsner"), m(2, "user", "lives in", "Lund"), m(3, "Anna", "lives in", "Uppsala"),
    m(4, "user", "occupation", "nurse"), m(5, "user", "favourite colour", "teal"), m(6, "Erik", "works at", "Volvo"),
]  # fmt: skip


def words(messages):
    return sum(len(x["content"].split()) for x in messages)


def test_templates_by_subject_kind():
    assert qa_pairs(MEMORIES[0], TEMPLATES)[0] == ("What is my dog called?", "Your dog is called Pilsner.")
    assert qa_pairs(MEMORIES[2], TEMPLATES)[0] == ("Where does Anna live?", "Anna lives in Uppsala.")
    assert qa_pairs(MEMORIES[3], TEMPLATES)[0][1] == "You work as a nurse."
    assert qa_pairs(MEMORIES[4], TEMPLATES)[0] == ("What is my favourite colour?", "Your favourite colour is teal.")


def test_probes_are_held_out_and_everything_is_represented():
    d = dream(MEMORIES, [], TEMPLATES, [("What is 2+2?", "4.")], system_prompt=SYSTEM, questions=3, probes=2)
    probe_qs = {p.question for p in d.probes}
    trained_qs = {msg["content"] for ex in d.examples for msg in ex.messages if msg["role"] == "user"}
    assert len(d.probes) == 2 * len(MEMORIES) and not probe_qs & trained_qs
    counts = validate(d, [x["id"] for x in MEMORIES], words, 200)
    assert counts["qa_examples"] == 3 * len(MEMORIES) and counts["anchor_examples"] == 1
    assert counts["dialogue_examples"] >= 2 and counts["longest_entity_run"] == 1
    assert all(ex.messages[0] == {"role": "system", "content": SYSTEM} for ex in d.examples)


def test_six_turn_dialogues_mix_entities():
    d = dream(MEMORIES, [], TEMPLATES, [], system_prompt=SYSTEM, dialogues=1.0)
    dialogues = [ex for ex in d.examples if ex.kind == "dialogue"]
    assert dialogues and all(len(ex.messages) == 7 for ex in dialogues)  # system + 3 questions + 3 answers
    assert all(len(set(ex.memory_ids)) == 3 for ex in dialogues)


def test_correction_dialogues_unlearn_the_old_value():
    d = dream([MEMORIES[2]], [], TEMPLATES, [], system_prompt=SYSTEM, corrections={3: "Oslo"})
    corrections = [ex for ex in d.examples if ex.kind == "correction"]
    assert corrections and all("Oslo" in ex.messages[1]["content"] and "Uppsala" in ex.messages[2]["content"]
                               for ex in corrections)  # fmt: skip
    assert all(p.forbidden == "Oslo" for p in d.probes)


def test_interleaved_vs_sequential():
    examples = [Example([], "qa", e, []) for e in "aaaabbbbcccc"]
    assert longest_run(arrange(examples, "interleaved", random.Random(0))) == 1
    assert longest_run(arrange(examples, "sequential", random.Random(0))) == 4
    with pytest.raises(DreamError):
        arrange(examples, "shuffled", random.Random(0))


def test_validators_catch_bad_data():
    d = dream(MEMORIES[:2], [], TEMPLATES, [], system_prompt=SYSTEM)
    with pytest.raises(DreamError, match="tokens; the limit"):
        validate(d, [1, 2], words, 5)
    with pytest.raises(DreamError, match=r"memories \[99\] have no training example"):
        validate(d, [1, 2, 99], words, 200)
    leaked = dream(MEMORIES[:2], [], TEMPLATES, [], system_prompt=SYSTEM)
    leaked.examples[0].messages[1]["content"] = leaked.probes[0].question
    with pytest.raises(DreamError, match="held-out probe"):
        validate(leaked, [1, 2], words, 200)
    empty = dream(MEMORIES[:1], [], TEMPLATES, [], system_prompt=SYSTEM)
    empty.examples[0].messages[2]["content"] = " "
    with pytest.raises(DreamError, match="empty assistant"):
        validate(empty, [1], words, 200)
    with pytest.raises(DreamError, match="no training examples"):
        validate(dream([], [], TEMPLATES, [], system_prompt=SYSTEM), [], words, 200)


def _said(i, text, user="u"):
    from memory.extractor import ExtractorJudge
    from memory.verdicts import Context

    fact = next(v.fact for v in ExtractorJudge().judge(text, Context()) if v.fact is not None)
    return {**fact.model_dump(), "id": i, "user": user, "meta": {"you": fact.you}}


def test_memories_of_one_frame_are_contrasted_and_probed_for_each_other():
    dog, cat = _said(1, "Our dog is called Pickle."), _said(2, "Our cat is called Miso.")
    city = _said(3, "I live in Lund.")
    d = dream([dog, cat, city], [], TEMPLATES, [], system_prompt=SYSTEM, questions=5, probes=2)
    contrast = [ex for ex in d.examples if ex.kind == "contrast"]
    pair = [ex for ex in contrast if len(ex.messages) == 5]
    assert pair and set(pair[0].memory_ids) == {1, 2}
    no = [ex for ex in contrast if len(ex.messages) == 3]  # "Is my cat called Pickle?" -> "No. Your cat is called Miso."
    assert any("Pickle" in ex.messages[1]["content"] and ex.messages[2]["content"].startswith("No.")
               and "Miso" in ex.messages[2]["content"] for ex in no)  # fmt: skip
    cat_probes = [p for p in d.probes if p.memory_id == 2]
    assert cat_probes and all(p.forbidden == "Pickle" for p in cat_probes)
    assert all(not p.forbidden for p in d.probes if p.memory_id == 3)  # no neighbour: nothing forbidden
    from memory.answers import recall_hit

    assert recall_hit("Your cat is called Miso.", "Miso", cat_probes[0].forbidden)
    assert not recall_hit("Your cat is called Pickle, and Miso.", "Miso", cat_probes[0].forbidden)  # swapped: fails
    validate(d, [1, 2, 3], words, 200)


def test_places_of_different_relations_are_neighbours_but_one_fact_s_update_is_not():
    """Two places are confused whatever the relation (asked where the user grew up, a small model gives the
    sister's city): contrasted and probed for each other. A value said in the memory's own words is never
    forbidden ("moved from Oslo"), and a thing of another relation is no neighbour (a bassoon, a kiwi)."""
    town, sister = _said(1, "I grew up in Kilkenny."), _said(2, "My sister Petra lives in Gdańsk.")
    moved, bassoon, kiwi = _said(3, "I moved from Oslo to Bergen."), _said(4, "I play the bassoon."), _said(5, "I'm allergic to kiwi.")
    oslo = _said(6, "My brother lives in Oslo.")
    d = dream([town, sister, moved, bassoon, kiwi, oslo], [], TEMPLATES, [], system_prompt=SYSTEM, questions=5, probes=2)
    pairs = [set(ex.memory_ids) for ex in d.examples if ex.kind == "contrast" and len(ex.messages) == 5]
    assert {1, 2} in pairs
    forbidden = {p.memory_id: p.forbidden for p in d.probes if p.forbidden}
    assert "Gdańsk" in str(forbidden.get(1)) and "Kilkenny" in str(forbidden.get(2))
    assert "Oslo" not in str(forbidden.get(3, ""))  # Bergen's memory says "from Oslo": never forbidden there
    assert not ({4, 5} & set(forbidden)) and not any({4, 5} & s for s in pairs)
    validate(d, [1, 2, 3, 4, 5, 6], words, 400)



def test_a_place_said_inside_a_phrase_is_contrasted_as_the_place():
    """"My sister Greta has a flat in Bergen" answers "Where does my sister live?" with "Bergen": beside the
    brother's Lisbon the yes/no contrast swaps the two places (not "flat in Bergen", which no question can
    hold), and the brother's probes forbid "Bergen" itself (a bare "Bergen" would pass "flat in Bergen")."""
    brother, sister = _said(1, "My brother Henrik lives in Lisbon these days."), _said(2, "My sister Greta has a flat in Bergen.")
    d = dream([brother, sister], [], TEMPLATES, [], system_prompt=SYSTEM, questions=5, probes=2)
    no = {ex.messages[1]["content"]: ex.messages[2]["content"] for ex in d.examples if ex.kind == "contrast" and len(ex.messages) == 3}
    asked = {q: a for q, a in no.items() if "Bergen" in q and "Lisbon" in a}  # "Does my brother Henrik live in Bergen ...?"
    assert asked and all(a.startswith("No.") for a in asked.values()), no
    assert any("Lisbon" in q and "Bergen" in a for q, a in no.items()), no
    brother_probes = [p for p in d.probes if p.memory_id == 1 and p.forbidden]
    assert brother_probes and all("Bergen" in p.forbidden for p in brother_probes), brother_probes

    from memory.answers import recall_hit

    assert not recall_hit("Your brother Henrik lives in Bergen.", "Lisbon", brother_probes[0].forbidden)
    validate(d, [1, 2], words, 200)

@pytest.mark.parametrize("text,name,where", [
    ("I grew up in a tiny fishing village called Reine.", "Reine", "Where did I grow up?"),
    ("My parents retired to a little island called Hitra.", "Hitra", "Where did my parents retire?"),
])  # fmt: skip
def test_a_location_named_is_a_place_whatever_the_tagger_calls_the_name(text, name, where):
    """"a fishing village called Reine": spaCy tags Reine a person, but a village (an island, a valley, a
    town: WordNet's locations) is a place, so the memory's value is the name, asked "Where ...?" and
    contrasted with the other places ("Which city is Henrik living in?" must not be answered with it)."""
    village, brother = _said(1, text), _said(2, "My brother Henrik lives in Lisbon these days.")
    assert village["value"] == name and village["value_type"] == "place", village
    asked = {qa.question: qa for qa in ask(village)}
    assert where in asked and asked[where].expected == name, sorted(asked)
    d = dream([village, brother], [], TEMPLATES, [], system_prompt=SYSTEM, questions=5, probes=2)
    brother_probes = [p for p in d.probes if p.memory_id == 2 and p.forbidden]
    assert brother_probes and all(name in p.forbidden for p in brother_probes), brother_probes
    validate(d, [1, 2], words, 200)


def test_names_said_every_way_are_one_frame_and_each_memory_is_in_few_pairs():
    """A husband "called" Tomasz and a terrier "named" Pickle are names of one frame (asked what the dog is
    called, a small model gave the husband's name: the natural profile); in a large frame each memory is
    contrasted with its nearest few, not every memory with the frame's first two."""
    said = ["My husband is called Tomasz.", "We named our terrier Pickle.", "My cat is called Miso.",
            "My daughter Liv is studying law.", "My niece Ada is seven.", "My brother Henrik is a pilot.",
            "My sister Greta is a baker."]  # fmt: skip
    ms = [_said(i, text) for i, text in enumerate(said, 1)]
    d = dream(ms, [], TEMPLATES, [], system_prompt=SYSTEM, questions=5, probes=2)
    pairs = [frozenset(ex.memory_ids) for ex in d.examples if ex.kind == "contrast" and len(ex.messages) == 5]
    assert any({1, 2} <= p for p in pairs) or any({1, 3} <= p for p in pairs), pairs  # Tomasz beside a pet
    per_memory = collections.Counter(i for p in pairs for i in p)
    assert set(per_memory) == set(range(1, 8)) and max(per_memory.values()) <= 3, per_memory
    forbidden = {p.memory_id: str(p.forbidden) for p in d.probes if p.forbidden}
    assert any(name in forbidden.get(1, "") for name in ("Pickle", "Miso", "Greta", "Liv")), forbidden
    validate(d, list(range(1, 8)), words, 400)


def test_a_statement_is_rehearsed_with_the_questions_of_its_parse():
    liv = _said(1, "My daughter Liv is studying marine biology in Tromsø.")
    d = dream([liv], [], TEMPLATES, [], system_prompt=SYSTEM, questions=5, probes=2)
    trained = [ex.messages[1]["content"] for ex in d.examples if ex.kind == "qa"]
    assert len(trained) == 5 and "What does my daughter study?" in trained and "What is my daughter's name?" in trained
    answers = {ex.messages[1]["content"]: ex.messages[2]["content"] for ex in d.examples if ex.kind == "qa"}
    assert answers.pop("What is my daughter's name?") == "Your daughter is called Liv."  # a name, as names are asked
    assert all(a == "Your daughter Liv is studying marine biology in Tromsø." for a in answers.values()), answers
    assert d.probes and all(p.expected in ("marine biology", "Tromsø") for p in d.probes)


def test_a_capable_model_s_paraphrases_are_trained_never_a_probe():
    liv = _said(1, "My daughter Liv is studying marine biology in Tromsø.")
    from memory.dreams import rehearsals

    _, held = rehearsals(liv, TEMPLATES, 5, 2)
    asked = []

    def paraphrase(question, n):  # a model that also offers a probe and a question naming the answer
        asked.append((question, n))
        return ["Which subject does Liv study?", held[0].question, "Is Liv studying marine biology?",
                "Which subject does Liv study?"]  # fmt: skip

    d = dream([liv], [], TEMPLATES, [], system_prompt=SYSTEM, questions=5, probes=2, paraphrase=paraphrase,
              paraphrases=3)  # fmt: skip
    trained = [ex.messages[1]["content"] for ex in d.examples if ex.kind == "qa"]
    assert len(asked) == 1 and asked[0][1] == 3  # the memory's first trained question, once
    assert trained.count("Which subject does Liv study?") == 1 and len(trained) == 6
    assert held[0].question not in trained and "Is Liv studying marine biology?" not in trained
    validate(d, [1], words, 200)


def test_naming_a_pet_is_not_the_user_s_name():
    pickle = _said(1, "We named the little terrier Pickle.")
    from memory.dreams import rehearsals

    train, held = rehearsals(pickle, TEMPLATES, 5, 2)
    asked = {qa.question for qa in train + held}
    assert "What is my terrier called?" in asked
    assert not [qa for qa in train + held if qa.answer.startswith("Your name is")]


def test_a_name_that_is_not_the_value_is_asked_once():
    """"My son Jonas is eleven": the age is what the memory holds, so most trained questions ask it; his name
    is asked once (taught twice as a name beside twice as an age, asked "How many years old is Jonas?" a
    small model said "20"). The age is asked by his name both as an age and as a noun ("What is Jonas's
    age?" -> "Jonas's age is eleven."; without it the model went on "The age of Jonas is" with 18). A name
    that is the value ("My husband is called Tomasz") is asked every way."""
    from memory.dreams import rehearsals

    train, _ = rehearsals(_said(1, "My son Jonas is eleven."), TEMPLATES, questions=5, probes=2)
    assert sum(qa.frame == "name" for qa in train) == 1, train
    assert sum(qa.value for qa in train) >= 3, train
    by_name = {qa.question: qa.answer for qa in train if "Jonas" in qa.question}
    assert by_name.get("How old is Jonas?") and by_name.get("What is Jonas's age?") == "Jonas's age is eleven.", train
    names, _ = rehearsals(_said(2, "My husband is called Tomasz."), TEMPLATES, questions=5, probes=2)
    assert sum(qa.frame == "name" for qa in names) >= 1 and all(qa.value for qa in names), names
