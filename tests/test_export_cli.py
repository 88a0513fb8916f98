"""`pocketsleep export` end to end, and the journal's list of active experts."""

from __future__ import annotations

import numpy as np
import pytest
from export_checks import TEXT, gguf_fields, llamacpp_logits, write_lora_expert
from tiny_models import write_tiny_gguf

from pocketsleep.backends.gguf_import import load_gguf
from pocketsleep.cli import main
from pocketsleep.journal import Journal


def add_expert_row(journal: Journal, path, status="active", level="nightly",
                   created_at="2026-01-01T03:00:00+00:00") -> int:
    # The journal has no method that records experts yet (sleep will add one); the
    # test writes the row the way that migration m001 defines it.
    cur = journal.db.execute(
        "INSERT INTO experts (created_at, level, path, status) VALUES (?, ?, ?, ?)",
        [created_at, level, str(path), status])
    journal.db.conn.commit()
    return cur.lastrowid


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_active_experts_are_listed_oldest_first(journal):
    assert journal.active_experts() == []
    late = add_expert_row(journal, "/e/late", created_at="2026-01-03T03:00:00+00:00")
    add_expert_row(journal, "/e/retired", status="retired", created_at="2026-01-01T03:00:00+00:00")
    early = add_expert_row(journal, "/e/early", level="weekly", created_at="2026-01-02T03:00:00+00:00")
    same_time = add_expert_row(journal, "/e/same", created_at="2026-01-03T03:00:00+00:00")
    rows = journal.active_experts()
    assert [r["id"] for r in rows] == [early, late, same_time]
    assert rows[0]["path"] == "/e/early" and rows[0]["level"] == "weekly"
    assert journal.counts()["active_experts"] == 3


# ---------------------------------------------------------------- the command


@pytest.fixture
def tiny(tmp_path):
    pytest.importorskip("mlx.core")
    pytest.importorskip("llama_cpp")
    t = write_tiny_gguf(tmp_path / "tiny.gguf", arch="llama")
    model, tok = load_gguf(t.path)
    return t, model, tok


def test_export_of_the_base_model_alone(capsys, tmp_path, tiny):
    t, _, _ = tiny
    out = tmp_path / "out" / "personal.gguf"
    code, stdout, err = run(capsys, "export", "--gguf", out, "--model", t.path, "--quant", "q8_0")
    assert (code, err) == (0, "")
    assert f"wrote {out} (q8_0," in stdout and "base model, no experts" in stdout
    assert gguf_fields(out)["general.file_type"] == 7
    assert sorted(p.name for p in out.parent.iterdir()) == ["personal.gguf"]


def test_export_fuses_the_active_experts_and_writes_their_adapters(capsys, tmp_path, tiny, paths):
    t, model, tok = tiny
    e1 = write_lora_expert(paths.experts / "night-1", model, seed=1)
    e2 = write_lora_expert(tmp_path / "elsewhere" / "night-2", model, layers=(1,), seed=2)
    with Journal.open(paths.journal) as journal:
        first = add_expert_row(journal, "night-1")  # relative: inside the data home's experts/
        second = add_expert_row(journal, e2, created_at="2026-01-02T03:00:00+00:00")
        add_expert_row(journal, tmp_path / "gone", status="retired")
    fused, adapters = tmp_path / "personal.gguf", tmp_path / "adapters"
    code, stdout, err = run(capsys, "export", "--gguf", fused, "--quant", "f32", "--lora", adapters,
                            "--model", t.path)
    assert (code, err) == (0, "")
    assert "base + 2 experts fused" in stdout
    names = [f"expert-{first}-nightly.gguf", f"expert-{second}-nightly.gguf"]
    assert sorted(p.name for p in adapters.iterdir()) == names
    assert f"llama-cli -m {t.path} --lora FILE" in stdout
    assert (e1 / "adapter.gguf").is_file() and (e2 / "adapter.gguf").is_file()  # for the engine
    assert gguf_fields(fused)["pocketsleep.experts"] == ["night-1", "night-2"]

    ids = tok.encode(TEXT)
    with_adapters = llamacpp_logits(t.path, ids, adapters=[adapters / n for n in names])
    np.testing.assert_allclose(with_adapters, llamacpp_logits(fused, ids), atol=1e-4, rtol=0)

    # Again: refused without --force, nothing touched; replaced with it.
    before = fused.stat().st_mtime_ns
    code, _, err = run(capsys, "export", "--gguf", fused, "--model", t.path)
    assert code == 1 and "already exists; pass --force" in err and err.count("\n") == 1
    assert fused.stat().st_mtime_ns == before
    code, _, err = run(capsys, "export", "--lora", adapters, "--model", t.path)
    assert code == 1 and f"expert-{first}-nightly.gguf: already exists" in err
    # A folder in place of the file: said first, not "pass --force" (which cannot help).
    code, _, err = run(capsys, "export", "--gguf", adapters, "--model", t.path)
    assert code == 1 and "is a folder; give the path of the .gguf file" in err
    code, _, err = run(capsys, "export", "--gguf", fused, "--lora", adapters, "--model", t.path,
                       "--force", "--no-experts")
    assert code == 1 and "no active experts" in err  # --no-experts leaves no adapters to write
    code, stdout, _ = run(capsys, "export", "--gguf", fused, "--model", t.path, "--force",
                          "--no-experts")
    assert code == 0 and "no experts" in stdout and "pocketsleep.experts" not in gguf_fields(fused)


def test_user_errors_are_one_line(capsys, tmp_path, tiny, paths):
    t, _, _ = tiny
    code, _, err = run(capsys, "export", "--model", t.path)
    assert code == 2 and "--gguf FILE, --lora DIR" in err
    code, _, err = run(capsys, "export", "--lora", tmp_path / "a", "--model", t.path)
    assert code == 1 and "no active experts" in err and err.count("\n") == 1
    code, _, err = run(capsys, "export", "--gguf", tmp_path / "o.gguf", "--quant", "q4_0")
    assert code == 2 and "q4_0" in err
    (tmp_path / "file").write_text("x")
    code, _, err = run(capsys, "export", "--gguf", tmp_path / "file" / "o.gguf", "--model", t.path)
    assert code == 1 and "cannot write" in err and err.count("\n") == 1
    code, _, err = run(capsys, "export", "--gguf", tmp_path / "o.gguf", "--model", tmp_path / "no.gguf")
    assert code == 1 and "no model file" in err
    with Journal.open(paths.journal) as journal:
        missing = add_expert_row(journal, tmp_path / "vanished")
    code, _, err = run(capsys, "export", "--gguf", tmp_path / "o.gguf", "--model", t.path)
    assert code == 1 and f"active expert {missing} is missing" in err and "--no-experts" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "home", "tiny.gguf"]

