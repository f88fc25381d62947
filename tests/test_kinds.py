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


@pytest.mark.parametrize("noun", ["rabbit", "cat", "Pickle", "Kilkenny", "happiness", "wxyzzy"])
def test_no_kind_for_a_basic_word_a_name_or_an_abstraction(noun):
    """A rabbit is WordNet's leporid, a lagomorph: no word people ask with. Names and abstract nouns have none."""
    assert kinds.kind(noun) is None


@pytest.mark.slow
def test_the_table_is_built_where_it_is_looked_for(tmp_path):
    """`build` writes the table atomically (20-30 s: all of WordNet's nouns); its answers are `kind`'s."""
    out = kinds.build(tmp_path / "kinds.json")
    table = json.loads(out.read_text())
    assert table["terrier"] == "dog" and len(table) > 10_000
    assert not list(tmp_path.glob(".kinds-*"))  # no temporary file left behind
    assert kinds.table_path().is_file()


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
