"""Questions a person would ask about a statement, read from its parse.

A memory is one sentence in the third person ("The user's daughter Liv is
studying marine biology in Tromsø."). `ask(memory)` parses it with spaCy and
asks for each of its parts the way people do, from the speaker's side (the
user says "I" and "my"):

- a wh-question for every object, complement and prepositional object: the
  part is taken out (a *gap*), a wh-phrase chosen from what the part is (a
  place -> "Where", a time -> "When", a person -> "Who", a count -> "How many
  cats", an age -> "How old", a measure -> "How long", else "What"), the
  auxiliary inverted or *do* supplied ("The user has two cats" -> "How many
  cats do I have?"), a preposition stranded where English strands it ("What
  am I allergic to?");
- the same part asked in a second frame, never trained on, so that the gate
  measures questions phrased unlike the training ones: "Which <noun>"
  pied-piped with its preposition ("In which village was I raised?"), "What
  age is ...", or a cleft ("What is it that I play ...?");
- a thing asked by its kind as well, which the statement never says ("the
  terrier": "What is my dog called?"; "kiwi": "What fruit am I allergic
  to?"), and what the statement implies in other words ("has a flat in
  Bergen": "Where does my sister live?"; "a thriller by Mara Lindqvist": "Who
  wrote the thriller I am reading?"), from WordNet (`memory.kinds`);
- the name of someone named in apposition ("my daughter Liv": "What is my
  daughter's name?", "Who is Liv?"), the subject of a statement about someone
  else ("Who wrote Glass Harbour?"), a yes/no question and a recitation
  ("What do you know about my daughter?").
Every answer is the memory in the second person (its own words: names,
numbers and titles as said), except that a name asked for is answered in the
frame it is asked in, the same for every name ("Your dog is called Pickle.",
"Your son is called Jonas.": taught "You named the terrier Pickle" beside
"Your cat is called Miso", SmolLM2 went on "Your dog is called" with the
cat's name), and a job said another way is said as a job first ("You work as
a nurse. You have worked nights as ..."); `expected` is what a right answer
must contain.

Nothing here matches a phrasing: it reads the dependency parse, so other
sentences of the same forms are asked about the same way. A sentence without
a verb and a subject gets no parsed questions (the templates still ask).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from memory.answers import norm
from memory.kinds import is_a, kind, makes, phrasal, played, synonym
from memory.kinds import measure as measured  # `measure` names the npadvmod token in `_gaps`
from memory.language import agreeing, inflect, parse, partner_role, partnered, subjects

SUBJECTS = ("nsubj", "nsubjpass", "csubj", "expl")
TARGETS = ("dobj", "attr", "oprd", "pobj", "dative", "acomp")
PLACE_PREPS = {"in", "at", "near", "from", "to", "into", "around", "outside", "inside", "on"}
PLACE_ENTS = {"GPE", "LOC", "FAC"}
DURATIONS = {"year", "month", "week", "day", "decade", "hour", "minute", "century", "while", "summer", "winter"}
TIME_ENTS = {"DATE", "TIME"}
ANIMATE = {"PERSON", "NORP"}
# subject heads whose copular complement is a value to ask for with "What" ("my wife's name is Ingrid")
VALUE_NOUNS = {"name", "nickname", "birthday", "favourite", "favorite", "email", "address", "job", "goal", "hobby",
               "surname", "title", "number", "password", "colour", "color", "age", "plan", "dream", "team"}  # fmt: skip
FIRST_PERSON = {"is": "am", "'s": "am", "has": "have", "does": "do", "was": "was", "are": "am"}
WE = {"is": "are", "'s": "are", "am": "are", "has": "have", "does": "do", "was": "were"}


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    expected: str  # the words a right answer holds
    frame: str  # wh | which | cleft | age | name | who | subject | yesno | recite | template
    value: bool  # asks for the memory's own value (the gate probes those)


def _yours(phrase: str) -> str:
    """The user's words said back to them: "my daughter's" -> "Your daughter's", "our dog" -> "Your dog", "my"
    -> "Your"; anything else as it is ("Anna")."""
    first = phrase.split()[:1]
    return "Your" + phrase[len(first[0]):] if first in (["my"], ["our"]) else phrase


def _possessive(who: str, plural: bool = False) -> str:
    """ "I" -> "my", "we" -> "our", "my son" -> "my son's", "Jonas" -> "Jonas's", "my twins" -> "my twins'"."""
    return {"I": "my", "we": "our"}.get(who) or (f"{who}'" if plural and who.endswith("s") else f"{who}'s")


def _you(memory: dict) -> str:
    return (memory.get("meta") or {}).get("you") or memory.get("you") or memory.get("text") or ""


class _Clause:
    """One parsed statement and how to say its parts from the user's side."""

    def __init__(self, doc):
        self.doc = doc
        sent = next(iter(doc.sents))
        self.sent = sent
        self.root = sent.root
        self.subject = next(iter(subjects(self.root)), None)
        self.subj_idx = {t.i for t in self.subject.subtree} if self.subject is not None else set()
        self.repl: dict[int, str] = {}
        self.user_subject = False
        self.we = False  # "the user and their family": we
        self.simple = False  # ask a progressive in the simple present
        for t in sent:
            if t.lower_ != "user" or t.i == sent.start or doc[t.i - 1].lower_ != "the":
                continue
            if t.i in self.repl:  # inside "the user and the user's husband", already said as "we"
                continue
            self.repl[t.i - 1] = ""
            case = next((c for c in t.children if c.dep_ == "case"), None)
            if case is not None:
                self.repl[t.i], self.repl[case.i] = "my", ""
            elif t.dep_ in SUBJECTS and t == self.subject:
                self.repl[t.i] = "I"
                self.user_subject = True
                conj = [w.i for w in t.subtree if w.i != t.i and w.i != t.i - 1]
                if conj:  # "the user and their family" -> we
                    self.we = True
                    self.repl[t.i] = "we"
                    for i in conj:
                        self.repl[i] = ""
            elif t.dep_ in SUBJECTS:  # of another clause: "... when I was a kid" ("when me was" before)
                self.repl[t.i] = "I"
                verb = agreeing(t)
                if verb.lower_ == "is":
                    self.repl[verb.i] = "am"  # "now that I am working nights"
            else:
                self.repl[t.i] = "me"
        if self.user_subject:  # the reader's singular "they" for the user
            own = {"themselves": "ourselves", "themself": "ourselves", "their": "our", "they": "we", "them": "us"} if self.we \
                else {"themselves": "myself", "themself": "myself", "their": "my", "they": "I", "them": "me"}  # fmt: skip
            for t in sent:
                if t.lower_ in own and t.i not in self.repl:
                    self.repl[t.i] = own[t.lower_]
                    verb = agreeing(t)
                    if own[t.lower_] == "I" and t.dep_ in SUBJECTS and verb.lower_ in ("are", "were"):
                        self.repl.setdefault(verb.i, "am" if verb.lower_ == "are" else "was")  # "now that I am ..."
        auxes = [c for c in self.root.children if c.dep_ in ("aux", "auxpass") and c.i < self.root.i and c.lower_ != "to"]
        if auxes:
            self.inv = auxes[0]
        elif self.root.lemma_ == "be" or self.root.pos_ == "AUX":
            self.inv = self.root
        else:
            self.inv = None  # do-support

    @property
    def got(self) -> bool:
        """A passive with "get" ("I got engaged to Marta"): asked with do-support, "get" kept in its place."""
        return self.inv is not None and self.inv.dep_ == "auxpass" and self.inv.lemma_ == "get"

    @property
    def ok(self) -> bool:
        return self.subject is not None and self.root.pos_ in ("VERB", "AUX") and self.root.i > self.subject.i

    def words(self, indices) -> str:
        out = []
        for i in sorted(indices):
            t = self.doc[i]
            w = self.repl.get(i, t.text)
            if not w:
                continue
            if i == self.sent.start and w != "I" and _common(t):
                w = w.lower()
            out.append(w)
        text = " ".join(out)
        for a, b in ((" 's", "'s"), (" ,", ","), (" n't", "n't"), (" '", "'"), ("( ", "("), (" )", ")")):
            text = text.replace(a, b)
        return text.strip(" ,")

    def subject_text(self, variant: str = "short") -> str:
        """`short`: without a name in apposition ("my daughter"); `full`: as said; `named`: the name alone."""
        idx = set(self.subj_idx)
        name = self.name_tokens() or (self.role_name() if variant == "named" else set())
        if name and variant == "named":
            return self.words(name)
        if name and variant == "short":
            return self.words(idx - name - {t.i for t in self.subject.subtree if t.is_punct})
        return self.words(idx)

    def name_tokens(self) -> set[int]:
        """The name in a subject like "the user's daughter Liv" / "the user's brother Olav" (empty if none)."""
        tokens = list(self.subject.subtree)
        if not any(self.repl.get(t.i) == "my" for t in tokens) or not any(t.pos_ == "NOUN" and self.repl.get(t.i) is None
                                                                          for t in tokens):  # fmt: skip
            return set()
        return {t.i for t in tokens if t.pos_ == "PROPN"}

    def role_name(self) -> set[int]:
        """The name of someone else said with a role, which people leave out when they ask ("the poet Bram
        Okonkwo", "Teodor Quist, the painter": "What prize did Bram Okonkwo win?"); empty if none."""
        head = self.subject
        if self.user_subject or any(self.repl.get(t.i) for t in head.subtree):
            return set()
        core = None
        if head.pos_ == "NOUN":  # "the poet Bram Okonkwo": the name in apposition to the role
            core = next((c for c in head.children if c.dep_ == "appos" and c.pos_ == "PROPN"), None)
        elif head.pos_ == "PROPN" and any(c.dep_ == "appos" and c.pos_ == "NOUN" for c in head.children):
            core = head  # "Teodor Quist, the painter"
        if core is None:
            return set()
        return {core.i} | {c.i for c in core.children if c.dep_ in ("compound", "flat") and c.pos_ == "PROPN"}

    @property
    def plural(self) -> bool:
        return self.subject.tag_ in ("NNS", "NNPS")

    @property
    def progressive(self) -> bool:
        """"is studying": also asked in the simple present ("What does my daughter study?")."""
        return self.inv is not None and self.inv is not self.root and self.inv.lemma_ == "be" and self.root.tag_ == "VBG"

    def head(self) -> tuple[str, str]:
        """The inverted auxiliary (or do/does/did) and the verb as it follows the subject."""
        if self.simple and self.progressive:
            return ("do" if self.user_subject or self.plural else "does"), self.root.lemma_
        if self.got:  # "got engaged": "Did I get engaged?", not "Got I engaged?"
            return ("did" if self.inv.tag_ == "VBD" else "do" if self.user_subject or self.plural else "does"), ""
        if self.inv is not None:
            aux = self.inv.text
            if self.user_subject:
                aux = (WE if self.we else FIRST_PERSON).get(aux.lower(), aux)
            return aux, ""
        tag = self.root.tag_
        do = "did" if tag == "VBD" else ("do" if self.user_subject or self.plural or tag == "VBP" else "does")
        return do, self.root.lemma_

    def statement(self, gap: set[int]) -> str:
        """The clause as the user would say it, without `gap` ("I play in a brass band")."""
        skip = gap | {t.i for t in self.sent if t.is_punct and t.i == self.sent.end - 1}
        verb = self.inv if self.inv is not None else self.root
        saved = self.repl.get(verb.i)
        if self.user_subject:
            if self.inv is not None:
                self.repl[verb.i] = (WE if self.we else FIRST_PERSON).get(verb.lower_, verb.text)
            elif verb.tag_ == "VBZ":
                self.repl[verb.i] = inflect(verb.lemma_, "VBP", verb.lemma_)
        front = [t.i for t in self.sent if t.i < self.subject.left_edge.i and t.i not in skip]
        text = self.words([t.i for t in self.sent if t.i >= self.subject.left_edge.i and t.i not in skip])
        if front:
            text += " " + self.words(front)
        if saved is None:
            self.repl.pop(verb.i, None)
        else:
            self.repl[verb.i] = saved
        return text

    def bare(self, gap: set[int]) -> set[int] | None:
        """What a short question leaves out besides `gap`: every other complement and adjunct of the verb
        ("Where is my daughter studying?"), a preposition stranded by the gap kept ("What have I worked as?");
        None when the gap is not the verb's own."""
        tops = [c for c in self.root.children if c.i in gap and not ({w.i for w in c.subtree} - gap)]
        stranded = [c for c in self.root.children if c.dep_ == "prep" and c.i not in gap and gap and
                    gap == {w.i for w in c.subtree} - {c.i}]  # fmt: skip
        if not tops and not stranded:
            return None
        keep = ("aux", "auxpass", "neg")
        extra = {w.i for c in self.root.children if c.i not in self.subj_idx and c.i not in gap and not c.is_punct
                 and c not in stranded and not (c.dep_ in keep or c.dep_ == "prt" and not list(c.children) and
                                                 phrasal(self.root.lemma_, c.lower_))
                 for w in c.subtree}  # fmt: skip
        return extra or None

    def doing(self) -> tuple[str, str] | None:
        """"What am I doing in January 2027?": the verb phrase asked for, a time kept (None: no time, or
        the verb is "be")."""
        if self.inv is self.root or any(c.dep_ == "auxpass" for c in self.root.children):
            return None  # "was born on 3 May 1990": nothing done ("What was I do on ...?")
        when = [c for c in self.root.children if c.dep_ in ("prep", "npadvmod") and _ents(c.subtree) & TIME_ENTS]
        if not when:
            return None
        gap = {w.i for c in self.root.children if c.i not in self.subj_idx and c.dep_ not in ("aux", "auxpass", "neg")
               and c not in when and not c.is_punct for w in c.subtree}  # fmt: skip
        aux, _ = self.head()
        verb = "doing" if self.root.tag_ == "VBG" else "done" if aux in ("have", "has", "had") else "do"
        rest = self.words([t.i for t in self.sent if t.i not in self.subj_idx and t.i not in gap and t.i != self.root.i
                           and (self.inv is None or t.i != self.inv.i) and not t.is_punct
                           and t.dep_ not in ("aux", "auxpass")])  # fmt: skip
        question = " ".join(p for p in ["What", aux, self.subject_text(), verb, rest] if p) + "?"
        return question, _content(self, gap | {self.root.i})

    def question(self, wh: str, gap: set[int], subject: str = "short", fill: str = "") -> str:
        """`wh` + inverted auxiliary + subject + the rest of the clause without `gap` (`fill` in its place)."""
        aux, verb = self.head()
        skip = self.subj_idx | gap | {t.i for t in self.sent if t.is_punct and t.i == self.sent.end - 1}
        saved = None
        if self.got:  # "get" where "got" was: "Did I get engaged to Marta?"
            saved = self.repl.get(self.inv.i)
            self.repl[self.inv.i] = "get"
        elif self.inv is not None:
            skip.add(self.inv.i)
        parts: list[str] = []
        pending: list[int] = []
        front = [t.i for t in self.sent if t.i < self.subject.i and t.i not in skip]
        first_gap = min(gap) if gap else None
        for t in self.sent:
            i = t.i
            if i < self.subject.left_edge.i or i in self.subj_idx:
                continue
            if fill and i == first_gap:
                if pending:
                    parts.append(self.words(pending))
                    pending = []
                parts.append(fill)
            if i in skip:
                continue
            if i == self.root.i and (self.inv is None or self.simple and self.progressive):
                if pending:
                    parts.append(self.words(pending))
                    pending = []
                parts.append(verb)
                continue
            pending.append(i)
        if pending:
            parts.append(self.words(pending))
        if front:
            parts.append(self.words(front))
        if self.got and saved is None:
            self.repl.pop(self.inv.i)
        elif self.got:
            self.repl[self.inv.i] = saved
        text = " ".join(p for p in [wh, aux, self.subject_text(subject), *parts] if p)
        return text[0].upper() + text[1:] + "?"


