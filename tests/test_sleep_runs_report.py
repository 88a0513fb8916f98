"""`sleep --report` and `status` show consolidations and rebuilds, not only nights:
what each retired or rebuilt into what, and the gate's verdict. Journal rows written
as the consolidation and forget code write them (no model needed)."""

from __future__ import annotations

import json

from pocketsleep.cli import main

# A consolidation gate's figures, as consolidation_gate.check records them.
GATE = {"before": {"kept": {"soft_recall": 0.91, "recalled": 5}},
        "after": {"kept": {"soft_recall": 0.9, "recalled": 5}},
        "drift_kl": 0.012, "ppl_change": 0.003, "probes": 6}


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().out


def night(journal, title: str) -> int:
    cid = journal.log_conversation([{"role": "user", "content": f"My {title} is Rex."}],
                                   title=title)
    sid = journal.begin_sleep()
    return journal.accept_expert(sid, "nightly", f"night-{sid:04d}", {}, [cid], [], {})


def consolidation(journal, retiring: list[int]) -> int:
    sid = journal.begin_sleep("consolidation")
    metrics = {"retiring": retiring, "into": "weekly", "gate": GATE, "gate_reasons": []}
    return journal.accept_consolidation(sid, "weekly", f"weekly-{sid:04d}", {}, retiring, [],
                                        metrics)


def rejected_consolidation(journal, retiring: list[int]) -> None:
    sid = journal.begin_sleep("consolidation")
    why = "soft recall of the retiring experts' probes fell from 0.9 to 0.2"
    journal.end_sleep(sid, "rejected", {"retiring": retiring, "into": "longterm",
                                        "gate": GATE, "gate_reasons": [why]}, error=why)


def rebuild(journal, old: int, forgotten: int, keep: list[int]) -> int:
    """A forget's rebuild that succeeded (as forgetting._rebuild records it)."""
    sid = journal.begin_sleep("rebuild")
    old_path = journal.experts_by_id([old])[0]["path"]
    metrics = {"gate": {"before": {"heldout_logprob": -3.2}, "after": {"heldout_logprob": -1.1},
                        "drift_kl": 0.02, "ppl_change": 0.01},
               "rebuilds": old_path, "forgotten": forgotten}
    return journal.replace_expert(old, sid, f"night-{sid:04d}", {}, keep, [], metrics,
                                  f"held forgotten conversation {forgotten}")


def test_the_report_tells_the_consolidations_after_the_last_night(capsys, journal):
    e1, e2 = night(journal, "dog"), night(journal, "cat")
    consolidation(journal, [e1, e2])  # before the last night: not this night's
    e4 = night(journal, "owl")
    weekly = consolidation(journal, [e4])
    e6 = night(journal, "bee")
    rejected_consolidation(journal, [weekly, e6])

    code, out = run(capsys, "sleep", "--report")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Sleep #6: succeeded, ")  # the last night, as before
    at = next(i for i, line in enumerate(lines) if line.startswith("Consolidation #7: "))
    assert lines[at].startswith("Consolidation #7: rejected, ")
    assert lines[at + 1:] == [
        "  weekly-0005, night-0006 not consolidated into a long-term expert: they stay as"
        " they were",
        "  gate: rejected: soft recall of the retiring experts' probes fell from 0.9 to 0.2"]
    assert "night-0001" not in out  # an older night's consolidation

    journal.begin_sleep()  # a new night, still running: the report is about it
    code, out = run(capsys, "sleep", "--report")
    assert "Consolidation" not in out


def test_a_consolidation_kept_says_what_it_retired_into_what(capsys, journal):
    e1, e2 = night(journal, "dog"), night(journal, "cat")
    consolidation(journal, [e1, e2])

    _, out = run(capsys, "sleep", "--report")

    assert out.splitlines()[-2:] == [
        "  night-0001, night-0002 retired into weekly expert weekly-0003",
        "  gate: passed; their 6 probes recalled 5 → 5, soft recall 0.91 → 0.9; drift KL "
        "0.012; perplexity change 0.003"]
    _, out = run(capsys, "sleep", "--report", "--json")
    report = json.loads(out)
    assert report["id"] == 2 and report["kind"] == "night"
    [c] = report["consolidations"]
    assert (c["id"], c["status"], c["expert"]) == (3, "succeeded", {
        "id": 3, "path": "weekly-0003", "level": "weekly"})
    assert c["summary"] == "night-0001, night-0002 retired into weekly expert weekly-0003"
    assert report["rebuilds"] == []


