"""Rollback and the storage budget on a tiny random GGUF."""

from __future__ import annotations

import os

import pytest

import pocketsleep.backends  # noqa: F401  (the fast BLAS, before mlx loads)

pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")
pytest.importorskip("gguf")

from version_support import answers, make_home  # noqa: E402

from pocketsleep.errors import ConfigError, InputError  # noqa: E402
from pocketsleep.versions import merge_if_needed, rollback  # noqa: E402
from pocketsleep.versions.storage import disk_use, prune  # noqa: E402


@pytest.fixture
def home(paths, tmp_path):
    return make_home(paths, tmp_path)


def merged(home, journal, title: str, seed: int) -> int:
    """A night, then its morning merge; returns the expert id."""
    eid = home.night(journal, title, seed=seed)
    assert merge_if_needed(home.paths, home.config).status == "merged"
    return eid


def conversation_status(journal, title: str) -> str:
    return next(c.status for c in journal.conversations() if c.title == title)


def test_rollback_restores_the_exact_answers_and_the_experts(home, journal):
    e1 = merged(home, journal, "dog", seed=1)
    v1 = {e: answers(home, e) for e in ("mlx", "llamacpp")}
    e2 = merged(home, journal, "cat", seed=2)
    v2 = {e: answers(home, e) for e in ("mlx", "llamacpp")}
    assert v2 != v1  # the second night changed the model

    report = rollback(home.paths, home.config, 1)
    assert (report.version, report.replaced) == (1, 2)
    assert (report.switched_off, report.switched_on) == ([e2], [])
    assert {e: answers(home, e) for e in ("mlx", "llamacpp")} == v1  # exactly
    assert [r["id"] for r in journal.active_experts()] == [e1]
    assert [(v.id, v.status) for v in journal.versions()] == [(2, "previous"), (1, "current")]
    assert conversation_status(journal, "cat") == "pending"  # learned again next night
    assert conversation_status(journal, "dog") == "consolidated"

    # Undo the rollback: v2's answers and experts come back.
    report = rollback(home.paths, home.config, 2)
    assert report.switched_on == [e2]
    assert {e: answers(home, e) for e in ("mlx", "llamacpp")} == v2
    assert conversation_status(journal, "cat") == "consolidated"


def test_a_sleep_after_a_rollback_learns_the_reopened_conversations(home, journal, monkeypatch):
    from sleep_support import FAST, learnable_self_study

    from pocketsleep.sleep import run_sleep

    learnable_self_study(monkeypatch)
    e1 = merged(home, journal, "dog", seed=1)
    merged(home, journal, "cat", seed=2)
    rollback(home.paths, home.config, 1)

    report = run_sleep(home.paths, home.config, FAST.but(steps=1))
    cat = next(c.id for c in journal.conversations() if c.title == "cat")
    assert report.status == "succeeded" and report.conversations == [cat]
    after = merge_if_needed(home.paths, home.config)
    assert after.status == "merged" and after.experts == [e1, report.expert_id]
    assert conversation_status(journal, "cat") == "consolidated"


def test_pruning_keeps_the_current_version_and_the_configured_number_before_it(home, journal):
    home.with_config(keep_versions=1)
    for n, title in enumerate(("dog", "cat", "bird"), start=1):
        merged(home, journal, title, seed=n)
    assert [(v.id, v.status) for v in journal.versions()] == [
        (3, "current"), (2, "previous"), (1, "pruned")]
    assert "1 earlier versions are kept" in journal.version(1).notes
    assert sorted(os.listdir(home.paths.versions)) == ["v0002", "v0003"]
    assert len(journal.experts("active")) == 3  # worn experts are never pruned
    assert all(home.paths.expert_folder(r["path"]).is_dir() for r in journal.active_experts())
    with pytest.raises(InputError, match="v1 was pruned to save space"):
        rollback(home.paths, home.config, 1)


def test_experts_only_a_pruned_or_no_version_held_are_deleted(home, journal):
    home.with_config(keep_versions=1)
    merged(home, journal, "dog", seed=1)
    e2 = merged(home, journal, "cat", seed=2)
    e3 = home.night(journal, "bird", seed=3)  # slept, never merged
    rollback(home.paths, home.config, 1)
    # e2 is off but v2 (kept) holds it; e3 no version holds: its files go.
    assert [r["id"] for r in journal.experts("rejected")] == [e2]
    assert [r["id"] for r in journal.experts("pruned")] == [e3]
    assert not (home.paths.experts / "night-0003").exists()
    assert (home.paths.experts / "night-0002").is_dir()

    merged(home, journal, "fish", seed=4)  # v3 current; v2 stays (newest earlier), v1 goes
    merged(home, journal, "frog", seed=5)  # v4 current, v3 stays; v2 goes, and e2 with it
    assert [(v.id, v.status) for v in journal.versions()][:2] == [(4, "current"), (3, "previous")]
    assert journal.version(2).status == "pruned"
    assert [r["id"] for r in journal.experts("pruned")] == [e2, e3]
    assert not (home.paths.experts / "night-0002").exists()


def test_keep_versions_must_not_be_negative(home, journal):
    with pytest.raises(ConfigError, match="keep_versions must be 0 or more"):
        prune(journal, home.paths, -1)


def test_disk_use_by_kind(home, journal):
    merged(home, journal, "dog", seed=1)
    use = disk_use(home.paths)
    assert use["versions"] > 0 and use["experts"] > 0 and use["journal"] > 0
    assert use["model_cache"] > 0  # the GGUF converted to MLX once, for the merge
    assert use["total"] == sum(v for k, v in use.items() if k != "total")


def test_merges_and_rollbacks_never_overlap_and_rollback_waits_for_no_sleep(home, journal):
    from pocketsleep.errors import Busy
    from pocketsleep.sleep.job import sleep_lock
    from pocketsleep.versions.lock import merge_lock

    merged(home, journal, "dog", seed=1)
    home.night(journal, "cat", seed=2)
    with merge_lock(home.paths):  # another process merging
        busy = merge_if_needed(home.paths, home.config)
        assert busy.status == "busy" and "another merge or rollback" in busy.summary()
        with pytest.raises(Busy, match="another merge or rollback"):
            rollback(home.paths, home.config, 1)
    assert merge_if_needed(home.paths, home.config).status == "merged"
    with sleep_lock(home.paths):
        with pytest.raises(Busy, match="a sleep is running; roll back after it has finished"):
            rollback(home.paths, home.config, 1)
    assert journal.current_version().id == 2


def test_rollback_to_a_version_of_another_base_model_is_refused(home, journal):
    merged(home, journal, "dog", seed=1)
    merged(home, journal, "cat", seed=2)
    home.with_config(model="default")  # the user switched base models since
    with pytest.raises(InputError, match="v1 was built on the model '.*tiny.gguf', not on "
                                         "'default'; set model = "):
        rollback(home.paths, home.config, 1)
    assert journal.current_version().id == 2
