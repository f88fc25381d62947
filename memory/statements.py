"""Reading a user turn into statements: what it says, one self-contained sentence per fact.

`Reader.read(text, when, resolver)` parses the turn with spaCy and, for each
sentence:
1. drops what carries no fact: greetings and vocatives ("Hey Mel!"),
   discourse markers ("oh", "actually", "lol"), asides to the listener ("good
   to meet you", "as I said"), and notes the cues they give (a correction,
   "remember that ...");
2. splits it into clauses: coordinated predicates ("lives in Narvik and plays
   the tuba"), juxtaposed clauses ("Leif moved last month, he lives in Tromsø
   now"), coordinated complements ("is seven and obsessed with dinosaurs"),
   the subject copied where a clause shares it;
3. classifies each clause: a question, an instruction to the agent, a
   reaction or small talk ("I'm so happy for you", "that sounds fun"), a
   remark about the conversation ("I was wrong"), or a statement;
4. rewrites a statement to stand alone: first person -> the user ("I ride" ->
   "The user rides", "my" -> "the user's", "we" -> the user and whoever they
   were just talking about), pronouns -> their antecedents (`memory.mentions`),
   relative times -> dates (`memory.times`), "Tilde, not Tilda" -> "Tilde"
   with "Tilda" noted as negated; and renders it in the second person too
   ("Your cousin Leif lives in Narvik.") for the dreams;
5. indexes it where the parse allows: subject, relation (`name`, `lives in`,
   `age`, `occupation`, `likes`, ... or the verb's own frame) and value, with
   the value's type (date, number, place, person, name, thing), the entities
   it is about, and its content anchors (names, numbers, dates, nouns) from
   which importance is scored.
Nothing here matches a phrasing: it reads the parse, so other sentences of
the same forms read the same way.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from memory.kinds import is_a
from memory.language import agreeing, inflect, parse, partnered, subjects
from memory.mentions import (
    ANIMALS,
    FEMALE,
    LIGHT,
    MALE,
    PLURAL_PERSONS,
    PRONOUNS,
    Mention,
    Resolver,
    gender_of,
    kind_of,
    possessive_form,
)
from memory.questions import said_in_past
from memory.times import MONTHS, placed, resolve

SUBJECTS = ("nsubj", "nsubjpass", "csubj", "expl")
FIRST = {"i": "the user", "me": "the user", "my": "the user's", "mine": "the user's", "myself": "themselves"}
SECOND = {"i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself"}
DISCOURSE = {"oh", "ah", "aw", "aww", "well", "so", "also", "anyway", "anyways", "actually", "hey", "hi", "hello", "yeah",
             "yes", "yep", "no", "nope", "ok", "okay", "lol", "haha", "hahaha", "wow", "omg", "btw", "um", "uh", "hmm",
             "sorry", "oops", "wait", "plus", "besides", "honestly", "basically", "seriously", "and", "but", "cool",
             "nice", "great", "awesome", "ha", "hah", "yay", "ugh", "gosh", "man", "dude", "alright", "right", "sure",
             "just", "totally", "definitely", "absolutely", "indeed", "exactly", "true", "thanks", "cheers"}  # fmt: skip
LAUGHS = {"lol", "haha", "hahaha", "hehe", "lmao", "rofl", "xd", ":)", ":(", ":d", "😂", "😊"}
REACTION_VERBS = {"thank", "love", "like", "appreciate", "agree", "understand", "see", "know", "mean", "hope", "wish",
                  "miss", "bet", "guess", "admire", "enjoy", "adore", "sound", "look", "seem", "feel", "get", "hear",
                  "congratulate", "care", "imagine", "envy", "support", "believe", "want", "need"}  # fmt: skip
FEELINGS = {"happy", "glad", "sorry", "proud", "excited", "thrilled", "grateful", "thankful", "sad", "tired", "busy",
            "fine", "good", "great", "okay", "ok", "well", "amazing", "awesome", "cool", "nice", "fun", "lovely",
            "wonderful", "fantastic", "beautiful", "interesting", "funny", "hard", "tough", "sweet", "kind", "right",
            "true", "sure", "bad", "terrible", "crazy", "exhausted", "stressed", "swamped", "jealous", "curious",
            "impressed", "inspiring", "incredible", "awful", "perfect", "brilliant", "super", "lucky", "welcome",
            "fascinating", "cute", "adorable", "hilarious", "stunning", "gorgeous", "excellent", "special", "important",
            "worth", "possible", "real", "wise", "smart", "brave", "strong", "helpful", "useful", "powerful", "touched"}  # fmt: skip
REPORT = {"think", "believe", "guess", "suppose", "reckon", "feel", "know", "say", "tell", "hope", "wish", "mean",
          "realize", "realise", "bet", "imagine", "remember", "forget", "hear", "read", "see", "notice", "find"}  # fmt: skip
META = {"say", "mention", "tell", "repeat", "clarify", "explain", "ask", "wonder"}
EXPLICIT = {"remember", "note", "memorize", "memorise"}
CHANGE_VERBS = {"move", "switch", "change", "relocate", "transfer", "turn", "become", "reschedule", "swap", "shift",
                "postpone", "convert", "delay", "rebook"}  # fmt: skip
PUT_OFF = {"push", "bump", "bring", "put"}  # changes with "to", "back" or "forward": "got pushed to 19 June"
CORRECTION_WORDS = {"actually", "correction", "sorry", "oops", "instead", "anymore", "longer", "wrong", "misspoke",
                    "meant", "scratch", "rather"}  # fmt: skip
PREFERENCE = {"like": "likes", "love": "likes", "enjoy": "likes", "adore": "likes", "prefer": "prefers",
              "hate": "dislikes", "dislike": "dislikes", "detest": "dislikes", "loathe": "dislikes"}  # fmt: skip
RELATIONS = {("live", "in"): "lives in", ("move", "to"): "lives in", ("move", "into"): "lives in", ("relocate", "to"): "lives in",
             ("reside", "in"): "lives in", ("work", "as"): "occupation", ("work", "at"): "works at",
             ("work", "for"): "works at", ("study", None): "studies", ("bear", "in"): "born in", ("bear", "on"): "born on",
             ("grow", "in"): "grew up in", ("raise", "in"): "grew up in", ("marry", "to"): "married to",
             ("marry", None): "married to", ("support", None): "supports", ("come", "from"): "comes from",
             ("teach", None): "teaches", ("drive", None): "drives", ("ride", None): "rides", ("play", None): "plays"}  # fmt: skip
PLAN_WORDS = {"plan", "planning", "going", "gonna", "hope", "hoping", "intend", "want", "thinking", "aim", "goal",
              "will", "'ll", "shall", "dream", "wish", "considering"}  # fmt: skip
AGENTIVE = re.compile(r"(?:er|or|ist|ian|ant|ent|ess|man|woman|ee)$")
# who someone is to others, how old, what they eat or how far along: never a job ("I'm a mom of two" was
# trained "What do I do for a living?" -> "You work as a mom"; "my son is a teenager", "I'm a vegetarian" too)
NOT_JOBS = (MALE | FEMALE | {"cousin", "friend", "partner", "spouse", "colleague", "coworker", "co-worker", "roommate",
            "flatmate", "housemate", "neighbour", "neighbor", "child", "kid", "baby", "toddler", "twin", "parent",
            "sibling", "grandparent", "grandchild", "stepchild", "in-law", "classmate", "teammate", "bestie", "tenant",
            "client", "relative", "teenager", "teen", "adult", "youngster", "grown-up", "newborn", "vegetarian",
            "vegan", "pescatarian", "beginner", "newbie", "novice", "member", "owner", "citizen", "native", "resident",
            "foreigner", "immigrant", "expat", "newcomer", "customer", "patient", "winner", "fan", "believer",
            "introvert", "extrovert", "loner", "only"})  # fmt: skip
# Fixed discourse expressions (about the conversation, not the world): taken out before parsing, as cues.
ASIDES = [
    (re.compile(r"[,;]?\s*\b(?:like|as)\s+i\s+(?:said|mentioned|told you|say)\b(?:\s+(?:before|earlier))?", re.I), "repeat"),
    (re.compile(r"\b(?:just\s+)?to\s+say\s+it\s+again\b[,:]?", re.I), "repeat"),
    (re.compile(r"\b(?:just\s+so\s+you\s+know|for\s+the\s+record|by\s+the\s+way|to\s+be\s+clear|fyi|btw)\b[,:]?", re.I), None),
    (re.compile(r"\b(?:scratch\s+that|i\s+misspoke|my\s+bad|i\s+stand\s+corrected)\b[,:.;!]?", re.I), "correction"),
    (re.compile(r"^\s*(?:correction|update|quick\s+update)\s*[:,-]", re.I), "correction"),
]
INFORMAL = [(re.compile(r"\b(g)onna\b", re.I), r"\1oing to"), (re.compile(r"\b(w)anna\b", re.I), r"\1ant to")]
FAREWELL = re.compile(r"^\W*(?:bye|goodbye|good\s*night|night|see\s+you|see\s+ya|talk\s+(?:soon|later|tomorrow|to\s+you)|"
                      r"catch\s+you|ttyl|cya|take\s+care|later|good\s+(?:morning|afternoon|evening)|hello|hi|hey|hiya|"
                      r"howdy|namaste|cheers)\b", re.I)  # fmt: skip
RELATIVE_PRONOUNS = {"that", "which", "who", "whom", "whose", "where", "when", "what"}
NOT_ACTIVITIES = {"talk", "chat", "do", "be", "have", "get", "see", "hear", "say", "know", "help", "meet", "catch", "hang",
                  "speak", "forget", "worry", "wonder", "think", "go", "come", "wait", "try", "look", "feel"}
# the conjunctions of a clause that holds what it says as true ("now that I'm an assistant manager", "because
# I'm a nurse"; not "if", "when", "until": a condition or a time, not a fact of its own)
EMOTIONS = {"happy", "glad", "proud", "excited", "thrilled", "delighted", "grateful", "thankful", "sad", "upset",
            "pleased", "stoked", "ecstatic", "relieved", "nervous", "worried", "disappointed", "surprised", "touched"}  # fmt: skip
VERDICT_NOUNS = {"name", "idea", "choice", "pick", "call", "plan", "question", "point", "suggestion", "tip"}
FACTIVE = {"because", "since", "although", "though", "now that"}
CAUSATIVE = {"make", "let", "have", "help", "see", "watch", "hear", "feel", "get", "want", "need", "like", "love", "hate",
             "keep", "leave", "find", "consider"}  # their clause complement belongs to them ("make me feel calm")
THIRD_OBJECTS = {"him", "her", "them", "his", "their", "hers", "theirs"}
LISTENER = {"you", "your", "yours", "ya", "u"}
INTENDING = {"hope", "mean", "wish", "plan", "intend"}  # with a plan in its to-clause: "Was hoping to ..."
SAYING = {"say", "write", "type", "tell", "ask", "put", "spell"}  # "I meant to say Tuesday": a correction
# what "it" was, said with "it" dropped: "Must have been quite an adventure", "Been a blast"
EXPERIENCES = {"experience", "blast", "ride", "adventure", "treat", "relief", "shame", "pity", "challenge", "struggle",
               "rollercoaster", "nightmare", "dream", "game-changer", "lifesaver", "age", "ages", "forever", "while"}  # fmt: skip
# nouns that carry no fact on their own: "going for my dreams", "that's the spirit", "appreciate your support"
ABSTRACT = {"dream", "support", "luck", "spirit", "side", "memory", "word", "kindness", "help", "advice", "vibe",
            "energy", "hug", "wish", "best", "success", "journey", "thought", "feeling", "joy", "love", "fun",
            "pleasure", "honor", "honour", "inspiration", "motivation", "encouragement", "congrats", "congratulation",
            "news", "story", "update", "chat", "talk", "conversation", "reminder", "heart", "soul", "moment"}  # fmt: skip


@dataclass
class Statement:
    text: str  # third person: "The user's cousin Leif lives in Narvik."
    you: str  # second person: "Your cousin Leif lives in Narvik."
    subject: str  # "user", "user's cousin Leif", "Aiko Brandt", "the second shop"
    relation: str | None = None  # "lives in", "name", "age", ... or the verb's frame
    value: str | None = None
    value_type: str | None = None  # date | number | place | person | name | thing
    entities: list[str] = field(default_factory=list)  # keys of who and what it is about
    time: dict | None = None  # {"text", "iso", "granularity"} of a resolved relative time
    kind: str = "personal"  # personal | third_party | preference | plan | world
    about_user: bool = True
    negated: list[str] = field(default_factory=list)  # values it says are wrong ("not Tilda")
    anchors: list[str] = field(default_factory=list)  # its content words: names, numbers, dates, nouns
    names: list[str] = field(default_factory=list)  # the proper names and numbers among them
    generic: bool = False  # a general claim: a bare plural or mass-noun subject, no one in particular
    source: str = ""  # the clause as said
    change: bool = False  # a change verb ("moved", "switched", "turned") said as done
    tense: str | None = None  # past: a state that held ("I lived in Lagos"); future: a plan or a condition
    said_negated: bool = False  # "I'm not a carpenter anymore": a change of a known fact, not a fact


@dataclass
class Rejected:
    sentence: str
    kind: str  # question | instruction | smalltalk | reaction | remark | empty
    reason: str


@dataclass
class Reading:
    statements: list[Statement] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    cues: set[str] = field(default_factory=set)  # correction | explicit | repeat
    negated: list[str] = field(default_factory=list)


class Reader:
    """Reads turns into statements; `resolver` carries a conversation's mentions from turn to turn."""

    def read(self, text: str, when: dt.datetime | None = None, resolver: Resolver | None = None) -> Reading:
        when = when or dt.datetime.now(dt.UTC)
        resolver = resolver if resolver is not None else Resolver()
        reading = Reading()
        for pattern, cue in ASIDES:
            if pattern.search(text):
                text = pattern.sub(" ", text)
                if cue:
                    reading.cues.add(cue)
        for pattern, said in INFORMAL:  # "gonna" is tokenised "gon" + "na", a noun: "Friday's gonna be epic"
            text = pattern.sub(said, text)
        doc = parse([re.sub(r"\s+", " ", text).strip()])[0]
        for repair in (_dash_between_sentences, _spelt_out, _comma_before_main):  # what the tagger misread, said so that it reads it right
            repaired = repair(doc)
            if repaired != doc.text:
                doc = parse([repaired])[0]
        for sent in doc.sents:
            self._sentence(sent, when, resolver, reading)
        for s in reading.statements:
            s.negated = list(dict.fromkeys(s.negated + reading.negated))
        return reading

    # -- sentences -----------------------------------------------------------

    def _sentence(self, sent, when, resolver: Resolver, reading: Reading) -> None:
        number = resolver.next_sentence()
        words = [t for t in sent if not t.is_punct and t.lower_ not in LAUGHS]
        lowered = {t.lower_ for t in sent}
        if lowered & CORRECTION_WORDS or re.search(r"\bscratch that\b|\bi meant\b|\bnot\s+\w+\W*$", sent.text, re.I):
            reading.cues.add("correction")
        if not words:
            return
        content = [t for t in words if t.lower_ not in DISCOURSE and t.dep_ not in ("intj",)]
        if sent.text.strip().endswith("?") or _wh_question(content):
            reading.rejected.append(Rejected(sent.text, "question", "a question: nothing to remember"))
            # but who it names is mentioned: "Have you heard of Ines Vallmoor? She wrote ..."
            self._mentions(sent, number, resolver)
            return
        farewell = FAREWELL.match(sent.text) and len(content) <= 4
        if farewell or not content or all(t.pos_ in ("INTJ", "PROPN", "PUNCT", "ADV", "DET") for t in content) and len(content) <= 3:
            reading.rejected.append(Rejected(sent.text, "smalltalk", "small talk: nothing to remember"))
            return
        mentions = self._mentions(sent, number, resolver)
        for clause in sorted(self._clauses(sent), key=lambda c: min(c["tokens"] or [c["head"].i])):
            self._clause(clause, sent, number, when, resolver, reading, mentions)

    def _mentions(self, sent, number: int, resolver: Resolver) -> dict[int, Mention]:
        """The people, animals and things a sentence names, by the index of their head token."""
        found: dict[int, Mention] = {}
        for token in sent:
            nominal = token.pos_ in ("NOUN", "PROPN") or token.dep_ in ("nsubj", "dobj", "pobj", "attr", "nsubjpass") \
                and kind_of(token.lower_) is not None  # a role noun the tagger took for an adjective ("a little terrier")
            if not nominal or token.dep_ in ("compound", "poss") and token.head.pos_ == "PROPN":
                continue
            if token.ent_type_ in ("DATE", "TIME"):
                continue
            if token.dep_ == "appos" and token.head.i in found:
                continue  # "my uncle Gunnar": the name belongs to the uncle
            if token.dep_ in ("oprd", "attr") and token.pos_ == "PROPN" and token.head.lemma_ in ("call", "name"):
                owner_noun = next((c for c in token.head.children if c.dep_ in ("nsubjpass", "dobj")), None)
                if owner_noun is not None and owner_noun.i in found:  # "his fiancée is called Aino"
                    found[owner_noun.i].name_it(_span_text(token))
                    found[token.i] = found[owner_noun.i]
                    continue
            proper = _is_name(token) and kind_of(token.lower_) is None
            lemma = token.lemma_.lower() if token.pos_ == "NOUN" and not proper else token.lower_
            kind = kind_of(lemma)
            name = _name_of(token)
            role_word = next((c for c in token.children if c.dep_ == "compound" and c.pos_ == "NOUN"
                              and kind_of(c.lemma_)), None) if token.pos_ == "PROPN" else None  # fmt: skip
            if role_word is not None:  # "my aunt Berit", "my dog Rufus": the role is a compound of the name
                kind, lemma = kind_of(role_word.lemma_), role_word.lemma_.lower()
            known = token.text[:1].isupper() and any(
                m.animate == "person" and m.name and token.text in m.name.split() for m in resolver.mentions)
            if known:  # the first or last name of someone already named ("Brandt" after "Aiko Brandt"), whatever its tag
                kind, role, lemma = "person", None, token.lower_
            if kind is None and token.ent_type_ == "PERSON":
                kind = "person"
            if kind is None and token.pos_ == "NOUN" and lemma not in LIGHT:
                kind = "thing"
            if kind is None and token.pos_ == "PROPN" and token.ent_type_ != "PERSON":
                kind = "thing"  # a place, an organisation, a title, a product
            if kind is None:
                continue
            owners = list(token.children) + (list(role_word.children) if role_word is not None else [])
            owner = "user" if any(c.dep_ == "poss" and c.lower_ in ("my", "our") for c in owners) else None
            # someone's of someone named before it: "my brother's wife", "Nils's fiancée"
            of = next((found[c.i].phrase for c in owners if c.dep_ == "poss" and c.i in found
                       and found[c.i].animate in ("person", "animal")), None)  # fmt: skip
            role = lemma if (not proper or role_word is not None) and not known else None
            if known:
                name = token.text
            if role_word is not None:
                name = _span_text(token)
            if kind == "person" and proper and role is None:
                name = name or _span_text(token)
            phrase = _describe(token, owner, role, name, of)
            # a plural has a singular of its own ("kids" -> "kid"): the tagger calls "fiancée" a plural
            plural = token.tag_ in ("NNS", "NNPS") and token.pos_ != "PROPN" and token.lemma_.lower() != token.lower_
            m = Mention(phrase, kind, name=name, role=role, owner=owner, of=of, gender=gender_of(lemma) if role else None,
                        plural=plural or lemma in PLURAL_PERSONS,
                        subject=token.dep_ in SUBJECTS, sentence=number, position=token.i)  # fmt: skip
            conj = [c for c in token.children if c.dep_ == "conj" and c.pos_ in ("PROPN", "NOUN")]
            head = token.head
            if token.dep_ in ("attr", "appos") and head.lemma_ == "be" and any(
                    c.dep_ == "nsubj" and c.lower_ == "i" for c in head.children) or token.dep_ == "attr" and any(
                    c.dep_ == "nsubj" and c.lemma_ == "name" and any(g.lower_ == "my" for g in c.children)
                    for c in head.children):  # fmt: skip
                m.is_user = True  # "I'm Ingrid Solberg", "my name is Tom"
            found[token.i] = resolver.add(m)
            if any(c.dep_ == "acl" and c.lemma_ in ("name", "call") for c in token.children) and token.dep_ == "attr":
                subj = next((c for c in head.children if c.dep_ == "nsubj"), None)
                if subj is not None and subj.i in found and name:  # "my rabbit is a lop named Pip"
                    found[subj.i].name_it(name)
            if conj:  # "Biscuit and Crumble": also a group
                members = [found[token.i]]
                for c in conj:
                    cm = Mention(_span_text(c), kind, name=_name_of(c) or (_span_text(c) if c.pos_ == "PROPN" else None),
                                 role=c.lemma_.lower() if c.pos_ == "NOUN" else None, owner=owner, sentence=number,
                                 position=c.i)  # fmt: skip
                    found[c.i] = resolver.add(cm)
                    members.append(found[c.i])
                resolver.add(Mention(" and ".join(x.short() for x in members), kind, plural=True, sentence=number,
                                     position=token.i, subject=token.dep_ in SUBJECTS, members=members))  # fmt: skip
        return found

    def _clauses(self, sent) -> list[dict]:
        """Clause heads with their tokens; a clause that shares its subject gets it as `inherited`."""
        out: list[dict] = []

        def visit(head, inherited, explicit=False, implied=False):
            subject = subjects(head)
            split = []
            for c in head.children:
                own_subject = any(g.dep_ in SUBJECTS for g in c.children)
                marked = any(g.dep_ == "mark" for g in c.children) or c.left_edge.lower_ in RELATIVE_PRONOUNS
                verbal = c.pos_ in ("VERB", "AUX") or c.pos_ == "NOUN" and head.pos_ in ("VERB", "AUX") and not any(
                    g.dep_ in ("det", "poss", "amod", "nummod") for g in c.children)  # "and sings in a choir" tagged a noun
                if c.dep_ == "conj" and verbal and _has_content(c) and (
                        own_subject or _indexed(head) or _indexed(c)):  # fmt: skip
                    # "lives in Narvik and plays the tuba": two facts, one of them a relation that can change
                    # on its own; "sets goals and tracks my achievements" stays one description
                    split.append((c, subject or inherited, False))
                elif c.dep_ in ("ccomp", "parataxis") and own_subject and not marked and (
                        head.lemma_ not in REPORT | CAUSATIVE or c.i < head.i and head.lemma_ not in REPORT):
                    # what a causative makes or sees follows it: a clause before it is a sentence of its own
                    # ("My aunt is called Rosa, she makes pottery"; "I think" after a clause still reports it)
                    split.append((c, None, False))
                elif c.dep_ == "ccomp" and head.lemma_ in EXPLICIT and not subject:
                    split.append((c, None, True))  # "remember that I'm allergic to shellfish"
                elif c.dep_ in ("advcl", "ccomp") and own_subject and _factive(c) and _says_what(c):
                    split.append((c, None, False))  # "I love my job now that I'm a nurse": what the user is
                elif c.dep_ == "advcl" and not marked and c.i < head.i and c.pos_ in ("VERB", "AUX") and (
                        own_subject or c.tag_ in ("VBD", "VBN", "VBG")):  # fmt: skip
                    split.append((c, None if own_subject else subject or inherited, False))  # "Just finished X, loved it."
            drop = {t.i for c, _, _ in split for t in c.subtree}
            # the conjunctions and commas that joined the clauses split off
            drop |= {c.i for c in head.children if c.dep_ in ("cc", "punct") and split and c.i < max(x.i for x, _, _ in split)
                     and any(x.left_edge.i > c.i for x, _, _ in split)}  # fmt: skip
            tokens = [t.i for t in head.subtree if t.i not in drop]
            out.append({"head": head, "tokens": tokens, "inherited": inherited if not subject else None,
                        "explicit": explicit, "implied": implied})  # fmt: skip
            for c, inh, exp in split:
                visit(c, inh, exp or explicit)
            for comp in [c for c in head.children if c.dep_ in ("attr", "acomp", "dobj", "oprd")]:
                for conj in [c for c in comp.children if c.dep_ == "conj" and c.pos_ in ("VERB", "ADJ", "NUM", "NOUN")
                             and (c.pos_ != comp.pos_ or any(g.dep_ in ("prep", "dobj", "xcomp", "acomp")
                                                            for g in c.children))]:  # fmt: skip
                    # "is nine and crazy about horses": the conjunct and what follows it in the complement
                    conj_tokens = {t.i for t in comp.subtree if t.i >= conj.i}
                    out[-1]["tokens"] = [i for i in out[-1]["tokens"] if i not in conj_tokens
                                         and not (sent.doc[i].dep_ == "cc" and sent.doc[i].head == comp)]  # fmt: skip
                    keep = [t.i for t in head.subtree if t.i not in drop and (t.i < comp.left_edge.i or t.i in conj_tokens
                            or t.dep_ in ("aux", "neg") and t.head == head or t == head)]  # fmt: skip
                    out.append({"head": head, "tokens": keep, "inherited": out[-1]["inherited"],
                                "explicit": explicit, "implied": False, "complement": conj})  # fmt: skip

        visit(sent.root, None)
        return out

    # -- one clause ----------------------------------------------------------

    def _clause(self, clause: dict, sent, number: int, when, resolver: Resolver, reading: Reading,
                mentions: dict[int, Mention]) -> None:  # fmt: skip
        doc = sent.doc
        head = clause["head"]
        tokens = _strip([doc[i] for i in clause["tokens"]])
        if not tokens:
            return
        subject = clause["inherited"] or subjects(head)
        if not subject:  # "Saturday is going to be great": the tagger made the time a modifier, no subject
            subject = [c for c in head.children if c.dep_ == "npadvmod" and c.pos_ in ("NOUN", "PROPN") and c.i < head.i
                       and ((head.lemma_ == "be" or head.tag_ == "VBZ") and head.i == c.right_edge.i + 1
                            or any(a.dep_ == "aux" and a.i == c.right_edge.i + 1 for a in head.children))][:1]  # fmt: skip
        subj_words = {t.lower_ for s in subject for t in s.subtree}
        first = [t for t in tokens if not t.is_punct and not (t.head == head and t.dep_ in ("aux", "neg", "advmod", "intj"))
                 and t.lower_ not in DISCOURSE | {"maybe", "perhaps", "please", "definitely", "really"}]  # fmt: skip
        lemma = head.lemma_.lower()
        if any(t.lower_ == "let" and t.i + 1 < len(doc) and doc[t.i + 1].lower_ in ("'s", "us") for t in tokens):
            reading.rejected.append(Rejected(_span(tokens), "smalltalk", "a suggestion to the listener, not a fact"))
            return  # "let's keep in touch"
        if head.lemma_ in EXPLICIT and not subject:
            reading.cues.add("explicit")
            return
        went = lemma == "get" and any(c.lower_ in ("back", "home", "from", "to", "into") for c in head.children)
        went = went or _intends(head)
        if not subject and lemma in REACTION_VERBS | {"wait", "let"} and first and head == first[0] and not went \
                or lemma == "let" \
                or head.head.lemma_.lower() == "let" and head.dep_ in ("conj", "ccomp", "xcomp"):  # fmt: skip
            reading.rejected.append(Rejected(_span(tokens), "reaction", "a reaction: nothing to remember"))
            return  # "Sounds great", "Love that colour!", "Let's keep going!": the subject dropped
        if head.pos_ == "ADJ" and lemma in FEELINGS and not subject:
            reading.rejected.append(Rejected(_span(tokens), "reaction", "a reaction: nothing to remember"))
            return  # "Glad it helped!", "So happy for you"
        relative = {x.i for t in tokens if t.dep_ in ("relcl", "acl") for x in t.subtree}
        if head.dep_ == "ROOT" and head.pos_ not in ("VERB", "AUX") and not any(
                t.pos_ in ("VERB", "AUX") and t.i not in relative for t in tokens) \
                and not any(c.dep_ in SUBJECTS for c in head.children):  # fmt: skip
            names = [t for t in tokens if (t.pos_ == "PROPN" or t.like_num) and t.ent_type_ not in ("DATE", "TIME")]
            if not names or head.lemma_.lower() in FEELINGS | ABSTRACT:
                reading.rejected.append(Rejected(_span(tokens), "smalltalk", "a fragment with nothing to keep"))
                return  # "Good luck with your store!", "Glad that you're on my side."
        if not subject and head.tag_ in ("VB", "VBP") and first and head == first[0]:
            if head.lemma_ in REACTION_VERBS:  # "Love that colour!", "Hope you're well": the subject dropped
                reading.rejected.append(Rejected(_span(tokens), "reaction", "a reaction: nothing to remember"))
                return
            reading.rejected.append(Rejected(_span(tokens), "instruction", "an instruction to the agent, not a fact"))
            return
        if subj_words <= {"i"} and head.lemma_ in ("be", "get", "mean", "misspeak") and _is_remark(head) \
                and not _intends(head):  # "Been meaning to learn Portuguese": no "I meant"
            reading.cues.add("correction")
            return
        if not subject and head.lemma_ == "be" and head.lower_ == "been" and any(
                c.dep_ in ("attr", "npadvmod") and (is_a(c.lemma_, "time") or {c.lemma_, c.lower_} & ABSTRACT | EXPERIENCES)
                for c in head.children):  # fmt: skip
            reading.rejected.append(Rejected(_span(tokens), "smalltalk", "about how something was, not the user"))
            return  # "Been a week since my last lesson", "Must have been quite an adventure": "it" dropped
        subject_tokens = [t for s in subject for t in s.subtree]
        if any(t.ent_type_ in ("DATE", "TIME") and t.pos_ != "PRON" for t in subject_tokens) and all(
                t.ent_type_ in ("DATE", "TIME") or t.is_stop for t in subject_tokens):  # fmt: skip
            reading.rejected.append(Rejected(_span(tokens), "smalltalk", "about a time, with nothing else to keep"))
            return  # "Next Friday works."
        if subj_words & {"you", "u", "ya", "yourself", "your", "yours"} and not subj_words & {"i", "we", "my", "our"}:
            modal = any(c.dep_ == "aux" and c.lower_ in ("must", "should", "will", "shall", "need", "have") for c in head.children)
            kind = "instruction" if modal or "now" in {t.lower_ for t in tokens} else "reaction"
            why = "an instruction to the agent, not a fact" if kind == "instruction" else "about the listener, not the user"
            reading.rejected.append(Rejected(_span(tokens), kind, why))
            return
        listener = [t for t in tokens if t.lower_ in ("you", "your", "yours", "ya") and t.dep_ in (
            "dobj", "dative", "pobj", "poss", "nsubj") and t.i not in {x.i for s in subject for x in s.subtree}
            and not (t.dep_ == "nsubj" and t.head.dep_ in ("relcl", "acl"))]  # "the novel you told me about": the novel
        if listener and not any(t.pos_ in ("PROPN", "NUM") and t.ent_type_ not in ("DATE", "TIME") for t in tokens):
            reading.rejected.append(Rejected(_span(tokens), "reaction", "about the listener, not something to remember"))
            return  # "It should give you strength", "I love your commitment", "I'll update you"
        if lemma in ("sound", "look", "seem") and not subj_words & {"i"}:
            reading.rejected.append(Rejected(_span(tokens), "reaction", "an impression of something, not a fact"))
            return  # "Tokyo sounds like an incredible experience"
        if _reaction(head, tokens, subject):
            reading.rejected.append(Rejected(_span(tokens), "reaction", "a reaction or small talk: nothing to remember"))
            return
        anchors = _anchors(tokens, subject)
        subject_only = {t.i for s in subject for t in s.subtree}
        predicate = [a for a, t in zip(anchors, _anchor_tokens(tokens, subject), strict=True) if t.i not in subject_only]
        presentational = any(c.lower_ in ("here", "there") and c.dep_ in ("advmod", "expl") for c in head.children)
        if anchors and not predicate and not presentational and head.lemma_ in {"be", "have", "get", "go"} | REACTION_VERBS:
            anchors = []  # "Success is almost here", "That's the spirit": nothing is said of the subject
        content = [t for t in _anchor_tokens(tokens, subject) if t.pos_ in ("NOUN", "PROPN", "NUM")]
        if anchors and content and all(t.pos_ == "NOUN" and t.lemma_.lower() in ABSTRACT for t in content):
            anchors = []  # "I'm going for my dreams!", "Looking forward to more memories"
        if not anchors:
            reading.rejected.append(Rejected(_span(tokens), "smalltalk", "no names, things, numbers or dates: nothing to keep"))
            return
        implied = not subject and head.tag_ in ("VBG", "VBD", "VBN") and not clause["inherited"]
        statement = self._render(clause, tokens, subject, implied, number, when, resolver, reading, mentions)
        if statement is None:
            return
        statement.anchors = anchors
        statement.names = [t.text for t in tokens if (t.pos_ == "PROPN" or t.like_num or t.ent_type_ in (
            "PERSON", "GPE", "ORG", "LOC", "FAC", "WORK_OF_ART", "EVENT", "PRODUCT", "CARDINAL", "NORP"))
            and t.ent_type_ not in ("DATE", "TIME") and t.tag_ not in ("PRP", "PRP$")]  # fmt: skip
        sentence_words = {t.lower_ for t in sent}
        statement.generic = bool(subject) and all(
            s.pos_ == "NOUN" and s.tag_ in ("NNS", "NN") and not any(c.dep_ in ("det", "poss", "amod", "nummod", "compound")
                                                                   for c in s.children)
            for s in subject) and head.tag_ in ("VBZ", "VBP") and not sentence_words & {
            "i", "me", "my", "we", "our", "us", "you", "your"}  # fmt: skip  "Flowers bring joy", not "many people wanted"
        if clause["explicit"]:
            reading.cues.add("explicit")
        reading.statements.append(statement)

    def _render(self, clause, tokens, subject, implied, number, when, resolver, reading, mentions) -> Statement | None:
        doc = tokens[0].doc
        head = clause["head"]
        in_clause = {t.i for t in tokens}
        negated: list[str] = []
        drop: set[int] = set()
        for t in tokens:  # "Tilde, not Tilda", "Osaka, not Kyoto": the value kept, the negated one noted
            if t.dep_ != "neg" or t.head == head:
                continue
            target = t.head
            if target.i > t.i and (target.dep_ in ("appos", "conj", "npadvmod") or target.pos_ in ("PROPN", "NUM")):
                span = list(target.subtree)  # "not" hangs on the negated value itself
            else:  # "not" hangs on the kept value; the negated one follows it
                after = [c for c in target.children if c.dep_ in ("appos", "conj", "npadvmod") and c.i > t.i]
                span = [t] + [x for c in after for x in c.subtree]
                kept_left = [c for c in target.lefts if c.dep_ in ("amod", "compound", "nmod", "appos", "conj")
                             and any(doc[k].is_punct for k in range(c.i + 1, t.i))]  # fmt: skip
                if not after and kept_left:  # "blue, not green" parsed as a green modified by blue
                    span = [t, target] + [x for x in target.rights if x.i > target.i]
            negated.append(_span([x for x in span if x.dep_ != "neg"]))
            drop |= {x.i for x in span} | {t.i}
            prev = doc[min(x.i for x in span) - 1] if min(x.i for x in span) > 0 else None
            if prev is not None and prev.is_punct:
                drop.add(prev.i)
        said = _span(tokens)
        if re.search(r"\b(anymore|any more|no longer)\b", said, re.I) or (
                any(c.dep_ == "neg" for c in head.children) and re.search(r"\bnow\b", said, re.I)):  # fmt: skip
            comp = next((c for c in head.children if c.dep_ in ("attr", "acomp", "dobj")), None)
            if comp is not None:
                reading.negated.append(_span([x for x in comp.subtree if x.dep_ != "det"]))
            reading.cues.add("correction")
            return None  # "I'm not a carpenter anymore": a change of what is known, not a fact of its own
        reading.negated += negated
        subject = [x for x in subject if x.i not in drop]  # "Not Pip, her name is Pepper": "Pip" is not a subject
        subj_tokens = [t for s in subject for t in s.subtree]
        subj_heads = {s.lower_ for s in subject}
        speaker = subj_heads <= {"i"} and bool(subj_heads) and not any(t.dep_ == "conj" for t in subj_tokens)
        first_person = speaker or implied
        about_user = first_person or bool({t.lower_ for t in subj_tokens} & {"i", "we", "us"})
        inherited = clause["inherited"] is not None
        times: dict | None = None
        replace3: dict[int, str] = {}
        replace2: dict[int, str] = {}
        resolved: list[Mention] = []
        for ent in doc.ents:  # relative times -> dates
            if ent.label_ in ("DATE", "TIME") and (ent.start in in_clause or any(t.i == ent.start for t in subj_tokens)):
                if len(ent) > 1 and ent[0].like_num and ent[1].lower_ in ("next", "last", "this", "on", "in", "tomorrow"):
                    ent = doc[ent.start + 1:ent.end]  # "turns seven next week": the age is no part of the date
                w = resolve(ent.text, when, past_tense=head.tag_ in ("VBD", "VBN"))
                if w is None:
                    continue
                start, phrase = placed(doc, ent, w)
                if start < ent.start:  # "in the next week": the date's own preposition replaces it
                    drop.add(start)
                replace3[ent.start] = replace2[ent.start] = phrase
                drop |= set(range(ent.start + 1, ent.end))
                times = {"text": ent.text, "iso": w.iso, "granularity": w.granularity}
        pieces_order = sorted((in_clause - drop) | ({t.i for t in subj_tokens} if inherited else set()))
        introduced: set[int] = set()  # mentions already named in this statement (later pronouns stay pronouns)
        named_here: list[Mention] = []
        user_named = bool(implied)  # "Just finished my thesis": the lead names the user, then "their"
        for i in pieces_order:
            t = doc[i]
            low = t.lower_
            if i in mentions:
                introduced.add(id(mentions[i]))
                named_here.append(mentions[i])
            if low in FIRST and t.tag_ in ("PRP", "PRP$"):
                if user_named:  # "the user takes their coffee", "the Vespa that they named Basil"
                    subordinate = low == "i" and t.head != head and t.head.dep_ in ("relcl", "advcl", "ccomp", "acl")
                    replace3[i] = {"my": "their", "mine": "theirs", "me": "them", "i": "they" if subordinate else
                                   "the user"}.get(low, FIRST[low])  # fmt: skip
                else:
                    replace3[i] = FIRST[low]
                user_named = True
                replace2[i] = SECOND[low]
                if low == "i":  # "now that I'm a manager": "they are", "when I was a kid": "you were"
                    verb = agreeing(t)
                    if verb.lower_ in ("am", "'m", "was"):
                        past = verb.lower_ == "was"
                        replace2[verb.i] = "were" if past else "are"
                        replace3[verb.i] = ("were" if past else "are") if replace3[i] == "they" else "was" if past else "is"
                    elif verb.tag_ == "VBP" and replace3[i] == "the user":  # "If the user gets the job, ..."
                        replace3[verb.i] = _third(verb)
            elif low == "you" and t.dep_ == "nsubj" and t.head.dep_ in ("relcl", "acl"):
                # the listener in a description ("the novel you told me about"): the agent, said as such
                replace3[i], replace2[i] = "the assistant", "I"
                verb = agreeing(t)
                if verb.lower_ in ("are", "were"):
                    replace3[verb.i] = "is" if verb.lower_ == "are" else "was"
                    replace2[verb.i] = "am" if verb.lower_ == "are" else "was"
                elif verb.tag_ == "VBP":
                    replace3[verb.i] = _third(verb)
            elif low in ("we", "us") and t.tag_ == "PRP":
                who = _we(resolver, number, i) or "the user and their family"
                # the clause's own "we" is named even after "the user's ..." ("Once the user's contract ends, the
                # user and their family are relocating": "they" was asked "Where does they relocate?")
                main = low == "we" and t.head == head and t.dep_ in SUBJECTS
                replace3[i] = who if not user_named or main else "they" if low == "we" else "them"
                replace2[i] = who.replace("the user's", "your").replace("the user", "you").replace("their", "your")
                user_named = True
            elif low in ("our", "ours"):
                replace3[i] = "the user's" if not user_named else "their"
                replace2[i] = "your"
                user_named = True
            elif low in PRONOUNS and t.tag_ in ("PRP", "PRP$") and not _expletive(t, in_clause):
                possessed = mentions.get(t.head.i) if t.dep_ == "poss" else None
                m = resolver.resolve(low, number, position=t.i, exclude=(possessed,))
                if m is None and low in ("they", "them", "their"):
                    m = resolver.group(number)
                if m is None:
                    continue
                resolved.append(m)
                if id(m) in introduced or any(x.same_as(m) for x in named_here):
                    continue  # "Liv is in her second year": already named, the pronoun reads well
                introduced.add(id(m))
                possessive = t.tag_ == "PRP$" or low in ("his", "its", "their", "hers", "theirs")
                ref = possessive_form(m.short()) if possessive else (m.phrase if t.dep_ in SUBJECTS else m.short())
                replace3[i] = ref
                replace2[i] = ref.replace("the user's", "your")
                if t.dep_ in SUBJECTS and m.plural:
                    pass
            if low in ("the", "a", "an") or t.pos_ in ("PROPN", "NOUN"):
                if t.text.lower().startswith("user"):
                    user_named = True
        if speaker:  # "I ride" -> "the user rides"; "I'm" -> "the user is"
            agree = [c for c in head.children if c.dep_ in ("aux", "auxpass") and c.i in in_clause]
            agree = sorted(agree + [g for c in agree for g in c.children if g.dep_ == "aux" and g.i in in_clause],
                           key=lambda t: t.i)  # "I've been meaning": "'ve" hangs from "been"
            for t in (agree[:1] or [head]):
                replace3[t.i] = _third(t)
                if t.lower_ in ("am", "'m", "was"):
                    replace2[t.i] = "are" if t.lower_ in ("am", "'m") else "were"
            for c in head.children:
                if c.dep_ == "conj" and c.tag_ == "VBP" and c.i in in_clause:
                    replace3[c.i] = _third(c)
        for t in tokens:  # contractions spelt out: "she's" -> "she is", "we're" -> "we are"
            if t.text.startswith("'") and t.pos_ in ("AUX", "VERB"):
                nxt = doc[t.i + 1] if t.i + 1 < len(doc) else None
                # "'s been" is always "has been" ("it's been great": "is been" before); a participle that
                # says a state is "is" ("he's called Rex", "she's based in Oslo"; "has called Rex" before)
                full = {"'s": "has" if _perfect(nxt) or t.lemma_ == "have" else "is", "'re": "are", "'m": "am", "'ve": "have",
                        "'ll": "will", "'d": "would"}.get(t.lower_)  # fmt: skip
                if full:
                    replace3.setdefault(t.i, full)
                    replace2.setdefault(t.i, full)
            if t.lower_ in ("actually", "really") and t.dep_ == "advmod" and t.i not in replace3:
                drop.add(t.i)
        pieces_order = [i for i in pieces_order if i not in drop]
        while pieces_order and (doc[pieces_order[0]].is_punct or doc[pieces_order[0]].dep_ in ("intj", "cc")
                                or doc[pieces_order[0]].lower_ in DISCOURSE and pieces_order[0] not in replace3
                                and doc[pieces_order[0]].lower_ != "just"):  # fmt: skip
            pieces_order.pop(0)  # what a dropped negation left at the front: "Not Pip, sorry, ..."
        been = implied and (head.lower_ == "been" and not any(c.dep_ == "aux" for c in head.children) or any(c.dep_ == "aux" and c.lower_ == "been" for c in head.children))
        # "Been reading ...", "Been vegetarian since 2015"
        bare = implied and head.tag_ == "VBG" and not any(c.dep_ == "aux" for c in head.children)
        aux = next((c for c in head.children if c.dep_ == "aux" and c.i < head.i), None) if implied else None
        if aux is not None and aux.lower_ in ("was", "were"):  # "Was thinking of getting a dog": "you were"
            replace3[aux.i], replace2[aux.i] = "was", "were"
        text3 = _join(doc, pieces_order, replace3, "The user has " if been else "The user is " if bare
                      else "The user " if implied else "")  # fmt: skip
        text2 = _join(doc, pieces_order, replace2, "You have " if been else "You are " if bare
                      else "You " if implied else "")  # fmt: skip
        if len(re.findall(r"\w+", text3)) < 3:
            return None
        kept = {i for i in pieces_order}
        structure = _structure(head, clause, subject, first_person, mentions, resolved, doc, kept)
        if structure["relation"] == "name" and speaker:  # "I'm Marta Lindgren" -> "The user's name is Marta Lindgren."
            text3, text2 = f"The user's name is {structure['value']}.", f"Your name is {structure['value']}."
        if about_user and not first_person and structure["subject"] in ("We", "we"):
            structure["subject"] = "user"
        entities = list(dict.fromkeys(
            [k for m in resolved for k in m.keys()]
            + [k for i, m in mentions.items() if i in kept or any(t.i == i for t in subj_tokens) for k in m.keys()]
        ))  # fmt: skip
        if about_user:
            entities.insert(0, "user")
        kind = _kind(head, tokens, structure["relation"], about_user, entities, mentions, resolved, times)
        tense = "future" if _unreal(head, tokens, times) else "past" if said_in_past(head) else None
        return Statement(
            text=text3, you=text2, subject=structure["subject"], relation=structure["relation"],
            value=structure["value"], value_type=structure["value_type"], entities=entities, time=times, kind=kind,
            about_user=about_user, negated=negated, source=said,
            change=tense != "future" and (head.lemma_ in CHANGE_VERBS or any(
                t.lemma_ in CHANGE_VERBS and t.dep_ not in CLAUSES for t in tokens if t.head == head)
                or head.lemma_ in PUT_OFF and any(c.lower_ in ("to", "back", "forward") for c in head.children)),
            tense=tense,
        )  # fmt: skip


