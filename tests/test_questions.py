"""The dream question generator (`memory.questions`) on sentences people say, read by the real reader.

Labelled examples (`tests/data/questions_dev.yaml`, `questions_heldout.yaml`) were written before the
generator: what a user says, and questions a person would later ask about it with the words a right
answer holds. For each such question the generator must have asked one near it (all-MiniLM-L6-v2 cosine
>= NEAR, the router's own measure) whose answer holds those words. The held-out file was not looked at
while the generator was tuned (measured once, after: 0.74 against the dev file's 0.89; BENCHMARKS.md)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from memory.answers import recall_hit
from memory.dreams import rehearsals
from memory.embeddings import Embedder
from memory.extractor import ExtractorJudge
from memory.questions import ask
from memory.times import absolute
from memory.verdicts import Context
from sleeptrain_agent.config import data

DATA = Path(__file__).parent / "data"
TEMPLATES = data("qa_templates.yaml")
NEAR = 0.75


NOW = dt.datetime(2026, 12, 5, 9, 30, tzinfo=dt.UTC)  # when the labelled sentences are said and asked about


def memories(text: str) -> list[dict]:
    return [v.fact.model_dump() for v in ExtractorJudge().judge(text, Context(when=NOW)) if v.fact is not None]


def fact(text: str) -> dict:
    return {**memories(text)[0], "id": 1, "user": "u"}


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


def coverage(name: str, embedder) -> tuple[float, list]:
    hits, misses = 0, []
    items = yaml.safe_load((DATA / name).read_text())
    for item in items:
        generated = []
        for i, m in enumerate(memories(item["say"])):
            train, held = rehearsals({**m, "id": i, "user": "u"}, TEMPLATES, questions=99, probes=2)
            generated += train + held
        for question, expected in item["ask"].items():
            good = [qa for qa in generated if recall_hit(qa.answer, str(expected))]
            if good:  # asked as the agent passes a question on: its relative times as dates
                sims = embedder.encode([absolute(question, NOW)]) @ embedder.encode([qa.question for qa in good]).T
                if float(sims.max()) >= NEAR:
                    hits += 1
                    continue
            misses.append((item["say"], question))
    return hits / sum(len(i["ask"]) for i in items), misses


@pytest.mark.parametrize("name,least", [("questions_dev.yaml", 0.85), ("questions_heldout.yaml", 0.7)])
def test_people_s_questions_are_near_a_generated_one(name, least, embedder):
    share, misses = coverage(name, embedder)
    assert share >= least, len(misses)  # the held-out misses are not printed: they are not to be tuned on


def test_wh_questions_from_the_parse():
    asked = {qa.question: qa for qa in ask(fact("My daughter Liv is studying marine biology in Tromsø."))}
    assert asked["Where is my daughter studying marine biology?"].expected == "Tromsø"
    assert asked["What is my daughter's name?"].expected == "Liv"
    assert asked["What is my daughter studying in Tromsø?"].value  # the memory's own value
    assert all(qa.answer == "Your daughter Liv is studying marine biology in Tromsø." for qa in asked.values()
               if qa.frame not in ("yesno", "name"))  # fmt: skip
    assert asked["What is my daughter's name?"].answer == "Your daughter is called Liv."  # a name, as names are asked
    aged = {qa.question: qa.answer for qa in ask(fact("My niece just turned seven."))}
    assert aged["How old is my niece?"] == "Your niece is seven years old."  # an age, as ages are asked
    assert {qa.question: qa.answer for qa in ask(fact("Our son Jonas is eleven."))}["How old is Jonas?"] == \
        "Your son Jonas is eleven years old."  # fmt: skip
    # the age asked as a noun, answered in that frame, with the verb a plural takes
    assert aged["What is my niece's age?"] == "Your niece's age is seven."
    assert {qa.question: qa.answer for qa in ask(fact("Our son Jonas is eleven."))}["What is Jonas's age?"] == \
        "Jonas's age is eleven."  # fmt: skip
    twins = {qa.question: qa.answer for qa in ask(fact("Our twins turned four in May."))}
    assert twins["How old are my twins?"] == twins["What are my twins' ages?"] == "Your twins are four years old."
    assert {qa.question: qa.answer for qa in ask(fact("I'm 34."))}["What is my age?"] == "Your age is 34."
    assert "How many cats do I have?" in {qa.question for qa in ask(fact("I have two cats."))}
    assert "What am I allergic to?" in {qa.question for qa in ask(fact("I'm allergic to shellfish."))}
    assert "In which village was I raised?" in {qa.question for qa in ask(fact("I was raised in a village called Alby."))}
    assert "Who wrote the novel Glass Harbour?" in {qa.question for qa in ask(fact("Anja Rusk wrote the novel Glass Harbour."))}


def test_probes_are_asked_in_a_frame_no_trained_question_uses():
    for text in ("My daughter Liv is studying marine biology in Tromsø.", "I was raised in a village called Alby.",
                 "My niece is seven.", "I play the trumpet in a brass band."):  # fmt: skip
        train, held = rehearsals(fact(text), TEMPLATES, questions=5, probes=2)
        assert held and train
        assert {qa.frame for qa in held} <= {"which", "cleft", "age", "template"}
        assert not {qa.question for qa in held} & {qa.question for qa in train}
        assert all(recall_hit(qa.answer, qa.expected) for qa in train + held)


def test_a_sentence_without_a_clause_gets_no_parsed_questions():
    assert ask({"text": "Pickles.", "subject": "user"}) == []
    assert ask({"text": "", "subject": "user"}) == []


def test_we_said_as_the_user_and_someone_of_theirs_is_asked_as_we():
    """The reader writes "We have three kids." (after the husband was named) as "The user and the user's
    husband Tomasz have ...": the whole conjunct is "we", never "we my" (a bug the natural profile's dreams
    showed: "How many kids do we my have?")."""
    for text, question in (("The user and the user's wife Mei have two dogs.", "How many dogs do we have?"),
                           ("The user and the user's brother Ola went to Rome in 2019.", "Where did we go in 2019?"),
                           ("The user and their family adopted a terrier.", "What did we adopt?")):  # fmt: skip
        asked = [qa.question for qa in ask({"text": text, "subject": "user", "value": "x"})]
        assert question in asked, asked
        assert not any(" my " in q or q.endswith(" my?") for q in asked), asked


def test_a_name_that_opens_the_statement_keeps_its_case_where_a_question_moves_it():
    """A sentence's first word is lowercased where a question moves it ("Water boils ..." -> "What does
    water boil at?"), but a name keeps its case even where the tagger does not read it as a name: a probe
    "In which place does quindle1 live?" is not the name the user said."""
    asked = [qa.question for qa in ask({"text": "Quindle1 lives in Lund.", "subject": "Quindle1", "value": "Lund"})]
    assert "In which place does Quindle1 live?" in asked and not any("quindle1" in q for q in asked), asked
    asked = [qa.question for qa in ask({"text": "Water boils at 100 degrees.", "subject": "water", "value": "100"})]
    assert any(q.startswith("What does water boil") for q in asked), asked


@pytest.mark.parametrize("text,value,question,expected", [
    # a count is answered by its number, in whatever words the answer counts with
    ("The user and the user's husband Tomasz have three kids.", "three kids", "How many children do I have?", "three"),
    # who works as something has it as their job
    ("The user has worked nights as a nurse at the county hospital for six years now.", "nurse", "What is my job?", "nurse"),
    ("The user is employed as a park ranger.", "park ranger", "What do I do for a living?", "park ranger"),
    ("The user's sister Greta works as a software engineer in Oslo.", "software engineer", "What is my sister's job?",
     "software engineer"),
    # someone else's name said with a role is asked with the name alone
    ("The poet Bram Okonkwo won the Halden Prize in 2019.", "Halden Prize", "What did Bram Okonkwo win in 2019?",
     "Halden Prize"),
    ("Teodor Quist, the painter, was born in Visby.", "Visby", "Where was Teodor Quist born?", "Visby"),
])  # fmt: skip
def test_questions_people_ask_that_the_statement_does_not_word(text, value, question, expected):
    asked = {qa.question: qa for qa in ask({"text": text, "subject": "user", "value": value})}
    assert question in asked, sorted(asked)
    assert asked[question].expected == expected and asked[question].value



@pytest.mark.parametrize("text,value,question,answer", [
    ("The user has a golden retriever called Biscuit.", "Biscuit", "What is my dog called?", "Your dog is called Biscuit."),
    ("The user named their new hamster Nibbles.", "Nibbles", "What is my hamster's name?",
     "Your hamster is called Nibbles."),
    ("The user's old grey rabbit is called Clover.", "Clover", "What is my rabbit's name?", "Your rabbit is called Clover."),
    ("The user's daughter has a parrot named Captain Hook.", "Captain Hook", "What is my daughter's parrot called?",
     "Your daughter's parrot is called Captain Hook."),
    # someone of the user's named in apposition: the name asked is answered as a name, not with the rest
    ("The user's son Jonas is eleven.", "eleven", "What is my son's name?", "Your son is called Jonas."),
])  # fmt: skip
def test_a_named_thing_is_answered_in_the_frame_it_is_asked_in(text, value, question, answer):
    """A name is answered the way the other names of the user's are ("Your cat is called Miso."), not with the
    statement's own frame: taught "You named the terrier Pickle" and "Your cat is called Miso", SmolLM2 asked
    "What's my dog called?" went on "Your dog is called" with the cat's name (natural runs 12-19). Whose the
    thing is stays as said: the daughter's parrot is not the user's."""
    asked = {qa.question: qa for qa in ask({"text": text, "subject": "user", "value": value})}
    assert question in asked, sorted(asked)
    name = answer.removesuffix(".").rsplit(" is called ", 1)[1]
    assert asked[question].answer == answer and asked[question].expected == name
    assert not any(q.startswith("What is my parrot") for q in asked), sorted(asked)


@pytest.mark.parametrize("text,you,answer", [
    # a job said another way is answered with the job first, then the memory's words
    ("The user has worked nights as a nurse at the county hospital for six years now.",
     "You have worked nights as a nurse at the county hospital for six years now.",
     "You work as a nurse. You have worked nights as a nurse at the county hospital for six years now."),
    ("The user is employed as an air traffic controller.", "You are employed as an air traffic controller.",
     "You work as an air traffic controller. You are employed as an air traffic controller."),
    # said that way already: the memory's words alone
    ("The user's sister Greta works as a software engineer in Oslo.",
     "Your sister Greta works as a software engineer in Oslo.", "Your sister Greta works as a software engineer in Oslo."),
])  # fmt: skip
def test_a_job_is_answered_as_a_job(text, you, answer):
    """Taught only "You have worked nights as a nurse ...", SmolLM2 asked "What do I do for work?" went on "You
    work out ..." (natural runs 20-21): the job questions' answers say the job in the words they ask with."""
    asked = [qa for qa in ask({"text": text, "subject": "user", "you": you}) if qa.question.endswith(("job?", "living?"))]
    assert len(asked) >= 2 and all(qa.answer == answer for qa in asked), [(qa.question, qa.answer) for qa in asked]


