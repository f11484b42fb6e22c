"""The demo's synthetic seq2seq task: dates written out in words -> ISO dates.

``"the twenty-first of march, nineteen ninety-two"`` -> ``"1992-03-21"``. Examples are drawn
with a fixed seed; the held-out test set never shares a (year, month, day) with training.
Exact match compares the ISO strings with spaces removed (WordPiece decoding puts spaces around
``-``).
"""

from __future__ import annotations

import datetime
import random
from typing import List, Sequence, Tuple

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ORDINALS = ["", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
            "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
            "eighteenth", "nineteenth", "twentieth"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]


def number_words(n: int) -> str:
    """0..99 in words: 42 -> "forty-two"."""
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + ("" if ones == 0 else "-" + ONES[ones])


def ordinal_words(n: int) -> str:
    """1..31 as an ordinal: 21 -> "twenty-first"."""
    if n <= 20:
        return ORDINALS[n]
    tens, ones = divmod(n, 10)
    return TENS[tens][:-1] + "ieth" if ones == 0 else TENS[tens] + "-" + ORDINALS[ones]


def year_words(year: int) -> str:
    """1992 -> "nineteen ninety-two", 2005 -> "two thousand five", 2010 -> "twenty ten"."""
    century, rest = divmod(year, 100)
    if century == 20 and rest < 10:
        return "two thousand" + ("" if rest == 0 else " " + ONES[rest])
    if rest == 0:
        return number_words(century) + " hundred"
    if rest < 10:
        return number_words(century) + " oh " + ONES[rest]
    return number_words(century) + " " + number_words(rest)


TEMPLATES = [
    "the {d} of {m}, {y}",
    "{m} the {d}, {y}",
    "{d} {m} {y}",
    "on {m} {d} in the year {y}",
]


def date_to_words(date: datetime.date, template: int) -> str:
    return TEMPLATES[template].format(d=ordinal_words(date.day), m=MONTHS[date.month - 1], y=year_words(date.year))


def make_dataset(n_train: int, n_test: int, seed: int = 0, first_year: int = 1950,
                 last_year: int = 2029) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]]]:
    """(train, test) lists of (words, iso); no date appears in both."""
    rng = random.Random(seed)
    start = datetime.date(first_year, 1, 1).toordinal()
    end = datetime.date(last_year, 12, 31).toordinal()
    if n_train + n_test > end - start + 1:
        raise ValueError(f"only {end - start + 1} distinct dates between {first_year} and {last_year}")
    ordinals = rng.sample(range(start, end + 1), n_train + n_test)
    pairs = []
    for o in ordinals:
        date = datetime.date.fromordinal(o)
        pairs.append((date_to_words(date, rng.randrange(len(TEMPLATES))), date.isoformat()))
    return pairs[:n_train], pairs[n_train:]


def normalise(text: str) -> str:
    return "".join(text.split())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    hits = sum(normalise(p) == normalise(r) for p, r in zip(predictions, references))
    return hits / max(len(references), 1)