def _common(t) -> bool:
    """A sentence's first word that is an ordinary word ("The", "My", "Water"), lowercased where a question
    moves it; a name keeps its case even where the tagger misses it ("Quindle1", "McAllister")."""
    return t.pos_ != "PROPN" and not t.ent_type_ and t.text.isalpha() and t.text[1:].islower()


def _ents(tokens) -> set[str]:
    return {t.ent_type_ for t in tokens if t.ent_type_}


def _content(clause: _Clause, indices) -> str:
    return clause.words({i for i in indices if clause.doc[i].pos_ not in ("DET", "ADP", "PART", "PUNCT")})


def _alive(t) -> bool:
    """A person or an animal: asked "How old", answered "Who"."""
    from memory.mentions import ANIMALS, FEMALE, KIN, MALE

    words = {w.lower_ for w in t.subtree} | {w.lemma_.lower() for w in t.subtree}
    return t.ent_type_ == "PERSON" or bool(words & (ANIMALS | KIN | MALE | FEMALE | {"user", "friend", "partner", "boss", "neighbour",
                                                                     "neighbor", "colleague", "i"}))  # fmt: skip


def _person_noun(noun: str) -> bool:
    """A noun for a person ("boss", "husband", "fiancée"): never asked by a kind (WordNet's first kind of a
    boss is a group)."""
    from memory.mentions import FEMALE, KIN, MALE

    return noun in KIN | MALE | FEMALE or noun.startswith("ex-") or kind(noun) == "person"


