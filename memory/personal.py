"""Does a question ask for something about the asker? ("What's my trade?", "Which instrument do I play?")

The router (memory/routing.py) sends a question to the user's adapter when it is near a memory's keys.
Some questions about the user share no words and little meaning with the questions a sleep trained on
("What's my trade?" is 0.41 from "What is my job?", "What fruit can't I eat?" 0.47 from the allergy's
questions): they went to the base model, which cannot know the answer and invents one. A question that
asks for a fact about the asker, their people or their things can only be answered from their
memories, so the router sends it to their adapter even when no key is near.

Read from the dependency parse of the question's main clause (spaCy): it is about the asker when its
subject is "I" ("Which instrument do I play?", "What town was I raised in?") or its subject or
complement is the asker's ("Who is my wife?", "When is my mother's birthday?", "What's the name of my
street?"). First person is not enough: people ask for help in the first person, and those questions go
to the base model -- a modal ("What should I cook?", "Where can I buy ...?"; "can't" states a fact:
"What fruit can't I eat?"), a how-to or a why ("How do I reset my router?", "Why does my bread never
rise?"; "How old is my son?" asks a fact), a purpose or condition ("What do I need to start a garden?",
"... if I'm in Chicago?"), a request to the assistant ("Can you recommend a book for my commute?",
"Help me plan my week.") or an open choice ("What's a good name for my puppy?"), and so does a
statement or thought ending in a question mark ("I'm curious whether you know a good film?", "I baked
bread today - want the recipe?": the clause must open with a wh-word or an auxiliary). "Remind me ...",
"Tell me ...", "Do you remember/know ..." are read through to the clause they introduce.

Measured on first-person questions written before this rule and never changed to suit it
(benchmarks/data/personal_questions.yaml, `python -m benchmarks.routing_bench`): BENCHMARKS.md, "Routing".
"""

from __future__ import annotations

from memory.language import parse

# singular only: "we" and "our" are as often everyone ("Which planet do we live on?", "the smallest planet
# in our solar system" -- general prompts of the anchors file that the plural sent to the adapter)
FIRST = {"i"}
POSSESSIVE = {"my", "mine"}
RECALL_VERBS = {"remember", "know", "recall"}  # "Do you remember where I work?"
TELL_VERBS = {"remind", "tell"}  # "Remind me what my daughter studies."
OPEN_CHOICE = {"a", "an", "some", "good", "best", "nice", "great", "polite", "easy", "quick", "cheap", "safe",
               "better", "fun", "right"}  # fmt: skip


def asks_about_user(text: str) -> bool:
    """True when `text` is a question (or "remind/tell me ...") asking for a fact about the asker."""
    [doc] = parse([text])
    sents = list(doc.sents)
    if not sents:
        return False
    sent = sents[-1]  # the question is the last sentence: "I'm planning dinner. What should I cook?"
    root = sent.root
    question = sent.text.rstrip().endswith("?")
    clause = root
    if root.lemma_.lower() in TELL_VERBS and not _subject(root):  # imperative "Remind me what ..."
        clause = _inner(root)
        if clause is None:  # "Tell me my daughter's name."
            return _owned(root, ("dobj",))
    elif _is_you(_subject(root)) and root.lemma_.lower() in RECALL_VERBS:
        inner = _inner(root)
        if inner is None:  # "Do you know my name?"
            return question and _owned(root, ("dobj",))
        clause = inner
    elif not question or not _interrogative(root):
        return False
    return _asks_a_fact(clause) and _about_first_person(clause)


def _subject(verb):
    return next((c for c in verb.children if c.dep_ in ("nsubj", "nsubjpass", "expl")), None)


def _is_you(token) -> bool:
    return token is not None and token.lower_ == "you"


def _inner(verb):
    """The clause a "remind me" / "do you remember" introduces."""
    return next((c for c in verb.children if c.dep_ in ("ccomp", "xcomp", "advcl", "dobj") and c.pos_ in ("VERB", "AUX", "NOUN")
                 and any(g.dep_ in ("nsubj", "nsubjpass", "attr", "dobj", "advmod") for g in c.children)), None)  # fmt: skip


def _interrogative(verb) -> bool:
    """Asked as a question: the clause (after any "Btw, ..." before a comma) opens with a wh-word or an
    auxiliary ("Which ...?", "Do I ...?"), not a statement with a tag ("I baked bread today - want the
    recipe?") or a thought ("I'm curious whether you know a good film?")."""
    tokens = [t for t in verb.subtree if not t.is_space]
    before = [i for i, t in enumerate(tokens) if t.text == "," and t.i < verb.i]
    first = tokens[before[-1] + 1] if before else tokens[0]
    return first.tag_ in ("WDT", "WP", "WP$", "WRB") or first.pos_ == "AUX" or first.tag_ == "MD"


def _asks_a_fact(verb) -> bool:
    """Not a request for help: no modal (but "can't"), no how-to or why, no purpose or condition clause,
    not addressed to "you" (anywhere in it: "..., what do you think?"), not an imperative."""
    if any(t.lower_ == "you" and t.dep_ in ("nsubj", "nsubjpass") for t in verb.subtree):
        return False
    children = list(verb.children)
    negated = any(c.dep_ == "neg" for c in children)
    for c in children:
        if c.dep_ == "aux" and c.tag_ == "MD" and not (negated and c.lemma_.lower() == "can"):
            return False
        if c.dep_ == "advmod" and c.lower_ in ("how", "why"):
            return False  # "How do I ...?" (but "How old is ...?": there "how" modifies the adjective)
        if c.dep_ in ("xcomp", "advcl") and c.pos_ in ("VERB", "AUX"):
            return False  # "What do I need to start ...?", "... if I'm in Chicago?"
    subject = _subject(verb)
    if _is_you(subject):
        return False
    if subject is None and verb.tag_ == "VB" and not any(c.dep_ == "aux" for c in children):
        return False  # an imperative: "Help me plan my week."
    return True


def _about_first_person(verb) -> bool:
    if any(c.dep_ in ("nsubj", "nsubjpass") and c.lower_ in FIRST for c in verb.children):
        return True  # "What town was I raised in?" (spaCy: "town" nsubjpass, "I" nsubj)
    return _owned(verb, ("nsubj", "nsubjpass", "attr"))


def _owned(verb, deps: tuple[str, ...]) -> bool:
    """One of the clause's `deps` is the asker's ("my wife", "my mother's birthday", "the name of my
    street") and is not an open choice ("a good name for my puppy")."""
    for c in verb.children:
        if c.dep_ not in deps or c.pos_ not in ("NOUN", "PROPN", "PRON"):
            continue
        if any(t.lower_ in OPEN_CHOICE for t in c.children if t.dep_ in ("det", "amod")):
            continue
        if any(t.lower_ in POSSESSIVE for t in c.subtree if t.dep_ == "poss"):
            return True
    return False
