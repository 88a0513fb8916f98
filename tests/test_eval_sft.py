"""The `sft` baseline: naive LoRA fine-tuning on the raw transcripts, on tiny models."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
pytest.importorskip("gguf")

from sleep_support import DAY, tiny_model  # noqa: E402
from test_sleep_transcript import FACT, cross_entropy_by_hand  # noqa: E402
from tiny_models import tiny_mlx_llama  # noqa: E402

from pocketsleep.backends import mlx_lora  # noqa: E402
from pocketsleep.backends.fake import FakeEngine  # noqa: E402
from pocketsleep.backends.gguf_import import load_gguf  # noqa: E402
from pocketsleep.config import Config, Paths  # noqa: E402
from pocketsleep.eval import sft  # noqa: E402
from pocketsleep.eval.harness import run_eval  # noqa: E402
from pocketsleep.eval.methods import METHODS, ClosedBook, NaiveSft  # noqa: E402
from pocketsleep.eval.suite import parse_suite  # noqa: E402

SMALL = sft.SftOptions(steps=4, rank=2, num_layers=1, batch_size=2)


def test_user_turns_are_trained_on_and_the_loss_falls(tmp_path):
    model, tokenizer = load_gguf(tiny_model(tmp_path))
    seq, = sft.transcript_sequences(tokenizer, [FACT], max_tokens=1024)
    assert tokenizer.decode(seq).startswith("<|im_start|>user\nMy sister Anna lives in Lisbon")
    user = tokenizer.encode(FACT[0]["content"], add_special_tokens=False)
    start = next(i for i in range(len(seq)) if seq[i:i + len(user)] == user)
    span = slice(start - 1, start + len(user) - 1)  # the targets that are the user's words

    before = cross_entropy_by_hand(model, seq)[span].mean()
    mlx_lora.add_trainable_expert(model, 2, list(sft.SftOptions().keys), 8, 4.0)
    losses = sft.train_expert(model, [seq], sft.SftOptions(steps=30, batch_size=2,
                                                           learning_rate=3e-3))
    after = cross_entropy_by_hand(model, seq)[span].mean()
    assert len(losses) == 30
    assert losses[-1] < losses[0] / 3
    assert after < before / 3  # the user's own sentence is what it learned


def trained(seed: int):
    model = tiny_mlx_llama()
    mlx_lora.add_trainable_expert(model, 1, ["self_attn.q_proj"], 2, 4.0, seed=seed)
    losses = sft.train_expert(model, [[1, 2, 3, 4], [5, 6, 7], [8, 9]],
                              sft.SftOptions(steps=3, batch_size=2, seed=seed))
    return losses, {k: np.array(v) for k, v in mlx_lora.trainable_expert_weights(model).items()}


def test_same_seed_same_expert():
    (l1, w1), (l2, w2), (l3, _) = trained(3), trained(3), trained(4)
    assert l1 == l2 and l1 != l3
    assert w1.keys() == w2.keys() and all(np.array_equal(w1[k], w2[k]) for k in w1)


def test_each_night_writes_an_expert_and_wears_the_earlier_ones(tmp_path):
    gguf = tiny_model(tmp_path)
    paths = Paths(tmp_path / "home").ensure()
    config = Config(model=str(gguf))
    first = sft.sft_night(paths, config, DAY, [], night=1, options=SMALL)
    second = sft.sft_night(paths, config, DAY[:1], [first.expert], night=2, options=SMALL)
    assert [first.expert.name, second.expert.name] == ["night-0001", "night-0002"]
    for done in (first, second):
        assert len(done.losses) == SMALL.steps
        assert (done.expert / "adapters.safetensors").is_file()
        assert list(done.expert.glob("*.gguf"))  # the llama.cpp engine can wear it
    cfg = json.loads((second.expert / "adapter_config.json").read_text())
    assert cfg["sft_night"] == 2 and cfg["lora_parameters"]["rank"] == SMALL.rank
    # Night 2 started from the model wearing night 1: its first loss is night 1's
    # expert's loss on that day, not the base model's.
    model, tokenizer = load_gguf(gguf)
    seqs = sft.transcript_sequences(tokenizer, DAY[:1], SMALL.max_tokens)
    base = sft.transcript_loss(model, *sft.collate(seqs * 2))[0].item()
    mlx_lora.attach(model, first.expert)
    worn = sft.transcript_loss(model, *sft.collate(seqs * 2))[0].item()
    assert second.losses[0] == pytest.approx(worn, rel=1e-4) and worn != pytest.approx(base)
    assert sft.sft_night(paths, config, [], [], night=3, options=SMALL).expert is None


SUITE = {
    "name": "sft-tiny",
    "days": [{"date": f"2026-01-0{d + 1}", "conversations": [conversation],
              "probes": [{"question": "Where does Anna live?", "answers": ["Lisbon"]}]}
             for d, conversation in enumerate(DAY)],
    "general_text": "The river runs to the sea.",
}


class Wearing(FakeEngine):
    """Answers with the experts it wears, so a test can see them."""

    def stream_chat(self, messages, options=None):
        self.enqueue(" ".join(p.name for p, _ in self.experts) or "none")
        return super().stream_chat(messages, *([options] if options else []))


def test_sft_through_the_harness_wears_one_more_expert_each_night(tmp_path, monkeypatch):
    assert METHODS["sft"] is NaiveSft
    seeds = []
    monkeypatch.setattr(sft, "SftOptions", lambda seed: seeds.append(seed) or replace(SMALL, seed=seed))
    engines = []

    def factory(paths, config):
        engines.append(Wearing())
        return engines[-1]

    gguf = tiny_model(tmp_path)
    result = run_eval(parse_suite(SUITE), [ClosedBook, NaiveSft], engine_factory=factory,
                      config=Config(model=str(gguf)), seed=2)
    answers = [a["answer"] for a in result["methods"]["sft"]["answers"]]
    assert answers == ["night-0001", "night-0001 night-0002", "night-0001 night-0002"]
    assert [a["answer"] for a in result["methods"]["none"]["answers"]] == ["none"] * 3
    assert engines[0].experts == []  # left bare for the next method
    assert seeds == [2, 3]  # the run's seed, one more each night
    m = result["methods"]["sft"]
    assert len(m["sleep_seconds"]) == len(m["peak_rss_mb"]) == 2
    assert all(s > 0 for s in m["sleep_seconds"]) and all(mb > 0 for mb in m["peak_rss_mb"])


def test_eval_none_sft_end_to_end_through_llamacpp(tmp_path, monkeypatch, capsys, data_home):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is installed by ./install.sh")
    from pocketsleep.cli import main

    monkeypatch.setattr("pocketsleep.backends.llamacpp_engine._threads", lambda: 1)
    monkeypatch.setattr(sft, "SftOptions", lambda seed: replace(SMALL, seed=seed))
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps(SUITE))
    out = tmp_path / "eval.json"
    code = main(["eval", "--suite", str(suite), "--methods", "none,sft", "--model",
                 str(tiny_model(tmp_path)), "--engine", "llamacpp", "--max-tokens", "4",
                 "--json", str(out)])
    _, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out.read_text())
    none, sft_ = result["methods"]["none"], result["methods"]["sft"]
    assert none["ppl_change"] == 0.0
    # llama.cpp wore the nightly GGUF LoRAs: the general text reads differently.
    assert sft_["ppl_change"] != 0.0 and sft_["ppl_after"] > 1
    assert sft_["retention"][1][0] is None and len(sft_["sleep_seconds"]) == 2
    assert "eval: sft: day 2/2 (2026-01-02): night" in err
    assert not data_home.exists()
