"""`pocketsleep eval`: input errors as one line, a fast run on a fake engine, and one
real run through llama.cpp on a tiny random model."""

from __future__ import annotations

import json

import pytest

from pocketsleep.backends.fake import FakeEngine
from pocketsleep.cli import main

SUITE = {
    "name": "cli-tiny",
    "days": [
        {"date": "2026-01-01",
         "conversations": [[{"role": "user", "content": "My cat is called Miso."},
                            {"role": "assistant", "content": "Hello Miso!"}]],
         "probes": [{"question": "What is my cat called?", "answers": ["Miso"]}]},
        {"date": "2026-01-02",
         "conversations": [[{"role": "user", "content": "I moved to Lyon."}]],
         "probes": [{"question": "Where do I live?", "answers": ["Lyon"], "stale": ["Porto"]}]},
    ],
    "general_probes": [{"question": "Say hello.", "answers": ["hello"]}],
    "general_text": "The river runs to the sea.",
}
STABLE = {"final_recall", "today_recall", "stale_answers", "general_accuracy", "ppl_change",
          "retention", "sleep_seconds", "peak_rss_mb"}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def suite_file(tmp_path):
    path = tmp_path / "cli-tiny.json"
    path.write_text(json.dumps(SUITE))
    return path


@pytest.fixture
def fake_engine(monkeypatch):
    opened = []

    def open_engine(paths, config, model=None, engine=None):
        opened.append((paths, config))
        return FakeEngine()

    monkeypatch.setattr("pocketsleep.engines.open_engine", open_engine)
    return opened


def test_errors_are_one_line_before_any_model_loads(capsys, suite_file, tmp_path, fake_engine):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"days": [{"date": "2026-01-01", "conversations": [[]], "probes": []}]}))
    cases = [
        (["--suite", str(bad)], "bad.json: days[0].conversations[0] is empty"),
        (["--suite", str(suite_file), "--methods", "none,dream"],
         "unknown method 'dream'; known methods: none, icl"),
        (["--suite", str(suite_file), "--days", "3"], "has only 2 days"),
        (["--suite", str(tmp_path / "nope.json")], "no such suite file"),
        (["--suite", str(suite_file), "--json", str(tmp_path / "no" / "out.json")],
         "cannot write"),
    ]
    for argv, message in cases:
        code, out, err = run(capsys, "eval", *argv)
        assert code == 1, argv
        assert err.startswith("pocketsleep: error: ") and message in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert fake_engine == []


def test_a_fast_run_prints_the_table_and_json_to_stdout(capsys, suite_file, fake_engine, data_home):
    code, out, err = run(capsys, "eval", "--suite", str(suite_file), "--json", "-",
                         "--days", "1", "--seed", "5")
    assert code == 0, err
    result = json.loads(out)
    assert (result["suite"], result["seed"], result["days"]) == ("cli-tiny", 5, 1)
    assert list(result["methods"]) == ["none", "icl"]
    assert STABLE <= set(result["methods"]["icl"])
    # The echoing fake repeats the question: "Say hello." counts as general knowledge.
    assert result["methods"]["none"]["general_accuracy"] == 1.0
    assert "final recall" in err and "eval: none: day 1/1 (2026-01-01): night" in err
    (paths, config), = fake_engine
    assert data_home not in paths.home.parents and config.model == "default"
    assert not data_home.exists()


def test_end_to_end_on_a_tiny_model_through_llamacpp(capsys, suite_file, tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is installed by ./install.sh")
    pytest.importorskip("gguf")
    from tiny_models import write_tiny_gguf

    # One thread: on a busy 2-core machine llama.cpp's threads wait for each other at
    # every step (about 10x slower than one thread for a model this small).
    monkeypatch.setattr("pocketsleep.backends.llamacpp_engine._threads", lambda: 1)

    model = write_tiny_gguf(tmp_path / "tiny.gguf").path
    out_json, out_png = tmp_path / "eval.json", tmp_path / "eval.png"
    plot = ["--plot", str(out_png)] if _has_matplotlib() else []
    code, out, err = run(capsys, "eval", "--suite", str(suite_file), "--model", str(model),
                         "--engine", "llamacpp", "--max-tokens", "4", "--json", str(out_json),
                         *plot)
    assert code == 0, err
    result = json.loads(out_json.read_text())
    assert (result["model"], result["engine"], result["model_name"]) == (str(model), "llamacpp", "tiny")
    for m in result["methods"].values():
        assert STABLE <= set(m)
        assert m["retention"][1][0] is None and len(m["retention"]) == 2
        assert m["ppl_before"] > 1 and m["ppl_change"] == 0.0  # no method changed the weights
        assert len(m["sleep_seconds"]) == len(m["peak_rss_mb"]) == 2
    assert "final recall" in out and "retention" in out
    if plot:
        assert out_png.read_bytes()[:4] == b"\x89PNG"


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None
