"""Privacy: everything stays under the data home, private; nothing goes over the
network unless a hub model is asked for; a private conversation reaches neither the
weights nor any file but the journal, even when marked private mid-sleep; `forget`
takes the text out of the journal's bytes on disk.

(The teacher-prompt check of a private conversation is test_sleep_job's
test_a_private_conversation_never_reaches_the_model; this file checks the files.)
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import stat

import pytest

pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")
pytest.importorskip("gguf")

import pocketsleep.backends  # noqa: E402,F401  (the fast BLAS, before mlx loads)
from reliability_support import (  # noqa: E402
    build_template, cli, integrity, start, stopped, wait_until)
from sleep_support import DAY, FAST, PRIVATE, SECRET, tiny_model  # noqa: E402

from pocketsleep.cli import main  # noqa: E402
from pocketsleep.cli import sleep as sleep_cli  # noqa: E402
from pocketsleep.config import load_config  # noqa: E402
from pocketsleep.journal import Journal  # noqa: E402


def journal_files(home):
    return [p for p in home.glob("journal.db*") if p.is_file()]


def test_everything_stays_in_the_home_private_and_the_secret_only_in_the_journal(tmp_path):
    """A day's whole life through the real command line: import, a private
    conversation, sleep, the morning merge, both exports, ask, status, history."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    for d in ("user-home", "tmp", "cache"):
        (elsewhere / d).mkdir(parents=True)
    # Everything a library could write to outside the data home points at `elsewhere`.
    env = {"HOME": str(elsewhere / "user-home"), "TMPDIR": str(elsewhere / "tmp"),
           "XDG_CACHE_HOME": str(elsewhere / "cache"), "HF_HOME": str(elsewhere / "cache" / "hf")}
    gguf = tiny_model(tmp_path)
    files = {}
    for name, conversation in (("day0", DAY[0]), ("day1", DAY[1]), ("vault", PRIVATE)):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(conversation))
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text(f'model = "{gguf}"\n')  # written by the user, not us

    steps = [("log", "--file", files["day0"]), ("log", "--file", files["day1"]),
             ("log", "--file", files["vault"], "--private", "--title", "vault"),
             ("sleep",),
             ("export", "--gguf", home / "exports" / "me.gguf", "--lora",
              home / "exports" / "adapters"),
             ("ask", "Where does Anna live?", "--max-tokens", "4", "--log"),
             ("status",)]
    for step in steps:
        done = cli(home, *map(str, step), env=env)
        assert done.returncode == 0, (step, done.stderr[-2000:])

    written = [p for p in home.rglob("*") if p.name != "config.toml"]
    for made in ("journal.db", "sleep.lock", "merge.lock", "experts/night-0001/adapter.gguf",
                 "models/versions/v0001/mlx/model.safetensors", "models/versions/v0001/model.gguf",
                 "exports/me.gguf", "exports/adapters/expert-1-nightly.gguf"):
        assert home / made in written, made
    assert any((home / "models" / "converted").glob("*/tokenizer.json"))
    loose = [f"{oct(stat.S_IMODE(p.stat().st_mode))} {p.relative_to(home)}" for p in written
             if stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)]
    assert loose == []
    # Nothing written anywhere else (home folder, temporary files, caches) but MLX's
    # compiled CPU kernels ($TMPDIR/mlx/<version>/cpu: generated C++ and .so files,
    # private modes), which hold no user data.
    outside = [p for p in elsewhere.rglob("*") if p.is_file()]
    kernels = elsewhere / "tmp" / "mlx"
    assert [str(p) for p in outside if kernels not in p.parents] == []
    assert not any(w in p.read_bytes() for p in outside for w in (SECRET.encode(), b"Anna"))
    # The private conversation's text is in the journal and nowhere else: not in an
    # expert, a version, the model cache, an export, a log or a lock file.
    secret = SECRET.encode()
    assert any(secret in p.read_bytes() for p in journal_files(home))
    holding = [str(p.relative_to(home)) for p in written
               if p.is_file() and p not in journal_files(home) and secret in p.read_bytes()]
    assert holding == []
    # ... and, inside the journal, only in its own messages: no probe, metric, sleep
    # record or anything else derived from it.
    conn = sqlite3.connect(home / "journal.db")
    try:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            if table in ("messages",):
                continue
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                assert SECRET not in " ".join(map(str, row)), table
        assert conn.execute("SELECT count(*) FROM messages WHERE content LIKE ?",
                            [f"%{SECRET}%"]).fetchone()[0] == 1
    finally:
        conn.close()


