"""The quoting teacher (sleep/quoting.py): which tokens it favours, that generation
goes through it and records the favoured distribution, and which answers get it."""

from __future__ import annotations

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
from tiny_models import tiny_mlx_llama  # noqa: E402

from pocketsleep.sleep.options import SleepOptions  # noqa: E402
from pocketsleep.sleep.quoting import QuoteBias, spellings  # noqa: E402
from pocketsleep.sleep.sampling import generate_batch  # noqa: E402
from pocketsleep.sleep.selfstudy import quote_biases  # noqa: E402

VOCAB = 64


def test_first_tokens_favoured_or_the_next_once_a_spelling_begins_until_the_word_is_said():
    # Two words: one spelled [5, 6, 7] after a space and [8, 6, 7] at the start, one [9].
    bias = QuoteBias([([5, 6, 7], [8, 6, 7]), ([9], [9])], 2.0)
    assert bias.favoured([]) == {5, 8, 9}
    # A spelling at the start of a text only starts the answer.
    assert bias.favoured([1, 2]) == {5, 9}
    assert bias.favoured([8]) == {6}
    assert bias.favoured([1, 8]) == {5, 9}
    # In the middle of a spelling, only its next token.
    assert bias.favoured([1, 5]) == {6}
    assert bias.favoured([8, 6]) == {7}
    # Only the spelling's own order continues it.
    assert bias.favoured([6, 5]) == {6}
    assert bias.favoured([6, 6]) == {5, 9}
    # A word said (in either spelling) is favoured no more; the others still are.
    assert bias.favoured([1, 9, 2]) == {5}
    assert bias.favoured([8, 6, 7]) == {9}
    assert bias.favoured([1, 5, 6, 7, 3, 9]) == set()


def test_bias_is_added_to_the_favoured_logits_counting_from_the_prompts_end():
    bias = QuoteBias([([5, 6, 7], [5, 6, 7]), ([9], [9])], 1.5)
    logits = mx.zeros((1, 12))
    # The first call is the prompt: it holds 9, which the answer has not said.
    out = np.array(bias(mx.array([3, 9, 4]), logits))[0]
    assert set(np.flatnonzero(out).tolist()) == {5, 9}
    out = np.array(bias(mx.array([3, 9, 4, 5]), logits))[0]
    assert set(np.flatnonzero(out).tolist()) == {6}
    assert np.allclose(out[6], 1.5)
    out = np.array(bias(mx.array([3, 9, 4, 5, 6, 7, 9]), logits))[0]
    assert not out.any()


def test_spellings_are_after_a_space_and_at_the_start_for_each_word():
    ids = {" Tomasz": [11, 12], "Tomasz": [13, 12], " run": [20], "run": [21]}
    assert spellings(lambda t: ids[t], {"Tomasz", "run"}) == [([11, 12], [13, 12]), ([20], [21])]
    assert spellings(lambda t: ids[t], set()) == []


@pytest.fixture(scope="module")
def model():
    m = tiny_mlx_llama(vocab_size=VOCAB)
    m.eval()
    mx.eval(m.parameters())
    return m


def test_generation_goes_through_the_bias_and_records_its_distribution(model):
    prompts_ = [[1, 2, 3, 4], [7, 8, 9]]
    plain = generate_batch(model, prompts_, set(), 5, [0.0, 0.0], top_k=4)
    assert plain[0].tokens[:2] != [40, 41]
    biased = generate_batch(model, prompts_, set(), 5, [0.0, 0.0], top_k=4,
                            processors=[QuoteBias([([40, 41], [40, 41])], 30.0), None])
    # The favoured spelling wins the first answer's first steps; then it is said and
    # the answer goes its own way. The second answer is untouched.
    assert biased[0].tokens[:2] == [40, 41]
    assert biased[1].tokens == plain[1].tokens
    # The recorded targets are the biased distribution's: 40, then 41, are certain.
    for step, token in enumerate([40, 41]):
        row = list(biased[0].topk_ids[step])
        assert biased[0].topk_logprobs[step][row.index(token)] > -1e-3
    np.testing.assert_allclose(biased[1].topk_logprobs, plain[1].topk_logprobs, atol=1e-5)


class WordIO:
    """Token ids for text: one per word, its spelling after a space distinct."""

    def text_ids(self, text: str) -> list[int]:
        words = text.split(" ")
        return [hash(("sp" if i or text.startswith(" ") else "", w)) % 10_000
                for i, w in enumerate(words) if w]


def test_quote_biases_favour_the_statement_words_the_question_lacks():
    io = WordIO()
    meta = [("statement", "Who is my neighbour?", "I run with my neighbour Tomasz."),
            ("recall", "What did I tell you?", "I run with my neighbour Tomasz."),
            ("statement", "What is it?", "ok thanks")]
    assert quote_biases(io, SleepOptions(quote_bias=0.0), meta) is None  # off
    statement, recall, nothing = quote_biases(io, SleepOptions(quote_bias=2.0), meta)
    assert recall is None and nothing is None
    assert statement.bias == 2.0
    assert statement.words == [(io.text_ids(" " + w), io.text_ids(w)) for w in ("Tomasz", "run")]


