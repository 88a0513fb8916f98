"""Shared pieces of the memory-hierarchy and forgetting tests: nights of distinct
facts slept for real on a tiny random model, and the stored-probe measure.

A random model writes no usable questions and grounds no answers, so self-study is
made learnable as in sleep_support.learnable_self_study, with one question per
statement that names the statement's own key word: every night's probes are then
different questions (the same question every night would make every probe the
same one)."""

from __future__ import annotations

import numpy as np

from sleep_support import FAST

from pocketsleep import prompts

# Nights learn a lot in few steps (lr ten times the default), on-policy terms off
# for speed; half of each night's questions are held out and stored as probes.
# Dreaming off, as by default: the consolidation gate measured against dreamed
# experts rejected the long-term consolidation on this tiny model.
# No quoting bonus: on a random model it only changes which random words a night's
# answers hold, and these nights were sized without it. With it the ten-night test's
# first weekly consolidation lost soft recall (0.603 -> 0.544) and was rejected; so
# does the same test without it at seed 1 (0.751 -> 0.689): on a random model that
# consolidation passes or fails by the draw.
NIGHT = FAST.but(steps=6, learning_rate=3e-3, on_policy=False, lti=False,
                 heldout_fraction=0.5, dream=False, quote_bias=0.0)
# Consolidations learn several nights at once: gentler, bigger batches.
CONSOLIDATE = NIGHT.but(steps=10, learning_rate=2e-3, batch_size=8, anchors=6, gate=True)
# A tiny random model's drift (and perplexity, of text it cannot predict) move far
# more than the embedded model's, and by chance: which anchors a night draws took
# consolidations' drift from under the 0.15 allowance to 0.25-0.68 against their
# experts' 0.17-0.19, and perplexity by +109%. Tests of what a consolidation keeps
# run with these allowances (recall of the retired experts' probes gated as ever);
# the thresholds themselves are tested on scripted states (test_consolidate.py).
ANY_DRIFT = CONSOLIDATE.but(max_drift_kl=1.0)
LOOSE = ANY_DRIFT.but(max_ppl_increase=5.0)


ABOUT = "What did I say about "


def learnable_questions(monkeypatch) -> None:
    from pocketsleep.sleep import questions, selfstudy

    def write_questions(io, statements, n, seed):
        return [[f"{ABOUT}{s.split()[1]} {s.split()[2]}?"] for s in statements]

    monkeypatch.setattr(questions, "write_questions", write_questions)
    monkeypatch.setattr(questions, "write_question_lists",
                        lambda io, statements, n, seed: [[] for _ in statements])
    # Whole answers: a random model's text has sentence ends anywhere.
    monkeypatch.setattr(selfstudy, "through_sentence_stating", lambda io, answer, words: answer)
    monkeypatch.setattr(selfstudy, "grounded", lambda *a, **k: True)
    monkeypatch.setattr(selfstudy, "usable_answer", lambda *a, **k: True)


def scripted_teacher(monkeypatch) -> None:
    """Nights' teachers say what the user said, for certain: a random model's own
    answers hold no fact ("ssssssss" about any pet), so nothing would show that a
    fact was learned, kept or forgotten. A question "What did I say about pet n3?"
    is answered with the statement that names "pet n3", a recall request with
    every statement in view; the targets are one-hot. Everything else (questions
    kept as probes, distillation, gates, consolidation's own teacher) is real."""
    from pocketsleep.sleep import selfstudy
    from pocketsleep.sleep.sampling import Generated

    class ScriptedTeacher(selfstudy.Teacher):
        def answer_many(self, conversations, temperatures, seed, starts=None, processors=None):
            return [self.say(self.script(m)) for m in conversations]

        @staticmethod
        def script(messages):
            question = messages[-1]["content"]
            said = [m["content"] for m in messages[:-1] if m["role"] == "user"]
            if question.startswith(ABOUT):
                key = question[len(ABOUT):].rstrip("?")
                said = [s for s in said if key in s][:1]
            return " ".join(said) or "I do not know."

        def say(self, text):
            ids = self.io.text_ids(text)
            k, vocab = self.options.top_k, len(self.io.tokenizer.vocab)
            top = np.array([[(t + j) % vocab for j in range(k)] for t in ids], dtype=np.int32)
            lps = np.full(top.shape, -30.0, dtype=np.float32)
            lps[:, 0] = 0.0
            return Generated(ids, None, top, lps)

    monkeypatch.setattr(selfstudy, "Teacher", ScriptedTeacher)


def day(n: int) -> list[dict]:
    """Night n's conversation: two facts nobody else has ("pet n3", "car n3")."""
    return [{"role": "user", "content": f"My pet n{n} is called Rex{n} and lives in Lisbon."},
            {"role": "assistant", "content": "Nice."},
            {"role": "user", "content": f"My car n{n} is blue{n} and has four wheels."}]


def sleep_night(paths, config, n: int, options=NIGHT) -> int:
    """Log night n's conversation and sleep; returns the conversation id."""
    from pocketsleep.journal import Journal
    from pocketsleep.sleep import run_sleep

    with Journal.open(paths.journal) as journal:
        cid = journal.log_conversation(day(n), title=f"night {n}")
    report = run_sleep(paths, config, options)
    assert report.status == "succeeded", report.reasons
    return cid


def soft_recall(paths, config, probes: list[tuple[str, str]], experts=None) -> list[float]:
    """Per probe, exp(mean log-prob of its answer), closed-book, for base + the given
    expert rows (default: the active ones): the stored-probe measure for a random
    model, whose greedy answers never contain anything."""
    from pocketsleep.backends.mlx_engine import MlxEngine
    from pocketsleep.journal import Journal
    from pocketsleep.models import resolve_model

    if experts is None:
        with Journal.open(paths.journal) as journal:
            experts = journal.active_experts()
    engine = MlxEngine.load(resolve_model(config.model, paths), paths)
    try:
        for row in experts:
            engine.attach_expert(paths.expert_folder(row["path"]))
        return [float(np.exp(np.mean(engine.score(prompts.closed_book(q), a))))
                for q, a in probes]
    finally:
        engine.close()
