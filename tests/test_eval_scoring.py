"""Scoring rules of DESIGN.md §5: aliases, whole words, case, stale values."""

import math

import pytest

from pocketsleep.eval.scoring import judge, mentions, perplexity
from pocketsleep.eval.suite import Probe

DOG = Probe("What is the name of my dog?", ("Biscuit",))
TIME = Probe("What is my best 10k time?", ("52 minutes", "52 min", "52"))
CITY = Probe("Which city am I moving to?", ("Leeds",), stale=("Sheffield",))


@pytest.mark.parametrize("answer, right", [
    ("Your dog is called Biscuit.", True),
    ("BISCUIT!", True),
    ("biscuit", True),
    ("(Biscuit)", True),
    ("Biscuits are tasty.", False),      # not a whole word
    ("Your dog is Biscuitman.", False),
    ("I don't know your dog's name.", False),
    ("", False),
])
def test_whole_word_case_insensitive(answer, right):
    assert judge(DOG, answer).correct is right


@pytest.mark.parametrize("answer, right", [
    ("About 52 minutes.", True),
    ("52 min", True),
    ("It was 52.", True),
    ("3:52", True),                      # ':' is not a word character
    ("It took 520 minutes.", False),
    ("152 seconds", False),
    ("52_minutes", False),               # '_' is a word character
])
def test_any_alias_counts(answer, right):
    assert judge(TIME, answer).correct is right


def test_aliases_with_spaces_and_punctuation():
    assert mentions("A half  marathon\nin May", ["half marathon"])
    assert mentions("I moved to the U.S. in May", ["U.S."])
    assert not mentions("I moved to the U.S.A. in May", ["U.S."])
    assert mentions("I write C++ daily", ["C++"])
    assert not mentions("I write C daily", ["C++"])
    assert not mentions("anything", ["", "  "])


def test_stale_value_alone_is_wrong_and_counted():
    assert judge(CITY, "You live in Sheffield.") == (False, True)
    # With the current value it is right, whatever else it says.
    assert judge(CITY, "Leeds, not Sheffield any more.") == (True, False)
    assert judge(CITY, "I don't know.") == (False, False)
    assert judge(CITY, "You live in sheffield") == (False, True)


def test_perplexity():
    assert perplexity([]) is None
    assert perplexity([-math.log(100.0)] * 3) == pytest.approx(100.0)
    assert perplexity([0.0, 0.0]) == 1.0
