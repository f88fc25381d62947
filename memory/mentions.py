"""Who and what a conversation is about, and what its pronouns refer to.

Each parsed sentence yields `Mention`s: the people, animals and things it
names ("my uncle Gunnar", "my cat Pixel", "the novelist Aiko Brandt", "a
second shop"), with what the words tell of them -- a name, the user's
relation to them ("uncle"), gender where a word gives it ("uncle", "she",
"her name"), person, animal or thing, one or several.

`Resolver.resolve(pronoun, ...)` picks the antecedent the way a reader does:
candidates must agree (gender, person/animal/thing, number); among those,
recency dominates (the same sentence, then earlier sentences of the turn,
then earlier turns, decaying), a known matching gender counts ("he" after
"my uncle Gunnar" and "my cat" is Gunnar, whose gender is known), and so
does having been a subject (centering). A resolved pronoun teaches the
mention its gender ("her name is Tilda" makes the greyhound female).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MALE = {"brother", "father", "dad", "daddy", "son", "husband", "boyfriend", "uncle", "nephew", "grandfather", "grandpa",
        "granddad", "grandson", "fiancé", "fiance", "stepfather", "stepson", "stepbrother", "man", "boy", "guy", "king",
        "prince", "gentleman", "mr", "sir", "groom", "widower", "papa", "stepdad", "grandad", "godfather", "godson",
        "lad"}  # fmt: skip
FEMALE = {"sister", "mother", "mom", "mum", "mommy", "mummy", "daughter", "wife", "girlfriend", "aunt", "auntie", "niece",
          "grandmother", "grandma", "granny", "granddaughter", "fiancée", "fiancee", "stepmother", "stepdaughter",
          "stepsister", "woman", "girl", "lady", "queen", "princess", "mrs", "ms", "bride", "widow", "mama", "stepmom",
          "stepmum", "gran", "nan", "nana", "nanna", "godmother", "goddaughter"}  # fmt: skip
KIN = {"cousin", "friend", "partner", "spouse", "colleague", "coworker", "co-worker", "boss", "manager", "roommate",
       "flatmate", "housemate", "neighbour", "neighbor", "teacher", "mentor", "child", "kid", "baby", "toddler", "twin",
       "parent", "sibling", "grandparent", "grandchild", "stepchild", "in-law", "classmate", "teammate", "bestie",
       "landlord", "landlady", "tenant", "client", "doctor", "dentist", "therapist", "coach", "tutor", "student",
       "novelist", "author", "writer", "poet", "painter", "artist", "singer", "musician", "actor", "actress", "director",
       "family", "folks", "relative", "nurse", "pilot", "engineer", "lawyer", "chef", "baker",
       "detective", "scientist", "biologist", "professor", "illustrator", "photographer", "journalist"}  # fmt: skip
ANIMALS = {"dog", "puppy", "pup", "doggo", "cat", "kitten", "kitty", "horse", "pony", "rabbit", "bunny", "hamster",
           "parrot", "bird", "budgie", "canary", "fish", "goldfish", "snake", "turtle", "tortoise", "lizard", "gecko",
           "ferret", "pig", "cow", "goat", "chicken", "hen", "duck", "sheep", "greyhound", "corgi", "labrador", "lab",
           "poodle", "retriever", "terrier", "beagle", "spaniel", "collie", "husky", "bulldog", "dachshund", "pug",
           "chihuahua", "shepherd", "pet", "mouse", "rat", "guinea", "iguana", "alpaca", "donkey", "mare", "stallion",
           "tabby", "calico", "rex"}  # fmt: skip
PLURAL_PERSONS = {"parents", "kids", "children", "folks", "family", "siblings", "grandparents", "twins", "friends",
                  "colleagues", "guys", "boys", "girls", "in-laws", "cousins"}  # fmt: skip
LIGHT = {"thing", "stuff", "lot", "bit", "time", "way", "day", "week", "moment", "one", "idea", "something", "anything",
         "everything", "nothing", "kind", "sort", "lots", "bunch", "couple", "part", "name", "year", "month", "while",
         "fun", "sense", "point", "fact", "reason", "question", "answer", "chance", "look", "place", "today",
         "thanks", "thank", "pic", "photo", "picture"}  # fmt: skip
PRONOUNS = {
    "he": ("m", False, "person"), "him": ("m", False, "person"), "his": ("m", False, "person"),
    "himself": ("m", False, "person"), "she": ("f", False, "person"), "her": ("f", False, "person"),
    "hers": ("f", False, "person"), "herself": ("f", False, "person"), "they": (None, True, None),
    "them": (None, True, None), "their": (None, True, None), "theirs": (None, True, None),
    "it": (None, False, "thing"), "its": (None, False, "thing"),
}  # fmt: skip


def gender_of(word: str) -> str | None:
    word = word.lower()
    return "m" if word in MALE else "f" if word in FEMALE else None


def kind_of(lemma: str) -> str | None:
    """person | animal for a role noun, None for anything else."""
    lemma = lemma.lower()
    if lemma in MALE or lemma in FEMALE or lemma in KIN or lemma in PLURAL_PERSONS:
        return "person"
    if lemma in ANIMALS:
        return "animal"
    return None


@dataclass
class Mention:
    phrase: str  # how a statement refers to it: "the user's uncle Gunnar", "Aiko Brandt", "the second shop"
    animate: str  # person | animal | thing
    name: str | None = None  # "Gunnar"
    role: str | None = None  # "uncle", "cat", "novelist", "shop"
    owner: str | None = None  # "user" for "my uncle"
    of: str | None = None  # whose it is when that is someone else: "the user's brother" for "my brother's wife"
    gender: str | None = None  # m | f | None (unknown)
    plural: bool = False
    subject: bool = False  # a subject where it was mentioned (more salient)
    sentence: int = 0  # order of the sentence it was mentioned in, across the conversation
    position: int = 0  # token index in its turn (a pronoun refers back, not forward, in its sentence)
    members: list[Mention] = field(default_factory=list)  # for a group: "Carla and Mia"
    is_user: bool = False  # the speaker's own name ("I'm Ingrid Solberg"): never a pronoun's antecedent

    @property
    def key(self) -> str:
        """Identity for corrections and routing: the name when known, else the owner's role."""
        if self.name:
            return self.name.lower()
        return f"{self.owner + ' ' if self.owner else ''}{self.role or self.phrase}".lower()

    def keys(self) -> list[str]:
        keys = [self.key]
        if self.role:
            keys.append(f"{self.owner + ' ' if self.owner else ''}{self.role}".lower())
        return list(dict.fromkeys(keys))

    def short(self) -> str:
        """How to refer back to it: the name, else the phrase."""
        return self.name or self.phrase

    def same_as(self, other: Mention) -> bool:
        if self.name and other.name:
            return self.name.lower() == other.name.lower() or self.name.split()[-1] == other.name.split()[-1]
        return bool(self.role and self.role == other.role and self.owner == other.owner)

    def merge(self, other: Mention) -> None:
        """`other` is a later mention of the same entity: keep what either says."""
        self.name = self.name or other.name
        self.role = self.role or other.role
        self.owner = self.owner or other.owner
        self.gender = self.gender or other.gender
        if other.sentence >= self.sentence:
            self.sentence, self.position, self.subject = other.sentence, other.position, other.subject
        self.name_it(self.name)

    def name_it(self, name: str | None) -> None:
        """It is called `name` (learnt later: "her name is Tilda", "his fiancée is called Aino")."""
        if not name:
            return
        self.name = name
        if self.role and name not in self.phrase:
            whose = "the user's" if self.owner == "user" else possessive_form(self.of) if self.of else "the"
            self.phrase = f"{whose} {self.role} {name}"