@pytest.mark.parametrize("say,question,expected,answer", [
    ("My husband is called Tomasz.", "Who is my husband?", "Tomasz", "Your husband is called Tomasz."),
    ("My husband is called Tomasz.", "Who am I married to?", "Tomasz", "You are married to Tomasz."),
    ("My wife Astrid is a dentist.", "Who am I married to?", "Astrid", "You are married to Astrid."),
    ("My boss is a woman called Ingrid.", "Who is my boss?", "Ingrid", "Your boss is called Ingrid."),
    ("My partner's name is Sam.", "Who is my partner?", "Sam", "Your partner is called Sam."),
    ("I'm married to a man called Piotr.", "Who am I married to?", "Piotr", "You are married to a man called Piotr."),
])  # fmt: skip
def test_someone_of_the_user_s_is_asked_who_they_are(say, question, expected, answer):
    """"Who is my husband?" asks for a name however it was said (in apposition, "is called", "'s name is",
    "a woman called ..."); a spouse is who the user is married to. The name is the memory's value where the
    statement gives it to a person noun, whatever entity type the tagger gave the name (Ingrid: a building)."""
    m = fact(say)
    asked = {qa.question: qa for qa in ask(m)}
    assert question in asked, sorted(asked)
    assert asked[question].expected == expected and asked[question].answer == answer
    assert m["value_type"] in ("person", "name", "thing"), m  # never a place
    assert not any(q.startswith(("Where", "Who is my partner's name")) for q in asked), sorted(asked)


