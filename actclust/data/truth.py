"""``truth``: simple true and false statements as Yes/No contrast pairs.

Every statement ("7 + 5 = 12", "9 is greater than 4", "Paris is the capital of France")
becomes two adjacent documents, "Is it true that <statement>? Yes" then "... No", the input
contrast-consistent search (CCS) needs. Half the statements of each kind are true; a false
fact swaps in another item's answer, so every fact's subject appears once true and once
false and the subject alone gives nothing away.

Label values are the strings "true" and "false" (not bools), like every other categorical
label in actclust, so they survive parquet, CSV and the CLI unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import Dataset
from .topics import with_article

CAPITALS = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"),
    ("Russia", "Moscow"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Canada", "Ottawa"),
    ("Australia", "Canberra"), ("Brazil", "Brasilia"), ("Argentina", "Buenos Aires"),
    ("Mexico", "Mexico City"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Norway", "Oslo"),
    ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
    ("Poland", "Warsaw"), ("Greece", "Athens"), ("Turkey", "Ankara"), ("Ireland", "Dublin"),
    ("Austria", "Vienna"), ("Hungary", "Budapest"), ("the Netherlands", "Amsterdam"),
    ("Belgium", "Brussels"), ("Switzerland", "Bern"), ("South Korea", "Seoul"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Indonesia", "Jakarta"),
    ("Nigeria", "Abuja"), ("Morocco", "Rabat"), ("Iran", "Tehran"), ("Cuba", "Havana"),
    ("New Zealand", "Wellington"),
)
ANIMALS = (
    ("dolphin", "mammal"), ("whale", "mammal"), ("bat", "mammal"), ("elephant", "mammal"),
    ("tiger", "mammal"), ("kangaroo", "mammal"), ("horse", "mammal"), ("eagle", "bird"),
    ("penguin", "bird"), ("owl", "bird"), ("ostrich", "bird"), ("parrot", "bird"),
    ("sparrow", "bird"), ("crocodile", "reptile"), ("snake", "reptile"),
    ("lizard", "reptile"), ("turtle", "reptile"), ("iguana", "reptile"), ("shark", "fish"),
    ("salmon", "fish"), ("trout", "fish"), ("tuna", "fish"), ("goldfish", "fish"),
    ("frog", "amphibian"), ("toad", "amphibian"), ("salamander", "amphibian"),
    ("newt", "amphibian"), ("ant", "insect"), ("bee", "insect"), ("beetle", "insect"),
    ("butterfly", "insect"),
)
COLOURS = (
    ("grass", "green"), ("fresh snow", "white"), ("coal", "black"),
    ("a ripe banana", "yellow"), ("the clear daytime sky", "blue"), ("milk", "white"),
    ("a ripe tomato", "red"), ("a lemon", "yellow"), ("chocolate", "brown"),
    ("an emerald", "green"), ("a ruby", "red"), ("a crow", "black"), ("a pumpkin", "orange"),
    ("a carrot", "orange"), ("blood", "red"), ("a sapphire", "blue"),
    ("an aubergine", "purple"), ("lavender", "purple"), ("a flamingo", "pink"),
    ("a walnut shell", "brown"), ("the inside of a watermelon", "red"),
)
CONTINENTS = (
    ("Kenya", "Africa"), ("Nigeria", "Africa"), ("Egypt", "Africa"), ("Ghana", "Africa"),
    ("Ethiopia", "Africa"), ("Senegal", "Africa"), ("France", "Europe"), ("Poland", "Europe"),
    ("Sweden", "Europe"), ("Italy", "Europe"), ("Hungary", "Europe"), ("Ireland", "Europe"),
    ("Japan", "Asia"), ("India", "Asia"), ("Thailand", "Asia"), ("Vietnam", "Asia"),
    ("Mongolia", "Asia"), ("Nepal", "Asia"), ("Brazil", "South America"),
    ("Peru", "South America"), ("Chile", "South America"), ("Colombia", "South America"),
    ("Argentina", "South America"), ("Bolivia", "South America"), ("Canada", "North America"),
    ("Mexico", "North America"), ("the United States", "North America"),
)
# category -> (items, how to say "<item> is <answer>").
FACTS = {
    "capital": (CAPITALS, lambda country, city: f"{city} is the capital of {country}"),
    "animal_class": (ANIMALS, lambda animal, cls: f"{with_article(animal)} is "
                                                  f"{with_article(cls)}"),
    "colour": (COLOURS, lambda thing, colour: f"{thing} is {colour}"),
    "continent": (CONTINENTS, lambda country, continent: f"{country} is in {continent}"),
}
QUESTION = "Is it true that {statement}? {answer}"

DEFAULT_N_ARITHMETIC = 120
DEFAULT_N_COMPARISON = 120
_N_FACTS = 2 * sum(len(items) for items, _ in FACTS.values())
DESCRIPTION = (f"{DEFAULT_N_ARITHMETIC + DEFAULT_N_COMPARISON + _N_FACTS} true/false "
               f"statements, each a Yes/No contrast pair of two documents "
               f"(labels: truth, label, kind)")

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def _arithmetic(rng: np.random.Generator, want_true: bool, op: str) -> str:
    if op == "*":
        a, b = (int(x) for x in rng.integers(2, 13, size=2))
    elif op == "-":
        a = int(rng.integers(10, 100))
        b = int(rng.integers(1, a))
    else:
        a, b = (int(x) for x in rng.integers(2, 51, size=2))
    result = _OPS[op](a, b)
    if not want_true:
        # Near misses (off by a little, or by ten) so a false sum is not obviously absurd.
        delta = int(rng.choice([-10, -3, -2, -1, 1, 2, 3, 10]))
        result = result + delta if result + delta >= 0 else result - delta
    return f"{a} {op} {b} = {result}"


def _comparison(rng: np.random.Generator, want_true: bool) -> str:
    a, b = (int(x) for x in rng.choice(np.arange(1, 101), size=2, replace=False))
    word = "greater" if rng.random() < 0.5 else "less"
    if ((a > b) == (word == "greater")) != want_true:
        a, b = b, a
    return f"{a} is {word} than {b}"


def _numeric_statements(rng, n: int, kind: str) -> list[tuple[str, bool, str, str]]:
    """``n`` unique statements of one kind, alternately true and false."""
    out, seen = [], set()
    ops = tuple(_OPS)
    for i in range(n):
        want_true = i % 2 == 0
        while True:  # a repeat only costs a redraw; thousands of statements exist per kind
            text = (_arithmetic(rng, want_true, ops[(i // 2) % len(ops)])
                    if kind == "arithmetic" else _comparison(rng, want_true))
            if text not in seen:
                break
        seen.add(text)
        out.append((text, want_true, kind, kind))
    return out


def _fact_statements(rng) -> list[tuple[str, bool, str, str]]:
    """Each fact once as stated and once with another item's (different) answer."""
    out = []
    for category, (items, say) in FACTS.items():
        answers = sorted({answer for _, answer in items})
        for subject, answer in items:
            wrong = [a for a in answers if a != answer]
            out.append((say(subject, answer), True, "fact", category))
            out.append((say(subject, wrong[int(rng.integers(len(wrong)))]), False, "fact",
                        category))
    return out


