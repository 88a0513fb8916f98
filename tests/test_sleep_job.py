"""One night's sleep end to end on a tiny random GGUF: what it writes, what it
records, and what it leaves alone when it is rejected, fails or is killed."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mlx.core")
pytest.importorskip("gguf")

from sleep_support import (  # noqa: E402
    FAST, PRIVATE, SECRET, learnable_self_study, log_day, tiny_model)

from pocketsleep.config import Config  # noqa: E402
from pocketsleep.errors import PocketsleepError  # noqa: E402
from pocketsleep.sleep import job, run_sleep  # noqa: E402


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(model=str(tiny_model(tmp_path)))


def sources(journal, expert_id) -> list[int]:
    return [r["conversation_id"] for r in journal.db.query(
        "SELECT conversation_id FROM expert_sources WHERE expert_id = ? ORDER BY 1",
        [expert_id])]


def statuses(journal) -> dict[int, str]:
    return {c.id: c.status for c in journal.conversations()}


def expert_folders(paths) -> list[str]:
    return sorted(p.name for p in paths.experts.iterdir()) if paths.experts.exists() else []


def test_a_night_learns_the_pending_conversations_into_a_new_expert(
        paths, journal, config, monkeypatch):
    learnable_self_study(monkeypatch)
    day = log_day(journal)
    private = journal.log_conversation(PRIVATE, private=True)
    phases = []
    options = FAST.but(heldout_fraction=1.0)  # every statement question becomes a probe
    report = run_sleep(paths, config, options, progress=lambda p, s, t: phases.append(p))

    assert report.status == "succeeded", report.reasons
    assert report.conversations == day and report.reasons == []
    assert report.sleep_id is not None and report.expert_id is not None
    assert report.seconds > 0
    assert phases[0] == "writing questions" and phases[-1] == "saving expert"
    assert "distilling" in phases and "gate" in phases

    # The expert: an mlx-lm adapter folder, plus a GGUF LoRA since the base is a GGUF.
    folder = paths.experts / "night-0001"
    assert expert_folders(paths) == ["night-0001"]  # no temporary folder left behind
    assert {f.name for f in folder.iterdir()} == {
        "adapter_config.json", "adapters.safetensors", "adapter.gguf"}
    cfg = json.loads((folder / "adapter_config.json").read_text())
    assert cfg["num_layers"] == 1 and cfg["sleep_id"] == report.sleep_id
    assert cfg["lora_parameters"]["rank"] == 2 and cfg["base_model"] == config.model
    import mlx.core as mx

    weights = mx.load(str(folder / "adapters.safetensors"))
    assert len(weights) == 2 * len(options.keys)  # one block, A and B per projection
    assert all(k.startswith("model.layers.1.") for k in weights)  # the top block of two
    assert any(mx.abs(w).max().item() > 0 for k, w in weights.items() if k.endswith("lora_b"))

    # The journal: one transaction recorded everything.
    [expert] = journal.active_experts()
    assert expert["id"] == report.expert_id and expert["path"] == "night-0001"
    assert expert["level"] == "nightly" and expert["sleep_id"] == report.sleep_id
    assert paths.expert_folder(expert["path"]) == folder
    assert sources(journal, report.expert_id) == day
    assert statuses(journal) == {day[0]: "consolidated", day[1]: "consolidated",
                                 private: "pending"}
    probes = journal.active_probes()
    assert [q for q, _ in probes] == [f"What did I tell you in statement {i}?" for i in range(3)]
    sleep = journal.last_sleep()
    assert (sleep.id, sleep.status, sleep.error) == (report.sleep_id, "succeeded", None)
    assert sleep.ended_at is not None
    m = sleep.metrics
    assert m["conversations"] == day
    assert m["examples"]["heldout"] == 3 + 2  # statement questions and anchors
    assert m["distill"]["steps"] == 2
    assert "off_policy" in m["distill"]["loss_last_quarter"]
    assert "on_policy" in m["distill"]["loss_last_quarter"]  # recall examples are learnable
    assert set(m["gate"]) >= {"before", "after", "drift_kl", "ppl_change"}
    assert m["options"]["steps"] == 2 and m["options"]["gate"] is False


def test_the_expert_loads_onto_the_base_model(paths, journal, config):
    log_day(journal)
    report = run_sleep(paths, config, FAST)
    assert report.status == "succeeded"
    from pocketsleep.backends import mlx_lora
    from pocketsleep.backends.mlx_engine import MlxEngine
    from pocketsleep.models import resolve_model

    engine = MlxEngine.load(resolve_model(config.model, paths), paths)
    assert mlx_lora.attach(engine.model, paths.experts / "night-0001") == len(FAST.keys)


def test_a_private_conversation_never_reaches_the_model(paths, journal, config, monkeypatch):
    from pocketsleep.sleep import questions, selfstudy

    learnable_self_study(monkeypatch)
    seen: list[str] = []
    chat_ids, text_ids = selfstudy.ModelIO.chat_ids, selfstudy.ModelIO.text_ids

    def record_chat(self, messages):
        seen.append(json.dumps(messages))
        return chat_ids(self, messages)

    def record_text(self, text):
        seen.append(text)
        return text_ids(self, text)

    monkeypatch.setattr(selfstudy.ModelIO, "chat_ids", record_chat)
    monkeypatch.setattr(selfstudy.ModelIO, "text_ids", record_text)
    # Every prompt the model runs, decoded (self-study's generation goes through
    # generate_batch, in selfstudy and in the question writers).
    decoded: list[str] = []
    real_batch = selfstudy.generate_batch

    def record_batch(model, prompts, *a, **k):
        tok = record_batch.tokenizer
        decoded.extend(tok.decode(p) for p in prompts)
        return real_batch(model, prompts, *a, **k)

    real_init = selfstudy.ModelIO.__init__

    def init(self, model, tokenizer):
        record_batch.tokenizer = tokenizer
        real_init(self, model, tokenizer)

    monkeypatch.setattr(selfstudy.ModelIO, "__init__", init)
    monkeypatch.setattr(selfstudy, "generate_batch", record_batch)
    monkeypatch.setattr(questions, "generate_batch", record_batch)

    private_before = journal.log_conversation(PRIVATE, private=True)
    day = log_day(journal)
    private_after = journal.log_conversation(PRIVATE, title="later private")
    journal.set_private(private_after)
    report = run_sleep(paths, config, FAST.but(heldout_fraction=1.0))

    assert report.status == "succeeded"
    assert report.conversations == day
    assert seen and decoded
    # The day's text reached the model (so the recording works) and the secret did not.
    assert any("Biscuit" in s for s in seen) and any("Biscuit" in s for s in decoded)
    assert not any(SECRET in s for s in seen + decoded)
    assert not any("vault" in s for s in seen + decoded)
    assert sources(journal, report.expert_id) == day
    assert statuses(journal)[private_before] == statuses(journal)[private_after] == "pending"
    assert all(SECRET not in a and SECRET not in q for q, a in journal.active_probes())
    assert SECRET not in json.dumps(journal.last_sleep().metrics)


def test_the_transcript_term_trains_on_tonights_conversations_only(
        paths, journal, config, monkeypatch):
    from pocketsleep.sleep import transcript

    learnable_self_study(monkeypatch)
    said: list[str] = []
    real = transcript.episode_transcripts

    def spy(tokenizer, conversations):
        out = real(tokenizer, conversations)
        said.extend(tokenizer.decode(ids) for ids in out)
        return out

    monkeypatch.setattr(transcript, "episode_transcripts", spy)
    private = journal.log_conversation(PRIVATE, private=True)
    day = log_day(journal)
    report = run_sleep(paths, config, FAST.but(steps=4, transcript_weight=1.0,
                                               transcript_every=2))
    assert report.status == "succeeded", report.reasons
    assert len(said) == len(day) and any("Biscuit" in s for s in said)
    assert not any(SECRET in s for s in said)
    distilled = journal.last_sleep().metrics["distill"]
    assert set(distilled["loss_first_quarter"]) >= {"off_policy", "transcript"}
    assert statuses(journal)[private] == "pending"
    # Off by default: the night never renders its transcripts.
    said.clear()
    log_day(journal)
    assert run_sleep(paths, config, FAST).status == "succeeded" and said == []


def test_nothing_pending_is_nothing_to_learn(paths, journal, config):
    journal.log_conversation(PRIVATE, private=True)
    report = run_sleep(paths, config, FAST)
    assert report.status == "nothing to learn"
    assert report.sleep_id is None and report.conversations == []
    assert journal.sleeps() == []
    assert expert_folders(paths) == []


def test_a_dry_run_says_what_it_would_learn_and_writes_nothing(paths, journal, config):
    day = log_day(journal)
    report = run_sleep(paths, config, FAST, dry_run=True)
    assert report.status == "dry run"
    assert report.conversations == day
    assert report.metrics["statements"] == 3
    assert report.metrics["episode_tokens_estimate"] > 0
    assert journal.sleeps() == []
    assert expert_folders(paths) == []
    assert not paths.models.exists()  # the model was not even loaded (converted)
    assert set(statuses(journal).values()) == {"pending"}


def test_a_gate_rejection_keeps_everything_pending(paths, journal, config):
    day = log_day(journal)
    # No drift is small enough: the gate must say no.
    report = run_sleep(paths, config, FAST.but(gate=True, max_drift_kl=-1.0))
    assert report.status == "rejected"
    assert report.expert_id is None and report.conversations == day
    assert any("generic answers drifted" in r for r in report.reasons)
    assert expert_folders(paths) == []
    assert journal.active_experts() == [] and journal.active_probes() == []
    assert set(statuses(journal).values()) == {"pending"}
    sleep = journal.last_sleep()
    assert sleep.status == "rejected" and sleep.ended_at is not None
    assert "generic answers drifted" in sleep.error
    assert sleep.error == "; ".join(report.reasons)
    assert sleep.metrics["gate_reasons"] == report.reasons
    assert sleep.metrics["distill"]["steps"] == 2

    # The same night with the gate off keeps the expert.
    again = run_sleep(paths, config, FAST.but(max_drift_kl=-1.0))
    assert again.status == "succeeded" and again.metrics["gate_reasons"]
    assert expert_folders(paths) == [f"night-{again.sleep_id:04d}"]


def test_a_gate_rejection_by_check(paths, journal, config, monkeypatch):
    from pocketsleep.sleep import gate

    log_day(journal)
    monkeypatch.setattr(gate, "check", lambda *a, **k: gate.GateResult(False, ["no good"], {}))
    report = run_sleep(paths, config, FAST.but(gate=True))
    assert (report.status, report.reasons) == ("rejected", ["no good"])
    assert journal.last_sleep().error == "no good"
    assert expert_folders(paths) == []


def test_a_failure_mid_sleep_is_recorded_and_the_next_sleep_works(
        paths, journal, config, monkeypatch):
    from pocketsleep.sleep import distill

    day = log_day(journal)

    def boom(*a, **k):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(distill, "distill", boom)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_sleep(paths, config, FAST)
    failed = journal.last_sleep()
    assert failed.status == "failed" and failed.ended_at is not None
    assert failed.error == "RuntimeError: out of memory, say"
    assert set(statuses(journal).values()) == {"pending"}
    assert expert_folders(paths) == []
    assert journal.active_experts() == []

    monkeypatch.undo()
    report = run_sleep(paths, config, FAST)
    assert report.status == "succeeded" and report.conversations == day
    assert [s.status for s in journal.sleeps()] == ["succeeded", "failed"]
    assert expert_folders(paths) == [f"night-{report.sleep_id:04d}"]


def test_a_failure_while_writing_the_expert_leaves_no_folder(paths, journal, config, monkeypatch):
    from pocketsleep.backends import gguf_lora

    log_day(journal)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(gguf_lora, "write_expert_gguf", boom)
    with pytest.raises(OSError, match="disk full"):
        run_sleep(paths, config, FAST)
    assert journal.last_sleep().status == "failed"
    assert expert_folders(paths) == []  # not even a half-written temporary one
    assert journal.active_experts() == []
    assert set(statuses(journal).values()) == {"pending"}

    monkeypatch.undo()
    (paths.experts / ".tmp-night-0099").mkdir()  # as a sleep killed while writing leaves it
    (paths.experts / ".tmp-night-0099" / "adapters.safetensors").write_bytes(b"half")
    report = run_sleep(paths, config, FAST)
    assert report.status == "succeeded"
    assert expert_folders(paths) == [f"night-{report.sleep_id:04d}"]  # swept


def test_ctrl_c_marks_the_sleep_interrupted(paths, journal, config, monkeypatch):
    from pocketsleep.sleep import distill

    log_day(journal)

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(distill, "distill", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_sleep(paths, config, FAST)
    assert journal.last_sleep().status == "interrupted"
    assert set(statuses(journal).values()) == {"pending"}


def test_a_killed_sleep_is_marked_interrupted_by_the_next(paths, journal, config):
    log_day(journal)
    killed = journal.begin_sleep()  # as a SIGKILLed sleep leaves it: still 'running'
    assert journal.last_sleep().status == "running"
    report = run_sleep(paths, config, FAST)
    assert report.status == "succeeded" and report.sleep_id == killed + 1
    rows = {s.id: s for s in journal.sleeps()}
    assert rows[killed].status == "interrupted" and rows[killed].ended_at is not None
    assert "stopped before it finished" in rows[killed].error
    assert rows[report.sleep_id].status == "succeeded"


def test_a_second_sleep_at_the_same_time_is_refused(paths, journal, config):
    log_day(journal)
    with job.sleep_lock(paths):
        with pytest.raises(PocketsleepError, match="another sleep is already running"):
            run_sleep(paths, config, FAST)
        with pytest.raises(PocketsleepError, match="another sleep is already running"):
            run_sleep(paths, config, FAST, dry_run=True)
    assert journal.sleeps() == []
    assert set(statuses(journal).values()) == {"pending"}
    # The lock is free again once the holder is done.
    assert run_sleep(paths, config, FAST, dry_run=True).status == "dry run"


@pytest.mark.parametrize("gate_on", [True, False])
def test_a_budget_spent_before_training_learns_nothing_and_keeps_the_day(
        paths, journal, config, gate_on):
    log_day(journal)
    # 1 s minus the time kept for the gate: no time for a single step.
    report = run_sleep(paths, config, FAST.but(budget_seconds=1, gate=gate_on))
    assert report.metrics["distill"]["stopped_by_budget"] is True
    assert report.metrics["distill"]["steps"] == 0
    # An untrained expert is all zeros: nothing to keep, even with the gate off.
    assert report.status == "rejected"
    assert any("no distillation step ran" in r for r in report.reasons)
    assert set(statuses(journal).values()) == {"pending"}
    assert expert_folders(paths) == [] and journal.active_experts() == []


def test_a_day_longer_than_the_budget_learns_its_first_conversations_and_defers_the_rest(
        paths, journal, config, monkeypatch):
    learnable_self_study(monkeypatch)
    day = log_day(journal)
    # Self-study's share of the budget spent at once: it finishes the conversation it
    # is on and stops; training has the rest of a long budget.
    monkeypatch.setattr(job, "SELF_STUDY_SHARE", 0.0)
    options = FAST.but(budget_seconds=3600, heldout_fraction=1.0)
    report = run_sleep(paths, config, options)

    assert report.status == "succeeded", report.reasons
    assert report.conversations == day[:1] and report.metrics["deferred"] == day[1:]
    assert report.metrics["distill"]["steps"] == options.steps
    assert sources(journal, report.expert_id) == day[:1]
    assert statuses(journal) == {day[0]: "consolidated", day[1]: "pending"}
    probe_sources = {r["conversation_id"] for r in journal.db.query(
        "SELECT conversation_id FROM probes WHERE kind = 'heldout'")}
    assert probe_sources == {day[0]}  # nothing was studied from the deferred one

    # The next night takes up where this one stopped.
    second = run_sleep(paths, config, options)
    assert second.status == "succeeded", second.reasons
    assert second.conversations == day[1:] and second.metrics["deferred"] == []
    assert set(statuses(journal).values()) == {"consolidated"}


def test_without_a_budget_the_whole_day_is_studied_in_one_batch(
        paths, journal, config, monkeypatch):
    from pocketsleep.sleep import selfstudy

    learnable_self_study(monkeypatch)
    day = log_day(journal)
    calls = []
    real = selfstudy.episode_examples
    monkeypatch.setattr(selfstudy, "episode_examples", lambda io, t, episode, *a, **k: (
        calls.append(episode.conversation_ids), real(io, t, episode, *a, **k))[1])
    report = run_sleep(paths, config, FAST)
    assert report.status == "succeeded" and report.metrics["deferred"] == []
    assert calls == [tuple(day)]


def test_no_usable_examples_learn_nothing(paths, journal, config, monkeypatch):
    from pocketsleep.sleep import selfstudy

    log_day(journal)
    monkeypatch.setattr(selfstudy, "split_heldout", lambda examples, options, rng: ([], []))
    report = run_sleep(paths, config, FAST.but(gate=True))
    assert report.status == "rejected" and report.metrics["examples"] == {"train": 0,
                                                                          "heldout": 0}
    assert any("no distillation step ran" in r for r in report.reasons)
    assert set(statuses(journal).values()) == {"pending"}


def test_the_second_night_wears_the_first_expert_and_adds_its_own(
        paths, journal, config, monkeypatch):
    from pocketsleep.backends import mlx_lora
    from pocketsleep.sleep import gate

    learnable_self_study(monkeypatch)
    options = FAST.but(heldout_fraction=1.0)
    first_day = log_day(journal)
    first = run_sleep(paths, config, options)
    assert first.status == "succeeded"
    first_probes = journal.active_probes()
    assert first_probes
    first_weights = (paths.experts / "night-0001" / "adapters.safetensors").read_bytes()

    attached, earlier = [], []
    real_attach, real_check = mlx_lora.attach, gate.check

    def attach(model, path, *a, **k):
        attached.append(path)
        return real_attach(model, path, *a, **k)

    def check(io, heldout, anchors, probes, opts, **kwargs):
        earlier.append(list(probes))
        return real_check(io, heldout, anchors, probes, opts, **kwargs)

    monkeypatch.setattr(mlx_lora, "attach", attach)
    monkeypatch.setattr(gate, "check", check)
    second_day = log_day(journal, [[{"role": "user", "content": "I started learning the cello."}]])
    second = run_sleep(paths, config, options)

    assert second.status == "succeeded" and second.conversations == second_day
    assert attached == [paths.experts / "night-0001"]
    assert earlier == [first_probes]  # the gate checks that old probes do not regress
    assert [e["id"] for e in journal.active_experts()] == [first.expert_id, second.expert_id]
    assert expert_folders(paths) == ["night-0001", "night-0002"]
    assert sources(journal, first.expert_id) == first_day
    assert sources(journal, second.expert_id) == second_day
    # Tonight's expert is saved alone: yesterday's is unchanged and not folded in.
    assert (paths.experts / "night-0001" / "adapters.safetensors").read_bytes() == first_weights
    assert len(journal.active_probes()) > len(first_probes)
    assert set(statuses(journal).values()) == {"consolidated"}


def test_a_night_stores_rehearsal_questions_that_the_next_night_holds_but_does_not_check(
        paths, journal, config, monkeypatch):
    """rehearsal_questions: some of the questions a night trained on are stored with
    its expert; the next night anchors them beside the held-out probes, and its gate
    checks the held-out probes alone."""
    from pocketsleep.sleep import gate, selfstudy

    learnable_self_study(monkeypatch)
    options = FAST.but(heldout_fraction=0.5, rehearsal_questions=8)
    log_day(journal)
    trained = []
    real_study = selfstudy.study

    def study(*args, **kwargs):
        episode, train, heldout = real_study(*args, **kwargs)
        trained.extend({e.question for e in train if e.kind == "statement"})
        return episode, train, heldout

    monkeypatch.setattr(selfstudy, "study", study)
    assert run_sleep(paths, config, options).status == "succeeded"
    probes = journal.active_probes()
    rehearsed = journal.active_probes(("rehearsal",))
    assert probes and rehearsed
    assert sorted(q for q, _ in rehearsed) == sorted(trained)  # each trained question once
    assert not {q for q, _ in probes} & {q for q, _ in rehearsed}

    anchored, checked = [], []
    real_anchors, real_check = selfstudy.earlier_anchors, gate.check

    def earlier_anchors(io, earlier, *args, **kwargs):
        anchored.extend(earlier)
        return real_anchors(io, earlier, *args, **kwargs)

    def check(io, heldout, anchors, earlier, *args, **kwargs):
        checked.extend(earlier)
        return real_check(io, heldout, anchors, earlier, *args, **kwargs)

    monkeypatch.setattr(selfstudy, "earlier_anchors", earlier_anchors)
    monkeypatch.setattr(gate, "check", check)
    log_day(journal, [[{"role": "user", "content": "I started learning the cello."}]])
    assert run_sleep(paths, config, options.but(rehearsal_questions=0)).status == "succeeded"
    assert sorted(anchored) == sorted(probes + rehearsed)
    assert checked == probes


@pytest.mark.parametrize("heed", [True, False])
def test_a_night_that_takes_something_back_neither_holds_nor_guards_it_and_retires_it(
        paths, journal, config, monkeypatch, heed):
    """sleep/updates.py: day 2 says a word of night 1's first stored answer is not so.
    Night 2 neither anchors the probes whose answers say it nor lets the gate check
    them, and, kept, retires them, so later nights no longer see them. With
    heed_negations off they are held and checked as before."""
    from pocketsleep.sleep import gate, selfstudy, updates
    from pocketsleep.sleep.words import stated_words

    learnable_self_study(monkeypatch)
    options = FAST.but(heldout_fraction=1.0, heed_negations=heed)
    log_day(journal)
    assert run_sleep(paths, config, options).status == "succeeded"
    first_probes = journal.active_probes()
    word = sorted(stated_words(first_probes[0][1]))[0]
    gone = updates.superseded(first_probes, {word})
    assert gone  # the first probe at least
    kept = [p for p in first_probes if p not in gone]

    anchored, checked = [], []
    real_anchors, real_check = selfstudy.earlier_anchors, gate.check

    def earlier_anchors(io, earlier, *args, **kwargs):
        anchored.append(list(earlier))
        return real_anchors(io, earlier, *args, **kwargs)

    def check(io, heldout, anchors, earlier, *args, **kwargs):
        checked.append(list(earlier))
        return real_check(io, heldout, anchors, earlier, *args, **kwargs)

    monkeypatch.setattr(selfstudy, "earlier_anchors", earlier_anchors)
    monkeypatch.setattr(gate, "check", check)
    log_day(journal, [[{"role": "user", "content": f"Sorry, that is not {word} at all."}]])
    second = run_sleep(paths, config, options)
    assert second.status == "succeeded"
    now = set(journal.active_probes())
    if heed:
        assert anchored == [kept] and checked == [kept]
        assert second.metrics["superseded"] == [q for q, _ in gone]
        assert not set(gone) & now and set(kept) <= now
    else:
        assert anchored == [first_probes] and checked == [first_probes]
        assert second.metrics["superseded"] == []
        assert set(first_probes) <= now


def test_rehearsal_set_takes_the_statements_in_turn():
    from types import SimpleNamespace as Ex

    def ex(statement, question, kind="statement", tokens=(1,)):
        return Ex(kind=kind, statement=statement, question=question,
                  answer=Ex(tokens=list(tokens)))

    train = [ex("a", "A1?"), ex("a", "A1?"), ex("a", "A2?"), ex("a", "A3?"),
             ex("b", "B1?"), ex("b", "B2?", tokens=()), ex(None, "Recall?", kind="recall"),
             ex(None, "Anchor?", kind="anchor"), ex("c", "C1?")]
    assert [e.question for e in job.rehearsal_set(train, 4)] == ["A1?", "B1?", "C1?", "A2?"]
    assert [e.question for e in job.rehearsal_set(train, 10)] == ["A1?", "B1?", "C1?", "A2?", "A3?"]
    assert job.rehearsal_set(train, 0) == []


def test_earlier_anchors_reread_the_conversations_the_journal_still_holds(
        paths, journal, config, monkeypatch):
    """earlier_anchor_targets="conversation": the second night's anchors for night 1's
    probes are scored by the teacher reading the conversation each was written from."""
    from pocketsleep import prompts
    from pocketsleep.sleep import selfstudy

    learnable_self_study(monkeypatch)
    options = FAST.but(heldout_fraction=1.0, earlier_anchor_targets="conversation")
    first_day = log_day(journal)
    assert run_sleep(paths, config, options).status == "succeeded"
    written_from = journal.probe_conversations()
    assert written_from and set(written_from.values()) <= set(first_day)
    made = []
    real = selfstudy.earlier_anchors

    def earlier_anchors(io, earlier, opts, teacher=None, sources=None):
        made.extend(real(io, earlier, opts, teacher, sources))
        return made[:]

    monkeypatch.setattr(selfstudy, "earlier_anchors", earlier_anchors)
    log_day(journal, [[{"role": "user", "content": "I started learning the cello."}]])
    assert run_sleep(paths, config, options).status == "succeeded"

    assert sorted(e.question for e in made) == sorted(q for q, _ in written_from)
    for (question, _), cid in written_from.items():
        [e] = [e for e in made if e.question == question]
        turns = [m for m in journal.turns(cid) if m["role"] != "system"]
        assert e.teacher_messages == prompts.teacher_view(turns, question)


def test_an_earlier_conversation_made_private_while_it_is_reread_keeps_nothing(
        paths, journal, config, monkeypatch):
    """A conversation tonight's teacher rereads for its probes, marked private in the
    chat while the night runs, withdraws the night, as one of tonight's would."""
    from pocketsleep.sleep import selfstudy

    learnable_self_study(monkeypatch)
    options = FAST.but(heldout_fraction=1.0, earlier_anchor_targets="conversation")
    log_day(journal)
    assert run_sleep(paths, config, options).status == "succeeded"
    reread = min(journal.probe_conversations().values())
    real = selfstudy.earlier_anchors

    def earlier_anchors(*args, **kwargs):
        made = real(*args, **kwargs)
        assert any(e.teacher_messages != e.student_messages for e in made)  # it was reread
        journal.set_private(reread)
        return made

    monkeypatch.setattr(selfstudy, "earlier_anchors", earlier_anchors)
    [cello] = log_day(journal, [[{"role": "user", "content": "I started learning the cello."}]])
    night = run_sleep(paths, config, options)

    assert night.status == "rejected"
    assert any(f"conversation {reread} became private" in r for r in night.reasons)
    assert statuses(journal)[cello] == "pending" and len(journal.active_experts()) == 1