def test_only_the_user_s_own_spouse_is_who_they_are_married_to():
    asked = [qa.question for qa in ask(fact("My sister's husband is called Olek."))]
    assert "Who is my sister's husband?" in asked and "Who am I married to?" not in asked, asked


def test_a_subject_the_parser_hangs_from_the_auxiliary_is_still_the_subject():
    """en_core_web_sm parses "The user is engaged to Marta" with *user* under *is*, not the verb: the
    statement is still asked about, in the first person."""
    asked = [qa.question for qa in ask(fact("I'm engaged to Marta."))]
    assert "Am I engaged to Marta?" in asked, asked


def test_a_verb_the_tagger_made_an_auxiliary_is_asked_as_a_verb():
    asked = [qa.question for qa in ask(fact("My dog Rex loves chasing squirrels."))]
    assert "What does my dog love chasing?" in asked and "What is my dog's name?" in asked, asked
    assert not any(q.startswith(("Loves", "What loves")) for q in asked), asked


@pytest.mark.parametrize("say, question, expected", [
    ("I'm engaged to Marta.", "Who am I engaged to?", "Marta"),  # Marta: a GPE to the tagger
    ("I married Marta last year.", "Who did I marry?", "Marta"),
    ("My brother is married to Ines.", "Who is my brother married to?", "Ines"),
    ("I divorced Ines in 2019.", "Who did I divorce?", "Ines"),
    ("I got engaged to Marta.", "Who did I get engaged to?", "Marta"),  # "got" the root, "engaged" its complement
    ("I'm dating Marta.", "Who am I dating?", "Marta"),  # Marta parsed an adverbial of "dating"
])  # fmt: skip
def test_whom_someone_marries_is_a_person_whatever_the_tagger_says(say, question, expected):
    """The object of marrying, being engaged to or divorcing is a person: asked "Who", typed a person, never
    asked "Where" or "What" (the tagger calls Marta a city: "Where am I engaged?", "What did I marry?")."""
    m = fact(say)
    asked = {qa.question: qa for qa in ask(m)}
    assert question in asked and asked[question].expected == expected, sorted(asked)
    assert m["value_type"] == "person" and m["value"] == expected, m
    assert not any(q.startswith(("Where", "What did I marry", "What did I divorce", "What am", "To which place"))
                   for q in asked), sorted(asked)  # fmt: skip


