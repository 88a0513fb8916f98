"""The journal: every conversation, sleep, expert and model version, in one SQLite file.

`Journal` owns all of pocketsleep's SQL. The chat app, the sleep job and the CLI call
its methods and never write SQL themselves. The file is opened in WAL mode (a chat can
keep writing while the sleep job reads), with a busy timeout so two writers wait for
each other instead of failing, and `secure_delete` so forgotten text is overwritten on
disk rather than left in free pages.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from sqlite_utils import Database

from ..config import PRIVATE_FILE_MODE
from ..errors import JournalError
from ..faults import checkpoint
from ..text import require_utf8
from .migrations import migrate
from .records import (  # noqa: F401  (ROLES and the records are part of this module's API)
    ROLES, Conversation, Message, ModelVersion, NightlyRun, Sleep, check_role,
    conversation_from_row, now, sleep_from_row, superseded_ids, version_from_row,
)

BUSY_TIMEOUT_MS = 10_000


class Journal:
    """One open journal file."""

    def __init__(self, db: Database, path: Path | None = None):
        self.db = db
        self.path = path

    # -- opening -------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> "Journal":
        """Open (creating if needed) and migrate the journal at `path`."""
        path = Path(path)
        existed = path.exists()
        try:
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
            db = Database(conn)
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA secure_delete = ON")
            # Reading the schema is what fails first on a file that is not SQLite.
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            db.enable_wal()
            migrate(db)
        except sqlite3.DatabaseError as e:
            raise JournalError(_explain_open_error(path, e, existed)) from None
        for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if f.exists() and f.stat().st_mode & 0o077:
                os.chmod(f, PRIVATE_FILE_MODE)
        return cls(db, path)

    def check_intact(self) -> None:
        """Raise sqlite3.DatabaseError if any page of the journal is damaged. Opening
        reads only the schema, and a command fails only when it touches a damaged
        page; a command about to write (or the chat, which fails inside its screen)
        checks first, so it neither writes into a damaged file nor stops mid-way."""
        problems = [row[0] for row in self.db.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("database disk image is malformed")

    @classmethod
    def in_memory(cls) -> "Journal":
        db = Database(memory=True)
        db.execute("PRAGMA foreign_keys = ON")
        migrate(db)
        return cls(db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- conversations and messages -------------------------------------------

    def start_conversation(
        self, title: str | None = None, private: bool = False, source: str = "chat"
    ) -> int:
        require_utf8(title, "the title")
        t = now()
        with self._write():
            cur = self.db.execute(
                "INSERT INTO conversations (started_at, updated_at, title, private, source)"
                " VALUES (?, ?, ?, ?, ?)",
                [t, t, title, int(private), source],
            )
        return cur.lastrowid

    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str,
        *,
        model_version: int | None = None,
        token_count: int | None = None,
        state: str = "complete",
    ) -> int:
        """Record one turn; it is on disk when this returns."""
        check_role(role)
        require_utf8(content, "the message")
        t = now()
        with self._write():
            self._require_open_conversation(conversation_id)
            cur = self.db.execute(
                "INSERT INTO messages (conversation_id, role, content, created_at,"
                " model_version, token_count, state) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [conversation_id, role, content, t, model_version, token_count, state],
            )
            self.db.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", [t, conversation_id]
            )
        return cur.lastrowid

    def log_conversation(
        self,
        messages: Iterable[dict],
        *,
        title: str | None = None,
        private: bool = False,
        source: str = "import",
        at: str | None = None,
    ) -> int:
        """Store a whole conversation at once: all of it, or nothing. `at` (ISO 8601)
        is when it was held, if not now: an imported old chat, or an evaluation day,
        whose date the sleep sees (dreaming's "as of <date>" updates order facts by it)."""
        messages = list(messages)
        require_utf8(title, "the title")
        for i, m in enumerate(messages, 1):
            check_role(m["role"])
            require_utf8(m["content"], f"message {i}")
        t = at or now()
        with self._write():
            cur = self.db.execute(
                "INSERT INTO conversations (started_at, updated_at, title, private, source)"
                " VALUES (?, ?, ?, ?, ?)",
                [t, t, title, int(private), source],
            )
            cid = cur.lastrowid
            for m in messages:
                self.db.execute(
                    "INSERT INTO messages (conversation_id, role, content, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    [cid, m["role"], m["content"], t],
                )
                checkpoint("journal.log_conversation.midway")
        return cid

    def conversations(self, status: str | None = None) -> list[Conversation]:
        sql = (
            "SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)"
            " AS message_count FROM conversations c"
        )
        params: list = []
        if status is not None:
            sql += " WHERE c.status = ?"
            params.append(status)
        sql += " ORDER BY c.id"
        return [conversation_from_row(row) for row in self.db.query(sql, params)]

    def conversation(self, conversation_id: int) -> Conversation:
        rows = list(
            self.db.query(
                "SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)"
                " AS message_count FROM conversations c WHERE c.id = ?",
                [conversation_id],
            )
        )
        if not rows:
            raise JournalError(
                f"no conversation {conversation_id}; `pocketsleep history` lists them"
            )
        return conversation_from_row(rows[0])

    def messages(self, conversation_id: int) -> list[Message]:
        self.conversation(conversation_id)
        return [
            Message(**row)
            for row in self.db.query(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id",
                [conversation_id],
            )
        ]

    def turns(self, conversation_id: int) -> list[dict]:
        """The conversation as it stands: complete messages only, and of several
        answers to one user turn (regenerate) only the last."""
        messages = [m for m in self.messages(conversation_id) if m.state == "complete"]
        replaced = superseded_ids(messages)
        return [{"role": m.role, "content": m.content} for m in messages if m.id not in replaced]

    def pending_conversations(self) -> list[Conversation]:
        """Tonight's episode: pending conversations the user has not marked private."""
        return [c for c in self.conversations(status="pending") if not c.private]

    def rename(self, conversation_id: int, title: str) -> None:
        require_utf8(title, "the title")
        self._require_open_conversation(conversation_id)
        with self._write():
            self.db.execute(
                "UPDATE conversations SET title = ? WHERE id = ?", [title, conversation_id]
            )

    def set_private(self, conversation_id: int, private: bool = True) -> None:
        self._require_open_conversation(conversation_id)
        with self._write():
            self.db.execute(
                "UPDATE conversations SET private = ? WHERE id = ?",
                [int(private), conversation_id],
            )

    def forget(self, conversation_id: int) -> int:
        """Delete a conversation's messages and mark it forgotten; return how many.

        secure_delete overwrites the deleted rows, and the checkpoint moves that
        overwrite from the write-ahead log into the main file, so the text is gone
        from disk, not only from queries.

        Probes and dreams derived from it go too, in the same transaction: their text
        holds what was said (see `probes_about`; dreams are kept per night, so the
        dreams of every night that learned it). Its weights are forgetting.py's job.
        """
        conversation = self.conversation(conversation_id)
        if conversation.status == "forgotten":
            return 0
        with self._write():
            self.db.execute(f"DELETE FROM probes WHERE id IN ({_PROBES_ABOUT})",
                            {"c": conversation_id})
            self.db.execute(
                "DELETE FROM dreams WHERE sleep_id IN (SELECT e.sleep_id FROM experts e"
                " JOIN expert_sources s ON s.expert_id = e.id WHERE s.conversation_id = ?)",
                [conversation_id])
            # Dreams name their conversations (m006), whether their night was kept
            # or not; their links go with them (ON DELETE CASCADE).
            self.db.execute(
                "DELETE FROM dreams WHERE id IN (SELECT dream_id FROM dream_sources"
                " WHERE conversation_id = ?)", [conversation_id])
            cur = self.db.execute(
                "DELETE FROM messages WHERE conversation_id = ?", [conversation_id]
            )
            self.db.execute(
                "UPDATE conversations SET status = 'forgotten', title = NULL,"
                " updated_at = ? WHERE id = ?",
                [now(), conversation_id],
            )
        checkpoint("journal.forget.before_checkpoint")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return cur.rowcount

    # -- sleeps ----------------------------------------------------------------

    def sleeps(self, limit: int | None = None, kind: str | None = None) -> list[Sleep]:
        """Newest first; `kind` picks nights, consolidations or rebuilds (m005)."""
        sql, params = "SELECT * FROM sleeps", []
        if kind is not None:
            sql += " WHERE kind = ?"
            params.append(kind)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [sleep_from_row(row) for row in self.db.query(sql, params)]

    def last_sleep(self, kind: str | None = "night") -> Sleep | None:
        """The last night by default (what status and `sleep --report` show)."""
        found = self.sleeps(limit=1, kind=kind)
        return found[0] if found else None

    def begin_sleep(self, kind: str = "night") -> int:
        """Record a sleep as running. A row still 'running' from a killed sleep is
        marked interrupted first (callers hold the sleep lock, so none is live)."""
        with self._write():
            self.db.execute(
                "UPDATE sleeps SET status = 'interrupted', ended_at = ?,"
                " error = 'the sleep process stopped before it finished'"
                " WHERE status = 'running'", [now()])
            cur = self.db.execute("INSERT INTO sleeps (started_at, kind) VALUES (?, ?)",
                                  [now(), kind])
        return cur.lastrowid

    def end_sleep(self, sleep_id: int, status: str, metrics: dict,
                  error: str | None = None) -> None:
        with self._write():
            self.db.execute(
                "UPDATE sleeps SET status = ?, ended_at = ?, metrics = ?, error = ?"
                " WHERE id = ?",
                [status, now(), json.dumps(metrics, default=str), error, sleep_id])

    def accept_expert(self, sleep_id: int, level: str, path: str, config: dict,
                      conversation_ids: Iterable[int], probes: Iterable[tuple],
                      metrics: dict, learned_up_to: int | None = None,
                      rehearsed: Iterable[int] = (),
                      taken_back: Iterable[tuple[str, str, int]] = ()) -> int:
        """Everything a successful night changes, in one transaction: the expert and
        its provenance (the conversations it learned, and those it `rehearsed`: see
        m007), its probes, the conversations consolidated, the sleep done.

        `learned_up_to` is the last message id the night read: a conversation that
        grew while it slept (a chat open during "Sleep now") stays pending, so its new
        turns are learned the next night instead of never. A probe is (question,
        answer) or (question, answer, id of the conversation it was written from).
        `taken_back`: (question, answer, conversation) of the earlier probes the night's
        conversations took back (_take_back_probes)."""
        conversation_ids = list(conversation_ids)
        t = now()
        with self._write():
            cur = self.db.execute(
                "INSERT INTO experts (created_at, level, path, sleep_id, config)"
                " VALUES (?, ?, ?, ?, ?)", [t, level, path, sleep_id, json.dumps(config)])
            expert_id = cur.lastrowid
            checkpoint("journal.accept_expert.midway")
            for cid in conversation_ids:
                self.db.execute("INSERT INTO expert_sources VALUES (?, ?)", [expert_id, cid])
                self.db.execute(
                    "UPDATE conversations SET status = 'consolidated' WHERE id = ?"
                    " AND status = 'pending' AND NOT EXISTS (SELECT 1 FROM messages"
                    " WHERE conversation_id = ? AND id > ?)",
                    [cid, cid, 2**62 if learned_up_to is None else learned_up_to])
            self._insert_rehearsed(expert_id, rehearsed, conversation_ids)
            self._take_back_probes(taken_back)
            self._insert_probes(expert_id, probes, t)
            self.end_sleep(sleep_id, "succeeded", metrics)
        return expert_id

    def _take_back_probes(self, probes: Iterable[tuple[str, str, int]]) -> None:
        """Inside a write: the worn experts' probes with these (question, answer) are
        taken back in that conversation (m008; sleep/updates.py): while it stays
        learned, no later night holds or guards them."""
        for question, answer, conversation_id in probes:
            self.db.execute(
                "UPDATE probes SET taken_back_in = ? WHERE question = ? AND answers = ?"
                f" AND {_HELD} AND expert_id IN"
                " (SELECT id FROM experts WHERE status = 'active')",
                [conversation_id, question, json.dumps([answer])])

    def _insert_rehearsed(self, expert_id: int, rehearsed: Iterable[int],
                          learned: Iterable[int]) -> None:
        """Inside a write: the conversations an expert rehearsed besides those it
        learned (m007)."""
        for cid in sorted(set(rehearsed) - set(learned)):
            self.db.execute("INSERT INTO expert_rehearsed VALUES (?, ?)", [expert_id, cid])

    def _insert_probes(self, expert_id: int, probes: Iterable[tuple], t: str) -> None:
        """probes: (question, answer[, conversation_id[, kind]]); kind "heldout" (never
        trained on: what gates check) or "rehearsal" (a question the night trained
        on, held in place by later nights: SleepOptions.rehearsal_questions)."""
        for question, answer, *rest in probes:
            source = rest[0] if rest else None
            kind = rest[1] if len(rest) > 1 else "heldout"
            self.db.execute(
                "INSERT INTO probes (created_at, expert_id, question, answers, kind,"
                " conversation_id) VALUES (?, ?, ?, ?, ?, ?)",
                [t, expert_id, question, json.dumps([answer]), kind, source])

    def last_message_id(self) -> int:
        return self._scalar("SELECT coalesce(max(id), 0) FROM messages")

    def active_probes(self, kinds: Sequence[str] = ("heldout",)) -> list[tuple[str, str]]:
        """(question, expected answer) stored by the experts the model wears now, of
        these kinds (see _insert_probes), oldest first."""
        rows = self.db.query(
            "SELECT p.question, p.answers FROM probes p JOIN experts e ON e.id = p.expert_id"
            f" WHERE e.status = 'active' AND {_HELD_P}"
            f" AND p.kind IN ({','.join('?' * len(kinds))})"
            " ORDER BY p.id", list(kinds))
        return [(r["question"], json.loads(r["answers"])[0]) for r in rows]

    def probe_conversations(self) -> dict[tuple[str, str], int]:
        """(question, expected answer) -> the conversation it was written from, for
        the probes of the experts the model wears now whose conversation is still
        learned (consolidated) and not private. Probes stored before probes named
        their conversation have none."""
        rows = self.db.query(
            "SELECT p.question, p.answers, p.conversation_id FROM probes p"
            " JOIN experts e ON e.id = p.expert_id JOIN conversations c"
            " ON c.id = p.conversation_id WHERE e.status = 'active' AND c.private = 0"
            f" AND {_HELD_P}"
            " AND c.status = 'consolidated' ORDER BY p.id")
        return {(r["question"], json.loads(r["answers"])[0]): r["conversation_id"]
                for r in rows}

    def probe_origins(self, expert_ids: Iterable[int], kinds: Sequence[str] = ("heldout",)
                      ) -> dict[tuple[str, str], list[int]]:
        """(question, expected answer) of these experts' probes of these kinds -> the
        conversations it holds: the one it was written from, or, where unknown (stored
        before probes named their conversation), every one its expert learned. A
        night that trains on the probe records them as rehearsed (m007)."""
        out: dict[tuple[str, str], set[int]] = {}
        for p in self.expert_probes(expert_ids, kinds) if expert_ids else []:
            cids = ([p["conversation_id"]] if p["conversation_id"] is not None
                    else self.expert_sources([p["expert_id"]]))
            out.setdefault((p["question"], p["answer"]), set()).update(cids)
        return {probe: sorted(cids) for probe, cids in out.items()}

    # -- nightly runs (the scheduled job) ----------------------------------------

    def begin_nightly_run(self, trigger: str, pid: int | None = None) -> int:
        with self._write():
            cur = self.db.execute(
                "INSERT INTO nightly_runs (started_at, trigger, pid) VALUES (?, ?, ?)",
                [now(), trigger, pid])
        return cur.lastrowid

    def claim_nightly_run(self, run_id: int, pid: int) -> None:
        """The process that carries out a run recorded by another (a catch-up) owns it."""
        with self._write():
            cur = self.db.execute(
                "UPDATE nightly_runs SET pid = ? WHERE id = ? AND outcome = 'running'",
                [pid, run_id])
        if cur.rowcount != 1:
            raise JournalError(f"no running nightly run {run_id} to carry out")

    def end_nightly_run(self, run_id: int, outcome: str, detail: str | None = None,
                        sleep_id: int | None = None) -> None:
        with self._write():
            self.db.execute(
                "UPDATE nightly_runs SET outcome = ?, detail = ?, sleep_id = ?,"
                " finished_at = ? WHERE id = ?",
                [outcome, detail, sleep_id, now(), run_id])

    def nightly_runs(self, limit: int = 10) -> list[NightlyRun]:
        rows = self.db.query(
            "SELECT * FROM nightly_runs ORDER BY id DESC LIMIT ?", [int(limit)])
        return [NightlyRun(**row) for row in rows]

    def last_nightly_run(self) -> NightlyRun | None:
        found = self.nightly_runs(limit=1)
        return found[0] if found else None

    # -- models ----------------------------------------------------------------

    def record_model(self, spec: str, format: str, path: str, name: str) -> None:
        """Remember a resolved model (first and last use)."""
        t = now()
        with self._write():
            self.db.execute(
                "INSERT INTO models (spec, format, path, name, first_used_at, last_used_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (spec, path)"
                " DO UPDATE SET last_used_at = excluded.last_used_at, name = excluded.name,"
                " format = excluded.format",
                [spec, format, path, name, t, t],
            )

    def models(self) -> list[dict]:
        return list(self.db.query("SELECT * FROM models ORDER BY last_used_at DESC, id DESC"))

    # -- experts ---------------------------------------------------------------

    def experts(self, status: str) -> list[dict]:
        """The experts with `status` (active, retired, rejected, pruned), oldest first."""
        return list(self.db.query(
            "SELECT * FROM experts WHERE status = ? ORDER BY created_at, id", [status]))

    def expert_paths(self) -> set[str]:
        """The folder (as stored) of every expert ever recorded, whatever its status."""
        return {r[0] for r in self.db.execute("SELECT path FROM experts").fetchall()}

    def active_experts(self) -> list[dict]:
        """The experts the personal model wears (status 'active'), oldest first."""
        return list(self.db.query(
            "SELECT * FROM experts WHERE status = 'active' ORDER BY created_at, id"
        ))

    def expert_sources(self, expert_ids: Iterable[int]) -> list[int]:
        """The conversations these experts learned from (any status), oldest first."""
        ids = sorted(set(expert_ids))
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT conversation_id FROM expert_sources WHERE expert_id IN"
            f" ({','.join('?' * len(ids))}) ORDER BY conversation_id", ids).fetchall()]

    def expert_probes(self, expert_ids: Iterable[int],
                      kinds: Sequence[str] = ("heldout",)) -> list[dict]:
        """The probes of these kinds (see _insert_probes) these experts stored and
        still hold (not taken back: m008): id, expert_id, question, answer,
        conversation_id (None when unknown), kind; oldest first."""
        ids = sorted(set(expert_ids))
        rows = self.db.query(
            "SELECT id, expert_id, question, answers, conversation_id, kind FROM probes"
            f" WHERE {_HELD} AND expert_id IN ({','.join('?' * len(ids))})"
            f" AND kind IN ({','.join('?' * len(kinds))}) ORDER BY id", ids + list(kinds))
        return [_probe(r) for r in rows]

    def accept_consolidation(self, sleep_id: int, level: str, path: str, config: dict,
                             retiring: Iterable[int], probes: Iterable[tuple],
                             metrics: dict) -> int:
        """Everything a successful consolidation changes, in one transaction: the new
        expert, learned from every conversation the retiring experts learned; their
        probes, copied to it (a rollback to a version that holds them makes them
        active again, with their own probes), plus its own; the retiring experts
        'retired'; the consolidation done."""
        retiring = sorted(set(retiring))
        marks = ",".join("?" * len(retiring))
        t = now()
        with self._write():
            cur = self.db.execute(
                "INSERT INTO experts (created_at, level, path, sleep_id, config)"
                " VALUES (?, ?, ?, ?, ?)", [t, level, path, sleep_id, json.dumps(config)])
            expert_id = cur.lastrowid
            self.db.execute(
                "INSERT INTO expert_sources SELECT DISTINCT ?, conversation_id FROM"
                f" expert_sources WHERE expert_id IN ({marks})", [expert_id, *retiring])
            # It is distilled from them: what they rehearsed is in it too.
            self.db.execute(
                "INSERT INTO expert_rehearsed SELECT DISTINCT ?, conversation_id FROM"
                f" expert_rehearsed WHERE expert_id IN ({marks}) AND conversation_id NOT IN"
                " (SELECT conversation_id FROM expert_sources WHERE expert_id = ?)",
                [expert_id, *retiring, expert_id])
            self._copy_probes(retiring, expert_id, t)
            self._insert_probes(expert_id, probes, t)
            cur = self.db.execute(
                f"UPDATE experts SET status = 'retired' WHERE id IN ({marks})"
                " AND status = 'active'", retiring)
            if cur.rowcount != len(retiring):
                raise JournalError("the experts to consolidate changed meanwhile (a "
                                   "rollback?); nothing was consolidated")
            self.end_sleep(sleep_id, "succeeded", metrics)
        return expert_id

    # -- forgetting from the weights (pocketsleep/forgetting.py) ---------------

    def experts_trained_on(self, conversation_id: int, rehearsed: bool = True) -> list[dict]:
        """Every expert trained on anything of the conversation, any status, oldest
        first (a retired or switched-off expert's files still hold what it learned):
        those that learned it (expert_sources) and, unless `rehearsed` is False, those
        that rehearsed its probes or dreams (expert_rehearsed)."""
        also = (" UNION SELECT expert_id FROM expert_rehearsed WHERE conversation_id = :c"
                if rehearsed else "")
        return list(self.db.query(
            "SELECT * FROM experts WHERE id IN (SELECT expert_id FROM expert_sources"
            f" WHERE conversation_id = :c{also}) ORDER BY created_at, id",
            {"c": conversation_id}))

    def probes_about(self, conversation_id: int) -> list[dict]:
        """The probes derived from a conversation: those written from it, and those of
        experts that learned it whose source is unknown (stored before probes named
        their conversation; they may hold its text, so they count as its)."""
        rows = self.db.query(
            "SELECT id, expert_id, question, answers, conversation_id, kind FROM probes"
            f" WHERE id IN ({_PROBES_ABOUT}) ORDER BY id", {"c": conversation_id})
        return [_probe(r) for r in rows]

    def replace_expert(self, old_id: int, sleep_id: int, path: str, config: dict,
                       conversation_ids: Iterable[int], probes: Iterable[tuple],
                       metrics: dict, why: str, rehearsed: Iterable[int] = ()) -> int:
        """A rebuild's result, in one transaction: the new expert (the old one's level)
        learned from `conversation_ids` (and rehearsed `rehearsed`), with its own
        probes and the old one's probes written from those conversations; the old
        expert and every version holding it 'pruned' (see drop_expert); the rebuild
        done."""
        conversation_ids = sorted(set(conversation_ids))
        t = now()
        with self._write():
            level = self._scalar("SELECT level FROM experts WHERE id = ?", [old_id])
            cur = self.db.execute(
                "INSERT INTO experts (created_at, level, path, sleep_id, config)"
                " VALUES (?, ?, ?, ?, ?)", [t, level, path, sleep_id, json.dumps(config)])
            expert_id = cur.lastrowid
            for cid in conversation_ids:
                self.db.execute("INSERT INTO expert_sources VALUES (?, ?)", [expert_id, cid])
            self._insert_rehearsed(expert_id, rehearsed, conversation_ids)
            self._copy_probes([old_id], expert_id, t, only=conversation_ids)
            self._insert_probes(expert_id, probes, t)
            self.drop_expert(old_id, why)
            self.end_sleep(sleep_id, "succeeded", metrics)
        return expert_id

    def drop_expert(self, expert_id: int, why: str) -> list[int]:
        """Switch an expert off for good ('pruned': its files are deleted next) and
        prune every version holding it, noting `why`: both hold what it learned.
        Conversations it learned that no active expert holds any more are pending
        again (the next sleep learns them); returns those."""
        with self._write():
            conversations = self.expert_sources([expert_id])
            self.db.execute("UPDATE experts SET status = 'pruned' WHERE id = ?", [expert_id])
            self.db.execute(
                "UPDATE model_versions SET status = 'pruned', notes = ? WHERE id IN"
                " (SELECT version_id FROM version_experts WHERE expert_id = ?)"
                " AND status IN ('ready', 'current', 'previous')", [why, expert_id])
            before = self._conversation_statuses(conversations)
            self._reopen_unheld(conversations)
            after = self._conversation_statuses(conversations)
        return [c for c in conversations if before[c] == "consolidated" and after[c] == "pending"]

    def _copy_probes(self, from_ids: list[int], to_id: int, t: str,
                     only: list[int] | None = None) -> None:
        """Inside a write: copy probes to another expert (`only`: those written from
        these conversations)."""
        sql = ("INSERT INTO probes (created_at, conversation_id, expert_id, question, answers,"
               " kind, taken_back_in) SELECT ?, conversation_id, ?, question, answers, kind,"
               " taken_back_in FROM probes"
               f" WHERE expert_id IN ({','.join('?' * len(from_ids))})")
        params = [t, to_id, *from_ids]
        if only is not None:
            sql += f" AND conversation_id IN ({','.join('?' * len(only))})"
            params += only
        self.db.execute(sql + " ORDER BY id", params)

    # -- versions of the personal model ------------------------------------------

    def begin_version(self, base_model: str, expert_ids: Iterable[int]) -> int:
        """Record a version being built ('ready') from `expert_ids`; returns its number.
        Its folder is named after the number: `v0003`."""
        expert_ids = sorted(set(expert_ids))
        with self._write():
            cur = self.db.execute(
                "INSERT INTO model_versions (created_at, base_model, path, status)"
                " VALUES (?, ?, '', 'ready')", [now(), base_model])
            vid = cur.lastrowid
            self.db.execute("UPDATE model_versions SET path = ? WHERE id = ?",
                            [f"v{vid:04d}", vid])
            for eid in expert_ids:
                self.db.execute("INSERT INTO version_experts VALUES (?, ?)", [vid, eid])
        return vid

    def drop_version(self, version_id: int) -> None:
        """Forget a version that was never finished (a failed or killed merge)."""
        with self._write():
            self.db.execute("DELETE FROM version_experts WHERE version_id = ?", [version_id])
            self.db.execute("DELETE FROM model_versions WHERE id = ? AND status = 'ready'",
                            [version_id])

    def refuse_version(self, version_id: int, reason: str, checks: dict) -> None:
        """The fused model disagreed with base + experts: keep the record and why."""
        with self._write():
            self.db.execute(
                "UPDATE model_versions SET status = 'refused', notes = ?, checks = ?,"
                " size_bytes = 0 WHERE id = ?", [reason, json.dumps(checks), version_id])

    def switch_version(self, version_id: int, checks: dict, size_bytes: int) -> None:
        """Make a checked version current, the current one previous: one transaction."""
        with self._write():
            self.db.execute("UPDATE model_versions SET checks = ?, size_bytes = ? WHERE id = ?",
                            [json.dumps(checks), size_bytes, version_id])
            self._make_current(version_id)
            checkpoint("journal.switch_version.before_commit")

    def rollback_to(self, version_id: int) -> dict[str, list[int]]:
        """Make an earlier version current again, and its experts exactly the active
        ones, in one transaction. Experts it does not hold are switched off
        ('rejected'); a conversation stays consolidated only while an active expert
        holds it, otherwise it is pending again (the next sleep learns it afresh)."""
        with self._write():
            keep = set(self.version(version_id).expert_ids)
            active = {r["id"] for r in self.active_experts()}
            leaving, entering = sorted(active - keep), sorted(keep - active)
            for status, ids in (("rejected", leaving), ("active", entering)):
                for eid in ids:
                    self.db.execute("UPDATE experts SET status = ? WHERE id = ?", [status, eid])
            touched = leaving + entering
            marks = ",".join("?" * len(touched))
            conversations = [r[0] for r in self.db.execute(
                f"SELECT DISTINCT conversation_id FROM expert_sources WHERE expert_id IN ({marks})"
                " ORDER BY conversation_id", touched).fetchall()] if touched else []
            before = self._conversation_statuses(conversations)
            self._reopen_unheld(conversations)
            after = self._conversation_statuses(conversations)
            pending = [c for c in conversations
                       if before[c] == "consolidated" and after[c] == "pending"]
            self._make_current(version_id)
        return {"switched_off": leaving, "switched_on": entering, "pending_again": pending}

    def prune_version(self, version_id: int, note: str) -> None:
        with self._write():
            self.db.execute("UPDATE model_versions SET status = 'pruned', notes = ?"
                            " WHERE id = ?", [note, version_id])

    def prune_expert(self, expert_id: int) -> None:
        with self._write():
            self.db.execute("UPDATE experts SET status = 'pruned' WHERE id = ?", [expert_id])

    def versions(self) -> list[ModelVersion]:
        """Every version, newest first."""
        members: dict[int, list[int]] = {}
        for r in self.db.query("SELECT version_id, expert_id FROM version_experts"
                               " ORDER BY expert_id"):
            members.setdefault(r["version_id"], []).append(r["expert_id"])
        return [version_from_row(row, members.get(row["id"], ()))
                for row in self.db.query("SELECT * FROM model_versions ORDER BY id DESC")]

    def version(self, version_id: int) -> ModelVersion:
        found = [v for v in self.versions() if v.id == version_id]
        if not found:
            raise JournalError(f"no version v{version_id} of your personal model; "
                               "`pocketsleep models` lists them")
        return found[0]

    def current_version(self) -> ModelVersion | None:
        found = [v for v in self.versions() if v.status == "current"]
        return found[0] if found else None

    def unneeded_experts(self) -> list[dict]:
        """Experts no longer worn (retired, rejected) that no kept version holds: their
        files can go."""
        return list(self.db.query(
            "SELECT * FROM experts WHERE status IN ('retired', 'rejected') AND id NOT IN"
            " (SELECT ve.expert_id FROM version_experts ve JOIN model_versions v"
            " ON v.id = ve.version_id WHERE v.status IN ('ready', 'current', 'previous'))"
            " ORDER BY id"))

    def experts_by_id(self, expert_ids: Iterable[int]) -> list[dict]:
        """These experts' rows, any status, in id order (unknown ids are left out)."""
        ids = sorted(set(expert_ids))
        if not ids:
            return []
        return list(self.db.query(
            f"SELECT * FROM experts WHERE id IN ({','.join('?' * len(ids))}) ORDER BY id", ids))

    def expert_made_by(self, sleep_id: int) -> dict | None:
        """The expert a night, consolidation or rebuild kept (None if it kept none)."""
        rows = list(self.db.query("SELECT * FROM experts WHERE sleep_id = ? ORDER BY id",
                                  [sleep_id]))
        return rows[0] if rows else None

    def experts_learned(self, expert_ids: Iterable[int]) -> list[dict]:
        """What each expert learned: its night and its conversations (id, title, status)."""
        ids = sorted(set(expert_ids))
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        out = {r["id"]: {**r, "conversations": []} for r in self.db.query(
            f"SELECT id, created_at, level, status, sleep_id FROM experts WHERE id IN ({marks})"
            " ORDER BY created_at, id", ids)}
        for r in self.db.query(
                "SELECT s.expert_id, c.id, c.title, c.status FROM expert_sources s"
                f" JOIN conversations c ON c.id = s.conversation_id WHERE s.expert_id IN ({marks})"
                " ORDER BY c.id", ids):
            out[r["expert_id"]]["conversations"].append(
                {"id": r["id"], "title": r["title"], "status": r["status"]})
        return list(out.values())

    def _conversation_statuses(self, ids: list[int]) -> dict[int, str]:
        if not ids:
            return {}
        return {r[0]: r[1] for r in self.db.execute(
            f"SELECT id, status FROM conversations WHERE id IN ({','.join('?' * len(ids))})",
            ids).fetchall()}

    def _reopen_unheld(self, conversation_ids: list[int]) -> None:
        """Inside a write: a conversation stays consolidated only while an active
        expert holds it; otherwise it is pending again."""
        for cid in conversation_ids:
            self.db.execute(
                "UPDATE conversations SET status = CASE WHEN EXISTS (SELECT 1 FROM"
                " expert_sources s JOIN experts e ON e.id = s.expert_id"
                " WHERE s.conversation_id = conversations.id AND e.status = 'active')"
                " THEN 'consolidated' ELSE 'pending' END"
                " WHERE id = ? AND status IN ('pending', 'consolidated')", [cid])

    def _make_current(self, version_id: int) -> None:
        """Inside a write: `version_id` becomes the one current version."""
        self.db.execute("UPDATE model_versions SET status = 'previous' WHERE status = 'current'"
                        " AND id != ?", [version_id])
        cur = self.db.execute(
            "UPDATE model_versions SET status = 'current', switched_at = ? WHERE id = ?"
            " AND status IN ('ready', 'previous', 'current')", [now(), version_id])
        if cur.rowcount != 1:
            raise JournalError(f"version v{version_id} cannot become current (it was refused "
                               "or pruned); `pocketsleep models` lists the versions")

    # -- dreams (Sleep II, pocketsleep/sleep/dreaming) ---------------------------

    def add_dreams(self, sleep_id: int, dreams: Iterable[dict]) -> int:
        """Store a night's scored dream candidates, each linked to the conversations
        it was written from: dicts with kind, template, prompt, content, score,
        selected, conversation_ids. Returns how many."""
        t, n = now(), 0
        with self._write():
            for d in dreams:
                cur = self.db.execute(
                    "INSERT INTO dreams (sleep_id, kind, template, prompt, content, score,"
                    " selected, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [sleep_id, d["kind"], d["template"], d["prompt"], d["content"],
                     d.get("score"), int(bool(d.get("selected"))), t])
                for cid in sorted(set(d["conversation_ids"])):
                    self.db.execute("INSERT INTO dream_sources VALUES (?, ?)",
                                    [cur.lastrowid, cid])
                n += 1
        return n

    def unselect_dreams(self, sleep_id: int) -> int:
        """A night's kept dreams are no longer kept: its rehearsal was undone (the
        gate kept seeding's expert alone), so replay must not treat them as learned.
        The rows stay, linked to their conversations, for `forget` and the report."""
        with self._write():
            cur = self.db.execute("UPDATE dreams SET selected = 0 WHERE sleep_id = ?",
                                  [sleep_id])
        return cur.rowcount

    def dreams(self, sleep_id: int) -> list[dict]:
        """A night's dreams, with the conversations each came from, in order."""
        rows = [dict(r) for r in self.db.query(
            "SELECT * FROM dreams WHERE sleep_id = ? ORDER BY id", [sleep_id])]
        for r in rows:
            r["conversation_ids"] = self.dream_conversations([r["id"]])
        return rows

    def dream_conversations(self, dream_ids: Iterable[int]) -> list[int]:
        """The conversations these dreams were written from."""
        ids = sorted(set(dream_ids))
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT conversation_id FROM dream_sources WHERE dream_id IN"
            f" ({','.join('?' * len(ids))}) ORDER BY 1", ids).fetchall()] if ids else []

    def replayable_dreams(self) -> list[dict]:
        """The dreams rehearsal may replay: kept (selected) by a night that succeeded,
        written from conversations that are all still learned (consolidated: an
        active expert holds them) and not private. A rejected night's dreams, and
        those of a conversation forgotten, made private or pending again (a
        rollback undid it) are never replayed. Oldest first."""
        return [dict(r) for r in self.db.query(
            "SELECT d.id, d.sleep_id, d.kind, d.template, d.prompt, d.content FROM dreams d"
            " JOIN sleeps s ON s.id = d.sleep_id WHERE d.selected = 1"
            " AND s.status = 'succeeded'"
            " AND EXISTS (SELECT 1 FROM dream_sources x WHERE x.dream_id = d.id)"
            " AND NOT EXISTS (SELECT 1 FROM dream_sources x JOIN conversations c"
            "   ON c.id = x.conversation_id WHERE x.dream_id = d.id"
            "   AND (c.private = 1 OR c.status != 'consolidated'))"
            " ORDER BY d.id")]

    def sweep_dreams(self) -> int:
        """Delete dreams nothing will use and that still hold what was said: those
        of nights that ended without keeping their expert (rejected, failed,
        interrupted), and those written from a conversation since made private or
        forgotten. Returns how many."""
        with self._write():
            cur = self.db.execute(
                "DELETE FROM dreams WHERE sleep_id IN (SELECT id FROM sleeps WHERE status"
                " NOT IN ('succeeded', 'running')) OR id IN (SELECT x.dream_id FROM"
                " dream_sources x JOIN conversations c ON c.id = x.conversation_id"
                " WHERE c.private = 1 OR c.status = 'forgotten')")
        return cur.rowcount

    def record_dream_policy(self, sleep_id: int, preferences: dict, probabilities: dict,
                            trials: list) -> None:
        """The dream generator's policy after a night (one row per night)."""
        with self._write():
            self.db.execute(
                "INSERT INTO dream_policies (sleep_id, created_at, preferences, probabilities,"
                " trials) VALUES (?, ?, ?, ?, ?)",
                [sleep_id, now(), json.dumps(preferences), json.dumps(probabilities),
                 json.dumps(trials)])

    def dream_policies(self, limit: int | None = None) -> list[dict]:
        """The dream policy night after night, newest first."""
        sql = "SELECT * FROM dream_policies ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = []
        for r in self.db.query(sql):
            r = dict(r)
            for k in ("preferences", "probabilities", "trials"):
                r[k] = json.loads(r[k])
            out.append(r)
        return out

    # -- summary ---------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Conversation counts by status, plus messages, private and experts."""
        out = {"pending": 0, "consolidated": 0, "forgotten": 0}
        for row in self.db.query(
            "SELECT status, count(*) AS n FROM conversations GROUP BY status"
        ):
            out[row["status"]] = row["n"]
        out["conversations"] = sum(out[s] for s in ("pending", "consolidated", "forgotten"))
        out["private"] = self._scalar("SELECT count(*) FROM conversations WHERE private = 1")
        out["messages"] = self._scalar("SELECT count(*) FROM messages")
        out["active_experts"] = self._scalar(
            "SELECT count(*) FROM experts WHERE status = 'active'"
        )
        out["waiting"] = self._scalar(
            "SELECT count(*) FROM conversations WHERE status = 'pending' AND private = 0"
        )
        return out

    def schema_version(self) -> list[str]:
        return [r["name"] for r in self.db.query("SELECT name FROM _migrations ORDER BY rowid")]

    # -- helpers ---------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[None]:
        """A write transaction that takes the write lock up front.

        A deferred BEGIN that reads first and then writes can fail at once with
        "database is locked" when another writer committed in between (WAL snapshot
        conflict; the busy timeout does not help there). BEGIN IMMEDIATE waits instead.
        """
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _scalar(self, sql: str, params: list | None = None) -> int:
        return self.db.execute(sql, params or []).fetchone()[0]

    def _require_open_conversation(self, conversation_id: int) -> None:
        conversation = self.conversation(conversation_id)
        if conversation.status == "forgotten":
            raise JournalError(f"conversation {conversation_id} was forgotten")


