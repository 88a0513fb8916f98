"""The morning merge on a tiny random GGUF: fused in float32 into an MLX folder and a
GGUF, checked against base + experts, switched atomically, worn by the engines."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import pocketsleep.backends  # noqa: F401  (the fast BLAS, before mlx loads)

mx = pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")
pytest.importorskip("gguf")

from export_checks import TEXT, llamacpp_logits, mlx_logits  # noqa: E402
from version_support import QUESTIONS, answers, make_home  # noqa: E402

from pocketsleep.backends import gguf_export, mlx_fuse, mlx_lora  # noqa: E402
from pocketsleep.errors import InputError  # noqa: E402
from pocketsleep.versions import check, merge_if_needed  # noqa: E402
from pocketsleep.versions.layout import folder_size, merge_needed, usable_version  # noqa: E402


@pytest.fixture
def home(paths, tmp_path):
    return make_home(paths, tmp_path)


def version_folders(paths) -> list[str]:
    return sorted(os.listdir(paths.versions))


def test_merge_fuses_checks_and_switches(home, journal):
    e1 = home.night(journal, "dog", seed=1)
    e2 = home.night(journal, "cat", seed=2)
    # A stored probe whose expected answer is what base + experts say: recall 1 of 1.
    from pocketsleep.backends.mlx_engine import MlxEngine
    from pocketsleep.models import resolve_model

    unfused = MlxEngine.load(resolve_model(home.config.model, home.paths), home.paths)
    for row in journal.active_experts():
        unfused.attach_expert(home.paths.expert_folder(row["path"]))
    said = check.answer(unfused, "Where is Rex?").text
    unfused.close()
    assert said.strip()
    sid = journal.begin_sleep()
    e3 = journal.accept_expert(sid, "nightly", "night-0001", {}, [], [("Where is Rex?", said)], {})
    journal.db.execute("UPDATE experts SET status = 'rejected' WHERE id = ?", [e3])  # probe only
    journal.db.execute("UPDATE probes SET expert_id = ? WHERE expert_id = ?", [e2, e3])

    report = merge_if_needed(home.paths, home.config)
    c = report.checks
    print(f"\nfused vs unfused: max |logit diff| {c['max_logit_diff']:.2g}, mean KL "
          f"{c['mean_kl']:.2g}; GGUF (f16, llama.cpp) {c['gguf_max_logit_diff']:.2g} "
          f"({c['gguf_relative']:.2g} of the logit scale)")
    assert report.status == "merged" and report.version == 1 and report.experts == [e1, e2]
    assert c["max_logit_diff"] < 1e-3 and c["mean_kl"] < 1e-8
    assert c["questions"] == len(check.FIXED_QUESTIONS) + 1 == c["same_answers"]
    assert c["probes"] == 1 and c["recall_unfused"] == c["recall_fused"] == 1
    assert c["gguf_relative"] < 1e-2 and c["gguf_same_argmax"] == 1.0
    assert report.summary().startswith("Merged 2 experts into v1 of your personal model in ")

    v = journal.current_version()
    folder = home.paths.versions / "v0001"
    assert (v.id, v.expert_ids, v.base_model) == (1, (e1, e2), home.config.model)
    assert v.size_bytes == folder_size(folder) and v.checks == c
    assert sorted(os.listdir(folder)) == ["mlx", "model.gguf", "version.json"]
    assert json.loads((folder / "version.json").read_text())["experts"][1]["id"] == e2
    assert version_folders(home.paths) == ["v0001"]  # no temporary left

    again = merge_if_needed(home.paths, home.config)
    assert again.status == "up to date" and again.version == 1
    assert [v.id for v in journal.versions()] == [1]


def test_the_versions_files_are_base_plus_experts_in_both_engines(home, journal):
    home.night(journal, "dog", seed=1)
    home.night(journal, "cat", seed=2)
    assert merge_if_needed(home.paths, home.config).status == "merged"
    folder = home.paths.versions / "v0001"

    from mlx_lm import load

    fused, tokenizer = load(str(folder / "mlx"))  # an ordinary mlx-lm folder
    ids = tokenizer.encode(TEXT)
    plain = mlx_logits(home.model, ids)
    for row in journal.active_experts():
        mlx_lora.attach(home.model, home.paths.expert_folder(row["path"]))
    ref = mlx_logits(home.model, ids)
    ours = mlx_logits(fused, ids)
    gguf = llamacpp_logits(folder / "model.gguf", ids)
    print(f"\nexperts move logits by up to {np.abs(ref - plain).max():.2f}; fused MLX differs "
          f"from base + experts by {np.abs(ours - ref).max():.2g}, the GGUF by "
          f"{np.abs(gguf - ours).max():.2g} (scale {np.abs(ref).max():.1f})")
    assert np.abs(ref - plain).max() > 1  # the experts matter
    assert np.abs(ours - ref).max() < 1e-4
    assert np.abs(gguf - ours).max() / np.abs(ours).max() < 1e-2
    assert (gguf.argmax(-1) == ours.argmax(-1)).all()
    assert all(w.dtype == mx.float32 for w in mx.load(str(folder / "mlx/model.safetensors")).values())


def test_engines_wear_the_version_only_when_it_holds_the_active_experts(home, journal):
    home.night(journal, "dog", seed=1)
    before = {e: answers(home, e) for e in ("llamacpp", "mlx")}  # base + experts
    assert merge_if_needed(home.paths, home.config).status == "merged"
    folder = home.paths.versions / "v0001"

    from pocketsleep.engines import open_engine

    llm = open_engine(home.paths, home.config, engine="llamacpp")
    assert llm.gguf == folder / "model.gguf" and llm._adapters == []
    llm.close()
    llm = open_engine(home.paths, home.config, engine="mlx")
    assert llm.experts == []  # nothing attached: the experts are in its weights
    llm.close()
    # The same model as base + experts: the same greedy answers; log-probs equal up to
    # float32 summation order (MLX) or the GGUF's f16 weights (llama.cpp).
    after = {e: answers(home, e) for e in ("llamacpp", "mlx")}
    n = len(QUESTIONS)
    assert after["mlx"][:n] == before["mlx"][:n]
    for engine, tolerance in (("mlx", 1e-3), ("llamacpp", 0.1)):
        for ours, ref in zip(after[engine][-n:], before[engine][-n:]):
            np.testing.assert_allclose(ours, ref, atol=tolerance)

    home.night(journal, "cat", seed=2)  # a sleep since the merge: not in v1
    assert usable_version(journal, home.paths, home.config.model) is None
    assert merge_needed(journal, home.paths, home.config.model)
    llm = open_engine(home.paths, home.config, engine="llamacpp")
    assert llm.gguf == home.gguf and len(llm._adapters) == 2  # base + experts
    llm.close()
    other = open_engine(home.paths, home.config, model=str(folder / "model.gguf"),
                        engine="llamacpp")  # another model: never the personal one
    assert other._adapters == []
    other.close()


@pytest.mark.parametrize("where", ["fuse", "export", "check"])
def test_a_failure_mid_merge_leaves_the_current_version_untouched(home, journal, monkeypatch,
                                                                  where):
    home.night(journal, "dog", seed=1)
    assert merge_if_needed(home.paths, home.config).status == "merged"
    home.night(journal, "cat", seed=2)

    def broken(*args, **kwargs):
        out = {"fuse": lambda: args[2], "export": lambda: args[1], "check": lambda: None}[where]()
        if out is not None:  # half a file, as a full disk or a kill leaves it
            out.parent.mkdir(parents=True, exist_ok=True)
            (out if where == "export" else out.with_suffix(".part")).write_bytes(b"half")
        raise InputError("the disk filled up")

    target = {"fuse": (mlx_fuse, "fuse_folder"), "export": (gguf_export, "export_gguf"),
              "check": (check, "compare")}[where]
    monkeypatch.setattr(*target, broken)
    with pytest.raises(InputError, match="disk filled"):
        merge_if_needed(home.paths, home.config)
    assert [(v.id, v.status) for v in journal.versions()] == [(1, "current")]
    assert version_folders(home.paths) == ["v0001"]

    monkeypatch.undo()
    report = merge_if_needed(home.paths, home.config)
    assert report.status == "merged" and report.version == 2


def test_a_killed_merge_is_cleaned_up_by_the_next(home, journal):
    e1 = home.night(journal, "dog", seed=1)
    half = journal.begin_version(home.config.model, [e1])  # killed while building
    (home.paths.versions / f"v{half:04d}").mkdir(parents=True)
    (home.paths.versions / ".tmp-v0007").mkdir()
    report = merge_if_needed(home.paths, home.config)
    assert report.status == "merged"
    assert [(v.id, v.status) for v in journal.versions()] == [(report.version, "current")]
    assert version_folders(home.paths) == [f"v{report.version:04d}"]


def test_a_merge_that_disagrees_is_refused_recorded_and_not_retried(home, journal, monkeypatch):
    home.night(journal, "dog", seed=1)
    assert merge_if_needed(home.paths, home.config).status == "merged"
    home.night(journal, "cat", seed=2)
    real = mlx_fuse.Update.delta
    monkeypatch.setattr(mlx_fuse.Update, "delta", lambda self: 2 * real(self))  # a fusion bug

    report = merge_if_needed(home.paths, home.config)
    assert report.status == "refused" and report.version == 2
    assert "fused and unfused logits differ by up to" in report.summary()
    refused = journal.version(2)
    assert refused.status == "refused" and "logits differ" in refused.notes
    assert journal.current_version().id == 1 and version_folders(home.paths) == ["v0001"]
    assert not merge_needed(journal, home.paths, home.config.model)  # same inputs, same answer
    assert merge_if_needed(home.paths, home.config).version == 2
    assert len(journal.versions()) == 2

    monkeypatch.undo()
    report = merge_if_needed(home.paths, home.config, retry_refused=True)
    assert report.status == "merged" and report.version == 3


def test_nothing_to_merge_without_experts(home, journal):
    assert merge_if_needed(home.paths, home.config).status == "nothing to merge"
    assert journal.versions() == []


# ------------------------------------------------------- the embedded model (slow)


def embedded_expert(folder, info, layers=4, rank=8, size=0.01, seed=0):
    """A random expert on the top `layers` blocks of the embedded model, written
    from the GGUF's shapes alone (no model load)."""
    from pocketsleep.backends.mlx_lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    rng = np.random.default_rng(seed)
    hidden, ffn, hd = info["hidden"], info["intermediate"], info["head_dim"]
    shapes = {"self_attn.q_proj": (info["heads"] * hd, hidden),
              "self_attn.k_proj": (info["kv_heads"] * hd, hidden),
              "self_attn.v_proj": (info["kv_heads"] * hd, hidden),
              "self_attn.o_proj": (hidden, info["heads"] * hd),
              "mlp.gate_proj": (ffn, hidden), "mlp.up_proj": (ffn, hidden),
              "mlp.down_proj": (hidden, ffn)}
    weights = {}
    for i in range(info["n_layers"] - layers, info["n_layers"]):
        for key, (out_dims, in_dims) in shapes.items():
            name = f"model.layers.{i}.{key}"
            weights[f"{name}.lora_a"] = mx.array(
                rng.uniform(-1, 1, (in_dims, rank)).astype(np.float32) / np.sqrt(in_dims))
            weights[f"{name}.lora_b"] = mx.array(
                (size * rng.standard_normal((rank, out_dims))).astype(np.float32))
    folder.mkdir(parents=True)
    mx.save_safetensors(str(folder / ADAPTER_WEIGHTS), weights)
    (folder / ADAPTER_CONFIG).write_text(json.dumps({
        "fine_tune_type": "lora", "num_layers": layers,
        "lora_parameters": {"rank": rank, "scale": 4.0, "dropout": 0.0}}))
    return folder