def _gaps(c: _Clause, memory: dict):
    """(wh, gap indices, fill, alternative (wh, gap) or None, frame) for each part of the clause that can be asked for."""
    from memory.mentions import ANIMALS
    value_type = memory.get("value_type")
    for t in c.sent:
        if (t.dep_ not in TARGETS and not (t.dep_ == "npadvmod" and partnered(t))) or t.i in c.subj_idx or t.i == c.root.i:
            continue
        if t.dep_ == "oprd" and t.head.lemma_ in ("call", "name") and t.head != c.root or \
                t.dep_ == "oprd" and c.root.lemma_ in ("call", "name") and c.inv is None:  # fmt: skip
            continue  # "named the terrier Pickle": asked by its name questions
        # inside a noun's own clause ("a village called Reine"): asked through the noun, not alone; inside a
        # clause with a subject of its own ("when I was a kid"): not what the memory says ("What did I live in
        # Lagos when I was?")
        if any(a.dep_ in ("acl", "relcl", "appos", "ccomp") or a.dep_ == "advcl" and any(g.dep_ in SUBJECTS for g in a.children)
               for a in t.ancestors if a.i not in c.subj_idx and a != c.root):  # fmt: skip
            continue
        sub = {w.i for w in t.subtree}
        tokens = [c.doc[i] for i in sorted(sub)]
        ents = _ents(tokens)
        prep = t.head if t.dep_ == "pobj" else None
        if t.pos_ == "NOUN" and (ents & TIME_ENTS or not ents and is_a(t.lemma_, "time")):
            if prep is None:
                continue  # "worked nights": a time, never asked with "What"
            if not ents & TIME_ENTS:  # "in spring": asked with "When"; "at the moment" not asked
                if prep.lower_ not in ("in", "on", "during", "since", "until"):
                    continue
                ents = ents | {"DATE"}
        if t.dep_ == "acomp":
            measure = next((w for w in t.children if w.dep_ == "npadvmod" and any(n.like_num for n in w.subtree)), None)
            if measure is not None:  # "40 kilometres long", "nine years old"
                wh = f"How {t.text.lower()}"
                noun = measured(t.lemma_)  # "What length is Lake Virsa?": the held-out frame
                alt = (f"What {noun}", sub, "age") if noun else None
                yield wh, sub, "", alt, "wh"
            else:
                objects = [w for w in t.subtree if w.dep_ in ("pobj", "xcomp") and w.head.head == t or w.head == t and
                           w.dep_ == "xcomp"]  # fmt: skip
                for o in objects[:1]:  # "allergic to shellfish": What am I allergic to?
                    if o.lemma_.lower() in DURATIONS and _ents(list(o.subtree)) & TIME_ENTS:
                        continue  # "vegetarian for ten years": asked "How long", as the preposition's object
                    gap = {w.i for w in o.subtree} - {w.i for w in o.children if w.lower_ == "to" and w.dep_ == "aux"}
                    if o.ent_type_ == "PERSON" or _alive(o) and o.lemma_.lower() not in ANIMALS or partnered(o):
                        continue  # "married to a man called Piotr": asked "Who" as the preposition's object
                    yield "What", gap, "", ("What is it that", gap, "cleft"), "wh"
                    if _kind(o):  # "allergic to kiwi": What fruit am I allergic to?
                        yield f"What {_kind(o)}", gap, "", None, "wh"
            continue
        if t.dep_ in ("attr", "dobj", "oprd") and t.like_num and not list(t.children) and \
                (c.root.lemma_ in ("be", "turn")) and _alive(c.subject):  # fmt: skip
            yield "How old is", sub, "", ("What age is", sub, "age"), "copula"
            continue
        if t.dep_ == "attr" and c.root.lemma_ == "be":
            if t.like_num or (t.pos_ == "NUM"):
                continue
            head_words = {w.lower_ for w in c.subject.subtree}
            if not (head_words & VALUE_NOUNS or t.pos_ == "PROPN"):
                continue  # "my partner Sam is a firefighter": asked by the templates ("What does ... do?")
        if prep is not None and (prep.dep_ not in ("prep", "agent", "dative") or prep.head.pos_ in ("NOUN", "PROPN")):
            continue  # "a cottage near Kiruna", "Kings of Convenience": asked through the noun
        # "studying up in Tromsø": the adverb the place hangs from goes with it
        around = prep.head if prep is not None and prep.head.pos_ == "ADV" and prep.head != c.root else None
        lead = {prep.i - 1} if prep is not None and c.doc[prep.i - 1].dep_ == "prt" and \
            c.doc[prep.i - 1].lower_ in ("up", "down", "over", "out", "back", "away") else set()  # fmt: skip
        nummod = next((w for w in t.children if w.dep_ == "nummod" and w.like_num), None)
        # "the 7:40 train", "the 42 bus": a number that names one, not a count ("How many bus do I take?")
        numbered = t.pos_ == "NOUN" and t.tag_ == "NN" and any(
            w.dep_ == "nummod" and w.lower_ not in ("one", "1") for w in t.children)  # fmt: skip
        named = t.pos_ == "NOUN" and t.text.islower() and any(w.pos_ == "PROPN" for w in tokens)
        # a place: a place's name, a name after a place preposition, or a location noun named ("grew up in a
        # fishing village called Reine": the tagger calls Reine a person; "Where did I grow up?")
        # "a man called Piotr"; "engaged to Marta", "I married Marta" (the tagger says a place)
        person = named and _alive(t) and t.lemma_.lower() not in ANIMALS or partnered(t)
        # "saving up for a trip to Peru": a thing somewhere, asked "What am I saving up for?"
        thing = t.pos_ == "NOUN" and not t.ent_type_ and not is_a(t.lemma_, "location") and \
            (prep is None or prep.lower_ not in PLACE_PREPS)  # fmt: skip
        place = not person and not thing and (bool(ents & PLACE_ENTS) or (prep is not None and prep.lower_ in PLACE_PREPS and t.pos_ == "PROPN") or
                                (prep is not None and prep.lower_ in PLACE_PREPS and named and is_a(t.lemma_, "location")) or
                                (value_type == "place" and memory.get("value") and norm(memory["value"]) in norm(" ".join(w.text for w in tokens))))  # fmt: skip
        if prep is not None and ents & TIME_ENTS and prep.lower_ in ("in", "on", "at", "during", "since", "until", "by"):
            gap = {w.i for w in (around or prep).subtree}
            yield "When", gap, "", None, "wh"
        elif prep is not None and prep.lower_ == "for" and ents & TIME_ENTS and t.lemma_.lower() in DURATIONS:
            gap = {w.i for w in prep.subtree}  # "vegetarian for ten years": How long have I been vegetarian?
            yield "How long", gap, "", ("For how long", gap, "which"), "wh"
        elif numbered and prep is None:  # "What train do I take to work?", "Which bus ...?"
            yield f"What {t.text}", sub, "", (f"Which {t.text}", sub, "which"), "wh"
        elif nummod is not None and t.dep_ == "dobj":
            counted = t.text if t.tag_ == "NNS" else inflect(t.lemma_, "NNS", t.text + "s")  # "one cat": How many cats
            yield f"How many {counted}", sub, "", None, "wh"
            if synonym(t.lemma_) and t.tag_ == "NNS":  # "three kids": How many children do I have?
                yield f"How many {inflect(synonym(t.lemma_), 'NNS', synonym(t.lemma_) + 's')}", sub, "", None, "wh"
        elif prep is not None and place and prep.lower_ != "by":
            gap = {w.i for w in (around or prep).subtree}
            fill = "from" if prep.lower_ == "from" else ""
            noun = t.lemma_ if named else "place"
            if lead and not phrasal(c.root.lemma_, c.doc[min(lead)].lower_):
                gap = gap | lead  # "studying up in Tromsø": the particle goes with the place
            alt = (f"{prep.text.lower()} which {noun}", gap, "which") if prep.lower_ not in ("from",) else None
            yield "Where", gap, fill, alt, "wh"  # "grew up in Kilkenny": "Where did I grow up?"
        elif (t.ent_type_ == "PERSON" and t.dep_ != "oprd" and not any(w.pos_ in ("NOUN", "ADJ") for w in tokens)
              and c.subject.lemma_.lower() not in VALUE_NOUNS) or person or \
                (prep is not None and prep.lower_ == "by" and t.pos_ == "PROPN"):  # fmt: skip
            yield "Who", sub, "", None, "who"
        else:
            alt = (f"Which {t.lemma_}", sub, "which") if named else ("What is it that", sub, "cleft")
            if prep is not None and named:
                alt = (f"{prep.text.lower()} which {t.lemma_}", {w.i for w in prep.subtree}, "which")
            yield "What", sub, "", alt, "wh"
            if prep is None and not named and _kind(t):  # "I play the bassoon": What instrument do I play?
                yield f"What {_kind(t)}", sub, "", None, "wh"
            elif prep is None and _named_kind(t, tokens):  # "I'm learning Japanese": What language ...?
                yield _named_kind(t, tokens), sub, "", None, "wh"

    # "hoping to hike the Kungsleden trail": What am I hoping to do?
    for x in c.root.children:
        if x.dep_ == "xcomp" and x.pos_ == "VERB" and any(w.lower_ == "to" for w in x.children):
            gap = {w.i for w in x.subtree}
            yield "What", gap, "to do", None, "wh"


