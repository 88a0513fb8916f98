"""The chat follows the personal model: a version made while it is open (a nightly
merge, Sleep now, a forget) is loaded before the next answer, never during one, and
every answer records the version that wrote it."""

from __future__ import annotations

from test_tui_support import SIZE, async_test, engines_from, make_app, ready, say, wait_for

from pocketsleep.tui.widgets import StatusBar


def new_version(journal) -> int:
    """A night that learned one conversation, merged into a new current version."""
    cid = journal.log_conversation([{"role": "user", "content": "My dog is Rex."}])
    sid = journal.begin_sleep()
    journal.accept_expert(sid, "nightly", f"night-{sid:04d}", {}, [cid], [], {})
    vid = journal.begin_version("default", [e["id"] for e in journal.active_experts()])
    journal.switch_version(vid, {}, 0)
    return vid


def personal(app) -> str:
    app.chat.refresh_status()
    return app.chat.query_one(StatusBar).info.personal_model


@async_test
async def test_a_version_made_while_open_answers_from_the_next_turn(journal, paths):
    v1 = new_version(journal)
    factory, made = engines_from(paths)
    app = make_app(journal, factory=factory, paths=paths, follows_personal_model=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await say(pilot, "hello")
        cid = app.chat.conversation_id
        assert journal.messages(cid)[-1].model_version == v1
        assert personal(app) == "v1"

        v2 = new_version(journal)  # the nightly job merged, or Sleep now did
        assert personal(app) == "v2 (from the next answer)"
        assert app.engine is made[0] and len(made) == 1  # nothing reloaded between turns

        await say(pilot, "again")
        assert len(made) == 2 and made[0].closed and app.engine is made[1]
        assert made[1].prompts and len(made[0].prompts) == 1  # the new one answered
        answers = [m for m in journal.messages(cid) if m.role == "assistant"]
        assert [m.model_version for m in answers] == [v1, v2]
        assert personal(app) == "v2"
        assert ("information", "Your personal model changed: answering with v2.") in app.notes
        assert "engine 2" in app.engine_label()


@async_test
async def test_a_version_made_during_an_answer_waits_for_the_next_turn(journal, paths):
    v1 = new_version(journal)
    factory, made = engines_from(paths, delay=0.02)
    app = make_app(journal, factory=factory, paths=paths, follows_personal_model=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        made[0].enqueue(" ".join(["word"] * 30))
        await app.chat.send("tell me a long story")
        await wait_for(pilot, lambda: app.chat.generation.parts)
        new_version(journal)  # mid-answer
        await ready(pilot)
        cid = app.chat.conversation_id
        answer = journal.messages(cid)[-1]
        assert answer.content.count("word") == 30 and answer.state == "complete"
        assert answer.model_version == v1 and len(made) == 1 and not made[0].closed

        await say(pilot, "next")
        assert len(made) == 2 and journal.messages(cid)[-1].model_version == v1 + 1


@async_test
async def test_a_rollback_or_a_new_expert_also_reloads_and_another_model_never(journal, paths):
    new_version(journal)
    factory, made = engines_from(paths)
    app = make_app(journal, factory=factory, paths=paths, follows_personal_model=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        # A night learned, but its merge has not run: base + experts, no version.
        cid = journal.log_conversation([{"role": "user", "content": "My cat is Tom."}])
        journal.accept_expert(journal.begin_sleep(), "nightly", "night-0003", {}, [cid], [], {})
        assert personal(app) == "base + 2 experts (from the next answer)"
        await say(pilot, "hi")
        assert len(made) == 2
        answer = journal.messages(app.chat.conversation_id)[-1]
        assert answer.model_version == 1  # the fake loaded the current version row
        journal.rollback_to(1)
        await say(pilot, "hi again")
        assert len(made) == 3

    # --model something-else: the chat does not follow the personal model.
    factory, made = engines_from(paths)
    app = make_app(journal, factory=factory, paths=paths)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        new_version(journal)
        await say(pilot, "hi")
        assert len(made) == 1 and not app.engine_out_of_date()