# -- helpers -----------------------------------------------------------------


CLAUSES = ("advcl", "relcl", "ccomp", "acl", "csubj")  # a clause of its own: "Before I became a nurse, I worked ..."
MODALS = {"will", "'ll", "wo", "shall", "would", "'d", "might", "may", "could", "should", "gonna"}
PLANNING = {"plan", "intend", "hope", "want", "wish", "aim", "consider", "dream", "expect"}


def _unreal(head, tokens, times) -> bool:
    """Whether a clause says what will or may be, not what is: a modal ("I'll be moving to Glasgow", "we
    might move"), going to or planning to do it, a condition ("If I get the job, I'll move to Berlin"), a time
    still to come ("We're moving to Toronto next month"). A move said so has not happened: it is no change
    of where someone lives (it corrected the user's home before)."""
    in_clause = {t.i for t in tokens}
    if any(c.dep_ == "aux" and c.lower_ in MODALS for c in head.children if c.i in in_clause):
        return True
    if head.lemma_ in PLANNING | {"go"} and head.tag_ != "VBD" and any(c.dep_ == "xcomp" for c in head.children):
        return True  # "I'm going to move", "we plan to relocate"; "I went to see" is said as done
    if head.tag_ == "VBG" and head.lemma_ in CHANGE_VERBS and any(
            c.dep_ == "advcl" and c.tag_ in ("VBZ", "VBP") and any(g.dep_ in ("mark", "advmod") for g in c.children)
            for c in head.children):  # fmt: skip
        return True  # "Once my contract ends, we're relocating to Malta": arranged, not begun
    if any(c.dep_ == "advcl" and any(g.dep_ == "mark" and g.lower_ in ("if", "unless") for g in c.children)
           for c in head.children):  # fmt: skip
        return True
    finite = [head, *(c for c in head.children if c.dep_ in ("aux", "auxpass") and c.i in in_clause)]
    done = any(t.tag_ == "VBD" for t in finite)  # "The wedding got moved to 21 February": a change made
    return not done and times is not None and times["iso"] > dt.date.today().isoformat()