@pytest.mark.parametrize("say, question, answer", [
    ("I'm married to a guy called Rafael.", "What is my husband called?", "Your husband is called Rafael."),
    ("I'm engaged to a woman named Ines.", "What is my fiancée's name?", "Your fiancée is called Ines."),
    ("My brother is seeing a girl called Noor.", "What is my brother's girlfriend called?",
     "Your brother's girlfriend is called Noor."),  # "seeing" someone: dating
    ("I'm seeing a therapist named Ruth.", "What is my therapist called?", "Your therapist is called Ruth."),  # not
    ("My sister is married to a man called Tomasz.", "What is my sister's husband called?",
     "Your sister's husband is called Tomasz."),
    ("My boss is a woman called Ingrid.", "What is my boss's name?", "Your boss is called Ingrid."),
])  # fmt: skip
def test_a_person_named_through_a_noun_is_asked_by_who_they_are_to_the_user(say, question, answer):
    """"married to a guy called Rafael" names the user's husband, not "my guy" ("What is my representation's
    name?": WordNet's kind of a guy); "my boss is a woman called Ingrid" names the boss, not "my boss' woman";
    a person is never asked by a WordNet kind (a boss's is a group)."""
    asked = {qa.question: qa for qa in ask(fact(say))}
    assert question in asked and asked[question].answer == answer, sorted(asked)
    assert not [q for q in asked if any(w in q for w in ("guy", "woman", "man's", "man called", "group", "representation"))
                and q.startswith("What is")], sorted(asked)  # fmt: skip


