"""The questions fixed rules ask of what the user said about themselves."""

from __future__ import annotations

import pytest

from pocketsleep.sleep.question_rules import clauses, rule_questions


def asked(statement: str, earlier: str = "") -> list[str]:
    return [q for _, _, q in rule_questions(statement, earlier)]


@pytest.mark.parametrize("statement, questions", [
    ("My best 10k time is 52 minutes.", ["What is my best 10k time?"]),
    ("My new address will be on Clover Street.", ["What will my new address be?"]),
    ("My mum's birthday is on 3 May.", ["What is my mum's birthday?"]),
    ("I run with my neighbour Tomasz on Saturdays.",
     ["What is my neighbour's name?", "Who do I run with?"]),
    ("My dog is called Biscuit.", ["What is my dog called?"]),
    ("My sister Anna lives in Lisbon.", ["What is my sister's name?", "Where does my sister live?"]),
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
    ("Is my sister Elena coming? I'm allergic to walnuts.", ["What am I allergic to?"]),
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


def test_questions_come_with_their_sentence_and_clause_each_once():
    assert rule_questions("I'm allergic to walnuts. Really, I'm allergic to walnuts!") == [
        ("I'm allergic to walnuts.", "I'm allergic to walnuts", "What am I allergic to?")]
    assert rule_questions("She lives in Rotterdam.", earlier="My sister Elena is here.") == [
        ("She lives in Rotterdam.", "my sister lives in Rotterdam", "Where does my sister live?")]
    assert clauses("I work nights, so I eat at 7 pm and sleep at noon.") == [
        "I work nights", "I eat at 7 pm", "sleep at noon"]
    # Lead-ins say nothing: the clause said back starts at what it tells.
    assert clauses("Remind me: my car is a Jazz and its service is due in June.") == [
        "my car is a Jazz", "its service is due in June"]
    assert clauses("Also I work as a nurse.") == ["I work as a nurse"]


# -- in self-study ----------------------------------------------------------------------

def test_rule_answers_say_the_clause_back_with_the_teachers_targets(tmp_path, monkeypatch):
    """On a tiny GGUF: with rule_answers, each rule question gets one more answer, its
    clause said back to the user (ending the turn), whose targets are the teacher's
    with the conversation in view; without it, self-study is unchanged."""
    pytest.importorskip("mlx.core")
    from sleep_support import DAY, FAST, learnable_self_study, student_and_teacher, tiny_model

    from pocketsleep.sleep.episode import Episode
    from pocketsleep.sleep.selfstudy import episode_examples, forced_answer

    learnable_self_study(monkeypatch)
    io, teacher, _ = student_and_teacher(tiny_model(tmp_path))
    episode = Episode((1, 2), tuple(tuple(c) for c in DAY), ("2026-03-02",) * 2)
    options = FAST.but(rule_questions=True, max_answer_tokens=64)  # whole clauses
    asked = episode_examples(io, teacher, episode, options, seed=0)
    said = episode_examples(io, teacher, episode, options.but(rule_answers=True), seed=0)
    assert [e.answer.tokens for e in said[:len(asked)]] == [e.answer.tokens for e in asked]
    assert [(e.question, io.decode(e.answer.tokens)) for e in said[len(asked):]] == [
        ("What is my sister's name?", "Your sister Anna lives in Lisbon."),
        ("Where does my sister live?", "Your sister Anna lives in Lisbon."),
        ("What is my dog called?", "Your dog is called Biscuit."),
        ("What is my dog?", "Your dog is three.")]
    for e in said[len(asked):]:
        assert e.answer.end_token == io.end_token
        assert e.teacher_messages[-1]["content"] == e.question
        with_view = forced_answer(io, e.teacher_messages, e.answer.answer_ids, FAST.top_k,
                                  teacher)
        assert (e.answer.topk_ids == with_view.topk_ids).all()
    # Nothing said back without the rule questions themselves.
    plain = episode_examples(io, teacher, episode, FAST, seed=0)
    assert len(episode_examples(io, teacher, episode, FAST.but(rule_answers=True), seed=0)) \
        == len(plain) < len(asked)
