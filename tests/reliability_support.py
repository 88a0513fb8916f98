"""Shared pieces of the reliability tests: a lived-in data home on a tiny model, the
real CLI in a subprocess (optionally killed at a scripted point), and the checks that
say a data home is whole: the journal's integrity, every conversation and message,
and nothing half-written in use."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sleep_support import DAY, PRIVATE, tiny_model
from version_support import TinyHome

from pocketsleep.config import Config, Paths
from pocketsleep.journal import Journal

TESTS = Path(__file__).parent
FAST_CLI = TESTS / "fast_cli.py"
KILLED = -9  # subprocess's returncode for a process ended by SIGKILL


# -- a lived-in home ---------------------------------------------------------------------

@dataclass
class Template:
    """A data home as it is on an ordinary evening: two earlier nights learned and
    merged into v1, today's two conversations pending, one private conversation."""

    home: Path
    gguf: Path
    day: list[int]
    private: int
    earlier: list[int]  # conversations the earlier nights learned

    def copy_to(self, home: Path) -> Paths:
        shutil.copytree(self.home, home, symlinks=True)
        return Paths(home)


def build_template(folder: Path, *, keep_versions: int = 0) -> Template:
    """keep_versions = 0 so that every merge also prunes (its kill points are reached)."""
    from pocketsleep.versions import merge_if_needed

    paths = Paths(folder / "home").ensure()
    gguf = tiny_model(folder)
    paths.config_file.write_text(f'model = "{gguf}"\nkeep_versions = {keep_versions}\n')
    os.chmod(paths.config_file, 0o600)
    config = Config(model=str(gguf), keep_versions=keep_versions)
    home = TinyHome(paths, config, gguf)
    with Journal.open(paths.journal) as journal:
        for seed, title in ((1, "dog"), (2, "cat")):
            home.night(journal, title, seed=seed)
        earlier = [c.id for c in journal.conversations()]
    assert merge_if_needed(paths, config).status == "merged"
    with Journal.open(paths.journal) as journal:
        day = [journal.log_conversation(c, title=f"day {i}") for i, c in enumerate(DAY)]
        private = journal.log_conversation(PRIVATE, title="vault", private=True)
    return Template(paths.home, gguf, day, private, earlier)


# -- the real command line ---------------------------------------------------------------

def cli(home: Path, *args: str, fault: str | None = None, timeout: float = 120,
        stdin: str | None = None, fast: bool = True, env: dict | None = None
        ) -> subprocess.CompletedProcess:
    """Run `pocketsleep ARGS` on data home `home` in its own process; with `fault`, the
    process kills itself at that point (pocketsleep/faults.py)."""
    environment = dict(os.environ, POCKETSLEEP_HOME=str(home), **(env or {}))
    environment.pop("POCKETSLEEP_FAULT", None)
    if fault:
        environment["POCKETSLEEP_FAULT"] = fault
    program = [str(FAST_CLI)] if fast else ["-m", "pocketsleep"]
    return subprocess.run([sys.executable, *program, *args], capture_output=True, text=True,
                          env=environment, timeout=timeout, input=stdin)


def start(home: Path, *args: str, fault: str | None = None) -> subprocess.Popen:
    """As `cli`, without waiting."""
    environment = dict(os.environ, POCKETSLEEP_HOME=str(home))
    environment.pop("POCKETSLEEP_FAULT", None)
    if fault:
        environment["POCKETSLEEP_FAULT"] = fault
    return subprocess.Popen([sys.executable, str(FAST_CLI), *args], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stopped(proc: subprocess.Popen) -> bool:
    """Has the process stopped itself (SIGSTOP at its fault point)?"""
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except FileNotFoundError:
        return False


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        time.sleep(0.02)


# -- what a whole data home looks like -----------------------------------------------------

def integrity(journal_file: Path) -> str:
    """SQLite's own verdict on every page of the journal ("ok"), read with plain
    sqlite3 (it replays the write-ahead log a killed writer left)."""
    conn = sqlite3.connect(journal_file)
    try:
        return "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    except sqlite3.DatabaseError as e:  # too damaged to even check
        return str(e)
    finally:
        conn.close()


def rows(journal_file: Path) -> dict:
    """Every conversation and message as stored (to compare before and after)."""
    conn = sqlite3.connect(journal_file)
    try:
        return {
            "conversations": {r[0]: r[1:] for r in conn.execute(
                "SELECT id, status, private, title FROM conversations")},
            "messages": {r[0]: r[1:] for r in conn.execute(
                "SELECT id, conversation_id, role, content, state FROM messages")},
        }
    finally:
        conn.close()


def complete_safetensors(path: Path) -> bool:
    """Header parses and the file holds every byte its header promises."""
    data = path.read_bytes()
    if len(data) < 8:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + n])
    except ValueError:
        return False
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"),
              default=0)
    return len(data) == 8 + n + end


def complete_gguf(path: Path) -> bool:
    """GGUF header and tensor table parse and every tensor's data is in the file."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception:  # any parse failure means "not a complete GGUF"
        return False
    size = path.stat().st_size
    return bool(reader.tensors) and all(
        t.data_offset + t.n_bytes <= size for t in reader.tensors)


def expert_complete(folder: Path) -> bool:
    return (folder.is_dir()
            and complete_safetensors(folder / "adapters.safetensors")
            and isinstance(json.loads((folder / "adapter_config.json").read_text()), dict)
            and complete_gguf(folder / "adapter.gguf"))


def version_complete(folder: Path) -> bool:
    mlx = folder / "mlx"
    return (complete_gguf(folder / "model.gguf") and (mlx / "config.json").is_file()
            and all(complete_safetensors(f) for f in mlx.glob("*.safetensors"))
            and any(mlx.glob("*.safetensors")))


def in_use(paths: Paths) -> dict:
    """What the engines would load now: the active experts and the current version
    (journal rows with their folders)."""
    with Journal.open(paths.journal) as journal:
        experts = {r["id"]: paths.expert_folder(r["path"]) for r in journal.active_experts()}
        current = journal.current_version()
        versions = [(v.id, v.status) for v in journal.versions()]
    return {"experts": experts, "current": current, "versions": versions}


def leftovers(home: Path) -> list[str]:
    """Temporary files and folders anywhere under the home."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if ".tmp" in p.name)
