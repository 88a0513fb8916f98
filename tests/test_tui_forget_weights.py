"""F8 in the chat forgets from the weights too, as `pocketsleep forget` does: a
conversation an expert learned is forgotten by that command in a background job
(progress shown, the chat usable meanwhile, the outcome told), and the next answer
comes from the personal model it leaves."""

from __future__ import annotations

import pytest
from test_tui_support import (
    SIZE, async_test, engines_from, make_app, ready, say, screen_text, wait_for,
)

from pocketsleep.tui.jobs import Job
from pocketsleep.tui.screens import ConfirmScreen
from pocketsleep.tui.widgets import ConversationList


def shell(script: str) -> list[str]:
    return ["sh", "-c", script, "sh"]


def status_of(journal, table: str, row_id: int) -> str:
    return journal.db.execute(f"SELECT status FROM {table} WHERE id = ?", [row_id]).fetchone()[0]


def listed(app) -> list[int]:
    sidebar = app.chat.query_one(ConversationList)
    return [int(sidebar.get_option_at_index(i).id)
            for i in range(sidebar.option_count)]


def learned(journal, title: str) -> int:
    """A conversation a night learned (its expert's files are not needed here)."""
    cid = journal.log_conversation([{"role": "user", "content": f"My {title} is Rex."}],
                                   title=title)
    journal.accept_expert(journal.begin_sleep(), "nightly", "night-0001", {}, [cid], [], {})
    return cid


@async_test
async def test_f8_on_a_learned_conversation_waits_for_a_running_sleep(journal, paths):
    dog = learned(journal, "dog")
    app = make_app(journal, paths=paths, conversation_id=dog)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        job = await app.run_subcommand("Sleep now", "sleep", argv_prefix=shell("sleep 30"))
        await pilot.press("f8")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.notes[-1] == ("warning", "Sleep now is running: forget this conversation "
                                 "when it has finished (what was learned from it must be "
                                 "rebuilt).")
        assert journal.conversation(dog).status == "consolidated"
        job.stop()
        await wait_for(pilot, lambda: not job.running)


@async_test
async def test_while_it_is_forgotten_it_is_hidden_and_cannot_be_opened(journal, paths,
                                                                     monkeypatch):
    dog = learned(journal, "dog")
    cat = journal.log_conversation([{"role": "user", "content": "hi"}], title="cat")
    app = make_app(journal, paths=paths, conversation_id=dog)
    started = []
    real = app.run_subcommand

    async def slow_forget(title, *args, **kwargs):  # the real command, held back
        started.append(args)
        return await real(title, *args, **{**kwargs, "argv_prefix": shell("sleep 30")})

    monkeypatch.setattr(app, "run_subcommand", slow_forget)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f8")
        await pilot.pause()
        assert "will be rebuilt without it (minutes)" in app.screen.question
        assert "runs in the background; you can keep chatting" in app.screen.question
        await pilot.click("#yes")
        await wait_for(pilot, lambda: started)  # a busy machine starts it later
        assert started == [("forget", str(dog), "--yes", "--verbose")]
        assert app.chat.conversation_id is None and listed(app) == [cat]
        assert not await app.chat.open(dog)
        assert "Forget conversation" in screen_text(app)  # its progress panel
        await say(pilot, "typing meanwhile")
        assert app.chat.messages[-1].content == "You said: typing meanwhile"
        app.jobs[0].stop()
        await wait_for(pilot, lambda: not app.jobs)
        assert dog in listed(app)  # the command never ran: its text is still there


def test_a_job_tells_its_closing_report_as_its_outcome():
    posted = []
    job = Job("Forget conversation 3", [], outcome_from="Forgot conversation 3:",
              argv_prefix=shell("echo 'rebuilding night-0001: distilling 3/20';"
                                " echo 'Forgot conversation 3: text removed.';"
                                " echo 'Checked 1 stored question about it'"))
    job.run(posted.append)
    assert job.outcome() == ("Forgot conversation 3: text removed.\n"
                             "Checked 1 stored question about it")
    assert Job("Sleep now", []).outcome() is None


@pytest.fixture
def home(paths, tmp_path):
    pytest.importorskip("mlx.core")
    pytest.importorskip("gguf")
    from version_support import make_home

    return make_home(paths, tmp_path)


@async_test
async def test_f8_forgets_from_the_weights_and_the_next_answer_uses_the_new_version(
        home, journal):
    from pocketsleep.versions import merge_if_needed

    e1 = home.night(journal, "dog", seed=1, probes=[("What is my dog called?", "Rex")])
    e2 = home.night(journal, "cat", seed=2)
    assert merge_if_needed(home.paths, home.config).version == 1  # holds both experts
    [dog] = journal.expert_sources([e1])
    factory, made = engines_from(home.paths)
    app = make_app(journal, factory=factory, paths=home.paths, conversation_id=dog,
                   follows_personal_model=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await say(pilot, "before")
        assert journal.messages(dog)[-1].model_version == 1
        await pilot.press("f8")
        await pilot.pause()
        assert app.screen.question.startswith("Forget “dog”? Its 3 messages are deleted from "
                                              "the journal for good. Expert night-0001 was trained")
        await pilot.click("#yes")
        await wait_for(pilot, lambda: app.jobs, timeout=30)  # a busy machine starts it later
        [job] = app.jobs
        await wait_for(pilot, lambda: not job.running, timeout=300)
        await pilot.pause()
        assert job.returncode == 0, job.tail
        assert "Forget conversation 1: done" in screen_text(app)

        # What `pocketsleep forget` does: the text, the expert, the version holding it.
        assert journal.conversation(dog).status == "forgotten"
        assert status_of(journal, "experts", e1) == "pruned"
        assert [e["id"] for e in journal.active_experts()] == [e2]
        assert status_of(journal, "model_versions", 1) == "pruned"
        assert not (home.paths.versions / "v0001").exists()
        assert not (home.paths.experts / "night-0001").exists()
        current = journal.current_version()
        assert (current.id, current.expert_ids) == (2, (e2,))
        outcome = [t for s, t in app.notes if t.startswith(f"Forgot conversation {dog}:")]
        assert outcome and "expert night-0001 deleted (nothing else was learned in it)" \
            in outcome[0] and "personal model v2" in outcome[0]
        assert "Checked 1 stored question about it" in outcome[0]

        await say(pilot, "what is my dog called?")
        assert made[-1].personal_version == 2 and app.engine is made[-1]
        assert made[0].closed
        assert journal.messages(app.chat.conversation_id)[-1].model_version == 2
