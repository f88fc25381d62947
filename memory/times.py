"""Relative times in what people say, resolved against the moment they said it.

"yesterday", "last month", "next Friday", "two years ago", "last spring" mean
different dates on different days, so a memory keeps the date, not the words:
`resolve("last month", when)` on 1 December 2026 is "in November 2026".
Day-level expressions go through `dateparser` with the turn's time as its
relative base; weeks, weekends, months, years and seasons are computed from
the calendar at the granularity the words name. Absolute dates ("14
February", "in 1961") are left as said.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

RELATIVE = re.compile(
    r"\b(yesterday|today|tonight|tomorrow|ago|last|next|this|coming|past|previous|later|earlier)\b", re.I
)
SEASONS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}
MONTHS = ("january february march april may june july august september october november december").split()
_MONTH = "|".join(MONTHS)
# a day of a month as people write it ("12 June", "3rd of August", "June 12"), and with its weekday before it
DAY_OF_MONTH = re.compile(rf"\b\d{{1,2}}(st|nd|rd|th)? (of )?({_MONTH})\b|\b({_MONTH}) \d{{1,2}}\b", re.I)
WEEKDAY_AND_DAY = re.compile(r"(?:(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday),? (?:the )?)?"
                             + DAY_OF_MONTH.pattern, re.I)  # fmt: skip
_IN_UNITS = re.compile(r"^in\s+(\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|a few)\s+(day|week|month|year)s?$")
_UNITS = ("week", "weekend", "month", "year")


@dataclass
class When:
    phrase: str  # e.g. "on 30 November 2026", "in November 2026"
    iso: str  # 2026-11-30, 2026-11, 2026
    granularity: str  # day | week | weekend | month | season | year


def _day(d: dt.date) -> str:
    return f"{d.day} {d:%B %Y}"


def _shift_months(d: dt.date, months: int) -> dt.date:
    total = d.year * 12 + (d.month - 1) + months
    return dt.date(total // 12, total % 12 + 1, 1)


def _direction(text: str, past_tense: bool) -> int:
    if re.search(r"\b(last|past|previous|ago|earlier)\b", text):
        return -1
    if re.search(r"\b(next|coming|later)\b", text):
        return 1
    if re.search(r"\bthis\b", text):
        return 0
    return -1 if past_tense else 1


def resolve(text: str, when: dt.datetime, past_tense: bool = False) -> When | None:
    """The date a relative time expression means when said at `when`; None when it is not relative
    (or not understood: the words are then kept as said)."""
    words = text.lower().strip()
    if not (RELATIVE.search(words) or _IN_UNITS.match(words)):  # a bare "Thursday" may be any Thursday
        return None
    base = when.date()
    step = _direction(words, past_tense)
    season = next((s for s in SEASONS if re.search(rf"\b{s}\b", words)), None)
    if season:
        month = SEASONS[season]
        year = base.year + (1 if step > 0 and base.month >= month else 0) - (1 if step < 0 and base.month < month + 3 else 0)
        return When(f"in {'autumn' if season == 'fall' else season} {year}", f"{year}-{month:02d}", "season")
    named = next((i + 1 for i, m in enumerate(MONTHS) if re.search(rf"\b{m}\b", words)), None)
    if named and step != 0 and not re.search(r"\d", words):  # "next June", "last March"
        year = base.year + (1 if step > 0 and named <= base.month else 0) - (1 if step < 0 and named >= base.month else 0)
        return When(f"in {MONTHS[named - 1].title()} {year}", f"{year}-{named:02d}", "month")
    unit = next((u for u in _UNITS if re.search(rf"\b{u}s?\b", words)), None)
    count = re.search(r"\b(\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|a few|few|several)\s+(?:days?|weeks?|months?|years?)\b", words)
    if unit == "year" and not count:
        year = base.year + step
        return When(f"in {year}", str(year), "year")
    if unit == "month" and not count:
        month = _shift_months(base, step)
        return When(f"in {month:%B %Y}", f"{month:%Y-%m}", "month")
    if unit == "weekend":
        saturday = base + dt.timedelta(days=(5 - base.weekday()) % 7)  # this (coming) Saturday
        if step < 0:
            saturday -= dt.timedelta(days=7)
        return When(f"on the weekend of {_day(saturday)}", saturday.isoformat(), "weekend")
    if unit == "week" and not count:
        monday = base - dt.timedelta(days=base.weekday()) + dt.timedelta(days=7 * step)
        return When(f"in the week of {_day(monday)}", monday.isoformat(), "week")
    import dateparser

    parsed = dateparser.parse(words, settings={"RELATIVE_BASE": when.replace(tzinfo=None),
                                               "PREFER_DATES_FROM": "past" if step < 0 else "future"})  # fmt: skip
    if parsed is None:
        return None
    day = parsed.date()
    if count and unit == "year":
        return When(f"in {day.year}", str(day.year), "year")
    if count and unit == "month":
        return When(f"in {day:%B %Y}", f"{day:%Y-%m}", "month")
    return When(f"on {_day(day)}", day.isoformat(), "day")


def parse_time(text: str) -> dt.datetime | None:
    """A timestamp as written ("1:56 pm on 8 May, 2023", ISO 8601); None when not understood."""
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        pass
    import dateparser

    return dateparser.parse(text)


def placed(doc, ent, w: When) -> tuple[int, str]:
    """Where the date `w` of the relative time `ent` goes in its parsed sentence, and how it is said there:
    from the preposition before it where the date brings its own ("in the next week", "on Friday"), else
    in the expression's place, without its own preposition after another ("since last spring" -> "since
    spring 2026"). (index of the first token it replaces, the words)"""
    before = doc[ent.start - 1] if ent.start > 0 else None
    prep = before is not None and (before.dep_ == "prep" or before.pos_ in ("ADP", "SCONJ"))
    if prep and before.lower_ in ("on", "in", "at", "during", "over"):
        return before.i, w.phrase
    return ent.start, w.phrase.split(" ", 1)[1] if prep else w.phrase


def absolute(text: str, when: dt.datetime) -> str:
    """`text` with its relative times said as the dates they mean at `when`, as a memory says them: asked
    "What am I doing next month?" on 5 December 2026, the question is "What am I doing in January 2027?",
    the words the memory of "Next month I'm running the Oslo marathon" was stored and rehearsed with.
    Unchanged when it holds none."""
    if not (RELATIVE.search(text) or re.search(r"\bin\s+\w+\s+(day|week|month|year)s?\b", text, re.I)):
        return text  # most messages: no parse
    from memory.language import parse

    doc = parse([text])[0]
    out, at = [], 0
    for ent in doc.ents:
        if ent.label_ not in ("DATE", "TIME"):
            continue
        past = any(t.tag_ == "VBD" for t in ent.sent)
        w = resolve(ent.text, when, past_tense=past)
        if w is None:
            continue
        start, phrase = placed(doc, ent, w)
        out += [text[at : doc[start].idx], phrase]
        at = ent.end_char
    return "".join(out) + text[at:] if out else text
