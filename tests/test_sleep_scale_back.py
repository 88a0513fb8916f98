"""A night the gate rejects, judged again with tonight's expert at a fraction of its
strength (SleepOptions.scale_back): when it is tried, what is kept, what is written."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("mlx.core")
pytest.importorskip("gguf")

import mlx.core as mx  # noqa: E402
from sleep_support import FAST, learnable_self_study, log_day, student_and_teacher, tiny_model  # noqa: E402

from pocketsleep.backends import mlx_lora  # noqa: E402
from pocketsleep.config import Config  # noqa: E402
from pocketsleep.sleep import gate, job, run_sleep  # noqa: E402
from pocketsleep.sleep.gate import GateResult  # noqa: E402
from pocketsleep.sleep.job import Basis  # noqa: E402

LEARNED = {"before": {"heldout_logprob": -2.0}, "after": {"heldout_logprob": -1.5}}
UNLEARNED = {"before": {"heldout_logprob": -2.0}, "after": {"heldout_logprob": -2.1}}


class ScriptedGate:
    """The gate's two calls judge() makes; each check answers the next verdict and
    notes the size of tonight's expert's B matrices as it was judged."""

    def __init__(self, *verdicts):
        self.verdicts, self.judged = list(verdicts), []

    def unseen_generic(self, io, options):
        return []

    def check(self, io, *args, **kwargs):
        self.judged.append(b_norm(io.model))
        return self.verdicts.pop(0)


def b_norm(model) -> float:
    return float(sum(np.abs(np.array(v)).sum()
                     for k, v in mlx_lora.trainable_expert_weights(model).items()
                     if k.endswith("lora_b")))


@pytest.fixture
def io(tmp_path):
    io, _, _ = student_and_teacher(tiny_model(tmp_path))
    for stack in (m for _, m in io.model.named_modules()
                  if isinstance(m, mlx_lora.ExpertStack) and m.has_new):
        stack.new_b = mx.random.normal(stack.new_b.shape, key=mx.random.key(1)) * 0.1
    return io


def judged(io, scripted, options, deadline=None):
    return job.judge(io, scripted, [], [], Basis([], []), options, None, {}, deadline,
                     lambda *a: None)


@pytest.mark.parametrize("case", ["off", "kept", "rejected again", "learned nothing",
                                  "no budget left", "passed"])
def test_judge_scales_a_rejected_expert_back_only_when_it_may_help(io, case):
    full = b_norm(io.model)
    first = GateResult(case == "passed", [] if case == "passed" else ["quiz lost"],
                       dict(UNLEARNED if case == "learned nothing" else LEARNED))
    second = GateResult(case != "rejected again",
                        ["earlier probes fell"] if case == "rejected again" else [], {})
    scripted = ScriptedGate(first, second)
    deadline = (time.perf_counter() - job.GATE_RESERVE_SECONDS - 1
                if case == "no budget left" else None)
    options = FAST.but(scale_back=0.0 if case == "off" else 0.5)
    verdict = judged(io, scripted, options, deadline)

    if case == "kept":  # judged whole, then at half: the half expert stays in the model
        assert verdict is second and verdict.passed
        assert scripted.judged == pytest.approx([full, full / 2], rel=1e-5)
        assert b_norm(io.model) == pytest.approx(full / 2, rel=1e-5)
        assert verdict.metrics["scaled_back"] == {"factor": 0.5, "passed": True,
                                                  "full_reasons": ["quiz lost"]}
    elif case == "rejected again":  # the full expert is put back; its verdict stands
        assert verdict is first and not verdict.passed
        assert scripted.judged == pytest.approx([full, full / 2], rel=1e-5)
        assert b_norm(io.model) == pytest.approx(full, rel=1e-6)
        assert verdict.metrics["scaled_back"] == {"factor": 0.5, "passed": False,
                                                  "reasons": ["earlier probes fell"]}
    else:  # one gate only, nothing scaled
        assert verdict is first and len(scripted.judged) == 1
        assert b_norm(io.model) == pytest.approx(full, rel=1e-6)
        assert "scaled_back" not in verdict.metrics


def test_a_night_kept_scaled_back_writes_the_scaled_expert_and_learns_its_day(
        paths, journal, tmp_path, monkeypatch, capsys):
    from pocketsleep.cli import main

    learnable_self_study(monkeypatch)
    gguf = tiny_model(tmp_path)
    day = log_day(journal)
    judged_at = []

    def check(io, *args, **kwargs):  # the whole expert harms, half of it does not
        judged_at.append(mlx_lora.trainable_expert_weights(io.model))
        whole = len(judged_at) == 1
        return GateResult(not whole, ["2 of 12 general questions lost"] if whole else [],
                          {**LEARNED, "drift_kl": 0.01})

    monkeypatch.setattr(gate, "check", check)
    report = run_sleep(paths, Config(model=str(gguf)),
                       FAST.but(dream=False, gate=True, scale_back=0.5))
    assert report.status == "succeeded", report.reasons
    assert report.conversations == day
    whole, half = judged_at
    for k in whole:
        expected = whole[k] * (0.5 if k.endswith("lora_b") else 1.0)
        assert np.allclose(np.array(half[k]), np.array(expected))
    name = journal.active_experts()[0]["path"]
    _, written = mlx_lora.read_expert(paths.expert_folder(name))
    assert set(written) == set(half)
    assert all(np.allclose(np.array(written[k]), np.array(half[k])) for k in written)
    assert {c.status for c in journal.conversations()} == {"consolidated"}

    paths.config_file.write_text(f'model = "{gguf}"\n')
    assert main(["sleep", "--report"]) in (0, None)
    out = capsys.readouterr().out
    assert "kept at 0.5 of its strength: the whole expert was rejected (2 of 12" in out


def test_scale_back_must_be_a_fraction():
    with pytest.raises(ValueError, match="scale_back"):
        FAST.but(scale_back=1.0)
    with pytest.raises(ValueError, match="scale_back"):
        FAST.but(scale_back=-0.5)