def _factive(clause) -> bool:
    """Whether a subordinate clause is introduced by a conjunction of `FACTIVE` ("because", "now that")."""
    mark = next((c for c in clause.children if c.dep_ == "mark"), None)
    if mark is None:
        return False
    before = clause.doc[mark.i - 1].lower_ + " " if mark.i > 0 else ""
    return mark.lower_ in FACTIVE or (before + mark.lower_) in FACTIVE


def _says_what(clause) -> bool:
    """Whether a clause says what someone is: a noun after "be" ("I'm an assistant manager") or a job
    ("I work as a welder"); a passing state ("because I was bored") is no fact of its own."""
    if clause.lemma_ == "be":
        return any(c.dep_ == "attr" and c.pos_ in ("NOUN", "PROPN") for c in clause.children)
    return clause.lemma_ == "work" and any(c.dep_ == "prep" and c.lower_ == "as" for c in clause.children)


def _perfect(nxt) -> bool:
    """Whether a "'s" before `nxt` is "has": "'s been" always ("it's been great": "is been" before), a
    participle that says a state never ("he's called Rex", "she's based in Oslo")."""
    return nxt is not None and (nxt.tag_ in ("VBN", "VBD") and nxt.lemma_ != "be" and nxt.lemma_ not in STATE_PARTICIPLES
                                or nxt.lower_ in ("got", "been"))  # fmt: skip