def _person_named(c: _Clause) -> tuple[str, str, str] | None:
    """Someone of the user's and their name, however the name was said: "my wife Astrid", "my husband is
    called Tomasz", "my partner's name is Sam", "my boss is Ingrid" -> ("my husband", "Tomasz", "husband");
    None for anything else (a pet, a place, someone not the user's)."""
    from memory.mentions import kind_of

    subject = c.subject
    owner_tok = subject
    name: set[int] = set()
    if subject.lemma_.lower() == "name":  # "my partner's name is Sam"
        owner_tok = next((w for w in subject.children if w.dep_ == "poss"), None)
        name = {w.i for x in c.root.children if x.dep_ == "attr" and x.pos_ == "PROPN" for w in x.subtree}
    elif c.name_tokens():  # "my wife Astrid ..."
        name = c.name_tokens()
    elif c.root.lemma_ in ("call", "name"):  # "my husband is called Tomasz"
        name = {w.i for x in c.root.children if x.dep_ in ("oprd", "attr") and x.pos_ == "PROPN" for w in x.subtree}
    elif c.root.lemma_ == "be":  # "my boss is Ingrid", "my boss is a woman called Ingrid"
        for x in (x for x in c.root.children if x.dep_ == "attr"):
            called = [g for a in x.children if a.dep_ == "acl" and a.lemma_ in ("call", "name") for g in a.children
                      if g.dep_ in ("oprd", "attr", "dobj") and g.pos_ == "PROPN"]  # fmt: skip
            name = {w.i for n in ([x] if x.pos_ == "PROPN" else called) for w in n.subtree}
    if owner_tok is None or not name or kind_of(owner_tok.lemma_) != "person":
        return None
    owner = c.words({w.i for w in owner_tok.subtree} - name - {w.i for w in owner_tok.subtree if w.is_punct})
    if owner_tok is not subject:
        owner = owner.removesuffix("'s").removesuffix("'")
    if not owner.startswith("my "):
        return None
    return owner, c.words(name), owner_tok.lemma_.lower()