def _personal_name(m: Mention) -> bool:
    """A thing mention that reads as a first and last name ("Ines Vallmoor", which the tagger took for a
    place): "she" may refer to it when no person agrees."""
    import re

    return m.role is None and m.owner is None and bool(re.fullmatch(r"[A-Z][a-z]+(?: [A-Z][a-z'-]+){1,2}", m.phrase))


class Resolver:
    """The mentions of one conversation so far, and pronoun resolution over them."""

    def __init__(self, mentions: list[Mention] | None = None):
        self.mentions: list[Mention] = list(mentions or [])
        self.sentence = max((m.sentence for m in self.mentions), default=0)

    def next_sentence(self) -> int:
        self.sentence += 1
        return self.sentence

    def add(self, mention: Mention) -> Mention:
        """Record a mention; a later mention of a known entity updates it and returns the known one."""
        for known in reversed(self.mentions):
            if known.animate == mention.animate and known.same_as(mention):
                known.merge(mention)
                return known
        self.mentions.append(mention)
        return mention

    def resolve(self, pronoun: str, sentence: int, position: int = 10**9,
                exclude: tuple[Mention | None, ...] = ()) -> Mention | None:  # fmt: skip
        """The mention `pronoun` (at token `position` of sentence number `sentence`) most likely refers to;
        None when nothing agrees with it."""
        spec = PRONOUNS.get(pronoun.lower())
        if spec is None:
            return None
        gender, plural, animate = spec
        best, best_score = None, 0.0
        for m in self.mentions:
            if m in exclude or m.is_user or m.sentence > sentence or (m.sentence == sentence and m.position >= position):
                continue
            if plural:
                if not m.plural:
                    continue
            elif m.plural:
                continue
            if animate == "thing" and m.animate == "person":
                continue
            if animate == "person" and m.animate == "thing" and not _personal_name(m):
                continue
            if gender and m.gender and m.gender != gender:
                continue
            distance = sentence - m.sentence
            score = {0: 3.0, 1: 2.0, 2: 1.0, 3: 0.6, 4: 0.4}.get(distance, 0.15)
            if distance == 0 and m.subject:
                score += 1.0  # the subject of the clause just before, in the same sentence
            if gender and m.gender == gender:
                score += 1.5
            if m.subject:
                score += 0.3
            if animate == "person" and m.animate == "animal" and m.gender is None:
                score -= 0.5  # "he" is a person before it is an animal of unknown sex
            if animate == "person" and m.animate == "thing":
                score -= 1.0  # a first and last name the tagger took for a place: only when no person agrees
            if score > best_score:
                best, best_score = m, score
        if best is not None and gender and best.gender is None:
            best.gender = gender
        return best

    def group(self, sentence: int) -> Mention | None:
        """Plural "they" without a plural mention: the people of the most recent sentence that names two."""
        for s in range(sentence, sentence - 3, -1):
            people = [m for m in self.mentions if m.sentence == s and m.animate in ("person", "animal") and not m.plural]
            if len(people) >= 2:
                return Mention(" and ".join(p.short() for p in people[:3]), people[0].animate, plural=True,
                               sentence=s, members=people[:3])  # fmt: skip
        return None


def possessive_form(phrase: str) -> str:
    """"the user's brother" -> "the user's brother's", "the twins" -> "the twins'", "Nils" -> "Nils's"."""
    return phrase + ("'" if phrase.endswith("s") and not phrase[:1].isupper() else "'s")
