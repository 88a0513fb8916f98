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
from typing import Iterable, Iterator

from sqlite_utils import Database

from ..config import PRIVATE_FILE_MODE
from ..errors import JournalError
from .migrations import migrate
from .records import (  # noqa: F401  (ROLES and the records are part of this module's API)
    ROLES, Conversation, Message, NightlyRun, Sleep, check_role, conversation_from_row, now,
    sleep_from_row, superseded_ids,
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
    ) -> int:
        """Store a whole conversation at once: all of it, or nothing."""
        messages = list(messages)
        for m in messages:
            check_role(m["role"])
        t = now()
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
        """
        conversation = self.conversation(conversation_id)
        if conversation.status == "forgotten":
            return 0
        with self._write():
            cur = self.db.execute(
                "DELETE FROM messages WHERE conversation_id = ?", [conversation_id]
            )
            self.db.execute(
                "UPDATE conversations SET status = 'forgotten', title = NULL,"
                " updated_at = ? WHERE id = ?",
                [now(), conversation_id],
            )
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return cur.rowcount

    # -- sleeps ----------------------------------------------------------------

    def sleeps(self, limit: int | None = None) -> list[Sleep]:
        sql = "SELECT * FROM sleeps ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [sleep_from_row(row) for row in self.db.query(sql)]

    def last_sleep(self) -> Sleep | None:
        found = self.sleeps(limit=1)
        return found[0] if found else None

    def begin_sleep(self) -> int:
        """Record a sleep as running. A row still 'running' from a killed sleep is
        marked interrupted first (callers hold the sleep lock, so none is live)."""
        with self._write():
            self.db.execute(
                "UPDATE sleeps SET status = 'interrupted', ended_at = ?,"
                " error = 'the sleep process stopped before it finished'"
                " WHERE status = 'running'", [now()])
            cur = self.db.execute("INSERT INTO sleeps (started_at) VALUES (?)", [now()])
        return cur.lastrowid

    def end_sleep(self, sleep_id: int, status: str, metrics: dict,
                  error: str | None = None) -> None:
        with self._write():
            self.db.execute(
                "UPDATE sleeps SET status = ?, ended_at = ?, metrics = ?, error = ?"
                " WHERE id = ?",
                [status, now(), json.dumps(metrics, default=str), error, sleep_id])

    def accept_expert(self, sleep_id: int, level: str, path: str, config: dict,
                      conversation_ids: Iterable[int], probes: Iterable[tuple[str, str]],
                      metrics: dict) -> int:
        """Everything a successful night changes, in one transaction: the expert and
        its provenance, its probes, the conversations consolidated, the sleep done."""
        conversation_ids = list(conversation_ids)
        t = now()
        with self._write():
            cur = self.db.execute(
                "INSERT INTO experts (created_at, level, path, sleep_id, config)"
                " VALUES (?, ?, ?, ?, ?)", [t, level, path, sleep_id, json.dumps(config)])
            expert_id = cur.lastrowid
            for cid in conversation_ids:
                self.db.execute("INSERT INTO expert_sources VALUES (?, ?)", [expert_id, cid])
                self.db.execute(
                    "UPDATE conversations SET status = 'consolidated' WHERE id = ?"
                    " AND status = 'pending'", [cid])
            for question, answer in probes:
                self.db.execute(
                    "INSERT INTO probes (created_at, expert_id, question, answers, kind)"
                    " VALUES (?, ?, ?, ?, 'heldout')",
                    [t, expert_id, question, json.dumps([answer])])
            self.end_sleep(sleep_id, "succeeded", metrics)
        return expert_id

    def active_probes(self) -> list[tuple[str, str]]:
        """(question, expected answer) stored by the experts the model wears now."""
        rows = self.db.query(
            "SELECT p.question, p.answers FROM probes p JOIN experts e ON e.id = p.expert_id"
            " WHERE e.status = 'active' ORDER BY p.id")
        return [(r["question"], json.loads(r["answers"])[0]) for r in rows]

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

    def active_experts(self) -> list[dict]:
        """The experts the personal model wears (status 'active'), oldest first."""
        return list(self.db.query(
            "SELECT * FROM experts WHERE status = 'active' ORDER BY created_at, id"
        ))

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
    if not existed and "disk" in text:
        return f"cannot create the journal {path} ({text}); free some disk space"
    return f"cannot open the journal {path} ({text})"
