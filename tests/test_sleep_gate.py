"""The gate's measurements (expert off = before, on = after) and its decisions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
import mlx.nn as nn  # noqa: E402
pytest.importorskip("gguf")
from sleep_support import FAST, student_and_teacher, tiny_model  # noqa: E402

from pocketsleep.backends import mlx_lora  # noqa: E402
from pocketsleep.sleep import gate  # noqa: E402
from pocketsleep.sleep.distill import distill  # noqa: E402

GATE = FAST.but(gate=True)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def setup(gguf):
    io, teacher, examples = student_and_teacher(gguf)
    heldout = [e for e in examples if e.kind != "anchor"]
    anchors = [e for e in examples if e.kind == "anchor"]
    return io, teacher, heldout, anchors


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_drift_kl_is_the_mean_per_token_kl_before_after():
    rng = np.random.default_rng(0)
    before = [np_log_softmax(rng.standard_normal((n, 7))) for n in (3, 5)]
    after = [np_log_softmax(rng.standard_normal((n, 7))) for n in (3, 5)]
    expected = np.mean([np.mean([(np.exp(b[t]) * (b[t] - a[t])).sum() for t in range(len(b))])
                        for b, a in zip(before, after)])
    assert gate.drift_kl(before, after) == pytest.approx(expected)
    assert gate.drift_kl(before, before) == pytest.approx(0.0, abs=1e-12)
    assert gate.drift_kl([], []) == 0.0


def test_an_untrained_expert_changes_nothing_and_is_rejected(setup):
    io, _, heldout, anchors = setup
    result = gate.check(io, heldout, anchors, [], GATE)
    m = result.metrics
    assert m["before"]["heldout_logprob"] == pytest.approx(m["after"]["heldout_logprob"])
    assert m["drift_kl"] == 0.0 and m["ppl_change"] == 0.0
    assert m["before"]["earlier_logprob"] is None
    assert not result.passed
    assert result.reasons == [r for r in result.reasons if "did not improve" in r] != []
    # The gate switched off keeps the expert but still says why it would not.
    off = gate.check(io, heldout, anchors, [], FAST.but(gate=False))
    assert off.passed and off.reasons == result.reasons


def test_training_on_the_held_out_answers_passes_a_lenient_gate(setup):
    io, teacher, heldout, anchors = setup
    distill(io, teacher, heldout, FAST.but(steps=3, learning_rate=3e-3, on_policy=False,
                                            lti=False))
    lenient = GATE.but(max_drift_kl=1e9, max_ppl_increase=1e9, max_earlier_drop=1e9)
    result = gate.check(io, heldout, anchors, [("What is my dog called?", "Biscuit")], lenient)
    m = result.metrics
    assert m["after"]["heldout_logprob"] > m["before"]["heldout_logprob"]
    assert m["drift_kl"] > 0
    assert m["before"]["earlier_logprob"] is not None
    assert result.passed and result.reasons == []
    # The earlier probe's fact ("Biscuit") is scored apart from its other words.
    ids = io.text_ids("Biscuit")
    picked = gate.picked_logprobs(io, gate.prompts.closed_book("What is my dog called?"), ids)
    assert gate.fact_positions(io, "What is my dog called?", ids) == list(range(len(ids)))
    assert m["after"]["earlier_fact_recall"] == pytest.approx(np.exp(picked.mean()), rel=1e-4)

    # Before is measured with tonight's expert off, after with it on.
    lp = gate.answer_logprobs(io, anchors[0].student_messages, anchors[0].answer.answer_ids)
    with mlx_lora.without_trainable_expert(io.model):
        lp0 = gate.answer_logprobs(io, anchors[0].student_messages, anchors[0].answer.answer_ids)
    b, a = np.array(lp0, np.float64), np.array(lp, np.float64)
    one = (np.exp(b) * (b - a)).sum(-1).mean()
    strict = gate.check(io, heldout, anchors[:1], [], GATE.but(max_drift_kl=one * 0.5,
                                                                max_ppl_increase=1e9))
    assert strict.metrics["drift_kl"] == pytest.approx(round(one, 4), abs=1e-4)
    assert any("generic answers drifted" in r for r in strict.reasons) and not strict.passed


def fake_measures(monkeypatch, before: dict, after: dict):
    anchors = [np_log_softmax(np.zeros((2, 4)))]
    seq = iter([{**before, "anchor_logprobs": anchors}, {**after, "anchor_logprobs": anchors}])
    monkeypatch.setattr(gate, "measure", lambda *a: next(seq))


NO_MODEL = SimpleNamespace(model=nn.Module())
BASE = {"heldout_logprob": -3.0, "earlier_logprob": -2.0, "general_ppl": 10.0}


@pytest.mark.parametrize("after, options, reason", [
    ({"heldout_logprob": -2.0}, GATE, None),
    ({"heldout_logprob": -3.0}, GATE, "held-out self-study questions did not improve"),
    ({"heldout_logprob": -2.0, "general_ppl": 10.4}, GATE, None),  # +4% < 5%
    ({"heldout_logprob": -2.0, "general_ppl": 10.6}, GATE, "general-text perplexity rose"),
    ({"heldout_logprob": -2.0, "earlier_logprob": -2.04}, GATE, None),  # within tolerance
    ({"heldout_logprob": -2.0, "earlier_logprob": -2.1}, GATE,
     "earlier nights' probes became less likely"),
    ({"heldout_logprob": -2.0, "earlier_logprob": -2.1}, GATE.but(max_earlier_drop=0.1), None),
])
def test_gate_decisions(monkeypatch, after, options, reason):
    fake_measures(monkeypatch, BASE, {**BASE, **after})
    result = gate.check(NO_MODEL, [], [], [], options)
    if reason is None:
        assert result.passed and result.reasons == []
    else:
        assert not result.passed
        assert len(result.reasons) == 1 and result.reasons[0].startswith(reason)
    assert result.metrics["drift_kl"] == 0.0


FACTS = {**BASE, "earlier_fact_recall": 0.40}


@pytest.mark.parametrize("after, options, reason", [
    # The stored answers' words around the facts became less likely, the facts did not.
    ({"earlier_logprob": -2.5, "earlier_fact_recall": 0.40}, GATE.but(earlier_probe_check="facts"),
     None),
    ({"earlier_logprob": -2.5, "earlier_fact_recall": 0.40}, GATE,
     "earlier nights' probes became less likely"),
    # 0.385 is within exp(-0.05) = 0.951 of 0.40 (0.380); 0.36 is not.
    ({"earlier_fact_recall": 0.385}, GATE.but(earlier_probe_check="facts"), None),
    ({"earlier_fact_recall": 0.36}, GATE.but(earlier_probe_check="facts"),
     "earlier nights' facts became less likely"),
    ({"earlier_fact_recall": 0.36}, GATE.but(earlier_probe_check="facts", max_earlier_drop=0.2),
     None),
    ({"earlier_fact_recall": 0.36}, GATE, None),
])
def test_gate_on_earlier_facts(monkeypatch, after, options, reason):
    fake_measures(monkeypatch, FACTS, {**FACTS, "heldout_logprob": -2.0, **after})
    result = gate.check(NO_MODEL, [], [], [], options)
    assert result.reasons == ([] if reason is None else [result.reasons[0]])
    if reason is not None:
        assert result.reasons[0].startswith(reason) and not result.passed


def test_a_fact_no_state_of_the_model_says_is_not_lost(monkeypatch):
    """A soft recall of 0.005 falling to 0.002 is no recall either way."""
    before = {**BASE, "earlier_fact_recall": 0.005}
    fake_measures(monkeypatch, before, {**before, "heldout_logprob": -2.0,
                                        "earlier_fact_recall": 0.002})
    assert gate.check(NO_MODEL, [], [], [], GATE.but(earlier_probe_check="facts")).passed


class WordTokens:
    """A tokenizer stand-in: token i is the text VOCAB[i]."""
    VOCAB = [" Your", " dog", " Bisc", "uit", " is", " a", " beagle", ".", " İİİİİİ",
             " You", " mentioned", " Anna", "'s", " cat"]

    def decode(self, ids):
        return "".join(self.VOCAB[i] for i in ids)


def test_fact_positions_are_the_tokens_spelling_what_the_question_did_not_say():
    io = WordTokens()
    assert gate.fact_positions(io, "What is my dog's name?", list(range(8))) == [2, 3, 6]
    # Stopwords and the question's words are no fact; a possessive is its noun's.
    assert gate.fact_positions(io, "Who owns a cat?", [9, 10, 11, 12, 13]) == [2, 3]
    # Positions stay right after a character whose lowercase is longer ("İ").
    assert gate.fact_positions(io, "Where?", [8, 5, 5, 5, 1]) == [4]
    assert gate.fact_positions(io, "What is my dog's breed?", [4, 5, 7]) == []


def test_earlier_probe_check_must_be_one_it_knows():
    with pytest.raises(ValueError, match="earlier_probe_check"):
        GATE.but(earlier_probe_check="fact")


def test_gate_without_held_out_questions_or_earlier_probes(monkeypatch):
    none = {**BASE, "heldout_logprob": None, "earlier_logprob": None}
    fake_measures(monkeypatch, none, none)
    assert gate.check(NO_MODEL, [], [], [], GATE).passed


def test_drift_on_generic_questions_never_trained_on(setup):
    """Measured on the pre-sleep model's own answers to prompts.GATE_PROMPTS; zero
    for an untrained expert, positive after training, enforced only when a limit is
    set."""
    io, teacher, heldout, anchors = setup
    unseen = gate.unseen_generic(io, GATE)
    assert {e.question for e in unseen} <= set(gate.prompts.GATE_PROMPTS)
    assert unseen and not {e.question for e in unseen} & {e.question for e in anchors}
    untrained = gate.check(io, heldout, anchors, [], GATE, unseen=unseen)
    assert untrained.metrics["unseen_drift_kl"] == 0.0

    distill(io, teacher, heldout, FAST.but(steps=3, learning_rate=3e-3, on_policy=False,
                                            lti=False))
    lenient = GATE.but(max_drift_kl=1e9, max_ppl_increase=1e9)
    trained = gate.check(io, heldout, anchors, [], lenient, unseen=unseen)
    drift = trained.metrics["unseen_drift_kl"]
    assert drift > 0 and trained.passed
    strict = gate.check(io, heldout, anchors, [], lenient.but(max_unseen_drift_kl=drift / 2),
                        unseen=unseen)
    assert not strict.passed
    assert [r for r in strict.reasons if r.startswith("answers to questions never trained on")]


def test_a_quiz_given_explicitly_is_asked_instead_of_the_gates(setup):
    """bench/quiz_wobble.py measures candidate questions through the gate's own code:
    they are asked, and judged by their own keywords."""
    io, *_ = setup
    quiz = (("Name a colour.", ("zzzz",)), ("Say something.", ("zzzz",)))
    unseen = gate.unseen_generic(io, GATE, quiz)
    assert unseen and {e.question for e in unseen} <= {q for q, _ in quiz}
    said = tuple((e.question, (io.decode(e.answer.tokens).strip(),)) for e in unseen)
    assert gate.quiz_lost(io, unseen, GATE, quiz)["quiz_right_before"] == 0
    assert gate.quiz_lost(io, unseen, GATE, said)["quiz_right_before"] == len(unseen)


def test_a_quiz_question_answered_right_before_sleep_must_stay_right(setup, monkeypatch):
    """A random model knows no answers, so the quiz expects what the pre-sleep model
    says: untrained, nothing is lost; trained hard, answers change and the gate
    names a lost question, unless the quiz is only measured (max_quiz_lost None)."""
    io, teacher, heldout, anchors = setup
    unseen = gate.unseen_generic(io, GATE)
    said = {e.question: (io.decode(e.answer.tokens).strip(),) for e in unseen}
    monkeypatch.setattr(gate.prompts, "GATE_QUIZ", tuple(said.items()))
    lenient = GATE.but(max_drift_kl=1e9, max_ppl_increase=1e9, max_quiz_lost=0)
    untrained = gate.quiz_lost(io, unseen, lenient)
    assert untrained == {"quiz_right_before": len(unseen), "quiz_right_after": len(unseen),
                         "quiz_lost": {}}

    distill(io, teacher, heldout, FAST.but(steps=3, learning_rate=3e-3, on_policy=False,
                                            lti=False))
    trained = gate.check(io, heldout, anchors, [], lenient, unseen=unseen)
    lost = trained.metrics["quiz_lost"]
    assert lost and set(lost) <= set(said)
    assert trained.metrics["quiz_right_after"] == len(unseen) - len(lost)
    assert not trained.passed
    assert [r for r in trained.reasons if "general questions it answered right" in r]
    for allowed in (None, len(lost)):
        assert gate.check(io, heldout, anchors, [], lenient.but(max_quiz_lost=allowed),
                          unseen=unseen).passed