def build(n_arithmetic: int = DEFAULT_N_ARITHMETIC, n_comparison: int = DEFAULT_N_COMPARISON,
          seed: int = 0) -> Dataset:
    """The ``truth`` dataset: each statement as a Yes document followed by a No document.

    Columns: ``doc_id``, ``text``, ``statement_id`` (pair id), ``statement``, ``answer``
    ("Yes"/"No"), ``truth`` ("true"/"false": is the statement true), ``kind``
    (arithmetic/comparison/fact), ``category`` (kind, or capital/animal_class/colour/
    continent for facts), ``label`` ("true"/"false": is this document's claim correct,
    i.e. Yes to a true statement or No to a false one).

    Example:
        >>> docs = build(n_arithmetic=2, n_comparison=2).docs
        >>> list(docs["answer"][:2]), bool(docs["statement_id"][0] == docs["statement_id"][1])
        (['Yes', 'No'], True)
        >>> bool((docs["label"] == "true").mean() == 0.5)
        True
    """
    if n_arithmetic < 0 or n_comparison < 0:
        raise ValueError("n_arithmetic and n_comparison must be at least 0")
    rng = np.random.default_rng(seed)
    statements = (_numeric_statements(rng, n_arithmetic, "arithmetic")
                  + _numeric_statements(rng, n_comparison, "comparison")
                  + _fact_statements(rng))
    order = rng.permutation(len(statements))  # pairs stay adjacent; statements mix
    rows = []
    for pair_id, i in enumerate(order.tolist()):
        statement, is_true, kind, category = statements[i]
        for answer in ("Yes", "No"):
            correct = (answer == "Yes") == is_true
            rows.append((QUESTION.format(statement=statement, answer=answer), pair_id,
                         statement, answer, _word(is_true), kind, category, _word(correct)))
    docs = pd.DataFrame(rows, columns=["text", "statement_id", "statement", "answer", "truth",
                                       "kind", "category", "label"])
    docs.insert(0, "doc_id", np.arange(len(docs), dtype=np.int64))
    docs["statement_id"] = docs["statement_id"].astype(np.int64)
    return Dataset("truth", docs, description=DESCRIPTION,
                   meta={"generator": "actclust.data.truth", "seed": seed,
                         "n_arithmetic": n_arithmetic, "n_comparison": n_comparison,
                         "pair_column": "statement_id"})


def _word(flag: bool) -> str:
    return "true" if flag else "false"