def test_a_bare_teacher_reads_the_day_without_the_earlier_experts(
        paths, journal, config, monkeypatch):
    import mlx.core as mx
    import numpy as np

    from pocketsleep.backends.mlx_engine import MlxEngine
    from pocketsleep.models import resolve_model
    from pocketsleep.sleep import selfstudy
    from pocketsleep.sleep.wearing import BareTeacher

    learnable_self_study(monkeypatch)
    log_day(journal)
    assert run_sleep(paths, config, FAST.but(learning_rate=1e-2)).status == "succeeded"
    seen = {}
    real_study = selfstudy.study

    def study(io, teacher, *args, **kwargs):
        ids = mx.array(io.chat_ids([{"role": "user", "content": "Where is my dog?"}]))[None]
        seen.update(teacher=teacher, ids=ids, by_teacher=np.array(teacher.io.model(ids)),
                    by_student=np.array(io.model(ids)))
        return real_study(io, teacher, *args, **kwargs)

    monkeypatch.setattr(selfstudy, "study", study)
    log_day(journal, [[{"role": "user", "content": "I started learning the cello."}]])
    night = run_sleep(paths, config, FAST.but(teacher_wears_experts=False))

    assert night.status == "succeeded"
    assert isinstance(seen["teacher"], BareTeacher)
    base = MlxEngine.load(resolve_model(config.model, paths), paths).model
    np.testing.assert_allclose(seen["by_teacher"], np.array(base(seen["ids"])), atol=1e-5)
    # The student wore night 1's expert all the while.
    assert np.abs(seen["by_student"] - seen["by_teacher"]).max() > 1e-3