def _spelt_out(doc) -> str:
    """The text with each "'s" that the tagger read as a possessive but that is a verb spelt out: before a
    verb or an adjective that modifies no noun after it ("my sister's been living in Oslo", "my brother's
    moving", "my sister's married to a dentist": the last parsed as a noun with nothing to say of it).
    The reader parses the spelt-out text again ("my sister's new car" is left as it is)."""
    out = []
    for t in doc:
        nxt = doc[t.i + 1] if t.i + 1 < len(doc) else None
        verb = (t.lower_ == "'s" and t.tag_ == "POS" and nxt is not None and nxt.tag_ in ("VBN", "VBG", "VBD", "JJ")
                and not (nxt.dep_ in ("amod", "compound", "poss") and nxt.head.i > nxt.i))  # fmt: skip
        out.append((" has" if _perfect(nxt) else " is") + t.whitespace_ if verb else t.text_with_ws)
    return "".join(out)


DASHES = {"-", "–", "—", "--"}


def _dash_between_sentences(doc) -> str:
    """The text with the sentences that spaced dashes run together said one by one. "We got the kids a
    trampoline - they're loving it" was parsed as one clause that the other reports ("got" a complement of
    "loving"), stored whole ("... for the garden- they are loving it") and asked nothing right: a dash with a
    sentence (a verb with its own subject, not opening with "that" or "because") on each side is a full
    stop. A sentence between two dashes that the rest needs ("My sister - she lives in Oslo - just had a
    baby") is an aside: said after it ("My sister just had a baby. She lives in Oslo."). An aside with no
    verb ("my sister - the one in Oslo - just had a baby") is left where it is."""
    out: list[str] = []
    for sent in doc.sents:
        marks = [t.i for t in sent if t.text in DASHES and t.i > sent.start and doc[t.i - 1].whitespace_ and t.whitespace_]
        edges = [sent.start - 1, *marks, sent.end]
        whole = [_sentence_like(doc, a + 1, b) for a, b in zip(edges, edges[1:], strict=False)]
        asides = [k for k in range(len(marks) - 1) if whole[k + 1] and not (whole[k] and whole[k + 2])]
        moved = {i for k in asides for i in range(marks[k], marks[k + 1])}
        stops = {m for k, m in enumerate(marks) if whole[k] and whole[k + 1] and m not in moved and k - 1 not in asides}
        if not asides and not stops:
            out.append(sent.text_with_ws)
            continue
        closing = {marks[k + 1] for k in asides}
        text, cap = "", False
        for t in sent:
            if t.i in moved:
                continue
            if t.i in stops:
                text, cap = text.rstrip() + ". ", True
                continue
            if t.i - 1 in closing and t.is_punct:
                text = text.rstrip()  # "... in Oslo - , and": the aside's closing dash gone
            word = t.text_with_ws if t.i not in closing else ""
            text += word[:1].upper() + word[1:] if cap and word else word
            cap = cap and not word
        text = text.rstrip()
        for k in asides:
            aside = "".join(doc[i].text_with_ws for i in range(marks[k] + 1, marks[k + 1])).strip()
            text = (text if text[-1:] in ".!?" else text + ".") + " " + aside[:1].upper() + aside[1:] + "."
        out.append(text + sent[-1].whitespace_)
    return "".join(out)


