"""Crash safety: a real `pocketsleep` process is killed with SIGKILL at scripted
points all through a night (sleep, the morning merge, pruning), an export, an import
and a forget (pocketsleep/faults.py). After each kill:

- the journal passes SQLite's `PRAGMA integrity_check`;
- every conversation and message is there, unchanged (none lost, none half-added);
- the night either happened in full or not at all: the day's conversations are all
  pending or all consolidated, and the experts and model version in use are complete
  files (nothing half-written is ever promoted: every folder renamed into place is whole);
- the next sleep (after a kill in the night) or merge (after a kill in the merge)
  completes, and leaves no temporary or orphaned files.

Each kill runs the real CLI on a tiny model (tests/fast_cli.py), a few seconds each.
"""

from __future__ import annotations

import pytest

pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")
pytest.importorskip("gguf")

import pocketsleep.backends  # noqa: E402,F401  (the fast BLAS, before mlx loads)
from reliability_support import (  # noqa: E402
    KILLED, build_template, cli, complete_gguf, expert_complete, in_use, integrity, leftovers,
    rows, version_complete)
from sleep_support import FAST  # noqa: E402

from pocketsleep.config import load_config  # noqa: E402
from pocketsleep.journal import Journal  # noqa: E402
from pocketsleep.sleep import run_sleep  # noqa: E402
from pocketsleep.versions import merge_if_needed  # noqa: E402

# Where a night is killed, in the order it reaches them, and how far it had got:
# "pending" = its one journal transaction had not committed (the day must still be
# pending, nothing new in use), "learned" = the night was recorded but the new
# version not switched to (the engines wear v1 + the new expert, unfused),
# "switched" = v2 is current. Points of the sleep itself kill `pocketsleep sleep`;
# points of the morning merge kill `pocketsleep models merge` after a night that
# learned (the same merge `sleep` runs at its end, without sleeping again first).
SLEEP_POINTS = [
    ("sleep.locked", "pending"),            # lock taken, nothing recorded yet
    ("sleep.begun", "pending"),             # the sleep row says 'running'
    ("convert.written", "pending"),         # base GGUF -> MLX cache, before its rename
    # The expert trained, in memory only: what a kill anywhere in self-study,
    # distillation or the gate leaves on disk (those phases write nothing).
    ("sleep.distilled", "pending"),
    ("expert.adapter_written", "pending"),  # half the expert folder written
    ("gguf.tensor@2", "pending"),           # inside the expert's GGUF LoRA, mid-file
    ("expert.fsynced", "pending"),          # whole, but not renamed into place
    ("sleep.expert_written", "pending"),    # renamed into place, not recorded
    ("journal.accept_expert.midway", "pending"),         # inside the night's transaction
    ("sleep.accepted", "learned"),          # recorded; the merge has not started
]
MERGE_POINTS = [
    ("merge.begun", "learned"),             # version row 'ready'
    ("version.base_ready", "learned"),
    ("version.mlx_fused", "learned"),       # the MLX copy written, the GGUF not yet
    ("gguf.tensor@4", "learned"),           # inside the version's GGUF, mid-file
    ("version.gguf_written", "learned"),
    ("version.renamed", "learned"),         # folder in place, not checked
    ("merge.checked", "learned"),           # checked, not switched
    ("journal.switch_version.before_commit", "learned"),
    ("merge.switched", "switched"),         # switched; pruning not begun
    ("prune.journal_updated", "switched"),  # v1 pruned in the journal, files not yet
]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="module")
def learned(template, tmp_path_factory):
    """The template after a night that learned the day, its merge not run yet."""
    paths = template.copy_to(tmp_path_factory.mktemp("learned") / "home")
    assert run_sleep(paths, load_config(paths), FAST).status == "succeeded"
    return paths


def check_whole(paths, before, night_state, template):
    """What must hold after a kill, whatever the point."""
    assert integrity(paths.journal) == "ok"
    after = rows(paths.journal)
    assert after["messages"] == before["messages"]  # not one message lost or changed
    assert after["conversations"].keys() == before["conversations"].keys()
    status = {cid: c[0] for cid, c in after["conversations"].items()}
    # All or nothing: a night is one transaction.
    expected = "pending" if night_state == "pending" else "consolidated"
    assert [status[c] for c in template.day] == [expected] * len(template.day)
    assert status[template.private] == "pending"
    assert all(status[c] == "consolidated" for c in template.earlier)

    use = in_use(paths)
    assert sorted(use["experts"]) == ([1, 2] if night_state == "pending" else [1, 2, 3])
    assert all(expert_complete(folder) for folder in use["experts"].values())
    assert use["current"].id == (2 if night_state == "switched" else 1)
    assert version_complete(paths.version_folder(use["current"].path))
    # Anything renamed into place is whole, used or not (temporaries may be half).
    for folder in paths.experts.iterdir():
        assert folder.name.startswith(".tmp") or expert_complete(folder), folder.name
    for folder in paths.versions.iterdir():
        assert folder.name.startswith(".tmp") or version_complete(folder), folder.name