@pytest.mark.slow
def test_merging_on_the_embedded_model(paths, journal, monkeypatch):
    import time

    monkeypatch.setattr(check, "FIXED_QUESTIONS", check.FIXED_QUESTIONS[:1])  # < 60 s

    from pocketsleep.backends.gguf_import import gguf_info
    from pocketsleep.config import Config
    from pocketsleep.models import embedded_model_path

    info = gguf_info(embedded_model_path())
    embedded_expert(paths.private_subdir(paths.experts) / "night-0001", info)
    cid = journal.log_conversation([{"role": "user", "content": "I live in Paris."}])
    journal.accept_expert(journal.begin_sleep(), "nightly", "night-0001", {}, [cid],
                          [("What is the capital of France?", "Paris")], {})
    started = time.perf_counter()
    report = merge_if_needed(paths, Config())
    c = report.checks
    print(f"\nembedded model: merged in {time.perf_counter() - started:.0f} s; fused vs unfused "
          f"max |logit diff| {c['max_logit_diff']:.2g}, mean KL {c['mean_kl']:.2g}, same "
          f"answers {c['same_answers']}/{c['questions']}, recall {c['recall_fused']}/"
          f"{c['probes']} (unfused {c['recall_unfused']}); GGUF f16 {c['gguf_max_logit_diff']:.2g}"
          f" ({c['gguf_relative']:.2g} of the logit scale, argmax agreement "
          f"{c['gguf_same_argmax']:.3f}); v{report.version} "
          f"{journal.current_version().size_bytes / 1e6:.0f} MB")
    assert report.status == "merged", report.reasons
    assert c["max_logit_diff"] < 1e-2 and c["same_answers"] == c["questions"]
    assert c["recall_fused"] == c["recall_unfused"] == 1  # it still knows Paris