class NetworkAttempt(AssertionError):
    pass


def test_no_network_except_an_explicit_hub_download(capsys, tmp_path, monkeypatch):
    from pocketsleep.sleep import run_sleep
    from pocketsleep.versions import merge_if_needed

    template = build_template(tmp_path / "t")
    from pocketsleep.config import Paths

    paths = Paths(template.home)
    monkeypatch.setenv("POCKETSLEEP_HOME", str(paths.home))
    monkeypatch.setattr(sleep_cli, "SleepOptions", lambda: FAST)
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise NetworkAttempt(f"network use: {args!r:.200}")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)

    config = load_config(paths)
    assert run_sleep(paths, config, FAST).status == "succeeded"
    assert merge_if_needed(paths, config).status == "merged"
    for argv in (["ask", "hi", "--max-tokens", "3"],
                 ["ask", "hi", "--engine", "mlx", "--max-tokens", "3"],
                 ["export", "--gguf", str(tmp_path / "me.gguf")], ["status"], ["models"]):
        assert main(argv) == 0, capsys.readouterr().err
    assert attempts == []
    # Only a hub model is fetched over the network; offline that is one clear line.
    code = main(["ask", "hi", "--model", "someone/some-model"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("pocketsleep: error: cannot download 'someone/some-model'")
    assert err.count("\n") == 1


def test_a_conversation_made_private_or_forgotten_mid_sleep_is_not_learned(paths, tmp_path,
                                                                          journal):
    gguf = tiny_model(tmp_path)
    paths.config_file.write_text(f'model = "{gguf}"\n')
    made_private, forgotten, kept = [journal.log_conversation(c) for c in DAY + [
        [{"role": "user", "content": "My neighbour Olga grows tomatoes on her balcony."}]]]
    # The night has read its episode (all three) and is frozen: then, in the chat,
    # the user marks one private and forgets another.
    sleep = start(paths.home, "sleep", fault="sleep.begun:stop")
    try:
        wait_until(lambda: stopped(sleep) or sleep.poll() is not None)
        assert stopped(sleep)
        journal.set_private(made_private)
        journal.forget(forgotten)
        sleep.send_signal(signal.SIGCONT)
        out, err = sleep.communicate(timeout=120)
    finally:
        if sleep.poll() is None:
            sleep.kill()
    assert sleep.returncode == 3, err  # rejected: nothing of tonight is kept
    assert "became private or forgotten while the night ran" in out
    assert journal.active_experts() == [] and not any(paths.experts.glob("night-*"))
    status = {c.id: (c.status, c.private) for c in journal.conversations()}
    assert status == {made_private: ("pending", True), forgotten: ("forgotten", False),
                      kept: ("pending", False)}
    # The next night learns what is still learnable, and only that.
    from pocketsleep.sleep import run_sleep

    report = run_sleep(paths, load_config(paths), FAST)
    assert report.status == "succeeded" and report.conversations == [kept]
    assert journal.expert_sources([report.expert_id]) == [kept]


def test_forget_takes_the_text_off_the_disk_even_while_a_chat_has_the_journal_open(
        template_home):
    paths = template_home
    words = b"old harbour"  # only in DAY[0]'s second message
    reader = Journal.open(paths.journal)  # an open chat window: idle connection
    reader.conversations()
    try:
        assert any(words in p.read_bytes() for p in journal_files(paths.home))
        done = cli(paths.home, "forget", "3", "--yes", fast=False)
        assert done.returncode == 0 and done.stdout.startswith("Forgot conversation 3")
        # While the other connection is still open: not in journal.db, -wal or -shm.
        assert not any(words in p.read_bytes() for p in journal_files(paths.home))
        assert reader.conversation(3).status == "forgotten"
    finally:
        reader.close()
    assert integrity(paths.journal) == "ok"
    assert not any(words in p.read_bytes() for p in journal_files(paths.home))
    assert any(b"Biscuit" in p.read_bytes() for p in journal_files(paths.home))  # the rest stays


@pytest.fixture
def template_home(tmp_path, data_home):
    return build_template(tmp_path / "t").copy_to(data_home)