OPENERS = {"that", "which", "who", "whom", "whose", "because", "since", "so", "as", "if", "when", "while", "although",
           "though", "whereas", "unless", "until", "where"}  # fmt: skip


def _sentence_like(doc, start: int, end: int) -> bool:
    """Whether tokens start..end-1 can stand as a sentence: a verb with its subject among them, not opening
    with a conjunction that makes it part of another ("- that I need a break", "- because it rained")."""
    words = [t for t in doc[start:end] if not t.is_punct]
    if not words or words[0].lower_ in OPENERS:
        return False
    return any(t.pos_ in ("VERB", "AUX") and t.dep_ not in ("relcl", "acl") and any(
        c.dep_ in SUBJECTS and start <= c.i < end and c.lower_ not in RELATIVE_PRONOUNS for c in t.children)
        for t in words)  # fmt: skip


SUBORDINATORS = {"when", "while", "after", "before", "since", "once", "because", "if", "until", "whenever", "unless",
                 "although", "though", "as"}  # fmt: skip


def _comma_before_main(doc) -> str:
    """The text with a comma where a sentence's opening time or condition clause ends and no comma says so:
    "When I was a kid I lived in Lagos" is parsed as a kid whom "I lived in Lagos" describes (the main
    clause lost, the user "is kid"), "If I get the job I will move" the same. Read so when the opening
    conjunction hangs on the root, and a clause with a subject of its own that describes a noun of it runs
    to the end of the sentence with nothing missing (a clause that describes -- "the guy I married" -- lacks
    an object or a preposition's object, and is left as it is)."""
    inserts: set[int] = set()
    for sent in doc.sents:
        words = [t for t in sent if not t.is_punct and t.lower_ not in DISCOURSE]
        if not words or words[0].lower_ not in SUBORDINATORS or words[0].head != sent.root:
            continue
        last = max((t.i for t in sent if not t.is_punct), default=sent.start)
        found = None
        for r in sent:
            subject = next((c for c in r.children if c.dep_ in ("nsubj", "nsubjpass")), None)
            if r.dep_ not in ("relcl", "ccomp") or subject is None or r.head.i >= r.i or r.right_edge.i < last:
                continue
            start = r.left_edge
            if start.lower_ in RELATIVE_PRONOUNS or start.i != subject.left_edge.i or doc[start.i - 1].is_punct:
                continue
            gap = any(c.dep_ == "prep" and not any(g.dep_ in ("pobj", "pcomp") for g in c.children) for c in r.children)
            filled = subject.dep_ == "nsubjpass" or any(
                c.dep_ in ("dobj", "attr", "acomp", "oprd", "xcomp", "ccomp", "prep", "dative") for c in r.children)
            if filled and not gap:
                found = max(found or 0, start.i)  # the innermost: "When I met the guy I married | I was twenty"
        if found:
            inserts.add(found)
    return "".join(t.text + ", " if t.i + 1 in inserts else t.text_with_ws for t in doc)