def check_recovered(paths, before, template, merged=True):
    """After the next sleep (and merge): everything learned, nothing left over."""
    assert integrity(paths.journal) == "ok"
    after = rows(paths.journal)
    assert after["messages"] == before["messages"]
    status = {cid: c[0] for cid, c in after["conversations"].items()}
    assert [status[c] for c in template.day + template.earlier] == ["consolidated"] * 4
    assert status[template.private] == "pending"
    with Journal.open(paths.journal) as journal:
        assert [s.status for s in journal.sleeps()].count("running") == 0
        recorded = {r["path"] for s in ("active", "rejected", "retired")
                    for r in journal.experts(s)}
        active = {r["id"] for r in journal.active_experts()}
        current = journal.current_version()
        kept = {v.path for v in journal.versions() if v.status in ("current", "previous")}
    assert len(active) == 3
    if merged:
        assert set(current.expert_ids) == active
        assert version_complete(paths.version_folder(current.path))
    # No orphans: every expert folder is one the journal knows, every version folder
    # a kept version; no temporary anything.
    assert {p.name for p in paths.experts.iterdir()} == recorded
    assert {p.name for p in paths.versions.iterdir()} == kept
    assert leftovers(paths.home) == []


@pytest.mark.parametrize("point, night_state", SLEEP_POINTS + MERGE_POINTS)
def test_a_night_killed_anywhere_loses_nothing_and_the_next_completes(
        template, learned, data_home, point, night_state):
    import shutil

    paths = template.copy_to(data_home)
    before = rows(paths.journal)
    if (point, night_state) in MERGE_POINTS:
        shutil.rmtree(paths.home)
        shutil.copytree(learned.home, paths.home)
        command = ("models", "merge")
    else:
        command = ("sleep",)
    if point == "convert.written":  # the base model's MLX conversion is not cached yet
        shutil.rmtree(paths.models / "converted")

    killed = cli(paths.home, *command, fault=point)
    assert killed.returncode == KILLED, killed.stderr[-2000:]  # the point was reached
    check_whole(paths, before, night_state, template)

    config = load_config(paths)
    if night_state == "pending":
        # The next night learns the day. (Its merge is the same merge that the merge
        # points below kill and recover; not repeated here, to keep this quick.)
        assert run_sleep(paths, config, FAST).status == "succeeded"
        check_recovered(paths, before, template, merged=False)
    else:
        merged = merge_if_needed(paths, config)
        assert merged.status == ("up to date" if night_state == "switched" else "merged")
        check_recovered(paths, before, template)


def test_a_killed_import_adds_nothing(template, data_home, tmp_path):
    paths = template.copy_to(data_home)
    before = rows(paths.journal)
    conversation = tmp_path / "conv.json"
    conversation.write_text('[{"role": "user", "content": "half of this"},'
                            ' {"role": "assistant", "content": "never stored"}]')
    killed = cli(paths.home, "log", "--file", str(conversation),
                 fault="journal.log_conversation.midway")
    assert killed.returncode == KILLED
    assert integrity(paths.journal) == "ok"
    assert rows(paths.journal) == before  # all or nothing: nothing
    again = cli(paths.home, "log", "--file", str(conversation))
    assert again.returncode == 0 and again.stdout.startswith("Logged conversation 6 (2 messages)")


def test_a_forget_killed_before_its_checkpoint_still_leaves_no_text(template, data_home):
    """forget commits the deletion, then checkpoints the write-ahead log into the main
    file; killed in between, the old text may still sit in journal.db's pages until
    the next command opens and closes the journal."""
    paths = template.copy_to(data_home)
    secret = b"We meet every Sunday at the old harbour."
    assert secret in b"".join(p.read_bytes() for p in paths.home.glob("journal.db*"))
    killed = cli(paths.home, "forget", str(template.day[0]), "--yes",
                 fault="journal.forget.before_checkpoint")
    assert killed.returncode == KILLED
    assert integrity(paths.journal) == "ok"
    assert cli(paths.home, "status", fast=False).returncode == 0  # any next command
    raw = b"".join(p.read_bytes() for p in paths.home.glob("journal.db*"))
    assert secret not in raw and b"old harbour" not in raw
    assert b"Biscuit" in raw  # the other conversation is untouched


@pytest.mark.parametrize("args, fault", [
    (("--gguf", "{out}/me.gguf"), "gguf.tensor@3"),     # mid-way through the model's tensors
    (("--lora", "{out}/adapters"), "gguf.tensor@3"),    # mid-way through the first adapter
    (("--lora", "{out}/adapters"), "export.adapter_written"),  # first adapter done, second not
])
def test_a_killed_export_leaves_no_partial_file(template, data_home, tmp_path, args, fault):
    paths = template.copy_to(data_home)
    before = rows(paths.journal)
    out = tmp_path / "out"
    args = [a.format(out=out) for a in args]
    killed = cli(paths.home, "export", *args, fault=fault)
    assert killed.returncode == KILLED
    written = sorted(p for p in out.rglob("*") if p.is_file()) if out.exists() else []
    # Only whole GGUFs under their final names; a killed one leaves at most its hidden
    # temporary, which the next export sweeps.
    visible = [p for p in written if not p.name.startswith(".")]
    assert all(complete_gguf(p) for p in visible)
    assert len(visible) == (1 if fault == "export.adapter_written" else 0)
    assert rows(paths.journal) == before and integrity(paths.journal) == "ok"
    assert all(expert_complete(f) for f in in_use(paths)["experts"].values())

    again = cli(paths.home, "export", *args, "--force")
    assert again.returncode == 0, again.stderr
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert written and all(complete_gguf(p) and not p.name.startswith(".") for p in written)
