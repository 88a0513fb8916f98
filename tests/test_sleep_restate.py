"""What the user said, said back (sleep/restate.py), and the restated answers self-study
adds with SleepOptions.restated_answers."""

from __future__ import annotations

import re

import pytest

from pocketsleep.sleep.restate import restated, second_person, sentences


def words(text: str) -> set[str]:
    # The self-study rule, without mlx: any word of three letters or more but these.
    return {w for w in re.findall(r"[a-z0-9']+", text.lower())
            if len(w) > 2 and w not in {"pretty", "well", "thanks", "the", "for"}}


@pytest.mark.parametrize("sentence, expected", [
    ("I just adopted a dog.", "You just adopted a dog."),
    ("My best 10k time is 52 minutes.", "Your best 10k time is 52 minutes."),
    ("And I'm allergic to walnuts, which I found out the hard way.",
     "And you're allergic to walnuts, which you found out the hard way."),
    ("I’ve decided to start eating fish again.", "You've decided to start eating fish again."),
    ("I am a nurse and I was born in Leeds.", "You are a nurse and you were born in Leeds."),
    ("We moved our things to my sister's flat.", "You moved your things to your sister's flat."),
    # "am" only after "I": a time stays a time; third persons stay.
    ("Breakfast is at 7 am, he says it was early.", "Breakfast is at 7 am, he says it was early."),
    ("Remind me: my car is a green Jazz.", "Remind you: your car is a green Jazz."),
])
def test_second_person(sentence, expected):
    assert second_person(sentence) == expected


def test_sentences_keep_their_ends():
    assert sentences("Hi! I moved. Where to? Leeds") == ["Hi!", "I moved.", "Where to?", "Leeds"]
    assert sentences("  ") == []


def test_restated_keeps_only_what_the_user_said_about_themselves():
    assert restated("Hi! I just adopted a dog. He's a beagle and his name is Biscuit.",
                    words) == "You just adopted a dog. He's a beagle and his name is Biscuit."
    # A question, a sentence to the assistant, and one that says nothing are left out.
    assert restated("Can you help me plan meals? I'm vegetarian, so no fish please. "
                    "Pretty well.", words) == "You're vegetarian, so no fish please."
    assert restated("Thank you for your help.", words) == ""
    assert restated("Pretty well.", words) == ""
    assert restated("", words) == ""


# -- in self-study ----------------------------------------------------------------------

mx = pytest.importorskip("mlx.core")


def test_restated_answers_state_the_statement_with_the_teachers_targets(tmp_path, monkeypatch):
    """On a tiny GGUF: with the option, every statement question and recall request
    gets one more answer, the statement said back (ending the turn), whose targets are
    the teacher's distribution with the conversation in view, not the closed-book
    model's; without it, self-study is unchanged."""
    from sleep_support import DAY, FAST, learnable_self_study, student_and_teacher, tiny_model

    from pocketsleep import prompts
    from pocketsleep.sleep.episode import Episode
    from pocketsleep.sleep.selfstudy import episode_examples, forced_answer
    from pocketsleep.sleep.words import content_words

    learnable_self_study(monkeypatch)
    io, teacher, _ = student_and_teacher(tiny_model(tmp_path))
    episode = Episode((1, 2), tuple(tuple(c) for c in DAY), ("2026-03-02",) * 2)
    options = FAST.but(max_answer_tokens=64)  # restated answers up to 128 tokens
    plain = episode_examples(io, teacher, episode, options, seed=0)
    both = episode_examples(io, teacher, episode, options.but(restated_answers=True), seed=0)
    assert [e.answer.tokens for e in both[:len(plain)]] == [e.answer.tokens for e in plain]
    added = both[len(plain):]

    statements = [x.statement for x in episode.exchanges()]
    questions = [e for e in added if e.kind == "statement"]
    assert [e.statement for e in questions] == statements  # one question per statement
    for e in questions:
        assert io.decode(e.answer.tokens) == restated(e.statement, content_words)
        assert e.answer.end_token == io.end_token
        assert e.teacher_messages[-1]["content"] == e.question
    recalls = [e for e in added if e.kind == "recall"]
    assert len(recalls) == len(DAY) * len(prompts.RECALL_PROMPTS)
    assert io.decode(recalls[0].answer.tokens) == (
        "Your sister Anna lives in Lisbon and likes green tea. "
        "You meet every Sunday at the old harbour.")

    e = questions[0]
    ids = e.answer.answer_ids
    with_view = forced_answer(io, e.teacher_messages, ids, FAST.top_k, teacher)
    closed = forced_answer(io, e.student_messages, ids, FAST.top_k)
    assert (e.answer.topk_ids == with_view.topk_ids).all()
    assert abs(e.answer.topk_logprobs - closed.topk_logprobs).max() > 1e-3

    # Past the length limit (twice a teacher answer's), a restated answer is cut at
    # a sentence's end where it can be, or mid-sentence with no end of turn.
    teachers = len(episode_examples(io, teacher, episode, FAST, seed=0))
    short = episode_examples(io, teacher, episode, FAST.but(restated_answers=True), seed=0)
    assert len(short) > teachers
    for e in short[teachers:]:
        assert len(e.answer.tokens) <= 16
        said = restated(e.statement, content_words)
        text = io.decode(e.answer.tokens)
        assert said.startswith(text) and text != said
        assert (e.answer.end_token is None) == (not text.endswith((".", "!")))
