"""The questions fixed rules ask of what the user said about themselves."""

from __future__ import annotations

import pytest

from pocketsleep.sleep.question_rules import clauses, rule_questions


def asked(statement: str, earlier: str = "") -> list[str]:
    return [q for _, qs in rule_questions(statement, earlier) for q in qs]


@pytest.mark.parametrize("statement, questions", [
    ("My best 10k time is 52 minutes.", ["What is my best 10k time?"]),
    ("My new address will be on Clover Street.", ["What will my new address be?"]),
    ("My mum's birthday is on 3 May.", ["What is my mum's birthday?"]),
    ("I run with my neighbour Tomasz on Saturdays.",
     ["What is my neighbour's name?", "Who do I run with?"]),
    ("I live in Lisbon with my husband Marco.", ["What is my husband's name?", "Where do I live?"]),
    ("I'm training for a half marathon in May.", ["What am I training for?"]),
    ("I'm moving to Leeds in June.", ["Where am I moving to?"]),
    ("I'm allergic to walnuts.", ["What am I allergic to?"]),
    ("I work as a nurse, so I usually eat breakfast at 7 pm.",
     ["What do I work as?", "When do I eat breakfast?"]),
    ("I just adopted a kitten.", ["What did I adopt?"]),
    # A feeling, a request, a question and small talk ask nothing.
    ("I'm sorry, I'm tired today.", []),
    ("Can you help me plan meals?", []),
    ("Thanks, that helps!", []),
    ("My sister is visiting next month.", []),
    ("", []),
])
def test_each_rule_asks_the_question_its_sentence_answers(statement, questions):
    assert asked(statement) == questions


def test_he_she_his_and_her_are_the_last_person_or_pet_named():
    # Named in an earlier message of the conversation, or earlier in this one.
    assert asked("Her favourite colour is teal, so I'm knitting her a scarf.",
                 earlier="My sister Elena is visiting. She lives in Rotterdam.") == [
        "What is my sister's favourite colour?", "What am I knitting?"]
    assert asked("My sister Elena is visiting. She lives in Rotterdam.") == [
        "What is my sister's name?", "Where does my sister live?"]
    assert asked("I just adopted a dog. He's a beagle and his name is Biscuit.") == [
        "What did I adopt?", "What is my dog?", "What is my dog's name?"]
    # No one named: a pronoun is not guessed at.
    assert asked("She lives in Rotterdam.") == []


def test_questions_come_with_their_sentence_each_once():
    assert rule_questions("I'm allergic to walnuts. Really, I'm allergic to walnuts!") == [
        ("I'm allergic to walnuts.", ["What am I allergic to?"])]
    assert clauses("I work nights, so I eat at 7 pm and sleep at noon.") == [
        "I work nights", "I eat at 7 pm", "sleep at noon"]
