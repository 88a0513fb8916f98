"""What the user takes back ("pescatarian now, not vegetarian"): the negated words,
the earlier probes they supersede, and what a night does with them."""

from __future__ import annotations

import pytest

from pocketsleep.sleep.options import SleepOptions
from pocketsleep.sleep.updates import superseded, taken_back
from pocketsleep.sleep.words import negated_words, stated_words


@pytest.mark.parametrize("text, negated", [
    ("I've decided to start eating fish again, so I'm pescatarian now, not vegetarian.",
     {"vegetarian"}),
    ("I'm vegetarian, so no meat or fish please.", {"meat", "fish"}),
    ("I don't have a car, so I cycle to work.", {"car"}),
    ("I can\u2019t stand walnuts", {"stand", "walnuts"}),  # a curly apostrophe
    ("I'm not a nurse any more - I teach now.", {"nurse"}),
    ("I never liked Rotterdam but Elena loves it.", {"liked", "rotterdam"}),
    # A negator ends at its clause: "No," negates nothing; neither does "not sure".
    ("No, my dog is called Biscuit.", set()),
    ("I'm not sure, I think his name is Biscuit.", set()),
    ("My sister Elena lives in Rotterdam.", set()),
])
def test_negated_words_are_those_after_a_negator_in_its_clause(text, negated):
    assert negated_words(text) == negated


def test_stated_words_are_the_content_words_but_the_negated():
    assert stated_words("I'm pescatarian now, not vegetarian.") == {"pescatarian"}
    assert stated_words("My dog Biscuit is not a beagle.") == {"dog", "biscuit"}


def test_taken_back_is_what_tonight_negates_and_does_not_also_state():
    assert taken_back(["I'm pescatarian now, not vegetarian.",
                       "I'm allergic to walnuts."]) == {"vegetarian"}
    # Said both ways tonight: not taken back.
    assert taken_back(["I don't like tea.", "Actually, I do like tea with milk."]) == set()
    assert taken_back([]) == set()


def test_superseded_probes_say_a_taken_back_word_in_the_question_or_the_answer():
    probes = [("What do I eat?", "You're a vegetarian, so no meat."),
              ("Am I vegetarian?", "Yes."),
              ("What is my dog's name?", "Biscuit, a beagle."),
              ("What diet do I follow?", "Vegetarianism.")]  # another word
    assert superseded(probes, {"vegetarian"}) == probes[:2]
    assert superseded(probes, set()) == []


def test_a_basis_heeding_an_episode_leaves_out_what_it_takes_back():
    from pocketsleep.sleep.episode import Episode
    from pocketsleep.sleep.job import Basis

    old = ("What do I eat?", "You're a vegetarian.")
    dog = ("What is my dog's name?", "Biscuit.")
    rehearsal = ("Which meals do I like?", "Vegetarian meals with lentils.")
    episode = Episode((7,), (({"role": "user", "content":
                               "I'm pescatarian now, not vegetarian any more."},),), ("d",))
    basis = Basis([], [old, dog], anchored=[old, dog, rehearsal])
    heeded = basis.heeding(episode, SleepOptions())
    assert heeded.earlier == [dog] and heeded.held == [dog]
    assert heeded.superseded == [old, rehearsal]
    assert heeded.taken_back == {"vegetarian"}
    assert basis.earlier == [old, dog]  # the journal's basis is left as it was
    assert basis.heeding(episode, SleepOptions(heed_negations=False)) is basis
    plain = Basis([], [old, dog])  # no rehearsal questions stored: held is earlier
    assert plain.heeding(episode, SleepOptions()).held == [dog]


@pytest.mark.parametrize("answer, expected", [
    ("You're a vegetarian.", False),  # only what the user took back
    ("You're pescatarian, not vegetarian.", True),
    ("You eat fish again.", True),
])
def test_an_answer_grounded_only_in_a_negated_word_is_not_grounded(answer, expected):
    pytest.importorskip("mlx.core")
    from pocketsleep.sleep.selfstudy import grounded

    source = "I eat fish again, so I'm pescatarian now, not vegetarian."
    assert grounded(answer, source, "What is my diet?") is expected
    assert grounded(answer, source, "What is my diet?", negations=False) is True
