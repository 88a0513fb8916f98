"""The exported personal model answers what it learned in sleep: a real sleep on a tiny
model, then `pocketsleep export`, then llama.cpp reproduces the learned answer."""

from __future__ import annotations

import pytest

pytest.importorskip("mlx.core")
pytest.importorskip("llama_cpp")
from export_checks import llamacpp_logits  # noqa: E402
from sleep_support import DAY, FAST, learnable_self_study, log_day, tiny_model  # noqa: E402

from pocketsleep import prompts  # noqa: E402
from pocketsleep.backends import mlx_lora  # noqa: E402
from pocketsleep.backends.gguf_import import load_gguf  # noqa: E402
from pocketsleep.cli import main  # noqa: E402
from pocketsleep.config import Config  # noqa: E402
from pocketsleep.sleep import run_sleep  # noqa: E402
from pocketsleep.sleep.episode import Episode  # noqa: E402
from pocketsleep.sleep.sampling import generate  # noqa: E402
from pocketsleep.sleep.selfstudy import ModelIO, Teacher  # noqa: E402

# Strong enough for a tiny random model to learn its few answers by heart. The
# teacher as it is (no quoting bonus), so that the answer the night learns is the
# one this test asks the teacher for.
LEARN = FAST.but(steps=80, learning_rate=1e-2, num_layers=2, rank=8, on_policy=False,
                 lti=False, heldout_fraction=0.0, anchors=0, quote_bias=0.0)
QUESTION = "What did I tell you in statement 0?"  # what learnable_self_study asks


def greedy(io: ModelIO, messages, n: int) -> list[int]:
    return generate(io.model, io.chat_ids(messages), io.eos_ids, n, top_k=1).tokens


def llamacpp_greedy_agrees(gguf, prompt: list[int], answer: list[int]) -> bool:
    """Does llama.cpp's greedy choice reproduce `answer`, token after token?"""
    logits = llamacpp_logits(gguf, prompt + answer[:-1])
    return [int(i) for i in logits[len(prompt) - 1:].argmax(-1)] == answer


def test_the_exported_model_answers_what_the_night_learned(paths, journal, tmp_path,
                                                           monkeypatch, capsys):
    learnable_self_study(monkeypatch)
    # A random model cannot tell one question from another: recall requests, anchors
    # or a second statement would pull its answers toward each other.
    monkeypatch.setattr(prompts, "RECALL_PROMPTS", ())
    gguf = tiny_model(tmp_path)
    day = [DAY[0][:2]]  # one thing said: one question to learn
    log_day(journal, day)
    exchange = Episode((1,), (tuple(day[0]),), ("2026-01-01",)).exchanges()[0]

    base, tokenizer = load_gguf(gguf)
    io = ModelIO(base, tokenizer)
    teacher = Teacher(io, LEARN)
    said = teacher.answer_many([prompts.teacher_view(exchange.exchange, QUESTION)], [0.0],
                               seed=0)[0].tokens  # what the teacher says, the day in view
    asked = prompts.closed_book(QUESTION)
    assert greedy(io, asked, len(said)) != said  # not known before the night

    report = run_sleep(paths, Config(model=str(gguf)), LEARN)
    assert report.status == "succeeded", report.reasons
    row = journal.active_experts()[0]
    mlx_lora.attach(base, paths.expert_folder(row["path"]))
    assert greedy(io, asked, len(said)) == said  # known after it, closed-book

    out = tmp_path / "personal.gguf"
    assert main(["export", "--gguf", str(out), "--quant", "f16", "--model", str(gguf)]) == 0
    capsys.readouterr()
    prompt = io.chat_ids(asked)
    assert llamacpp_greedy_agrees(out, prompt, said)
    assert not llamacpp_greedy_agrees(gguf, prompt, said)  # the base GGUF does not know it
