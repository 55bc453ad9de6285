"""Fresh benchmark texts: every call returns text no earlier call returned, so no cache of any kind can answer.

The benches compare systems with different texts of the same shape (same category, same word count where the
category has one), because the engine may cache by text or by sentence at any level. Texts are made from a seeded
random generator, so a run with the same seed sends the same sequence of texts.

Categories (`TextGen.make(category)`):
  short       one sentence of 8 words
  paragraph   4 sentences, 60-70 words (the same count for every system within a round: `words=`)
  long        400 words in sentences of 12-20 words
  numbers     prices, dates, times, decimals, percentages and abbreviations (Dr., St., a.m., U.S., e.g.)
  non_ascii   accented names and words, curly quotes, dashes, an ellipsis, currency and degree signs
  sentence40  one sentence of exactly 40 words (no terminator before its end)
and `hostile(chars)`: lower-case words and spaces only, exactly `chars` characters, no punctuation at all.
"""

from __future__ import annotations

import random
from collections.abc import Callable

SUBJECTS = (
    "The old fisherman|A young teacher|My neighbor|The city council|Our small team|The tired engineer|"
    "A curious child|The night nurse|Her younger brother|The museum guide|A quiet student|The village baker|"
    "The new manager|An elderly painter|The bus driver|A friendly stranger|The research group|The head chef|"
    "His grandmother|The local band|A careful pilot|The park ranger|Our landlord|The shy librarian"
).split("|")
VERBS = (
    "walked slowly toward|painted a picture of|talked for hours about|carefully repaired|wrote a long letter about|"
    "finally visited|took a photograph of|quietly cleaned|argued loudly about|dreamed for years about|"
    "drew a map of|sang a song about|searched all day for|read an old book about|measured the length of|"
    "built a model of|planted flowers near|made a short film about|ran past|waited patiently beside"
).split("|")
OBJECTS = (
    "the quiet harbor|the broken bridge|an ancient castle|the crowded market|a small wooden boat|the railway station|"
    "the frozen lake|a forgotten garden|the tall lighthouse|the school library|an empty theater|the mountain cabin|"
    "the river bank|a narrow alley|the old factory|the city hall|a green valley|the busy airport|the stone chapel|"
    "a hidden waterfall|the morning ferry|the village square|a dusty attic|the northern beach"
).split("|")
TAILS = (
    "before the rain started|after a long day at work|while the children were sleeping|on a bright autumn morning|"
    "during the summer holidays|just before sunset|in the middle of the night|without telling anyone|"
    "with a cup of coffee in hand|despite the cold wind|as the bells were ringing|when the snow began to melt|"
    "for the very first time|at the end of the week|under a cloudy sky|between two busy meetings"
).split("|")
CONNECTORS = ("and then", "because", "while", "although", "so", "but", "until", "after")
# Pads that bring a sentence to an exact word count; one, two and three words.
FILLERS = {1: ("again", "today", "too", "indeed"), 2: ("once more", "very slowly", "after all", "as usual")}
FILLERS[3] = ("for a while", "without a doubt", "in the end", "as always then")

NAMES = "Smith|Garcia|Nguyen|Okafor|Patel|Kowalski|Jensen|Moreau|Tanaka|Rossi|Haddad|Larsen".split("|")
MONTHS = "Jan.|Feb.|Mar.|Apr.|Aug.|Sept.|Oct.|Nov.|Dec.".split("|")
STREETS = "Oak|Maple|Elm|Harbor|Mill|Church|Bridge|Station".split("|")
ACCENTED = (
    "Zürich|São Paulo|Kraków|Øresund|Málaga|Reykjavík|Besançon|Córdoba|Gdańsk|Tromsø|Brașov|Ærø|Škoda|Dvořák"
).split("|")
FOODS = "crème brûlée|jalapeño soup|smörgåsbord|piña colada|açaí bowls|pâté|rösti|soufflé|bánh mì|crêpes".split("|")
WORDS_NA = "naïve|résumé|façade|déjà vu|fiancée|coöperate|entrée|cliché|protégé|über".split("|")

CATEGORIES = ("short", "paragraph", "long", "numbers", "non_ascii")
"""The latency categories, shortest first."""