def test_a_negative_number_of_rehearsal_questions_is_refused():
    with pytest.raises(ValueError, match="rehearsal_questions"):
        FAST.but(rehearsal_questions=-1)


def test_an_expert_is_recorded_as_rehearsing_what_its_anchors_and_dreams_hold():
    """Basis.rehearsed: the conversations of the earlier probes tonight holds in place
    (the most recent earlier_anchors of them) and of the dreams it rehearsed, unless
    the gate undid dreaming."""
    from pocketsleep.sleep.options import SleepOptions

    probes = [(f"Who is pet {i}?", f"Rex{i}") for i in range(5)]
    basis = job.Basis([], probes, origins={p: [10 + i] for i, p in enumerate(probes)})
    basis.origins[probes[4]] = [14, 3]  # a probe whose conversation is unknown
    three = SleepOptions(earlier_anchors=3)
    assert basis.rehearsed(three, {}) == {12, 13, 14, 3}
    assert basis.rehearsed(SleepOptions(earlier_anchors=0), {}) == set()
    dreamt = {"rehearsed_from": [7, 10]}
    assert basis.rehearsed(three, dreamt) == {7, 10, 12, 13, 14, 3}
    assert basis.rehearsed(three, {**dreamt, "undone": True}) == {12, 13, 14, 3}
    # Rehearsal questions are held beside the probes when stored (Basis.anchored).
    extra = ("Name my pet?", "Rex5")
    basis.anchored, basis.origins[extra] = [*probes, extra], [15]
    assert basis.rehearsed(three, {}) == {13, 14, 3, 15}