def _span(tokens) -> str:
    return "".join(t.text_with_ws for t in tokens).strip()


def _span_text(token) -> str:
    """A proper noun with its compounds: "Aiko Brandt", "Leeds United"."""
    parts = [t for t in token.subtree if t.dep_ in ("compound", "flat") and t.head == token and _is_name(t)] + [token]
    parts.sort(key=lambda t: t.i)
    return " ".join(t.text for t in parts)


def _is_name(t) -> bool:
    """A proper name, also where the tagger said "noun" ("My cousin Leif": Leif/NOUN/PERSON)."""
    return t.pos_ == "PROPN" or t.ent_type_ == "PERSON" or (
        t.pos_ == "NOUN" and t.text[:1].isupper() and t.i > t.sent.start and t.lemma_.lower() not in ANIMALS)


def _name_of(token) -> str | None:
    """The name a noun carries: "my uncle Gunnar", "my cat, Pixel,", "a corgi named Waffles"."""
    for c in token.children:
        if c.dep_ in ("appos", "npadvmod") and _is_name(c):
            return _span_text(c)
        if c.dep_ == "acl" and c.lemma_ in ("name", "call"):
            for g in c.children:
                if g.dep_ in ("oprd", "attr", "dobj") and _is_name(g):
                    return _span_text(g)
    if token.pos_ == "NOUN":
        after = token.doc[token.i + 1] if token.i + 1 < len(token.doc) else None
        if after is not None and _is_name(after) and after.head in (token, token.head) and after.dep_ in (
            "appos", "compound", "nsubj", "npadvmod", "dobj", "attr"
        ):
            return _span_text(after)
    return None


def _describe(token, owner, role, name, of=None) -> str:
    if owner and role:
        return f"the user's {role}{' ' + name if name else ''}"
    if of and role:
        return f"{possessive_form(of)} {token.lower_ if token.pos_ != 'PROPN' else token.text}{' ' + name if name else ''}"
    if name:
        return name
    mods = [t for t in token.lefts if t.dep_ in ("amod", "compound", "nummod") and t.i >= token.left_edge.i]
    words = " ".join([t.text for t in mods] + [token.text])
    return f"the {words}" if token.pos_ != "PROPN" else words


def _lemma(token) -> str:
    """A predicate's lemma; a verb the tagger took for a noun ("Tor lives in Molde": "lives", not "life")."""
    if token.pos_ in ("NOUN", "PROPN") and any(c.dep_ in SUBJECTS for c in token.children):
        from lemminflect import getLemma

        forms = getLemma(token.lower_, upos="VERB")
        if forms:
            return forms[0]
    return token.lemma_.lower()


def _indexed(verb) -> bool:
    """A predicate with an indexed relation (where someone lives, works, studies; a name, an age, a taste)."""
    lemma = _lemma(verb)
    preps = {c.lower_ for c in verb.children if c.dep_ == "prep"}
    if lemma in PREFERENCE or lemma in ("study", "marry", "bear", "name", "call", "turn"):
        return True
    if any((lemma, p) in RELATIONS for p in preps) or (lemma, None) in RELATIONS and lemma not in ("play", "drive", "ride", "teach"):
        return True
    comps = [c for c in verb.children if c.dep_ in ("attr", "acomp")]
    return lemma == "be" and any(c.like_num or c.pos_ == "NOUN" and _role(c) for c in comps)


def _role(noun) -> bool:
    """Whether a noun says who someone is: kin or a role we list, a word that ends like one who does
    something ("glassblower", "florist"), or a worker in WordNet ("surgeon", "midwife", "paramedic", "vet":
    no list or ending names them, and "My dad is a surgeon" was no job)."""
    lemma = noun.lemma_.lower()
    return kind_of(lemma) == "person" or bool(AGENTIVE.search(lemma)) or is_a(lemma, "job")


def _has_content(verb) -> bool:
    return any(c.dep_ in ("dobj", "attr", "acomp", "prep", "xcomp", "ccomp", "oprd", "npadvmod", "advmod", "dative")
               for c in verb.children)  # fmt: skip


def _wh_question(tokens) -> bool:
    if not tokens:
        return False
    first = tokens[0].lower_
    second = tokens[1].lower_ if len(tokens) > 1 else ""
    aux = {"is", "are", "was", "were", "do", "does", "did", "can", "could", "would", "will", "should", "have", "has",
           "'s", "am", "shall", "may", "might"}  # fmt: skip
    return (first in ("what", "who", "whom", "whose", "where", "when", "why", "how", "which") and second in aux) or (
        first in ("can", "could", "would", "will", "do", "does", "did", "should") and second in ("you", "i", "we", "u")
    )


def _strip(tokens) -> list:
    """Leading discourse markers, vocatives and punctuation; trailing laughs, tags and asides to the listener."""
    out = list(tokens)
    ids = {t.i for t in out}
    # the conjunction of a clause read on its own goes ("now that | I'm a nurse"); one of a clause inside it stays
    # ("Before I became a nurse, I worked as a waitress" was "The user became a nurse, the user worked ...")
    heads = {t.i for t in out if t.head.i not in ids or t.head == t}
    while out and (out[0].is_punct or out[0].dep_ in ("intj", "cc", "discourse") or out[0].dep_ == "mark"
                   and out[0].head.i in heads or out[0].lower_ in DISCOURSE
                   and out[0].dep_ in ("advmod", "intj", "cc", "ROOT", "discourse", "npadvmod") and len(out) > 1
                   and out[0].lower_ != "just"):  # fmt: skip
        out.pop(0)
    out = [t for t in out if not _vocative(t)]
    aside = {t.i for t in out for a in t.subtree if a.lower_ in ("you", "ya") and a.head.lemma_ in ("meet", "see", "hear", "talk")
             for t in [a.head.head] if t.dep_ in ("amod", "advcl", "npadvmod", "xcomp", "acomp", "conj") and t.head.pos_ in ("PROPN", "NOUN", "AUX", "VERB")}  # fmt: skip
    drop = {x.i for t in out if t.i in aside for x in t.subtree}
    out = [t for t in out if t.i not in drop and t.lower_ not in LAUGHS]
    while out and (out[-1].is_punct or out[-1].dep_ == "cc" or out[-1].lower_ in DISCOURSE and out[-1].dep_ in ("intj", "advmod")):
        out.pop()
    return out


def _vocative(t) -> bool:
    """A name the speaker addresses ("Thanks, Jon!", "Gina, good luck"), at the edge of its sentence or clause."""
    name_like = t.pos_ == "PROPN" or t.text[:1].isupper() and t.dep_ in ("npadvmod", "intj") and t.i > 0 or (
        t.text[:1].isupper() and t.dep_ == "npadvmod")  # "Caroline, it's got to be tough": tagged a noun
    if not name_like or t.ent_type_ not in ("PERSON", "ORG", "") or any(
            c.dep_ in ("poss", "case", "appos", "compound") for c in t.children):  # fmt: skip
        return False  # "my home country, Sweden", "Oscar, my guinea pig" are not addresses
    if t.dep_ == "appos" and t.head.pos_ in ("NOUN", "PROPN", "ADJ", "NUM"):  # "Our youngest, Theo, starts ..."
        return False
    doc = t.doc
    before = doc[t.i - 1] if t.i > t.sent.start else None
    after = doc[t.i + 1] if t.i + 1 < t.sent.end else None
    if t.dep_ == "conj" and before is not None and before.dep_ == "cc" and not _vocative(t.head):
        return False  # "are called Miso and Tofu": a name of the pair, not someone spoken to
    edge_before = before is None or before.is_punct or before.dep_ == "intj" or before.lower_ in DISCOURSE
    edge_after = after is None or after.is_punct
    return edge_before and edge_after and t.dep_ in ("npadvmod", "intj", "appos", "dobj", "attr", "nsubj", "ROOT", "conj", "dep")


def _is_remark(head) -> bool:
    """"I was wrong", "I got that wrong", "I meant": about the conversation, not a fact."""
    comps = {c.lower_ for c in head.subtree}
    return bool(comps & {"wrong", "misspoke", "mistake"}) or (head.lemma_ == "mean" and not any(
        c.dep_ in ("dobj", "ccomp") and c.pos_ in ("NOUN", "PROPN", "VERB", "AUX") for c in head.children))


def _reaction(head, tokens, subject) -> bool:
    """A reaction or small talk: a feeling or verdict about "it", "that", "you" or nothing in particular."""
    subj = {t.lower_ for s in subject for t in s.subtree}
    predicate = [t for t in tokens if t.i not in {x.i for s in subject for x in s.subtree}]
    nominal = [t for t in predicate if t.pos_ in ("NOUN", "PROPN", "NUM") and t.lemma_.lower() not in LIGHT | ABSTRACT
               or t.head == head and _activity(t)]
    if head.lemma_.lower() in REACTION_VERBS | {"wait"} and not nominal:
        return True  # "I just wanted to say hi", "can't wait to see you", "I appreciate it"
    if head.lemma_ == "be" and subj <= {"they", "it", "that", "this", "those", "these"} and subj and not nominal and all(
            t.pos_ in ("ADJ", "ADV", "AUX", "PART", "PUNCT", "DET") or t.i == head.i for t in predicate):  # fmt: skip
        return True  # "They're priceless", "It's so pretty"
    objects = [c for c in head.children if c.dep_ in ("dobj", "attr", "acomp", "ccomp", "xcomp", "prep", "oprd")]
    object_words = {t.lower_ for o in objects for t in o.subtree}
    vague = {"it", "that", "this", "you", "them", "everything", "all", "so", "much", "too", "one"}
    if subj <= {"it", "that", "this", "everything", "all", "which", "there"} and subj:
        rest = [t for t in tokens if t.pos_ in ("NOUN", "PROPN", "NUM") and t.lower_ not in LIGHT
                and not any(c.dep_ == "amod" and c.lemma_.lower() in FEELINGS for c in t.children)]  # fmt: skip
        if not rest:
            return True  # "That's so cool", "It was amazing", "That's wonderful news"
    if head.lemma_ in REACTION_VERBS and (not objects and not nominal or objects and object_words <= vague | {
            "for", "to", "about", "with", "so", "very", "really", "much"}):  # fmt: skip
        return True  # but "Just got back from Rome" says where from
    predicted = any(c.dep_ == "aux" and c.lower_ in ("will", "'ll", "would", "'d") for c in head.children)
    emotion = head.lower_ in EMOTIONS or any(c.dep_ == "acomp" and c.lower_ in EMOTIONS for c in head.children)
    about = [t for c in head.children if c.dep_ not in SUBJECTS + ("advcl", "npadvmod", "intj", "punct", "aux")
             for t in c.subtree if t.pos_ in ("NOUN", "PROPN", "NUM") and t.lower_ not in LIGHT]  # fmt: skip
    if predicted and emotion and not about:
        return True  # "Thanks so much, my mum will be thrilled!": a feeling to come, about nothing named
    verdict = head if head.pos_ == "NOUN" else next((c for c in head.children if c.dep_ == "attr"), None)
    if verdict is not None and verdict.lemma_.lower() in VERDICT_NOUNS and any(
            c.dep_ == "amod" and c.lemma_.lower() in FEELINGS for c in verdict.children):  # fmt: skip
        return True  # "Luna's a great name!", "Pickle's a lovely name for a cat": a verdict on what was said
    feelings = [c for c in head.children if c.dep_ in ("acomp", "attr") and c.lemma_.lower() in FEELINGS]
    if feelings and head.lemma_ == "be":
        extra = [t for t in tokens if t.pos_ in ("NOUN", "PROPN", "NUM") and t.lower_ not in LIGHT and t.lower_ not in vague
                 or t.lower_ in THIRD_OBJECTS]  # fmt: skip
        if not extra:
            return True  # "I'm so happy for you", "I'm glad" (but "I'm so thankful to have them" is about someone)
    return False