class TextGen:
    """Deterministic for a seed; never returns the same sentence twice (across all categories)."""

    def __init__(self, seed: int = 20240601) -> None:
        self.rng = random.Random(seed)
        self.seen: set[str] = set()

    def _clause(self) -> list[str]:
        r = self.rng
        return f"{r.choice(SUBJECTS)} {r.choice(VERBS)} {r.choice(OBJECTS)} {r.choice(TAILS)}".split()

    def _sentence_words(self, n: int) -> str:
        """One sentence of exactly n words (n >= 4): clauses joined by connectors, padded with fillers."""
        r = self.rng
        words = self._clause()
        for _ in range(500):  # a short target: a subject, a verb and an object only, of exactly n words if any
            if len(words) <= n:
                break
            words = f"{r.choice(SUBJECTS)} {r.choice(VERBS)} {r.choice(OBJECTS)}".split()
        words = words[:n]
        while True:
            nxt = [r.choice(CONNECTORS), *(w.lower() if i == 0 else w for i, w in enumerate(self._clause()))]
            if len(words) + len(nxt) > n:
                break
            words += nxt
        tails = [t for t in TAILS if len(t.split()) <= n - len(words)]
        if tails and n - len(words) > 3:
            words += r.choice(tails).split()
        while len(words) < n:
            gap = min(3, n - len(words))
            words += r.choice(FILLERS[gap]).split()
        return " ".join(words) + "."

    def _fresh(self, make: Callable[[], str]) -> str:
        for _ in range(1000):
            text = make()
            if text not in self.seen:
                self.seen.add(text)
                return text
        raise RuntimeError("could not make a fresh text")

    def _sentence(self, n: int) -> str:
        return self._fresh(lambda: self._sentence_words(n))

    def split_words(self, total: int, parts: int, low: int, high: int) -> list[int]:
        """`parts` sentence lengths in [low, high] summing to `total`."""
        sizes = [low] * parts
        for _ in range(total - low * parts):
            sizes[self.rng.choice([i for i, s in enumerate(sizes) if s < high])] += 1
        return sizes

    def paragraph_words(self) -> int:
        """A word count for a round's paragraphs (60-70)."""
        return self.rng.randint(60, 70)

    def make(self, category: str, words: int | None = None) -> str:
        if category == "short":
            return self._sentence(words or 8)
        if category == "paragraph":
            return " ".join(self._sentence(n) for n in self.split_words(words or 64, 4, 12, 20))
        if category == "long":
            total = words or 400
            sizes = self.split_words(total, -(-total // 16), 12, 20)
            return " ".join(self._sentence(n) for n in sizes)
        if category == "sentence40":
            return self._sentence(words or 40)
        if category == "numbers":
            return self._fresh(self._numbers)
        if category == "non_ascii":
            return self._fresh(self._non_ascii)
        raise ValueError(f"unknown text category {category!r}")

    def _numbers(self) -> str:
        r = self.rng
        name, street, month = r.choice(NAMES), r.choice(STREETS), r.choice(MONTHS)
        return (
            f"Dr. {name} paid ${r.randint(2, 999)}.{r.randint(10, 99)} for {r.randint(3, 48)} items on "
            f"{month} {r.randint(1, 28)}, {r.randint(1990, 2030)}, at {r.randint(1, 12)}:{r.randint(10, 59)} a.m. "
            f"near {r.randint(10, 9999)} {street} St. "
            f"The U.S. team measured {r.randint(1, 99)}.{r.randint(1, 9)} km in {r.randint(5, 90)} min., "
            f"i.e. about {r.randint(2, 98)}% faster than the {r.randint(1, 20)}th run of {r.randint(1990, 2023)}. "
            f"Call ext. {r.randint(100, 999)} or +1 {r.randint(200, 999)}-{r.randint(100, 999)}-"
            f"{r.randint(1000, 9999)}."
        )

    def _non_ascii(self) -> str:
        r = self.rng
        a, b = r.sample(ACCENTED, 2)
        food, word = r.choice(FOODS), r.choice(WORDS_NA)
        return (
            f"In {a}, the café served {food} to {r.randint(3, 40)} “{word}” visitors — "
            f"it cost €{r.randint(4, 90)},{r.randint(10, 99)} and the terrace was {r.randint(5, 35)} °C… "
            f"Señora {r.choice(NAMES)}’s friend from {b} said: «{r.choice(WORDS_NA)}, and ½ of it was über-good»."
        )

    def hostile(self, chars: int) -> str:
        """Exactly `chars` characters of lower-case words and single spaces: one endless 'sentence'."""
        pool = [
            w.lower()
            for phrase in (*SUBJECTS, *VERBS, *OBJECTS, *TAILS)
            for w in phrase.split()
            if w.isalpha() and w.isascii()
        ]
        while True:
            words: list[str] = []
            length = 0
            while length < chars:
                word = self.rng.choice(pool)
                words.append(word)
                length += len(word) + 1
            text = " ".join(words)[:chars].rstrip()
            text += "a" * (chars - len(text))  # never ends on a cut space
            if text not in self.seen:
                self.seen.add(text)
                return text