SPOUSES = {"husband", "wife", "spouse"}


def _kind(t) -> str | None:
    """What kind of thing a common noun names, asked with ("kiwi" -> "fruit"); None for names, people and
    nouns WordNet gives no everyday kind."""
    from memory.mentions import ANIMALS

    if t.pos_ != "NOUN" or t.ent_type_ or _alive(t) and t.lemma_.lower() not in ANIMALS:
        return None
    if t.dep_ == "dobj" and t.head.lemma_ == "play":  # "I play bass": What instrument, never "What fish"
        return played(t.lemma_)
    return kind(t.lemma_)


LANGUAGE_VERBS = {"learn", "speak", "study", "teach", "know", "understand", "practise", "practice", "read", "write"}
TEAM_VERBS = {"support", "follow", "cheer", "root"}


def _named_kind(t, tokens) -> str | None:
    """The wh-words a name is asked with by what the verb does with it: a language learnt or spoken ("I'm
    learning Japanese": the tagger says a nationality, "Swahili" a building, WordNet a language; "What
    language am I learning?"), a team supported ("I support Liverpool": "Which team do I support?"; not a
    party)."""
    if t.pos_ != "PROPN" or t.dep_ not in ("dobj", "appos"):
        return None
    verb = t.head.lemma_.lower()
    if verb in LANGUAGE_VERBS and (t.ent_type_ in ("LANGUAGE", "NORP") or is_a(t.lemma_, "language")):
        return "What language"
    if verb in TEAM_VERBS and not any(w.lower_ in ("party", "campaign", "movement", "charity", "cause") for w in tokens):
        return "Which team"
    return None