# A probe still held: not taken back in a conversation that is still learned (m008;
# sleep/updates.py). Rolled back to pending, or forgotten, that conversation takes
# nothing back any more.
_HELD = ("(taken_back_in IS NULL OR NOT EXISTS (SELECT 1 FROM conversations t"
         " WHERE t.id = taken_back_in AND t.status = 'consolidated'))")
_HELD_P = _HELD.replace("taken_back_in", "p.taken_back_in")

# The ids of the probes derived from conversation :c (see Journal.probes_about).
_PROBES_ABOUT = (
    "SELECT id FROM probes WHERE conversation_id = :c OR (conversation_id IS NULL AND"
    " expert_id IN (SELECT expert_id FROM expert_sources WHERE conversation_id = :c))")


def _probe(row: dict) -> dict:
    row = dict(row)
    row["answer"] = json.loads(row.pop("answers"))[0]
    return row


def _explain_open_error(path: Path, error: sqlite3.DatabaseError, existed: bool) -> str:
    text = str(error)
    if "not a database" in text or "malformed" in text:
        return (
            f"{path} is not a readable SQLite journal ({text}); move it aside "
            "(pocketsleep will start a new one) or restore it from a backup"
        )
    if "readonly" in text or "unable to open" in text:
        return (
            f"cannot write the journal {path} ({text}); check the permissions of the "
            "data home or set POCKETSLEEP_HOME to a writable folder"
        )
    if "disk" in text:
        # A full disk: SQLite cannot create the journal's shared-memory file, and says
        # "disk I/O error".
        return (f"cannot {'open' if existed else 'create'} the journal {path} ({text}); "
                "is the disk full? Free some space and run the command again")
    return f"cannot open the journal {path} ({text})"


def explain_database_error(path: Path, error: sqlite3.DatabaseError) -> str:
    """One line for a journal that failed after it opened: damaged pages (a disk
    fault, a copy cut short), a full disk, a writer holding it too long."""
    text = str(error)
    if "malformed" in text or "not a database" in text:
        # (.recover reaches rows .dump cannot, but some sqlite3 builds fail on it:
        # Debian 12's 3.40.1 stops with "SQL logic error".)
        return (f"the journal {path} is damaged ({text}); keep a copy of it, then rescue "
                f"what it holds with the sqlite3 tool (sqlite3 {path} .recover > rescued.sql, "
                "or .dump where .recover fails; sqlite3 new.db < rescued.sql; then move "
                f"new.db to {path}) or restore it from a backup")
    if "full" in text:
        return (f"cannot write the journal {path}: the disk is full; nothing was half-written. "
                "Free some space and run the command again")
    if "locked" in text or "busy" in text:
        return (f"the journal {path} is busy (another pocketsleep is writing to it); "
                "try again in a moment")
    return f"the journal {path} failed ({text})"