def test_the_report_and_status_tell_a_rebuild_after_a_forget(capsys, journal):
    dog = journal.log_conversation([{"role": "user", "content": "My dog is Rex."}])
    cat = journal.log_conversation([{"role": "user", "content": "My cat is Tom."}])
    sid = journal.begin_sleep()
    e1 = journal.accept_expert(sid, "nightly", "night-0001", {}, [dog, cat], [], {})
    journal.forget(dog)
    rebuild(journal, e1, dog, [cat])

    _, out = run(capsys, "sleep", "--report")
    assert out.splitlines()[-3:] == [
        out.splitlines()[-3],  # the heading, with its times
        f"  after forgetting conversation {dog}: night-0001 rebuilt without it as night-0002",
        "  gate: passed; held-out log-prob -3.2 → -1.1; drift KL 0.02; perplexity change 0.01"]
    assert out.splitlines()[-3].startswith("Rebuild #2: succeeded, ")

    code, out = run(capsys, "status")
    assert code == 0
    [line] = [x for x in out.splitlines() if x.startswith("rebuild ")]
    assert line.endswith(f" succeeded: after forgetting conversation {dog}: night-0001 "
                         "rebuilt without it as night-0002")
    assert not any(x.startswith("consolidation ") for x in out.splitlines())
    info = json.loads(run(capsys, "status", "--json")[1])
    assert info["last_rebuild"]["id"] == 2 and info["last_consolidation"] is None


def test_status_tells_the_last_consolidation_and_its_verdict(capsys, journal):
    e1, e2 = night(journal, "dog"), night(journal, "cat")
    consolidation(journal, [e1, e2])
    rejected_consolidation(journal, [3])

    _, out = run(capsys, "status")

    [line] = [x for x in out.splitlines() if x.startswith("consolidation ")]
    assert line.startswith("consolidation  #4 ")
    assert line.endswith(" rejected: weekly-0003 not consolidated into a long-term expert: "
                         "they stay as they were (soft recall of the retiring experts' "
                         "probes fell from 0.9 to 0.2)")
    info = json.loads(run(capsys, "status", "--json")[1])
    assert info["last_consolidation"]["status"] == "rejected"
    assert info["last_sleep"]["id"] == 2  # still the last night


def test_a_rebuild_that_failed_or_was_rejected_says_what_follows(capsys, journal):
    dog = journal.log_conversation([{"role": "user", "content": "My dog is Rex."}])
    sid = journal.begin_sleep()
    journal.accept_expert(sid, "nightly", "night-0001", {}, [dog], [], {})
    rid = journal.begin_sleep("rebuild")
    journal.end_sleep(rid, "failed", {"rebuilds": "night-0001", "forgotten": dog},
                      error="OSError: disk full")

    _, out = run(capsys, "sleep", "--report")

    assert out.splitlines()[-2:] == [
        f"  after forgetting conversation {dog}: rebuilding night-0001 stopped (failed); "
        f"`pocketsleep forget {dog}` again finishes it",
        "  why: OSError: disk full"]

    rid = journal.begin_sleep("rebuild")
    journal.end_sleep(rid, "rejected", {"rebuilds": "night-0001", "forgotten": dog},
                      error="no distillation step ran (no examples)")
    _, out = run(capsys, "sleep", "--report")
    assert out.splitlines()[-2:] == [
        f"  after forgetting conversation {dog}: night-0001 could not be rebuilt without it, "
        "so it was deleted and its other conversations wait for the next sleep",
        "  gate: rejected: no distillation step ran (no examples)"]
