"""The chat app: sending, streaming, stopping, regenerating, and failing gracefully."""

from __future__ import annotations

import threading

from test_tui_support import (
    SIZE, async_test, make_app, ready, rows, say, screen_text, turns, wait_for,
)

from pocketsleep.backends.fake import FakeEngine
from pocketsleep.errors import PocketsleepError
from pocketsleep.prompts import with_system
from pocketsleep.tui.widgets import ChatLog, MessageView, PromptInput, StatusBar


@async_test
async def test_send_streams_the_answer_and_journals_both_turns(journal):
    engine = FakeEngine().enqueue("Paris is the **capital** of France.")
    app = make_app(journal, engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.click("#prompt")
        await pilot.press(*"Capital of France?", "enter")  # typed for real
        await pilot.pause()
        await ready(pilot)
        cid = app.chat.conversation_id
        assert rows(journal, cid) == [
            ("user", "Capital of France?", "complete"),
            ("assistant", "Paris is the **capital** of France.", "complete"),
        ]
        user, answer = journal.messages(cid)
        assert (user.token_count, answer.token_count) == (3, 6)
        assert journal.conversation(cid).title == "Capital of France?"
        text = screen_text(app)
        assert "Paris is the capital of France." in text  # rendered as Markdown
        (prompt,) = engine.prompts
        assert turns(prompt) == [{"role": "user", "content": "Capital of France?"}]
        assert app.chat.query_one(PromptInput).value == ""


@async_test
async def test_the_user_turn_is_saved_before_the_answer_starts(journal):
    app = make_app(journal, FakeEngine(delay=0.05).enqueue("a b c d e f g h"))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert await app.chat.send("remember this")
        cid = app.chat.conversation_id
        assert rows(journal, cid) == [("user", "remember this", "complete")]
        assert app.chat.generation is not None
        await ready(pilot)
        assert [r[0] for r in rows(journal, cid)] == ["user", "assistant"]


@async_test
async def test_ui_starts_while_the_model_loads_and_answers_once_it_has(journal):
    loaded = threading.Event()

    def slow_factory():
        loaded.wait(5)
        return FakeEngine().enqueue("ready now")

    app = make_app(journal, factory=slow_factory)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "loading model…" in app.chat.query_one(StatusBar).info.engine
        assert await app.chat.send("hello early")
        cid = app.chat.conversation_id
        assert rows(journal, cid) == [("user", "hello early", "complete")]
        await pilot.pause()
        assert "waiting for the model to load…" in screen_text(app)
        loaded.set()
        await ready(pilot)
        assert rows(journal, cid)[-1] == ("assistant", "ready now", "complete")
        assert app.chat.query_one(StatusBar).info.engine == "fake · fake"


@async_test
async def test_escape_stops_mid_answer_and_keeps_the_partial_text(journal):
    words = " ".join(f"w{i}" for i in range(60))
    app = make_app(journal, FakeEngine(delay=0.02).enqueue(words))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await app.chat.send("talk to me")
        await wait_for(pilot, lambda: len(app.chat.generation.parts) >= 3)
        await pilot.press("escape")
        cid = app.chat.conversation_id
        role, content, state = rows(journal, cid)[-1]
        assert (role, state) == ("assistant", "cancelled")
        assert content.startswith("w0 w1 w2") and content != words
        await pilot.pause(0.15)  # the worker's last pieces are dropped, not stored
        assert len(rows(journal, cid)) == 2
        view = app.chat.query(MessageView).last()
        assert view.has_class("-cancelled") and "stopped" in screen_text(app)


@async_test
async def test_regenerate_answers_the_last_turn_again(journal):
    engine = FakeEngine().enqueue("first answer", "second answer", "third")
    app = make_app(journal, engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await say(pilot, "question one")
        await pilot.press("ctrl+r")
        await pilot.pause()
        await ready(pilot)
        cid = app.chat.conversation_id
        assert [r[1] for r in rows(journal, cid)] == ["question one", "first answer", "second answer"]
        assert turns(engine.prompts[1]) == [{"role": "user", "content": "question one"}]
        old, new = app.chat.query_one(ChatLog).answers()
        assert old.has_class("-superseded") and not new.has_class("-superseded")
        await say(pilot, "question two")
        # The replaced answer is not part of the history the model sees.
        assert [m["content"] for m in turns(engine.prompts[2])] == [
            "question one", "second answer", "question two"]


@async_test
async def test_an_engine_error_is_a_notification_and_the_app_stays_usable(journal):
    engine = FakeEngine().enqueue("works again")
    engine.fail_with = RuntimeError("GPU on fire [/] [bold \x1b[31m")  # not markup
    app = make_app(journal, engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await say(pilot, "first try")
        assert any("GPU on fire" in e for e in app.errors())
        cid = app.chat.conversation_id
        assert rows(journal, cid) == [("user", "first try", "complete")]
        assert not app.chat.query(MessageView).filter(".-assistant")
        await say(pilot, "second try")
        assert rows(journal, cid)[-1] == ("assistant", "works again", "complete")


class BreaksMidway(FakeEngine):
    def stream_chat(self, messages, options=None):
        yield "half an"
        raise RuntimeError("out of memory")


@async_test
async def test_an_error_mid_answer_keeps_what_arrived_as_cancelled(journal):
    app = make_app(journal, BreaksMidway())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await say(pilot, "go")
        assert rows(journal, app.chat.conversation_id)[-1] == ("assistant", "half an", "cancelled")
        assert any("out of memory" in e for e in app.errors())


@async_test
async def test_a_turn_sent_while_loading_survives_a_load_failure(journal):
    release = threading.Event()

    def factory():
        release.wait(5)
        raise PocketsleepError("no such model")

    app = make_app(journal, factory=factory)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.chat.send("are you there?")
        release.set()
        await ready(pilot)
        assert rows(journal, app.chat.conversation_id) == [
            ("user", "are you there?", "complete")]
        assert not app.chat.query(MessageView).filter(".-assistant")
        assert app.errors() == ["Could not load the model: no such model"]


@async_test
async def test_a_missing_model_is_a_notification_not_a_crash(journal):
    def factory():
        raise PocketsleepError("model 'nope' not found; run `pocketsleep status`")

    app = make_app(journal, factory=factory)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert any("model 'nope' not found" in e for e in app.errors())
        assert app.chat.query_one(StatusBar).info.engine == "no model"
        assert not await app.chat.send("hello?")
        assert journal.conversations() == []
        await pilot.press("ctrl+n")  # still responsive
        assert app.chat.conversation_id is None


@async_test
async def test_any_factory_exception_is_caught_and_reload_retries(journal):
    attempts = []

    def factory():
        attempts.append(1)
        if len(attempts) == 1:
            raise ImportError("No module named 'pocketsleep.engines'")
        return FakeEngine().enqueue("loaded")

    app = make_app(journal, factory=factory)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert any("ImportError" in e for e in app.errors())
        titles = {c.title: c for c in app.get_system_commands(app.chat)}
        titles["Reload model"].callback()
        await ready(pilot)
        assert app.engine_state == "ready"
        await say(pilot, "hi")
        assert rows(journal, app.chat.conversation_id)[-1][1] == "loaded"


@async_test
async def test_escape_sequences_are_shown_not_obeyed(journal):
    evil = "hi \x1b[2J\x1b]0;pwned\x07 \x9b31m done"
    cid = journal.log_conversation([{"role": "user", "content": evil}], title="t\x1b[31m")
    engine = FakeEngine().enqueue("answer \x1b[31mred\x1b[0m \x07")
    app = make_app(journal, engine, conversation_id=cid)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await say(pilot, "x")
        text = screen_text(app)
        assert "\\x1b[2J\\x1b]0;pwned\\x07" in text and "\\x9b31m" in text
        assert "answer \\x1b[31mred\\x1b[0m" in text
        assert not any(ch in text for ch in "\x1b\x07\x9b")
        # The journal keeps exactly what was said.
        assert rows(journal, cid)[-1][1] == "answer \x1b[31mred\x1b[0m \x07"


@async_test
async def test_huge_messages_are_cut_on_screen_but_kept_whole(journal):
    huge = "y" * 1_048_576
    cid = journal.log_conversation(
        [{"role": "user", "content": huge}, {"role": "assistant", "content": "# big\n" + huge}])
    app = make_app(journal, conversation_id=cid)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert "showing the first 16,000 of 1,048,582 characters" in screen_text(app)
        # Sending a megabyte: stored whole, echoed back (as one 1 MB piece), both cut.
        assert await app.chat.send(huge)
        await ready(pilot)
        last = journal.messages(cid)[-1]
        assert last.role == "assistant" and len(last.content) == len("You said: ") + len(huge)
        notes = [w for w in app.chat.query(".note") if w.display]
        assert len(notes) == 4


@async_test
async def test_quitting_mid_answer_keeps_the_partial_answer(journal):
    app = make_app(journal, FakeEngine(delay=0.02).enqueue(" ".join(["word"] * 100)))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await app.chat.send("long story please")
        await wait_for(pilot, lambda: app.chat.generation.parts)
        cid = app.chat.conversation_id
        await pilot.press("ctrl+q")
    assert rows(journal, cid)[-1][2] == "cancelled"


@async_test
async def test_a_second_message_waits_for_the_answer(journal):
    app = make_app(journal, FakeEngine(delay=0.02).enqueue(" ".join(["w"] * 30)))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await app.chat.send("one")
        assert not await app.chat.send("two")
        assert any(sev == "warning" for sev, _ in app.notes)
        await pilot.press("escape")
        assert [r[1] for r in rows(journal, app.chat.conversation_id)][0] == "one"


@async_test
async def test_chat_puts_the_shared_system_prompt_in_front(journal):
    engine = FakeEngine()
    app = make_app(journal, engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await say(pilot, "hi")
        assert engine.prompts == [with_system([{"role": "user", "content": "hi"}])]


class Closes(FakeEngine):
    closed = False

    def close(self):
        self.closed = True


@async_test
async def test_the_engine_is_closed_on_exit(journal):
    engine = Closes()
    app = make_app(journal, engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+q")
    assert engine.closed
