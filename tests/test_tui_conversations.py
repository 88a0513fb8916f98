"""The chat app's conversation actions: list, open, new, rename, forget, private, copy."""

from __future__ import annotations

from test_tui_support import (
    SIZE, async_test, make_app, ready, rows, say, screen_text, turns, wait_for,
)

from textual.command import CommandList

from pocketsleep.backends.fake import FakeEngine
from pocketsleep.tui.screens import ConfirmScreen, HelpScreen, RenameScreen
from pocketsleep.tui.widgets import ChatLog, ConversationList, MessageView, StatusBar

ADA = [
    {"role": "user", "content": "My sister Ada lives in Lisbon."},
    {"role": "assistant", "content": "Lisbon is lovely."},
]


def sidebar_text(app) -> str:
    sidebar = app.chat.query_one(ConversationList)
    return "\n".join(
        sidebar.get_option_at_index(i).prompt.plain for i in range(sidebar.option_count))


@async_test
async def test_the_sidebar_lists_conversations_and_one_opens_and_continues(journal):
    ada = journal.log_conversation(ADA, title="Ada")
    journal.log_conversation([{"role": "user", "content": "other"}], title="Other")
    engine = FakeEngine().enqueue("She does.")
    app = make_app(journal, engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert app.chat.conversation_id is None
        sidebar = app.chat.query_one(ConversationList)
        assert sidebar.option_count == 2 and "Ada" in sidebar_text(app)
        sidebar.focus()
        sidebar.highlighted = sidebar.get_option_index(str(ada))
        await pilot.press("enter")
        await pilot.pause()
        assert app.chat.conversation_id == ada
        assert "Lisbon is lovely." in screen_text(app)
        await say(pilot, "Does she?")
        assert [r[1] for r in rows(journal, ada)] == [
            "My sister Ada lives in Lisbon.", "Lisbon is lovely.", "Does she?", "She does."]
        assert turns(engine.prompts[0])[:2] == ADA  # the history is in the prompt
        assert len(journal.conversations()) == 2


@async_test
async def test_starting_with_a_conversation_opens_it(journal):
    ada = journal.log_conversation(ADA, title="Ada")
    app = make_app(journal, conversation_id=ada)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert app.chat.conversation_id == ada
        assert len(app.chat.query(MessageView)) == 2


@async_test
async def test_a_new_conversation_starts_in_the_journal_with_its_first_message(journal):
    ada = journal.log_conversation(ADA, title="Ada")
    app = make_app(journal, conversation_id=ada)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.chat.conversation_id is None
        assert not app.chat.query(MessageView)
        assert "New conversation" in screen_text(app)
        assert len(journal.conversations()) == 1  # nothing written yet
        await say(pilot, "please remember that my cat is called Miso")
        cid = app.chat.conversation_id
        assert cid != ada
        assert journal.conversation(cid).title == "please remember that my cat is…"
        assert journal.conversation(cid).source == "chat"
        assert "please remember that my c" in sidebar_text(app)


@async_test
async def test_rename_saves_the_new_title_and_escape_keeps_the_old(journal):
    ada = journal.log_conversation(ADA, title="Ada")
    app = make_app(journal, conversation_id=ada)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f2")
        await pilot.pause()
        assert isinstance(app.screen, RenameScreen)
        await pilot.press("ctrl+u", *"Sis", "enter")
        await pilot.pause()
        assert journal.conversation(ada).title == "Sis"
        assert "Sis" in sidebar_text(app) and "Sis" in screen_text(app)
        await pilot.press("f2")
        await pilot.pause()
        await pilot.press("x", "escape")
        await pilot.pause()
        assert journal.conversation(ada).title == "Sis"


@async_test
async def test_renaming_an_unsaved_conversation_explains_why_not(journal):
    app = make_app(journal)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.chat.action_rename()
        await pilot.pause()
        assert not isinstance(app.screen, RenameScreen)
        assert app.notes[-1][0] == "warning"


@async_test
async def test_forget_asks_first_then_deletes(journal):
    ada = journal.log_conversation(ADA, title="Ada")
    app = make_app(journal, conversation_id=ada)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f8")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "Forget “Ada”? Its 2 messages" in screen_text(app)
        await pilot.press("escape")  # changed my mind
        await pilot.pause()
        assert journal.conversation(ada).status == "pending"
        await pilot.press("f8")
        await pilot.pause()
        await pilot.click("#yes")
        await pilot.pause()
        assert journal.conversation(ada).status == "forgotten"
        assert journal.messages(ada) == []
        assert app.chat.conversation_id is None
        assert app.chat.query_one(ConversationList).option_count == 0
        assert any("2 messages deleted" in text for _, text in app.notes)


@async_test
async def test_a_conversation_forgotten_elsewhere_gives_way_to_a_new_one_keeping_the_draft(
        journal):
    """`pocketsleep forget ID` from a shell while the chat shows ID: at its next status
    refresh the chat starts a new conversation and says why; the draft stays."""
    from pocketsleep.tui.widgets import PromptInput

    ada = journal.log_conversation(ADA, title="Ada")
    app = make_app(journal, conversation_id=ada)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.chat.query_one(PromptInput).value = "And her flat?"
        app.chat.refresh_status()  # nothing forgotten: nothing moves
        await pilot.pause()
        assert app.chat.conversation_id == ada
        journal.forget(ada)  # as the CLI does, on its own connection
        app.chat.refresh_status()
        await pilot.pause()
        assert app.chat.conversation_id is None
        assert app.chat.query_one(PromptInput).value == "And her flat?"
        assert any(f"Conversation {ada} was forgotten elsewhere" in text
                   for _, text in app.notes)


@async_test
async def test_private_is_saved_and_visibly_marked(journal):
    ada = journal.log_conversation(ADA, title="Ada")
    app = make_app(journal, conversation_id=ada)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert app.chat.query_one(StatusBar).info.waiting == 1
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert journal.conversation(ada).private
        assert "private" in sidebar_text(app)
        assert "never learned from during sleep" in screen_text(app)
        assert app.chat.query_one("#conversation-title").has_class("-private")
        assert app.chat.query_one(StatusBar).info.waiting == 0
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert not journal.conversation(ada).private
        assert "private" not in sidebar_text(app)


@async_test
async def test_a_new_conversation_can_be_private_from_its_first_message(journal):
    app = make_app(journal)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert "never learned from" in screen_text(app)
        await say(pilot, "my PIN is 1234")
        assert journal.conversation(app.chat.conversation_id).private


@async_test
async def test_copy_the_last_answer_or_any_message(journal, monkeypatch):
    monkeypatch.setenv("TMUX", "/tmp/tmux-1000/default,1,0")
    ada = journal.log_conversation(ADA, title="Ada")
    app = make_app(journal, conversation_id=ada)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+y")
        assert app.clipboard == "Lisbon is lovely."
        assert any("set -g set-clipboard on" in text for _, text in app.notes)  # says how
        commands = {c.title: c for c in app.get_system_commands(app.chat)}
        commands["Copy message 1 (user): My sister Ada lives in Lisbon."].callback()
        assert app.clipboard == "My sister Ada lives in Lisbon."


@async_test
async def test_the_palette_offers_what_applies_and_runs_it(journal):
    ada = journal.log_conversation(ADA, title="Ada")
    app = make_app(journal)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        titles = {c.title for c in app.get_system_commands(app.chat)}
        assert {"New conversation", "Mark conversation private", "Help"} <= titles
        assert not titles & {"Rename conversation", "Forget conversation", "Copy last answer",
                             "Regenerate last answer", "Stop answer", "Reload model"}
        await app.chat.open(ada)
        titles = {c.title for c in app.get_system_commands(app.chat)}
        assert {"Rename conversation", "Forget conversation", "Copy last answer",
                "Regenerate last answer"} <= titles
        await pilot.press("ctrl+p")
        await pilot.press(*"ren")
        hits = app.screen.query_one(CommandList)
        await wait_for(pilot, lambda: hits.option_count
                       and "Rename" in str(hits.get_option_at_index(0).prompt))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RenameScreen)