def test_a_passive_with_get_is_asked_with_do():
    asked = [qa.question for qa in ask(fact("I got engaged to Paris Hilton."))]
    assert "Who did I get engaged to?" in asked and "Did I get engaged to Paris Hilton?" in asked, asked
    assert not any(q.startswith(("Got", "Where got")) for q in asked), asked
    assert "When did my sister get married?" in [qa.question for qa in ask(fact("My sister got married in June."))]


@pytest.mark.parametrize("say, verb, wrong", [
    ("My aunt rides horses.", "What does my aunt ride?", "rid"),
    ("I hate celery.", "What do I hate?", "hat"),
    ("My grandmother bathes the dog.", "What does my grandmother bathe?", "bath"),
    ("Mira hopes to visit Lima.", "What does Mira hope to do?", "hop"),
])  # fmt: skip
def test_a_verb_is_asked_by_its_own_lemma(say, verb, wrong):
    """en_core_web_sm's rule lemmatizer strips a third person's -s from verbs in -e as from nouns ("The user
    hates celery": *hat*; asked "What do I hat?"); a verb's lemma is lemminflect's where they disagree."""
    asked = [qa.question for qa in ask(fact(say))]
    assert verb in asked, asked
    assert not any(wrong in q.rstrip("?").split() for q in asked), asked


@pytest.mark.parametrize("say, value, question", [
    ("My favourite film is Spirited Away.", "Spirited Away", "What is my favourite film?"),  # an adjective, an adverb
    ("Our favourite show is Breaking Bad.", "Breaking Bad", "What is my favourite show?"),  # "is" Breaking's auxiliary
    ("My favourite band is Belle and Sebastian.", "Belle and Sebastian", "What is my favourite band?"),
    ("My favourite song is Let It Be.", "Let It Be", "What is my favourite song?"),
])  # fmt: skip
def test_a_title_after_is_is_one_name(say, value, question):
    """A title the tagger reads as words ("Spirited Away": no complement at all, nothing stored; "Kings of
    Convenience": stored as "Kings") is the whole value, a name, never a person ("Who is my favourite film?")."""
    m = fact(say)
    assert m["value"] == value and m["value_type"] == "name", m
    asked = {qa.question: qa for qa in ask(m)}
    assert question in asked and asked[question].expected == value, sorted(asked)
    assert not any(q.startswith("Who") for q in asked), sorted(asked)


@pytest.mark.parametrize("say, present", [
    ("I lived in Lisbon for six years.", "You live in Lisbon."),
    ("My grandfather was a carpenter.", "Your grandfather works as a carpenter."),
    ("I used to work as a postman.", "You work as a postman."),
    ("My aunt was living in Cork back then.", "Your aunt lives in Cork."),
    ("I'll be moving to Tallinn after the summer.", "You live in Tallinn."),
    ("If the offer is good I'm going to work as a pharmacist.", "You work as a pharmacist."),
    ("Once my contract ends we are relocating to Malta.", "You live in Malta."),
])  # fmt: skip
def test_a_state_said_in_the_past_is_never_answered_in_the_present(say, present):
    """The relation templates say what holds now ("Where do I live?" -> "You live in Lisbon."): a state the
    user said in the past may be over, one still to come has not begun (a plan, a condition), so its memory
    is asked and answered in its own tense only."""
    m = fact(say)
    train, held = rehearsals(m, TEMPLATES, questions=99, probes=2)
    assert train and all(present not in qa.answer for qa in train + held), [(q.question, q.answer) for q in train + held]