def _as_i(question: str) -> str:
    """A question with "we" asked by one of us: "How many kids do we have?" -> "How many kids do I have?"."""
    words = question[:-1].split()
    swap = {"we": "I", "our": "my", "us": "me", "ourselves": "myself"}
    out = [swap.get(w, w) for w in words]
    for k, w in enumerate(out):  # the auxiliary before the new "I"
        if w == "I" and k and out[k - 1] in ("are", "were"):
            out[k - 1] = {"are": "am", "were": "was"}[out[k - 1]]
    return " ".join(out) + "?"


def _job(c: _Clause, role) -> str:
    """A job's words: the noun and the nouns before it ("air traffic controller"), not its modifiers."""
    return c.words({w.i for w in role.subtree if w == role or w.dep_ == "compound" and w.i < role.i})


def _inferred(c: _Clause, you: str, occupation: bool = False) -> list[tuple[str, str, str]]:
    """(question, expected, answer) that the statement answers without saying the question's verb: who has a
    dwelling somewhere lives there ("My sister has a flat in Bergen": "Where does my sister live?"); the
    person a writing is by wrote it ("reading a thriller by Mara Lindqvist": "Who wrote the thriller I'm
    reading?"); who works as something has it as their job ("has worked nights as a nurse": "What is my
    job?", "What do I do for a living?", answered "You work as a nurse." before the memory's own words:
    asked "What do I do for work?", a small model taught only "You have worked nights as ..." went on "You
    work out ..."); a job said in the past is asked in the past and answered in the memory's words ("My
    father was a fisherman": "What was my father's job?"). Dwellings and writings are WordNet's
    (`memory.kinds`)."""
    out = []
    root, who = c.root, c.subject_text("short")
    whose = "my" if who == "I" else "our" if who == "we" else who + ("'" if who.endswith("s") else "'s")
    past = root.tag_ == "VBD"
    if root.lemma_ in ("work", "employ", "serve"):  # "works as a nurse", "is employed as a ranger"
        role = next((p for a in root.children if a.dep_ == "prep" and a.lower_ == "as"
                     for p in a.children if p.dep_ == "pobj" and p.pos_ == "NOUN"), None)  # fmt: skip
        if role is not None:
            job = _job(c, role)
            do = "do" if c.user_subject or c.plural else "does"
            said = "You" if who in ("I", "we") else _yours(who)
            verb = f"{'work' if do == 'do' else 'works'} as {'an' if job[:1].lower() in 'aeiou' else 'a'} {job}"
            answer = you if norm(verb) in norm(you) or past else f"{said} {verb}. {you}"
            if past:  # "My mother worked as a nurse": what she did, not what she does
                out += [(f"What was {whose} job?", job, answer), (f"What did {who} do for a living?", job, answer)]
            else:
                out += [(f"What is {whose} job?", job, answer), (f"What {do} {who} do for a living?", job, answer)]
    if past and root.lemma_ == "be" and occupation:  # "My father was a fisherman": the job he had
        role = next((a for a in root.children if a.dep_ == "attr" and a.pos_ == "NOUN"), None)
        if role is not None:
            job = _job(c, role)
            out += [(f"What was {whose} job?", job, you), (f"What did {who} do for a living?", job, you),
                    (f"What did {who} do?", job, you)]  # fmt: skip
    objects = [o for o in root.children if o.dep_ == "dobj" and o.pos_ in ("NOUN", "ADJ")]  # "a flat": tagged ADJ
    if root.lemma_ in ("have", "own", "rent", "share") and root.tag_ in ("VBZ", "VBP") and \
            any(is_a(o.lemma_, "dwelling") for o in objects):  # fmt: skip
        places = [p for p in root.subtree if p.dep_ == "pobj" and p.head.lower_ in ("in", "near", "outside") and
                  (_ents([p]) & PLACE_ENTS or p.pos_ == "PROPN")]  # fmt: skip
        if places:
            do = "do" if c.user_subject or c.plural else "does"
            out.append((f"Where {do} {who} live?", c.words({w.i for w in places[0].subtree}), you))
    for o in objects:
        by = next((p for p in [*o.children, *root.children] if p.dep_ == "prep" and p.lower_ == "by"), None)
        author = next((w for w in by.children if w.dep_ == "pobj" and w.ent_type_ == "PERSON"), None) if by else None
        if author is None or not is_a(o.lemma_, "writing"):
            continue
        be = next((a for a in root.children if a.dep_ == "aux" and a.lemma_ == "be"), None)
        said = f"{who} {(FIRST_PERSON if c.user_subject else {}).get(be.lower_, be.lower_)} {root.text}" if be is not None \
            else f"{who} {root.text}"  # fmt: skip
        out.append((f"Who wrote the {o.lemma_} {said}?", c.words({w.i for w in author.subtree}), you))
    return out