def test_quote_biases_leave_out_the_words_the_statement_negates():
    io = WordIO()
    meta = [("statement", "What do I eat?", "I'm pescatarian now, not vegetarian.")]
    heeded, = quote_biases(io, SleepOptions(quote_bias=2.0, heed_negations=True), meta)
    assert heeded.words == [(io.text_ids(" pescatarian"), io.text_ids("pescatarian"))]
    plain, = quote_biases(io, SleepOptions(quote_bias=2.0, heed_negations=False), meta)
    assert [bare for _, bare in plain.words] == [io.text_ids(w)
                                                 for w in ("pescatarian", "vegetarian")]


def test_a_night_with_quoting_says_the_statement_words_and_learns_the_quoting_teacher(
        tmp_path, monkeypatch):
    """End to end on a tiny GGUF: the quoting teacher's statement answers say words
    of their statement and their targets are its distribution (the word's tokens
    certain where it chose them); other answers are as without quoting."""
    from sleep_support import DAY, FAST, learnable_self_study, student_and_teacher, tiny_model

    from pocketsleep.sleep.episode import Episode
    from pocketsleep.sleep.selfstudy import episode_examples, forced_answer

    learnable_self_study(monkeypatch)
    io, teacher, _ = student_and_teacher(tiny_model(tmp_path))
    episode = Episode((1, 2), tuple(tuple(c) for c in DAY), ("2026-03-02",) * 2)
    quoting = FAST.but(quote_bias=1000.0)  # a random model is very sure of itself
    plain = episode_examples(io, teacher, episode, FAST, seed=0)
    quoted = episode_examples(io, teacher, episode, quoting, seed=0)
    statements = [e for e in quoted if e.kind == "statement"]
    assert statements and len(quoted) == len(plain)
    for e in statements:
        # The answer begins with a word of the statement, and the target is far surer
        # of it than the teacher as it is.
        first = io.decode(e.answer.tokens[:4]).strip().split(" ")[0].lower()
        assert first and any(w.lower().startswith(first) for w in e.statement.split()), e
        row, token = list(e.answer.topk_ids[0]), e.answer.tokens[0]
        as_is = forced_answer(io, e.teacher_messages, e.answer.answer_ids, FAST.top_k, teacher)
        as_is_lp = dict(zip(as_is.topk_ids[0].tolist(), as_is.topk_logprobs[0].tolist()))
        assert e.answer.topk_logprobs[0][row.index(token)] > as_is_lp.get(token, -50.0) + 2
    assert [e.answer.tokens for e in quoted if e.kind == "statement"] != [
        e.answer.tokens for e in plain if e.kind == "statement"]
    assert [e.answer.tokens for e in quoted if e.kind != "statement"] == [
        e.answer.tokens for e in plain if e.kind != "statement"]


def test_plain_targets_keep_the_quoting_answers_with_the_teachers_own_distribution(
        tmp_path, monkeypatch):
    """quote_bias_in_targets=False: the same quoting answers, but their targets are the
    teacher's distribution without the bonus; answers to other questions unchanged."""
    from sleep_support import DAY, FAST, learnable_self_study, student_and_teacher, tiny_model

    from pocketsleep.sleep.episode import Episode
    from pocketsleep.sleep.selfstudy import episode_examples, forced_answer

    learnable_self_study(monkeypatch)
    io, teacher, _ = student_and_teacher(tiny_model(tmp_path))
    episode = Episode((1, 2), tuple(tuple(c) for c in DAY), ("2026-03-02",) * 2)
    quoting = FAST.but(quote_bias=1000.0)
    biased = episode_examples(io, teacher, episode, quoting, seed=0)
    plain = episode_examples(io, teacher, episode, quoting.but(quote_bias_in_targets=False),
                             seed=0)
    assert [e.answer.answer_ids for e in plain] == [e.answer.answer_ids for e in biased]
    statements = [(b, p) for b, p in zip(biased, plain) if b.kind == "statement"]
    assert statements
    for b, p in statements:
        own = forced_answer(io, p.teacher_messages, p.answer.answer_ids, FAST.top_k, teacher)
        np.testing.assert_array_equal(p.answer.topk_ids, own.topk_ids)
        np.testing.assert_allclose(p.answer.topk_logprobs, own.topk_logprobs, atol=1e-5)
        # The bonus made the biased target of the first token near certain; the plain
        # target is the teacher's own, far less sure of it.
        row, token = list(b.answer.topk_ids[0]), b.answer.tokens[0]
        mine = dict(zip(p.answer.topk_ids[0].tolist(), p.answer.topk_logprobs[0].tolist()))
        assert b.answer.topk_logprobs[0][row.index(token)] > mine.get(token, -50.0) + 2
    for b, p in zip(biased, plain):
        if b.kind != "statement":
            np.testing.assert_array_equal(p.answer.topk_logprobs, b.answer.topk_logprobs)