def test_a_change_said_in_the_past_still_says_what_holds_now():
    train, _ = rehearsals(fact("I moved to Lisbon in 2021."), TEMPLATES, questions=99, probes=2)
    assert ("Where do I live?", "You live in Lisbon.") in [(qa.question, qa.answer) for qa in train]
    asked = {qa.question: qa.answer for qa in ask(fact("My grandfather was a carpenter."))}
    assert asked["What was my grandfather's job?"] == asked["What did my grandfather do for a living?"] == \
        "Your grandfather was a carpenter."  # fmt: skip
    asked = {qa.question: qa.answer for qa in ask(fact("My aunt worked as a midwife."))}
    assert asked["What was my aunt's job?"] == "Your aunt worked as a midwife.", asked


@pytest.mark.parametrize("say, question, expected", [
    ("I'm learning Swahili at night school.", "What language am I learning?", "Swahili"),
    ("My wife speaks German.", "What language does my wife speak?", "German"),
    ("My dad supports Celtic.", "Which team does my dad support?", "Celtic"),
    ("I've been a nurse for twelve years.", "How long have I been a nurse?", "twelve years"),
    ("My son has played chess for three years.", "How long has my son played chess?", "three years"),
    ("I'm saving up for a trip to Chile.", "What am I saving up for?", "trip to Chile"),
])  # fmt: skip
def test_what_a_name_or_a_phrase_is_asked_by(say, question, expected):
    """A language is asked as a language, a team supported as a team, a duration with "How long", and a
    thing somewhere as the thing ("saving up for a trip to Chile" was "Where am I saving up?")."""
    m = fact(say)
    asked = {qa.question: qa for qa in ask(m)}
    assert question in asked and set(asked[question].expected.split()) <= set(expected.split()), sorted(asked)
    assert not any(q.startswith("Where") for q in asked if "Chile" in say), sorted(asked)
    assert not [q for q in asked if q.startswith("What") and q.endswith(" for?") and "years" in say], sorted(asked)


def test_nothing_is_done_in_a_passive():
    asked = [qa.question for qa in ask(fact("I was born on 9 June 1987."))]
    assert "When was I born?" in asked and not any(" do " in q for q in asked), asked


def test_a_number_that_names_one_is_not_a_count():
    asked = {qa.question: qa for qa in ask(fact("My daughter takes the 42 bus to school."))}
    assert asked["What bus does my daughter take to school?"].expected == "42 bus", sorted(asked)
    assert not [q for q in asked if q.startswith("How many")], sorted(asked)
    assert "How many dogs do I have?" in {qa.question for qa in ask(fact("I have one dog."))}


def test_the_user_in_a_clause_of_its_own_is_asked_as_i():
    """"when the user was a student" asked "when I was a student" (was "when me was"), "now that the user is
    working" asked "now that I am working" (was "I is"); the answers say "you were", "you are"."""
    by_question = {qa.question: qa for qa in ask(fact("When I was a student, I lived in Bremen."))}
    assert "Where did I live when I was a student?" in by_question, sorted(by_question)
    assert not any(" me was" in q or q.endswith("when I was?") for q in by_question), sorted(by_question)
    assert all("you was" not in qa.answer for qa in by_question.values())
    asked = [qa.question for qa in ask(fact("I sleep badly now that I'm working nights."))]
    assert "Do I sleep badly now that I am working nights?" in asked and not any(" I is " in q for q in asked), asked
    # what a "now that" clause says the user is, is a memory of its own (a job: the templates ask it as one)
    found = memories("I love my new job now that I'm a supervisor.")
    assert ("occupation", "supervisor") in [(m["relation"], m["value"]) for m in found], found
    asked = [qa.question for m in found for qa in ask({**m, "id": 1, "user": "u"})]
    assert "Am I a supervisor?" in asked and not any("that I am?" in q for q in asked), asked
