"""What kind of thing a noun names (`memory.kinds`), read from the real WordNet table `scripts/install.sh`
builds, and the dream questions asked with it (`memory.questions`)."""

from __future__ import annotations

import json

import pytest

from memory import kinds
from memory.questions import ask


@pytest.mark.parametrize("noun,expected", [
    ("terrier", "dog"), ("spaniel", "dog"), ("kiwi", "fruit"), ("mango", "fruit"), ("bassoon", "instrument"),
    ("cello", "instrument"), ("parrot", "bird"), ("salmon", "fish"), ("canoe", "boat"), ("golden retriever", "dog"),
])  # fmt: skip
def test_a_noun_s_everyday_kind(noun, expected):
    assert kinds.kind(noun) == expected


@pytest.mark.parametrize("noun", ["rabbit", "cat", "Pickle", "Kilkenny", "happiness", "wxyzzy", "job", "game", "trip",
                                  "course", "hobby", "film"])  # fmt: skip
def test_no_kind_for_a_basic_word_a_name_or_an_abstraction(noun):
    """A rabbit is WordNet's leporid, a lagomorph: no word people ask with. Names and abstract nouns have none,
    nor a word whose everyday sense is no thing: a job is work, not its rare artifact sense's "point"; a
    game is play, not "animal"; a course not "food" ("What point did I get tired of?" before)."""
    assert kinds.kind(noun) is None


@pytest.mark.slow
def test_the_table_is_built_where_it_is_looked_for(tmp_path):
    """`build` writes the table atomically (20-30 s: all of WordNet's nouns); its answers are `kind`'s."""
    out = kinds.build(tmp_path / "kinds.json")
    table = json.loads(out.read_text())
    assert table["kind"]["terrier"] == "dog" and len(table["kind"]) > 10_000
    assert "flat" in table["dwelling"] and "night" in table["time"] and "thriller" in table["writing"]
    assert "village" in table["location"] and "fjord" in table["location"] and "woman" not in table["location"]
    assert "swahili" in table["language"] and "welsh" in table["language"] and "oslo" not in table["language"]
    assert table["played"]["bass"] == "instrument" and table["played"]["chess"] == "game"
    assert table["measure"]["long"] == "length" and "grow_up" in table["phrasal"]
    assert not list(tmp_path.glob(".kinds-*"))  # no temporary file left behind
    assert kinds.table_path().is_file()


def test_groups_measures_and_phrasal_verbs():
    assert kinds.is_a("nights", "time") is False and kinds.is_a("night", "time")  # lemmas are looked up
    assert kinds.is_a("cottage", "dwelling") and not kinds.is_a("terrier", "dwelling")
    assert kinds.is_a("novel", "writing") and not kinds.is_a("kiwi", "writing")
    assert kinds.measure("deep") == "depth" and kinds.measure("purple") is None
    assert kinds.phrasal("grow", "up") and not kinds.phrasal("study", "up")
    assert kinds.makes("write") and kinds.makes("paint") and not kinds.makes("live")
    assert kinds.synonym("kid") == "child" and kinds.synonym("mom") is None  # "ma" is commoner, "mom" rare


def test_questions_ask_with_the_kind():
    asked = {qa.question: qa for qa in ask({"text": "The user plays the bassoon in a wind quintet."})}
    assert asked["What instrument do I play?"].expected == "bassoon"
    asked = {qa.question: qa for qa in ask({"text": "The user is allergic to kiwi."})}
    assert asked["What fruit am I allergic to?"].expected == "kiwi"
    asked = {qa.question: qa for qa in ask({"text": "The user has a golden retriever called Biscuit."})}
    assert asked["What is my dog's name?"].expected == "Biscuit" and asked["What is my dog called?"].frame == "name"
    # a name is never asked as a kind, nor a person
    asked = {qa.question for qa in ask({"text": "The user drives a Volvo."})} | \
        {qa.question for qa in ask({"text": "The user's sister is a nurse."})}  # fmt: skip
    assert not [q for q in asked if q.startswith(("What vehicle", "What professional", "What person"))]


