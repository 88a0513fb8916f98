import stat
import threading

import pytest

from pocketsleep.errors import InputError, JournalError
from pocketsleep.journal import Journal


def test_new_journal_is_empty_private_and_in_wal_mode(journal, paths):
    assert journal.conversations() == []
    assert journal.counts()["conversations"] == 0
    assert stat.S_IMODE(paths.journal.stat().st_mode) == 0o600
    assert journal.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_turns_are_stored_in_order(journal):
    cid = journal.start_conversation(title="dog")
    journal.add_message(cid, "user", "My dog is Biscuit.", token_count=5)
    journal.add_message(cid, "assistant", "Nice name!", model_version=None)
    journal.add_message(cid, "assistant", "partial", state="cancelled")
    got = journal.messages(cid)
    assert [(m.role, m.content, m.state) for m in got] == [
        ("user", "My dog is Biscuit.", "complete"),
        ("assistant", "Nice name!", "complete"),
        ("assistant", "partial", "cancelled"),
    ]
    assert got[0].token_count == 5
    assert journal.conversation(cid).message_count == 3


def test_a_turn_is_on_disk_for_another_connection_at_once(journal, paths):
    cid = journal.start_conversation()
    journal.add_message(cid, "user", "remember the milk")
    with Journal.open(paths.journal) as other:
        assert [m.content for m in other.messages(cid)] == ["remember the milk"]


def test_log_conversation_is_all_or_nothing(journal):
    with pytest.raises(InputError, match="unknown role"):
        journal.log_conversation([
            {"role": "user", "content": "a"},
            {"role": "robot", "content": "b"},
        ])
    assert journal.conversations() == []
    cid = journal.log_conversation(
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        title="t", private=True,
    )
    c = journal.conversation(cid)
    assert (c.title, c.private, c.source, c.status, c.message_count) == ("t", True, "import", "pending", 2)


def test_pending_excludes_private_and_consolidated(journal):
    a = journal.log_conversation([{"role": "user", "content": "a"}])
    b = journal.log_conversation([{"role": "user", "content": "b"}], private=True)
    journal.log_conversation([{"role": "user", "content": "c"}])
    journal.db.execute("UPDATE conversations SET status = 'consolidated' WHERE id = 3")
    assert [c.id for c in journal.pending_conversations()] == [a]
    journal.set_private(b, False)
    assert [c.id for c in journal.pending_conversations()] == [a, b]
    assert journal.counts()["waiting"] == 2


def test_rename(journal):
    cid = journal.start_conversation()
    assert journal.conversation(cid).display_title == f"Conversation {cid}"
    journal.rename(cid, "Trip to Oslo")
    assert journal.conversation(cid).title == "Trip to Oslo"


def test_forget_removes_the_text_from_the_file(journal, paths):
    secret = "my locker code is 7391-zebra-quartz"
    cid = journal.log_conversation(
        [{"role": "user", "content": secret}], title="locker " + secret
    )
    journal.log_conversation([{"role": "user", "content": "keep this one"}])
    assert journal.forget(cid) == 1
    c = journal.conversation(cid)
    assert (c.status, c.title, c.message_count) == ("forgotten", None, 0)
    journal.close()
    raw = b"".join(
        p.read_bytes() for p in paths.home.iterdir() if p.name.startswith("journal.db")
    )
    assert b"7391-zebra-quartz" not in raw
    assert b"keep this one" in raw


def test_forgotten_conversation_cannot_be_continued(journal):
    cid = journal.log_conversation([{"role": "user", "content": "x"}])
    journal.forget(cid)
    assert journal.forget(cid) == 0
    with pytest.raises(JournalError, match="forgotten"):
        journal.add_message(cid, "user", "more")


def test_unknown_conversation_is_a_clear_error(journal):
    with pytest.raises(JournalError, match="no conversation 42"):
        journal.messages(42)


def test_not_a_database_is_a_clear_error(paths):
    paths.journal.write_bytes(b"this is a text file, not SQLite\n" * 100)
    with pytest.raises(JournalError, match="not a readable SQLite journal"):
        Journal.open(paths.journal)


def test_truncated_database_is_a_clear_error(paths):
    j = Journal.open(paths.journal)
    for i in range(200):
        j.log_conversation([{"role": "user", "content": f"message {i} " * 50}])
    j.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    j.close()
    data = paths.journal.read_bytes()
    paths.journal.write_bytes(data[:100])
    with pytest.raises(JournalError):
        Journal.open(paths.journal)


def test_two_writers_lose_and_duplicate_nothing(paths):
    Journal.open(paths.journal).close()
    cids = []
    with Journal.open(paths.journal) as j:
        cids = [j.start_conversation(), j.start_conversation()]

    def write(cid):
        with Journal.open(paths.journal) as j:
            for i in range(50):
                j.add_message(cid, "user", f"{cid}:{i}")

    threads = [threading.Thread(target=write, args=(c,)) for c in cids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Journal.open(paths.journal) as j:
        for cid in cids:
            assert [m.content for m in j.messages(cid)] == [f"{cid}:{i}" for i in range(50)]


def test_resolved_models_are_recorded_once_each(journal):
    journal.record_model("default", "gguf", "/a/m.gguf", "SmolLM2")
    journal.record_model("other/model", "mlx", "/b", "other/model")
    journal.record_model("default", "gguf", "/a/m.gguf", "SmolLM2")
    got = journal.models()
    assert sorted(m["spec"] for m in got) == ["default", "other/model"]


def test_a_conversation_that_grew_during_the_night_stays_pending(journal):
    grew = journal.log_conversation([{"role": "user", "content": "My dog is Biscuit."}])
    still = journal.log_conversation([{"role": "user", "content": "I live in Porto."}])
    read_up_to = journal.last_message_id()
    assert read_up_to == 2
    journal.add_message(grew, "user", "He turned three today.")  # written mid-sleep
    sleep_id = journal.begin_sleep()
    journal.accept_expert(sleep_id, "nightly", "night-0001", {}, [grew, still], [], {},
                          learned_up_to=read_up_to)
    assert journal.conversation(grew).status == "pending"
    assert journal.conversation(still).status == "consolidated"
    # Both are still recorded as the expert's sources (forget must find them).
    rows = journal.db.execute("SELECT conversation_id FROM expert_sources").fetchall()
    assert sorted(r[0] for r in rows) == sorted([grew, still])
