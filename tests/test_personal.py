"""`memory.personal.asks_about_user`: the forms of a question asking for a fact about the asker against
first-person requests for help, with the real spaCy pipeline. (Sentences of their own: the benchmark's
file, benchmarks/data/personal_questions.yaml, is measured by `benchmarks.routing_bench`, not tested.)"""

from __future__ import annotations

import pytest

from memory.personal import asks_about_user


@pytest.mark.parametrize("question", [
    "What's my nephew called?",                 # the subject is the asker's
    "Who is my landlord?",
    "How old is my granddaughter?",             # "how" + adjective asks a fact
    "When is my father's retirement party?",    # owned through a possessive
    "What's the name of my village?",           # owned through "of"
    "Which bus do I take to work?",             # "I" is the subject
    "What town was I born in?",                 # passive
    "What food can't I have?",                  # "can't" states a fact
    "How many siblings do I have?",
    "Do I own a car?",                          # yes/no
    "Remind me where my cousin lives.",         # read through "remind me"
    "Tell me what my password hint is.",
    "Do you remember what my son's teacher is called?",
    "Do you know my middle name?",
])  # fmt: skip
def test_questions_about_the_asker(question):
    assert asks_about_user(question)


@pytest.mark.parametrize("question", [
    "How do I make my tomatoes grow faster?",   # how-to
    "Why does my printer keep jamming?",        # why
    "What should I wear to my interview?",      # modal: advice
    "Where can I park near my office?",
    "Could I use vinegar on my windows?",
    "What do I need to renew my passport?",     # purpose
    "Can you summarise my notes?",              # a request to the assistant
    "Please proofread my essay.",               # an imperative
    "Give me a recipe for my lunchbox.",
    "What's a nice gift for my teacher?",       # an open choice
    "What's the best way for me to save money?",
    "My brother lives in Cork.",                # a statement, not a question
    "What is the capital of Peru?",             # not first person
    "Do you like jazz?",
    "How far is our moon from the sun?",        # "we"/"our": as often everyone as the asker
    "Why do we dream?",
])  # fmt: skip
def test_first_person_requests_and_other_questions(question):
    assert not asks_about_user(question)
