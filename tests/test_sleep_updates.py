"""What the user takes back ("pescatarian now, not vegetarian"): the negated words,
the earlier probes they supersede, and what a night does with them."""

from __future__ import annotations

import pytest

from pocketsleep.sleep.options import SleepOptions
from pocketsleep.sleep.updates import retractions, superseded, taken_back
from pocketsleep.sleep.words import negated_words, polarity, stated_words


@pytest.mark.parametrize("text, stated, negated", [
    ("I've decided to start eating fish again, so I'm pescatarian now, not vegetarian.",
     {"decided", "start", "eating", "fish", "pescatarian"}, {"vegetarian"}),
    ("I'm vegetarian, so no meat or fish please.", {"vegetarian"}, {"meat", "fish"}),
    ("I don't have a car, so I cycle to work.", {"cycle", "work"}, {"car"}),
    ("I can\u2019t stand walnuts", set(), {"stand", "walnuts"}),  # a curly apostrophe
    ("I dont eat fish", set(), {"eat", "fish"}),  # no apostrophe typed
    ("I'm not a nurse any more - I teach now.", {"teach"}, {"nurse"}),
    # Per word said: stated somewhere is stated.
    ("I wasn't born in Leeds, I was born in York.", {"born", "york"}, {"leeds"}),
    # A negator ends at its clause (punctuation, a new line, a dash, a joiner) and
    # covers two content words at most.
    ("I'm not vegetarian anymore\nMy sister Elena lives in Rotterdam",
     {"sister", "elena", "lives", "rotterdam"}, {"vegetarian", "anymore"}),
    ("not vegetarian\u2014I eat fish now.", {"eat", "fish"}, {"vegetarian"}),
    ("I haven't told you yet that Elena moved to Leeds", {"elena", "moved", "leeds"}, set()),
    ("I never liked Rotterdam but Elena loves it.", {"elena", "loves"}, {"liked", "rotterdam"}),
    ("If I don't call Elena she gets upset", {"gets", "upset"}, {"call", "elena"}),
    # Not a negation: "No" as an interjection, "not only", a question.
    ("No, my dog is called Biscuit.", {"dog", "biscuit"}, set()),
    ("No I'm vegetarian", {"vegetarian"}, set()),
    ("I'm not only a nurse but also a teacher", {"nurse", "teacher"}, set()),
    ("Don't you remember my dog Biscuit?", set(), set()),
    ("I'm not sure, I think his name is Biscuit.", {"name", "biscuit"}, set()),
])
def test_polarity_is_what_a_text_says_is_so_and_only_says_is_not(text, stated, negated):
    assert polarity(text) == (stated, negated)
    assert stated_words(text) == stated and negated_words(text) == negated


def test_taken_back_is_what_tonight_negates_and_does_not_also_state():
    assert taken_back(["I'm pescatarian now, not vegetarian.",
                       "I'm allergic to walnuts."]) == {"vegetarian"}
    # Said both ways tonight: not taken back.
    assert taken_back(["I don't like tea.", "Actually, I do like tea with milk."]) == set()
    assert taken_back([]) == set()


def test_superseded_probes_are_those_whose_answer_says_a_taken_back_word_is_so():
    probes = [("What do I eat?", "You're a vegetarian, so no meat."),
              ("Am I vegetarian?", "Yes."),  # no content words: the question counts
              ("What is my dog's name?", "Biscuit, a beagle."),
              ("What diet do I follow?", "Vegetarianism."),  # another word
              ("What is my diet?", "You're pescatarian, not vegetarian.")]  # agrees
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
    heeded = basis.heeding(episode, SleepOptions(heed_negations=True))
    assert heeded.earlier == [dog] and heeded.held == [dog]
    assert heeded.superseded == [old, rehearsal]
    assert heeded.taken_back == {"vegetarian"}
    assert basis.earlier == [old, dog]  # the journal's basis is left as it was
    assert basis.heeding(episode, SleepOptions(heed_negations=False)) is basis
    plain = Basis([], [old, dog])  # no rehearsal questions stored: held is earlier
    assert plain.heeding(episode, SleepOptions(heed_negations=True)).held == [dog]
    rebuild = Basis([], [old, dog], record=lambda *a: 0)  # after `forget`
    assert rebuild.heeding(episode, SleepOptions(heed_negations=True)) is rebuild
    assert retractions(heeded.superseded, episode) == [(*old, 7), (*rehearsal, 7)]


def test_a_retraction_names_the_conversation_of_the_first_statement_that_took_it_back():
    from pocketsleep.sleep.episode import Episode

    def said(text):
        return ({"role": "user", "content": text},)

    episode = Episode((3, 4, 5), (said("My sister Elena lives in Rotterdam now."),
                                  said("I'm not vegetarian any more, I eat fish."),
                                  said("No meat, though, and still not vegetarian.")),
                      ("d",) * 3)
    probes = [("What do I eat?", "You're vegetarian."), ("Where is Elena?", "In Rotterdam."),
              ("Do I eat meat?", "Yes, meat.")]
    assert retractions(probes, episode) == [(*probes[0], 4), (*probes[2], 5)]


@pytest.mark.parametrize("answer, expected", [
    ("You're a vegetarian.", False),  # says so what the user said is not so
    ("You're pescatarian, not vegetarian.", True),
    ("You eat fish again.", True),
    ("You don't eat meat.", True),  # not so, as the user said: a negative fact
    ("You love meat.", False),
])
def test_an_answer_is_grounded_by_a_word_said_the_way_the_source_says_it(answer, expected):
    pytest.importorskip("mlx.core")
    from pocketsleep.sleep.selfstudy import grounded

    source = "I eat fish again, so I'm pescatarian now, not vegetarian. Still no meat."
    assert grounded(answer, source, "What is my diet?", negations=True) is expected
    assert grounded(answer, source, "What is my diet?", negations=False) is True
