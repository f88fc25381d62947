"""What a right answer is: one definition for the sleep gate, the Sleep Benchmark and the tests.

Text is compared through `words()`: lowercase, punctuation dropped, articles
and possessive fillers ("my", "the", "user's") dropped, ordinals and number
words folded to digits ("4th" and "fourth" -> "4", "seven" -> "7",
"twenty-one" -> "21"). On top of that:

- `recall_hit(answer, expected, forbidden)`: every word of the expected value
  appears in the answer (and, for a correction, the old value does not);
- `keyword_hit(answer, alternatives)`: every word of *some* alternative
  appears (the benchmark's keyword score);
- `locality_hit(answer, alternatives)`: a general question answered right,
  judged on the answer's *first sentence* only (a small model's 64-token
  answers ramble; a right word in the rambling is luck);
- `first_sentence`, `sentences_only`: the cuts used above and for anchors;
- `SENTENCE_STOPS`, `stopped_short`: stop strings that end a generation at
  its first sentence (all `locality_hit` reads), and whether one fired where
  `first_sentence` would not cut (after an initial or a title).

`norm()` is the comparison key the hippocampus uses for subjects and values.
"""

from __future__ import annotations

import re

_FILLERS = frozenset(("a", "an", "the", "my", "user", "user's", "s"))
_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
             "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
             "twentieth": 20, "thirtieth": 30}  # fmt: skip
NUMBER_WORDS: dict[str, int] = {w: i for i, w in enumerate(_UNITS)} | _TENS | {"hundred": 100, "dozen": 12}
_SENTENCE_END = re.compile(r"(?<!\b[A-Z]\.)(?<!\bDr\.)(?<!\bMr\.)(?<!\bMs\.)(?<!\bSt\.)(?<=[.!?])\s+")
# where `_SENTENCE_END` cuts, as stop strings (a generation stopped by one ends without it); four, the most
# vLLM's OpenAI API takes: a sentence ending "!\n" or "?\n" runs on to the next stop, and `first_sentence`
# still cuts it there
SENTENCE_STOPS = (". ", ".\n", "! ", "? ")
_NOT_AN_END = re.compile(r"(?:\b[A-Z]|\bDr|\bMr|\bMs|\bSt)$")  # the text before a stop that `_SENTENCE_END` skips


def _fold_numbers(tokens: list[str]) -> list[str]:
    """Number words and ordinals to digits; "twenty one" / "twenty-first" -> "21"."""
    out: list[str] = []
    for token in tokens:
        value = NUMBER_WORDS.get(token, _ORDINALS.get(token))
        if value is None:
            m = re.fullmatch(r"(\d+)(?:st|nd|rd|th)", token)
            out.append(m[1] if m else token)
            continue
        if out and value < 10 and out[-1].isdigit() and int(out[-1]) in _TENS.values():
            out[-1] = str(int(out[-1]) + value)  # twenty one -> 21
        else:
            out.append(str(value))
    return out


def words(text: str) -> list[str]:
    """The comparison words of a text (see the module docstring)."""
    text = re.sub(r"[^\w\s]", " ", str(text).lower().replace("-", " "))
    return _fold_numbers([w for w in text.split() if w not in _FILLERS])


def norm(text: str) -> str:
    """Comparison key for subjects and values: `words()` joined by single spaces."""
    return " ".join(words(text))


def _contains(got: str, phrase: str) -> bool:
    return all(f" {w} " in got for w in phrase.split())


def recall_hit(answer: str, expected: str, forbidden: str | list[str] | None = None) -> bool:
    """The expected value's words appear in the answer, and none of the forbidden values do (a
    correction's old value, the value of a memory of the same frame: the dog's name asked for the cat's)."""
    got = f" {norm(answer)} "
    ok = _contains(got, norm(expected))
    for value in [forbidden] if isinstance(forbidden, str) else (forbidden or []):
        if ok and value and norm(value) != norm(expected):
            ok = f" {norm(value)} " not in got
    return ok


def keyword_hit(answer: str, alternatives: list) -> bool:
    """Every word of some accepted alternative appears in the answer."""
    got = f" {norm(answer)} "
    return any(_contains(got, norm(str(alt))) for alt in alternatives if norm(str(alt)))


def first_sentence(text: str) -> str:
    """The answer's first sentence (initials like "J.R.R." and titles like "Dr." do not end one)."""
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0]


def stopped_short(text: str) -> bool:
    """A generation that `SENTENCE_STOPS` ended may have stopped inside its first sentence: after an
    initial or a title ("J. R. R. Tolkien", "Dr. Watson"), where `first_sentence` does not cut; such
    an answer is asked again without the stops. (A stop after "I" is asked again too: harmless.)"""
    return bool(_NOT_AN_END.search(text))


def locality_hit(answer: str, alternatives: list) -> bool:
    """A general question answered right: an accepted alternative in the *first sentence*. A small
    model's answers ramble ("The closest star is Proxima Centauri ... However, the Sun"); counting a
    right word in the rambling would make locality measure luck."""
    return keyword_hit(first_sentence(answer), alternatives)


def sentences_only(text: str) -> str:
    """The text up to its last complete sentence (answers cut at a token limit end mid-sentence)."""
    text = text.strip()
    cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
    if text[-1:] in ".!?":
        return text
    return text[: cut + 1] if cut > 0 else ""
