"""The grammar of the ``tokens`` dataset: its lexicon, number words and sentence templates.

Every lexicon slot names its part of speech and groups its words by semantic class, so a
word's class is written once, next to the word, and the generator records it for each
word it draws (:mod:`actclust.data.tokens` turns it into the ``semantic_class`` label).

Example:
    >>> LEXICON["NP"].pos, LEXICON["NP"].classes_of()["Alice"]
    ('PROPN', 'person_name')
    >>> LEXICON["NS"].plural, NUMBER_WORDS[40]
    (True, 'forty')
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    """One grammar symbol: its part of speech, its words by semantic class, its number.

    Attributes:
        pos: the part of speech of every word of the slot.
        classes: semantic class -> words; ``"none"`` holds words of no class.
        plural: the slot's nouns are plural (the ``plural`` suffix class).
    """

    pos: str
    classes: dict
    plural: bool = False

    def entries(self) -> tuple[tuple[str, str], ...]:
        """``(word, semantic class)`` for every word, in lexicon order."""
        return tuple((word, cls) for cls, words in self.classes.items() for word in words)

    def classes_of(self) -> dict[str, str]:
        """word -> semantic class."""
        return dict(self.entries())


# Rare long words are there on purpose: tokenizers split them into several pieces.
# All-capital words (acronyms, "DVD") give the ``upper`` casing; -ing adjectives and
# nouns, -tion nouns (objects, events) and -er/-or agent nouns give their suffix classes.
LEXICON: dict[str, Slot] = {
    "D": Slot("DET", {"none": ("the", "this", "that", "every", "each", "another")}),
    "A": Slot("ADJ", {
        "colour": ("red", "green", "blue", "yellow", "purple", "crimson", "turquoise",
                   "scarlet"),
        "emotion": ("happy", "tired", "curious", "melancholic", "anxious", "cheerful",
                    "furious", "jealous", "sleepy"),
        "size": ("small", "enormous", "gigantic", "tiny", "huge", "massive"),
        "none": ("old", "quiet", "bright", "heavy", "ancient", "fragile", "luminous",
                 "peculiar", "ambidextrous", "iridescent", "wooden", "sparkling",
                 "charming", "shimmering", "glittering", "amazing"),
    }),
    "N": Slot("NOUN", {
        "animal": ("cat", "dog", "hippopotamus", "rhinoceros", "giraffe", "tortoise",
                   "octopus", "pelican"),
        "person": ("teacher", "astronaut", "philosopher", "sailor", "inventor", "gardener",
                   "doctor", "dancer"),
        "place": ("river", "garden", "mountain", "library", "lighthouse", "cathedral",
                  "station", "village", "harbour"),
        "instrument": ("xylophone", "violin", "saxophone", "trumpet", "harp", "accordion",
                       "cello"),
        "object": ("machine", "letter", "window", "bicycle", "kaleidoscope", "engine",
                   "photograph", "umbrella", "chandelier", "invitation", "decoration",
                   "illustration", "painting", "lantern", "DVD", "TV"),
        "food": ("sandwich", "pineapple", "pumpkin", "croissant", "cucumber", "watermelon",
                 "pancake"),
        "event": ("celebration", "exhibition", "competition", "wedding", "meeting",
                  "concert", "festival", "ceremony"),
    }),
    "NS": Slot("NOUN", {
        "animal": ("birds", "flamingos", "rabbits", "penguins", "foxes", "horses"),
        "person": ("sailors", "dancers", "inventors", "astronauts", "teachers"),
        "instrument": ("trombones", "drums", "guitars", "flutes"),
        "object": ("books", "chairs", "stones", "candles", "windows", "letters", "bottles",
                   "coins", "pebbles", "marbles", "dictionaries", "telescopes", "boxes",
                   "invitations", "paintings"),
        "food": ("apples", "oranges", "tomatoes", "potatoes", "strawberries", "noodles",
                 "biscuits"),
    }, plural=True),
    "VT": Slot("VERB", {"none": (
        "saw", "found", "painted", "carried", "opened", "pushed", "noticed", "repaired",
        "borrowed", "photographed", "described", "admired", "discovered", "rearranged",
        "memorized", "unscrambled", "juggled")}),
    "VI": Slot("VERB", {"none": (
        "slept", "arrived", "laughed", "waited", "vanished", "disappeared", "wandered",
        "shivered", "collapsed", "hesitated", "stumbled", "reappeared")}),
    "R": Slot("ADV", {"none": (
        "quickly", "slowly", "quietly", "suddenly", "carefully", "happily", "often",
        "nervously", "gracefully", "reluctantly", "unexpectedly", "meticulously",
        "ferociously")}),
    "P": Slot("ADP", {"none": (
        "in", "on", "under", "near", "behind", "beside", "through", "across", "from", "with",
        "without", "before", "after", "inside")}),
    "PS": Slot("PRON", {"none": ("she", "he", "they", "we", "I", "you", "someone",
                                 "everyone", "nobody")}),
    "PO": Slot("PRON", {"none": ("them", "her", "him", "us", "it", "me")}),
    "C": Slot("CONJ", {"none": ("and", "but", "or", "yet")}),
    "NP": Slot("PROPN", {"person_name": (
        "Alice", "Omar", "Priya", "Kenji", "Lucia", "Tobias", "Ngozi", "Sven", "Mateo",
        "Zofia", "Leila", "Dmitri")}),
    "L": Slot("PROPN", {"place": (
        "Lisbon", "Nairobi", "Kyoto", "Oslo", "Cairo", "Lima", "Montreal", "Hanoi",
        "Tbilisi", "Reykjavik")}),
    "O": Slot("PROPN", {"organisation": (
        "NASA", "UNESCO", "UNICEF", "FIFA", "NATO", "CERN", "IKEA", "BBC")}),
}
PUNCTUATION = (".", ",", "!", "?", ";", ":")
# Numbers are drawn, not listed: "Y" a year, "K" a count of two or more (before a plural).
NUMBER_SYMBOLS = {"Y": (1900, 2031), "K": (2, 1000)}
NUMBER_CLASSES = {"Y": "time", "K": "quantity"}
# Counts with a one-word English name; a count is written as a word this often.
NUMBER_WORDS = {
    **dict(enumerate(("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                      "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                      "seventeen", "eighteen", "nineteen", "twenty"), start=2)),
    30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty",
    90: "ninety",
}
NUMBER_WORD_SHARE = 0.35

TEMPLATES = tuple(t.split() for t in (
    "D A N VT D N P D N .",
    "NP VT K NS P Y .",
    "PS R VT D A N , C PS VI .",
    "D N VI P D N P Y !",
    "NP C NP VT D N ; PS VI R .",
    "P Y , D A N VI R .",
    "PS VT PO P D N , C NP VI .",
    "K NS VI P D A N .",
    "D N VT K A NS P NP .",
    "R , NP VT D N C D N VI .",
    "NP VI P D N : PS VT K NS .",
    "D A A N R VT PO .",
    "P D N , PS VT D N C VI R .",
    "Y : D N VT K NS !",
    "NP R VT D N P D A N ?",
    "PS VI , C D N VT PO ?",
    "D N P D N VT NP P Y .",
    "NP VT K NS , K NS , C D N .",
    "D A N VI ; D A N VT PO .",
    "P Y , K NS VT D N R .",
    "O VT K A NS P L .",
    "P L , NP VT D A N C VI R !",
    "D N P L VI ; O VT PO P Y .",
    "PS VT K NS , D N C D A N P L ?",
    "O C NP R VT D N : K NS VI .",
))
