"""The built-in table of short factual questions and the generator of facts problems.

Each problem asks one or two facts, in random order, each in one of several phrasings, so a
miner cannot answer from a lookup of exact prompts. An answer must contain every asked key fact
and none of the answers to the *other* questions of the same kind: an answer that lists every
capital, say, scores 0. Distractors are drawn only from the same kind because a natural short
answer rarely names another capital, whereas it may well mention, say, a number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from validators.checkers import Problem

__all__ = ["FACTS", "Fact", "make_facts_problem"]


@dataclass(frozen=True, slots=True)
class Fact:
    """One question of the table.

    Attributes:
        kind: facts of one kind are each other's distractors (see the module docstring).
        phrasings: complete questions, all asking the same thing.
        spellings: accepted spellings of the key fact (any one suffices).
        reference: a one-sentence correct answer (for the relevance bonus only).
    """

    kind: str
    phrasings: tuple[str, ...]
    spellings: tuple[str, ...]
    reference: str


def _capital(country: str, city: str) -> Fact:
    return Fact("capital", (f"What is the capital of {country}?",
                            f"Which city is the capital of {country}?",
                            f"Name the capital city of {country}."),
                (city,), f"The capital of {country} is {city}.")


def _symbol(element: str, symbol: str) -> Fact:
    return Fact("symbol", (f"What is the chemical symbol of {element}?",
                           f"Which element symbol stands for {element}?",
                           f"Give the periodic-table symbol for {element}."),
                (symbol,), f"The chemical symbol of {element} is {symbol}.")


def _author(work: str, author: str) -> Fact:
    return Fact("author", (f"Who wrote {work}?", f"Name the author of {work}.",
                           f"{work} was written by whom?"),
                (author,), f"{work} was written by {author}.")


FACTS: tuple[Fact, ...] = (
    _capital("France", "Paris"), _capital("Japan", "Tokyo"), _capital("Italy", "Rome"),
    _capital("Egypt", "Cairo"), _capital("Canada", "Ottawa"),
    _capital("Australia", "Canberra"), _capital("Kenya", "Nairobi"), _capital("Peru", "Lima"),
    _symbol("gold", "Au"), _symbol("iron", "Fe"), _symbol("silver", "Ag"),
    _symbol("lead", "Pb"), _symbol("copper", "Cu"),
    _author("Hamlet", "Shakespeare"), _author("Nineteen Eighty-Four", "Orwell"),
    _author("Pride and Prejudice", "Austen"), _author("War and Peace", "Tolstoy"),
    _author("Don Quixote", "Cervantes"),
    Fact("planet", ("Which is the largest planet of the Solar System?",
                    "Name the biggest planet orbiting the Sun.",
                    "What planet is the largest in our Solar System?"),
         ("Jupiter",), "Jupiter is the largest planet of the Solar System."),
    Fact("planet", ("Which planet is called the Red Planet?", "Name the Red Planet.",
                    "What planet is known as the Red Planet?"),
         ("Mars",), "Mars is called the Red Planet."),
    Fact("planet", ("Which planet is closest to the Sun?", "Name the innermost planet.",
                    "What planet orbits nearest to the Sun?"),
         ("Mercury",), "Mercury is the planet closest to the Sun."),
    Fact("planet", ("Which planet is sixth from the Sun?", "Name the sixth planet from the Sun.",
                    "What is the sixth planet of the Solar System?"),
         ("Saturn",), "Saturn is the sixth planet from the Sun."),
    Fact("number", ("How many continents are there?", "What is the number of continents?",
                    "Count the continents of the Earth."),
         ("7", "seven"), "There are seven continents."),
    Fact("number", ("How many legs does a spider have?", "A spider has how many legs?",
                    "What is the number of legs of a spider?"),
         ("8", "eight"), "A spider has eight legs."),
    Fact("number", ("At how many degrees Celsius does water boil at sea level?",
                    "What is the boiling point of water in Celsius?",
                    "Water boils at what temperature in degrees Celsius?"),
         ("100",), "Water boils at 100 degrees Celsius at sea level."),
    Fact("number", ("How many days does a leap year have?", "A leap year has how many days?",
                    "What is the number of days in a leap year?"),
         ("366",), "A leap year has 366 days."),
    Fact("number", ("How many sides does a hexagon have?", "A hexagon has how many sides?",
                    "What is the number of sides of a hexagon?"),
         ("6", "six"), "A hexagon has six sides."),
    Fact("painter", ("Who painted the Mona Lisa?", "Name the painter of the Mona Lisa.",
                     "The Mona Lisa was painted by whom?"),
         ("Leonardo", "da Vinci"), "The Mona Lisa was painted by Leonardo da Vinci."),
    Fact("physicist", ("Who developed the theory of relativity?",
                       "Name the physicist behind the theory of relativity.",
                       "The theory of relativity is due to which scientist?"),
         ("Einstein",), "Albert Einstein developed the theory of relativity."),
    Fact("mountain", ("What is the highest mountain on Earth?",
                      "Name the tallest mountain in the world.",
                      "Which mountain has the highest summit above sea level?"),
         ("Everest",), "Mount Everest is the highest mountain on Earth."),
    Fact("ocean", ("What is the largest ocean on Earth?", "Name the biggest ocean.",
                   "Which ocean covers the most area?"),
         ("Pacific",), "The Pacific is the largest ocean."),
    Fact("currency", ("What is the currency of Japan?", "Name the money used in Japan.",
                      "Japan pays in which currency?"),
         ("yen",), "The currency of Japan is the yen."),
    Fact("formula", ("What is the chemical formula of water?", "Give the formula of water.",
                     "Water has which chemical formula?"),
         ("H2O",), "The chemical formula of water is H2O."),
)

_INTROS = ("Answer briefly.", "Reply in a few words.", "Give a short answer.")


def make_facts_problem(rng: np.random.Generator, facts: tuple[Fact, ...] = FACTS,
                       max_questions: int = 2) -> Problem:
    """Draw 1..``max_questions`` distinct facts in random order and phrase them at random.

    The prompt is ``"<intro>\\nQ: <question> [<question>]\\nA:"``. The problem's key facts are
    the asked facts' spellings; its forbidden spellings are those of the unasked facts of the
    asked kinds (minus any spelling an asked fact also accepts).
    """
    count = int(rng.integers(1, min(max_questions, len(facts)) + 1))
    chosen = [facts[int(i)] for i in rng.choice(len(facts), size=count, replace=False)]
    questions = [f.phrasings[int(rng.integers(len(f.phrasings)))] for f in chosen]
    intro = _INTROS[int(rng.integers(len(_INTROS)))]
    accepted = {s.lower() for f in chosen for s in f.spellings}
    kinds = {f.kind for f in chosen}
    forbidden = tuple(s for f in facts if f.kind in kinds and f not in chosen
                      for s in f.spellings if s.lower() not in accepted)
    return Problem(prompt=f"{intro}\nQ: {' '.join(questions)}\nA:",
                   answer=" ".join(f.reference for f in chosen),
                   key_facts=tuple(f.spellings for f in chosen), forbidden=forbidden)