def test_questions_inferred_from_what_the_statement_implies():
    """Who has a dwelling somewhere lives there; the person a writing is by wrote it; a measure's held-out
    frame names the measure, so "How long ...?" itself is trained; a time is never asked with "What"."""
    asked = {qa.question: qa for qa in ask({"text": "The user's sister Greta has a flat in Bergen."})}
    assert asked["Where does my sister live?"].expected == "Bergen" and "Where does Greta live?" in asked
    asked = {qa.question: qa for qa in ask({"text": "The user is reading a thriller by Mara Lindqvist at the moment."})}
    assert asked["Who wrote the thriller I am reading?"].expected == "Mara Lindqvist"
    assert not [q for q in asked if "at?" in q or q.startswith("When")]  # "at the moment" is no time to ask
    asked = {qa.question: qa for qa in ask({"text": "Lake Virsa is about 40 kilometres long."})}
    assert asked["What length is Lake Virsa?"].frame == "age" and asked["How long is Lake Virsa?"].frame == "wh"
    asked = {qa.question for qa in ask({"text": "The user has worked nights as a nurse for six years."})}
    assert "What have I worked as?" in asked and not [q for q in asked if "What have I worked as a nurse" in q]
    assert "What have I done for six years?" in asked
    asked = {qa.question for qa in ask({"text": "The user's daughter Liv is studying marine biology up in Tromsø."})}
    assert "Where is my daughter studying marine biology?" in asked and not [q for q in asked if q.endswith(" up?")]
    assert "Where did I grow up?" in {qa.question for qa in ask({"text": "The user grew up in Kilkenny."})}
    # spaCy reads "Ines Vallmoor" as an organisation; whoever wrote something is asked with "Who"
    assert "Who wrote the novel The Salt Orchard?" in {qa.question for qa in ask({"text": "Ines Vallmoor wrote the novel The Salt Orchard."})}
    assert "How many children do I have?" in {qa.question for qa in ask({"text": "The user has three kids."})}
    # not a dwelling, not a writing: nothing inferred
    asked = {qa.question for qa in ask({"text": "The user has a dog in Bergen."})} | \
        {qa.question for qa in ask({"text": "The user bought a kite by the sea."})}  # fmt: skip
    assert not [q for q in asked if q.endswith(" live?") or q.startswith("Who wrote")]


@pytest.mark.parametrize("noun,expected", [
    ("bass", "instrument"), ("trumpet", "instrument"), ("cello", "instrument"), ("tennis", "sport"),
    ("football", "sport"), ("chess", "game"), ("poker", "game"), ("happiness", None),
])  # fmt: skip
def test_what_is_played_is_an_instrument_a_sport_or_a_game(noun, expected):
    assert kinds.played(noun) == expected


@pytest.mark.parametrize("say,question,absent", [
    ("I play bass in a band called The Foxes.", "What instrument do I play?", "What fish do I play?"),
    ("My son Erik plays football for the school team.", "What sport does my son play?", "What ball does my son play?"),
    ("My wife plays chess online.", "What game does my wife play?", "What grass does my wife play?"),
])  # fmt: skip
def test_what_someone_plays_is_asked_by_what_is_played(say, question, absent):
    """The object of "play" is asked by what one plays, not by the noun's commonest kind: "bass" is first a
    fish, "football" a ball, "chess" a grass in WordNet."""
    from memory.extractor import ExtractorJudge
    from memory.verdicts import Context

    fact = next(v.fact for v in ExtractorJudge().judge(say, Context()) if v.fact is not None)
    asked = [qa.question for qa in ask(fact.model_dump())]
    assert question in asked and absent not in asked, asked


@pytest.mark.parametrize(("noun", "verb", "expected"), [
    ("wedding", "marry", True), ("flight", "fly", True), ("meeting", "meet", True), ("graduation", "graduate", True),
    ("concert", "marry", False), ("wedding", "fly", False), ("dog", "walk", False),
])  # fmt: skip
def test_an_event_noun_names_the_doing_of_its_verb(noun, verb, expected):
    """"The wedding got moved to 21 February" changes "... getting married on 14 February" (hippocampus)."""
    assert kinds.event_of(noun, verb) is expected


@pytest.mark.parametrize(("noun", "expected"), [("flight", True), ("meeting", True), ("wedding", True), ("dog", False),
                                                ("kitchen", False)])  # fmt: skip
def test_an_event_noun_is_known_as_one(noun, expected):
    assert kinds.is_event(noun) is expected