@async_test
async def test_help_lists_the_keys(journal):
    app = make_app(journal)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for words in ("Start a new conversation", "Answer your last message again",
                      "Forget this conversation", "Mark this conversation private",
                      "Copy the last answer", "Stop the answer", "Command palette"):
            assert words in text
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.chat


@async_test
async def test_the_status_bar_reports_engine_model_sleep_and_backlog(journal, monkeypatch):
    import datetime as dt

    from pocketsleep.tui import info

    journal.log_conversation(ADA)
    journal.log_conversation(ADA, private=True)
    journal.db["sleeps"].insert({"started_at": "2026-01-05T03:00:00+00:00",
                                 "status": "failed", "error": "disk full"})
    monkeypatch.setattr(info, "next_scheduled_sleep",
                        lambda paths: dt.datetime(2026, 1, 6, 3, 0))
    app = make_app(journal, FakeEngine(model_label="default"))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        status = app.chat.query_one(StatusBar)
        assert status.info.engine == "fake · default"
        assert status.info.personal_model == "base"
        assert status.info.last_sleep.endswith("failed")
        assert status.info.waiting == 1
        assert status.info.next_sleep == "2026-01-06 03:00"
        text = screen_text(app)
        assert "waiting: 1 " in text and "next sleep: 2026-01-06 03:00" in text


@async_test
async def test_the_log_starts_at_the_top_for_short_conversations(journal):
    ada = journal.log_conversation(ADA, title="Ada")
    app = make_app(journal, conversation_id=ada)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        log = app.chat.query_one(ChatLog)
        assert log.scroll_y == 0
        first = app.chat.query(MessageView).first()
        assert first.region.y <= log.region.y + 2