def _intends(head) -> bool:
    """"Was hoping to finish the quilt by Christmas", "Been meaning to learn Portuguese": a plan with its
    subject dropped, which names what is planned (but "Hope to see you soon" is a greeting)."""
    if head.lemma_.lower() not in INTENDING:
        return False
    plans = [c for c in head.children if c.dep_ == "xcomp" and c.pos_ in ("VERB", "AUX") and c.lemma_ not in SAYING]
    return any(t.pos_ in ("NOUN", "PROPN", "NUM") and t.lower_ not in LIGHT and t.head.lower_ not in LISTENER
               and t.lower_ not in LISTENER for p in plans for t in p.subtree if t.i != p.i)  # fmt: skip


def _activity(token) -> bool:
    """A gerund that names an activity someone does ("I love cooking", "I enjoy swimming": tagged verbs,
    which made the sentence a reaction with nothing to keep), not the conversation ("I love talking to you")."""
    return token.tag_ == "VBG" and token.dep_ in ("xcomp", "dobj") and token.lemma_ not in NOT_ACTIVITIES


def _anchors(tokens, subject) -> list[str]:
    return [t.text for t in _anchor_tokens(tokens, subject)]


def _anchor_tokens(tokens, subject) -> list:
    """The content words of a clause: names, numbers, dates, nouns, and adjectives or verbs with content."""
    subj = {t.i for s in subject for t in s.subtree if t.tag_ in ("PRP", "PRP$")}
    out = []
    for t in tokens:
        if t.lower_ in THIRD_OBJECTS and t.tag_ in ("PRP", "PRP$") and t.i not in subj:
            out.append(t)  # someone just mentioned ("thankful to have them")
            continue
        if t.i in subj or t.is_stop and t.pos_ not in ("NUM",):
            continue
        if t.pos_ in ("PROPN", "NUM") or t.ent_type_ in ("DATE", "TIME", "CARDINAL", "PERSON", "GPE", "ORG", "LOC"):
            out.append(t)
        elif t.pos_ == "NOUN" and t.lemma_.lower() not in LIGHT:
            out.append(t)
        elif t.pos_ in ("ADJ", "VERB") and t.lemma_.lower() not in FEELINGS and t.dep_ in ("acomp", "attr", "xcomp", "dobj", "ROOT", "conj"):
            if t.pos_ == "ADJ" or _activity(t) or any(c.dep_ in ("dobj", "prep", "xcomp") and any(
                    g.pos_ in ("NOUN", "PROPN", "NUM") and g.lemma_.lower() not in LIGHT for g in c.subtree)
                    for c in t.children):  # fmt: skip
                out.append(t)
    return out


def _expletive(token, in_clause: set[int]) -> bool:
    """"It was great to see you", "it made me feel at home": an "it" that refers to nothing."""
    if token.lower_ not in ("it", "its"):
        return False
    if token.dep_ == "expl":
        return True
    head = token.head
    return token.dep_ == "nsubj" and head.lemma_ in ("be", "make", "take", "seem", "feel", "look") and any(
        c.dep_ in ("xcomp", "ccomp") and c.i in in_clause for c in head.children)


def _join(doc, order: list[int], replace: dict[int, str], lead: str) -> str:
    """The clause's tokens in order, with replacements, spaced as written; capitalised, one final period."""
    out, prev = lead, None
    for i in order:
        t = doc[i]
        text = replace.get(i, t.text)
        if prev is None:
            sep = ""
            if lead and i not in replace and t.pos_ != "PROPN" and t.text != "I":
                text = text[:1].lower() + text[1:]
        elif i == prev + 1 and not doc[prev].whitespace_ and i not in replace and prev not in replace:
            sep = ""  # as written: "Nils's", "don't", "XK29-PLQ7"
        elif t.is_punct and t.text not in ("(", "[", "“", '"') and not (t.text in DASHES and doc[i - 1].whitespace_) \
                or i not in replace and t.text in ("n't", "'s"):
            sep = ""
        else:
            sep = " "
        out += sep + text
        prev = i
    return _finish(out)


# participles said with "is", never "has" ("he's called Rex", "she's married", "we're based in Oslo")
STATE_PARTICIPLES = {"call", "name", "base", "locate", "marry", "engage", "bear", "employ", "retire", "divorce", "involve",
                     "interest", "scare", "bore", "tire", "excite", "worry", "allow", "suppose", "supposed", "use"}  # fmt: skip


def _third(token) -> str:
    low = token.lower_
    if low in ("am", "'m"):
        return "is"
    if low in ("'ve",):
        return "has"
    if low in ("'d",):
        return "would"
    if low in ("'ll",):
        return "will"
    if token.tag_ == "VBP":
        if low == "do":
            return "does"
        return inflect(token.lemma_, "VBZ", token.text)
    return token.text


def _we(resolver: Resolver, number: int, position: int) -> str | None:
    """"We" = the user and the person of their life they were just talking about, if any: mentioned before
    the "we" ("We named our terrier Pickle" is not the user and Pickle)."""
    for m in reversed(resolver.mentions):
        before = m.sentence < number or (m.sentence == number and m.position < position)
        if before and number - m.sentence <= 2 and m.animate == "person" and m.owner == "user" and not m.plural:
            return f"the user and {m.phrase}"
    return None