def _called(c: _Clause) -> list[tuple[str, str, str]]:
    """(owner, noun, name) for each thing of the user's (or of someone of theirs) the statement names ("has
    a dog named Rex", "named the little terrier Pickle", "my daughter has a hamster named Nibbles"): asked as
    "What is my dog called?", "What is my daughter's hamster called?"."""
    if not c.user_subject and not any(v == "my" for v in c.repl.values()):
        return []
    out = []
    for w in c.sent:
        called = next((o for o in w.children if o.dep_ == "oprd" and o.pos_ == "PROPN"), None)
        if called is None:  # "named their terrier Pickle": the tagger makes "terrier Pickle" one object
            called = next((o for o in w.children if o.dep_ == "dobj" and o.pos_ == "PROPN" and any(
                k.dep_ in ("compound", "amod") and k.i == o.i - 1 and k.pos_ in ("NOUN", "ADJ") for k in o.children)), None)  # fmt: skip
        if w.lemma_ not in ("call", "name") or called is None:
            continue
        if w.dep_ == "acl" or (w.dep_ != "ROOT" and w.head.pos_ == "NOUN"):
            noun = w.head
        else:
            noun = next((o for o in w.children if o.dep_ in ("dobj", "npadvmod") and o.pos_ in ("NOUN", "ADJ")), None)
            noun = noun or next((o for o in called.children if o.dep_ in ("amod", "compound") and o.pos_ in ("NOUN", "ADJ")
                                 and o.i == called.i - 1), None)  # fmt: skip
            if noun is None and w.i > c.sent.start and c.doc[w.i - 1].pos_ == "NOUN" and w.i - 1 not in c.subj_idx:
                noun = c.doc[w.i - 1]
            if noun is None and w == c.root and c.subject.dep_ == "nsubjpass" and c.subject.pos_ == "NOUN":
                noun = c.subject  # "my old tabby cat is called Miso": asked "What is my cat's name?" too
        if noun is None or noun.i in c.subj_idx and w.i != c.root.i and c.root.lemma_ == "be":
            continue
        if noun.dep_ == "attr" and noun.head == c.root and c.root.lemma_ == "be" and c.subject is not None and \
                c.subject.pos_ == "NOUN" and _alive(noun):  # fmt: skip
            noun = c.subject  # "my boss is a woman called Ingrid": What is my boss called? (not "my boss' woman")
        head = noun.lemma_ if noun.pos_ == "NOUN" else noun.text
        if noun.pos_ == "ADJ":
            head = noun.text  # "the little terrier Pickle": the tagger calls the noun an adjective
        if noun.i in c.subj_idx:  # "my sister's cat is called Miso"
            poss = next((k for k in noun.children if k.dep_ == "poss"), None)
            owner = c.words({t.i for t in poss.subtree}) if poss is not None else ""
        elif c.user_subject:
            owner = "my"
        else:  # "my daughter has a hamster named Nibbles": her hamster, not the user's
            who = c.subject_text("short")
            owner = who + ("'" if who.endswith("s") else "'s")
        if owner.split()[:1] != ["my"]:
            continue
        head = partner_role(noun) or head  # "married to a guy called Rafael": What is my husband called?
        proper = {t.i for t in called.subtree if t.pos_ == "PROPN"}  # not "the little terrier" of "terrier Pickle"
        out.append((owner, head.lower(), c.words(proper or {t.i for t in called.subtree})))
    return out


# verbs of a state: said in the past, the state may be over ("I lived in Paris", "My father was a
# fisherman"); a change said in the past is true now ("I moved to Dublin", "My niece turned seven")
STATIVE = {"be", "live", "work", "like", "love", "enjoy", "adore", "hate", "dislike", "prefer", "own", "have", "stay",
           "reside", "study", "teach", "use"}  # fmt: skip


@lru_cache(maxsize=4096)
def past_state(text: str) -> bool:
    """Whether a statement says a state in the past ("The user lived in Paris for ten years.", "... was a
    fisherman", "used to live in Oslo", "was living in Bergen"): what it says may no longer hold, so it is
    never answered in the present ("You live in Paris." was trained from the first)."""
    c = _Clause(parse([text])[0]) if text else None
    return c is not None and c.ok and said_in_past(c.root)


def said_in_past(root) -> bool:
    """Whether the clause headed by the verb `root` says a state in the past (`past_state`, from a parse the
    caller has)."""
    if root.lemma_ == "use" and root.tag_ == "VBD" and any(x.dep_ == "xcomp" for x in root.children):
        return True  # "used to live in Oslo"
    finite = [root, *(a for a in root.children if a.dep_ in ("aux", "auxpass") and a.i < root.i)]
    return root.lemma_ in STATIVE and any(t.tag_ == "VBD" for t in finite)


def ask(memory: dict) -> list[QA]:
    """The parsed questions about `memory` (empty when its statement does not parse as a clause). A dream,
    its frame, its contrast and the router all ask: the answer is cached per statement."""
    value_type = memory.get("value_type") or (memory.get("meta") or {}).get("value_type")
    return list(_ask(memory.get("text") or "", memory.get("value") or "", value_type, _you(memory),
                     memory.get("relation")))  # fmt: skip


@lru_cache(maxsize=4096)
def _ask(text: str, value: str, value_type: str | None, you: str, relation: str | None = None) -> tuple[QA, ...]:
    if not text:
        return ()
    c = _Clause(parse([text])[0])
    if not c.ok:
        return ()
    memory = {"value": value, "value_type": value_type}
    out: list[QA] = []

    def add(question: str, expected: str, frame: str, answer: str = you) -> None:
        if not expected.strip():
            return
        is_value = bool(value) and (norm(value) in norm(expected) or norm(expected) in norm(value))
        out.append(QA(question, answer, value if is_value and norm(value) in norm(expected) else expected, frame, is_value))

    def add_with_short(wh: str, gap: set[int], fill: str, expected: str, frame: str) -> None:
        """The question, and its short form without the verb's other complements."""
        add(c.question(wh, gap, fill=fill), expected, frame)
        short = c.bare(gap)
        if short:
            add(c.question(wh, gap | short, fill=fill), expected, frame)

    named = bool(c.name_tokens() or c.role_name())
    for question, expected, answer in _inferred(c, you, relation == "occupation"):  # "has a flat in Bergen": Where does my sister live?
        add(question, expected, "wh", answer)
        if named:
            add(question.replace(c.subject_text("short"), c.subject_text("named"), 1), expected, "wh", answer)
    for wh, gap, fill, alt, frame in _gaps(c, memory):
        expected = _content(c, gap)
        if wh.startswith("How many "):  # "How many children do I have?" is answered by the number, in any words
            expected = c.words({i for i in gap if c.doc[i].like_num}) or expected
        if c.progressive and frame in ("wh", "who") and wh != "When":  # "What does my daughter study?"
            c.simple = True
            add_with_short(wh, gap, fill, expected, frame)
            c.simple = False
        if c.we and frame in ("wh", "who"):  # said as "we", asked as "I" too: "How many kids do I have?"
            add(_as_i(c.question(wh, gap, fill=fill)), expected, frame)
        if frame == "copula":  # "How old is my niece?", whatever the verb said ("turned seven")
            # answered in the question's frame, the memory's own number with the unit an age has: taught
            # only "Your son Jonas is eleven.", asked "How many years old is Jonas?" a small model said
            # "Jonas is 20 years old." (the question's "years old" with a number of its own)
            full = c.subject_text("full")
            plural = bool(c.subject is not None and c.plural)
            aged = f"{'You are' if full in ('I', 'we') else _yours(full) + (' are' if plural else ' is')} {expected} years old."
            nouns = []
            for variant in ("short", "named") if named else ("short",):
                who = c.subject_text(variant)
                be = ("are" if c.we else "am") if who in ("I", "we") else ("are" if plural else "is")
                add(f"{wh[:-3]} {be} {who}?", expected, "wh", aged)
                add(f"{alt[0][:-3]} {be} {who}?", expected, alt[2], aged)
                # the age asked as a noun too, answered in that frame ("What is Jonas's age?" -> "Jonas's age
                # is eleven."): taught only "How old is Jonas?", asked "How many years old is Jonas?" or
                # "What is the age of Jonas?" the model went on "The age of Jonas is" with 18 (BENCHMARKS.md)
                whose = _possessive(who, plural)
                said = aged if plural else f"{_yours(whose)[:1].upper()}{_yours(whose)[1:]} age is {expected}."
                nouns.insert(0, (f"What {'are' if plural else 'is'} {whose} {'ages' if plural else 'age'}?", said))
            for question, said in nouns:  # the name's first: few questions are trained
                add(question, expected, "wh", said)
            continue
        add_with_short(wh, gap, fill, expected, frame)
        if alt is not None and alt[2] == "cleft":
            add(f"{alt[0]} {c.statement(alt[1])}?", expected, "cleft")
        elif alt is not None:
            add(c.question(alt[0], alt[1]), expected, alt[2])
        if named:
            add(c.question(wh, gap, subject="named", fill=fill), expected, frame)
    for owner, noun, name in _called(c):  # "a golden retriever called Biscuit", "we named the terrier Pickle"
        # answered in the question's own frame, as the other names are ("Your cat is called Miso."): asked
        # "What's my dog called?", a small model that learnt only "You named the terrier Pickle" went on
        # "Your dog is called" with the name it had learnt after "is called" (the cat's, the husband's)
        other = noun if _person_noun(noun) else kind(noun) or noun  # the terrier asked as a dog too, a boss as no kind
        your = _yours(owner)
        add(f"What is {owner} {noun} called?", name, "name", f"{your} {noun} is called {name}.")
        add(f"What is {owner} {other}'s name?", name, "name", f"{your} {other} is called {name}.")
        add(f"What is {owner} {noun}'s name?", name, "name", f"{your} {noun} is called {name}.")
        add(f"What is {owner} {other} called?", name, "name", f"{your} {other} is called {name}.")
    doing = c.doing()
    if doing:
        add(*doing, "wh")
    owner = c.subject_text("short")
    if named and owner.startswith("my "):
        name = c.subject_text("named")
        possessive = owner + ("'" if owner.endswith("s") else "'s")
        called = f"{_yours(owner)} is called {name}."  # in the question's frame, as every name is
        add(f"What is {possessive} name?", name, "name", called)
        add(f"What is {owner} called?", name, "name", called)
        add(f"Who is {name}?", owner[3:], "who")
        head = c.subject.lemma_.lower() if c.subject.pos_ == "NOUN" else ""
        if head and kind(head) and owner.endswith(c.subject.text):  # "my terrier Pickle": "What is my dog's name?"
            asked = owner[: -len(c.subject.text)] + kind(head)
            add(f"What is {asked}'s name?", name, "name", f"{_yours(asked)} is called {name}.")
            add(f"What is {asked} called?", name, "name", f"{_yours(asked)} is called {name}.")
    elif not c.user_subject and "my" not in c.subject_text("full").split() and \
            any(t.pos_ == "PROPN" for t in c.subject.subtree):  # fmt: skip
        # about someone else: "Who wrote the novel Glass Harbour?"
        rest = c.words({t.i for t in c.sent if t.i not in c.subj_idx and not (t.is_punct and t.i == c.sent.end - 1)})
        places = {"GPE", "LOC", "FAC", "ORG", "PRODUCT", "WORK_OF_ART", "EVENT"}
        wh = "Who" if _alive(c.subject) or makes(c.root.lemma_) or \
            (c.root.pos_ == "VERB" and not _ents(c.subject.subtree) & places) else "What"  # fmt: skip
        add(f"{wh} {rest}?", c.subject_text("full"), "subject")
    if person := _person_named(c):  # "Who is my husband?" is answered with his name, as the other names are
        whose, who, role = person
        add(f"Who is {whose}?", who, "name", f"{_yours(whose)} is called {who}.")
        if role in SPOUSES and whose == f"my {role}":  # the user's own, not "my sister's husband"
            add("Who am I married to?", who, "who", f"You are married to {who}.")
    full = c.subject_text("full")
    add(c.question("", set(), subject="full"), value or _content(c, {t.i for t in c.sent}), "yesno", "Yes. " + you)
    if full not in ("I", "we"):  # "What do you know about me?" is about every memory of the user
        add(f"What do you know about {full.rstrip(',')}?", value or you, "recite")
    seen: set[str] = set()
    unique = []
    for q in out:
        key = norm(q.question)
        if key not in seen:
            seen.add(key)
            unique.append(q)
    return tuple(unique)