def _finish(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:!?%)])", r"\1", text).replace("( ", "(")
    text = re.sub(r"\s+'s\b", "'s", text)
    text = re.sub(r"[,;:\-–—]+\s*$", "", text).strip()
    text = re.sub(r"^[,;:\-–— ]+", "", text)
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!" else text + "."


def _value_type(tokens) -> str:
    ents = {t.ent_type_ for t in tokens if t.ent_type_}
    if ents & {"DATE", "TIME"} or any(t.lower_ in MONTHS and t.pos_ == "PROPN" and any(
            x.like_num for x in (t.nbor(-1) if t.i else t, t.nbor(1) if t.i + 1 < len(t.doc) else t)) for t in tokens):  # fmt: skip
        return "date"  # "16 May", "May 16": the tagger found no date in "moved to 16 May"
    if ents & {"CARDINAL", "QUANTITY", "MONEY", "PERCENT"} or any(t.like_num for t in tokens):
        return "number"
    if any(_names_a_person(t) or partnered(t) for t in tokens):
        return "person"
    idx = {t.i for t in tokens}
    head = next((t for t in tokens if t.head.i not in idx or t.head == t), None)
    # "a trip to Peru", "a flat in Bergen": a thing somewhere, not the place (asked "What am I saving up
    # for?", not "Where do I save up?")
    thing_somewhere = head is not None and head.pos_ == "NOUN" and not head.ent_type_ and not is_a(head.lemma_, "location")
    if thing_somewhere and ents and ents <= {"GPE", "LOC", "FAC"}:
        return "thing"
    if ents & {"GPE", "LOC", "FAC"} or any(_names_a_place(t) for t in tokens):
        return "place"
    if "PERSON" in ents:
        return "person"
    if ents & {"ORG", "PRODUCT", "WORK_OF_ART", "EVENT", "NORP", "LANGUAGE"} or any(t.pos_ == "PROPN" for t in tokens):
        return "name"
    return "thing"


def _naming_noun(token):
    """The noun a name is given to ("a fishing village called Reine", "the island of Senja", "a woman
    called Ingrid"), or None."""
    if token.pos_ != "PROPN":
        return None
    return next((a for a in token.ancestors if a.pos_ == "NOUN" and a.i < token.i and a.dep_ != "ROOT"), None)


def _names_a_place(token) -> bool:
    """A name given to a location noun, whatever entity type the tagger gave it (Reine: a person)."""
    noun = _naming_noun(token)
    return noun is not None and is_a(noun.lemma_, "location")


def _names_a_person(token) -> bool:
    """A name given to a person ("a woman called Ingrid", "Nils's fiancée is called Aino": the tagger says a
    building)."""
    noun = _naming_noun(token)
    if noun is None and token.pos_ == "PROPN" and token.dep_ in ("oprd", "attr") and token.head.lemma_ in ("call", "name"):
        noun = next((c for c in token.head.children if c.dep_ in ("nsubjpass", "nsubj") and c.pos_ == "NOUN"), None)
    return noun is not None and kind_of(noun.lemma_) == "person"


def _phrase(token, keep: set[int]) -> list:
    """The words of a value: the token's subtree within the clause, without articles, possessives, fillers."""
    relcl = {x.i for t in token.subtree if t.dep_ == "relcl" for x in t.subtree}
    return [t for t in token.subtree if t.i in keep and t.i not in relcl and t.dep_ not in ("det", "poss", "punct", "neg", "case")
            and t.lower_ not in LAUGHS
            and not (t.dep_ == "advmod" and t.lower_ in ("now", "too", "anymore", "again", "actually", "also", "still"))]  # fmt: skip


def _named(token) -> bool:
    """A subject that is someone's name ("Henrik moved to Porto"), whatever the tagger's entity type."""
    return token is not None and token.pos_ == "PROPN" and token.text[:1].isupper() and kind_of(token.lower_) is None \
        and token.ent_type_ not in ("ORG", "GPE", "LOC", "FAC", "PRODUCT", "EVENT", "WORK_OF_ART")  # fmt: skip


def _structure(head, clause, subject, first_person, mentions, resolved, doc, keep) -> dict:
    """subject / relation / value / value_type where the parse gives them."""
    subj_tok = subject[0] if subject else None
    subj_mention = mentions.get(subj_tok.i) if subj_tok is not None else None
    if subj_tok is not None and subj_tok.lower_ in PRONOUNS and resolved:
        subj_mention = resolved[0]
    if first_person:
        subj_name = "user"
    elif subj_mention is not None:
        subj_name = subj_mention.phrase.replace("the user's", "user's")
    elif subj_tok is not None:
        subj_name = " ".join(t.text for t in subj_tok.subtree if t.dep_ != "det").replace("my ", "user's ")
    else:
        subj_name = "user"
    relation = value = None
    value_tokens: list = []
    comp = clause.get("complement") or next((c for c in head.children if c.dep_ in ("attr", "acomp", "oprd")), None)
    # "I'm dating Marta": the tagger hangs Marta from the verb as an adverbial (a place's name)
    dobj = next((c for c in head.children if c.dep_ == "dobj" or c.dep_ == "npadvmod" and partnered(c)), None)
    preps = [c for c in head.children if c.dep_ in ("prep", "agent", "dative")]
    lemma = _lemma(head)
    if subj_tok is not None and subj_tok.lemma_.lower() == "name" and comp is not None:  # "her name is Tilda"
        owner = next((c for c in subj_tok.children if c.dep_ == "poss"), None)
        if owner is not None:
            m = mentions.get(owner.i) or (resolved[0] if owner.lower_ in PRONOUNS and resolved else None)
            subj_name = "user" if owner.lower_ in ("my", "our") else (m.phrase.replace("the user's", "user's") if m else owner.text)
            if m is not None and not m.name and comp.pos_ == "PROPN":
                m.name_it(_span_text(comp))
        relation, value_tokens = "name", _phrase(comp, keep)
    elif lemma in ("name", "call") and any(c.dep_ in ("oprd", "attr") for c in head.children):
        name = next(c for c in head.children if c.dep_ in ("oprd", "attr"))
        relation, value_tokens = "name", _phrase(name, keep)
        if dobj is not None and dobj.i in mentions:
            subj_name = mentions[dobj.i].phrase.replace("the user's", "user's")
    elif lemma == "get" and comp is not None and comp.pos_ in ("ADJ", "VERB") and any(c.dep_ == "prep" for c in comp.children):
        prep = next(c for c in comp.children if c.dep_ == "prep")  # "I got engaged to Marta": as "is engaged to"
        relation = f"{comp.lower_} {prep.lower_}"
        value_tokens = [t for t in _phrase(prep, keep) if t != prep]
    elif lemma == "be" and comp is not None:
        named = next((g for c in comp.children if c.dep_ == "acl" and c.lemma_ in ("name", "call")
                      for g in c.children if g.dep_ in ("oprd", "attr", "dobj") and g.pos_ == "PROPN"), None)  # fmt: skip
        if named is not None:  # "my rabbit is a lop named Pip": its name (the breed stays in the statement)
            relation, value_tokens = "name", [t for t in named.subtree if t.i in keep]
        elif comp.pos_ == "NUM" or comp.like_num:
            relation, value_tokens = "age", [comp]
        elif first_person and comp.pos_ == "PROPN" and comp.ent_type_ in ("PERSON", ""):
            relation, value_tokens = "name", _phrase(comp, keep)
        elif comp.lemma_.lower() == "fan":
            relation, value_tokens = "fan of", [t for p in comp.children if p.dep_ == "prep" for t in _phrase(p, keep)][1:]
        elif comp.pos_ == "NOUN" and _role(comp):
            person = subj_mention is None or subj_mention.animate == "person" or first_person
            relation = "occupation" if person and comp.lemma_.lower() not in NOT_JOBS else "is"
            value_tokens = [t for t in _phrase(comp, keep) if t == comp or t.head == comp and t.dep_ in ("amod", "compound")]
        elif comp.pos_ == "ADJ" and any(c.dep_ == "prep" for c in comp.children):
            prep = next(c for c in comp.children if c.dep_ == "prep")
            relation = f"{comp.lemma_.lower()} {prep.lower_}"
            value_tokens = [t for t in _phrase(prep, keep) if t != prep]
        else:
            relation, value_tokens = "is", _phrase(comp, keep)
        if subj_tok is not None and subj_tok.lemma_.lower().startswith(("favourite", "favorite")):
            relation = subj_tok.lemma_.lower() + (" " + " ".join(c.text for c in subj_tok.children if c.dep_ == "compound"))
            relation = relation.strip()
        elif subj_tok is not None and any(c.lemma_.lower() in ("favourite", "favorite") for c in subj_tok.children):
            relation = f"favourite {subj_tok.lemma_.lower()}"
        owner = next((c for c in subj_tok.children if c.dep_ == "poss"), None) if subj_tok is not None else None
        role_noun = kind_of(subj_tok.lemma_) is not None if subj_tok is not None else False
        names_someone = comp.pos_ == "PROPN" or comp.ent_type_ == "PERSON"
        if owner is not None and subj_tok.pos_ == "NOUN" and relation not in ("name",) and (not role_noun or names_someone):
            # "Barack Obama's birthday is August 4, 1961", "my favourite colour is teal", "her husband is Tomas":
            # the possessor is the subject, the possessed noun the relation
            if relation in ("is", "occupation", "age"):
                mods = [c.text.lower() for c in subj_tok.children if c.dep_ in ("amod", "compound")]
                relation = " ".join(mods + [subj_tok.lemma_.lower()])
            if owner.lower_ in ("my", "our"):  # "our favourite show": the user's, as "our rabbit" is
                subj_name = "user"
            else:
                m = mentions.get(owner.i) or (resolved[0] if owner.lower_ in PRONOUNS and resolved else None)
                subj_name = m.phrase.replace("the user's", "user's") if m else _span_text(owner)
    elif lemma == "turn" and (dobj is not None and dobj.like_num or comp is not None and comp.like_num):
        relation, value_tokens = "age", [dobj if dobj is not None and dobj.like_num else comp]
    elif lemma in PREFERENCE and (dobj is not None or comp is not None or head.children):
        target = dobj or next((c for c in head.children if c.dep_ in ("xcomp", "ccomp")), None)
        relation = PREFERENCE[lemma]
        value_tokens = _phrase(target, keep) if target is not None else []
    else:
        prep = preps[0] if preps else None
        prep_word = prep.lower_ if prep is not None else None
        relation = RELATIONS.get((lemma, prep_word)) or RELATIONS.get((lemma, None))
        if dobj is not None and lemma in CHANGE_VERBS and prep_word in ("to", "into", "for"):
            moved = mentions.get(dobj.i)  # "the dentist moved my appointment to Thursday": the appointment's date
            subj_name = moved.phrase.replace("the user's", "user's") if moved else dobj.text
            relation, value_tokens = f"{dobj.lemma_.lower()} {prep_word}", [t for t in _phrase(prep, keep) if t != prep]
            prep = None
            dobj = None
        elif relation == "lives in" and (dobj is not None or not first_person and getattr(subj_tok, "lower_", "") != "we" and (
                subj_mention is None or subj_mention.animate == "thing") and not _named(subj_tok)):  # fmt: skip
            relation = f"{lemma} {prep_word}" if prep_word else None  # "the wedding got moved to 21 February"
        if value_tokens:
            pass
        elif relation and prep is not None and (lemma, prep_word) in RELATIONS:
            value_tokens = [t for t in _phrase(prep, keep) if t != prep]
        elif dobj is not None:
            relation = relation or lemma + "".join(f" {c.text}" for c in head.children if c.dep_ == "prt")
            value_tokens = _phrase(dobj, keep)
        elif prep is not None:
            relation = relation or f"{lemma} {prep_word}"
            value_tokens = [t for t in _phrase(prep, keep) if t != prep]
        else:
            xcomp = next((c for c in head.children if c.dep_ in ("xcomp", "ccomp")), None)
            if xcomp is not None:
                relation = relation or lemma
                value_tokens = _phrase(xcomp, keep)
    places = [t for t in value_tokens if t.ent_type_ in ("GPE", "LOC")]
    if relation in ("lives in", "born in", "grew up in", "comes from") and places:  # "a new apartment in Uppsala"
        value_tokens = places
    elif relation != "name" and any(_names_a_place(t) or _names_a_person(t) for t in value_tokens):
        # "an island called Hitra", "married to a man called Piotr": the name is the value
        value_tokens = [t for t in value_tokens if _names_a_place(t) or _names_a_person(t)
                        or t.dep_ in ("compound", "flat") and (_names_a_place(t.head) or _names_a_person(t.head))]  # fmt: skip
    dates = [t for t in value_tokens if t.ent_type_ in ("DATE", "TIME")]
    others = [t for t in value_tokens if t.ent_type_ not in ("DATE", "TIME", "ORDINAL") and t.pos_ in ("PROPN", "NOUN")
              and not t.like_num and not re.fullmatch(r"\d+(st|nd|rd|th)", t.lower_)]  # "Thursday the 10th" is a date
    if dates and others and relation not in ("age",):  # "Kyoto in 1961": the place is the value
        value_tokens = [t for t in value_tokens if t.ent_type_ not in ("DATE", "TIME") and not (
            t.dep_ == "prep" and all(c.ent_type_ in ("DATE", "TIME") for c in t.children))]  # fmt: skip
        # a trailing preposition left without its object
        while value_tokens and value_tokens[-1].dep_ == "prep":
            value_tokens = value_tokens[:-1]
    value = " ".join(t.text for t in sorted(value_tokens, key=lambda t: t.i)).strip(" ,.") or None
    if value:
        value = re.sub(r"\s+'s\b", "'s", value)
    if relation == "name" and value and subj_name.endswith(" " + value):  # "the user's dog" is called Pilsner
        subj_name = subj_name[: -len(value) - 1]
    value_type = _value_type(value_tokens) if value_tokens else None
    if relation == "age" and value_type == "date":  # "turns seven next week": spaCy's date holds the age
        value_type = "number"
    if relation == "name" and value_type == "place":  # "My dog is called Aino": the tagger says a building
        value_type = "name"
    return {"subject": subj_name, "relation": relation, "value": value, "value_type": value_type}


def _kind(head, tokens, relation, about_user, entities, mentions, resolved, times) -> str:
    words = {t.lower_ for t in tokens}
    if about_user and relation in ("likes", "dislikes", "prefers", "fan of", "supports") or (
            relation or "").startswith(("favourite", "favorite")):  # fmt: skip
        return "preference"
    future = times is not None and times["iso"] > dt.date.today().isoformat()
    if about_user and (words & PLAN_WORDS and head.lemma_ in ("plan", "go", "hope", "want", "intend", "think", "aim",
                                                               "be", "consider", "dream", "wish") or future
                       or any(t.lower_ in ("will", "'ll", "gonna") and t.head == head for t in tokens)):  # fmt: skip
        return "plan"
    people = [m for m in list(mentions.values()) + resolved if m.animate in ("person", "animal")]
    if about_user or any(e.startswith("user ") for e in entities[:1]) and not any(m.owner == "user" for m in people):
        return "personal"
    if any(m.owner == "user" for m in people) or any(m.role in ANIMALS for m in people if m.role):
        return "third_party"
    if any(m.animate == "person" for m in people):
        return "third_party"
    return "world"
