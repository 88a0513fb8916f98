"""The journal's schema, as an ordered list of migrations.

One function per schema change, applied in order, each recorded in `_migrations`
once applied. Never edit a migration that has shipped: add a new one (tests keep a
copy of every earlier schema and check it upgrades to the current one).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Callable

from sqlite_utils import Database

MIGRATIONS_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
)
MIGRATIONS: list[Callable[[Database], None]] = []


def migration(fn: Callable[[Database], None]) -> Callable[[Database], None]:
    MIGRATIONS.append(fn)
    return fn


def _statements(db: Database, script: str) -> None:
    """Run a script statement by statement, inside the caller's transaction.

    (sqlite3's executescript() would commit first, breaking a migration's atomicity.)
    """
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    assert not statement.strip(), f"unterminated SQL: {statement!r}"


def migrate(db: Database) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now."""
    db.execute(MIGRATIONS_TABLE_SQL)
    done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
    applied = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        # One transaction per migration: a crash leaves it either applied and
        # recorded, or not applied at all.
        with db.atomic():
            fn(db)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                [fn.__name__, dt.datetime.now(dt.timezone.utc).isoformat()],
            )
        applied.append(fn.__name__)
    return applied


@migration
def m001_initial(db: Database) -> None:
    # Conversations are the day's episodes. `status` follows one conversation
    # through sleep: pending -> consolidated, or forgotten at the user's request.
    # `private` ones are never learned from.
    _statements(
        db,
        """
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            title TEXT,
            private INTEGER NOT NULL DEFAULT 0 CHECK (private IN (0, 1)),
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'consolidated', 'forgotten')),
            source TEXT NOT NULL DEFAULT 'chat'
        );
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id),
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL,
            created_at TEXT NOT NULL,
            model_version INTEGER,
            token_count INTEGER,
            state TEXT NOT NULL DEFAULT 'complete'
                CHECK (state IN ('complete', 'cancelled'))
        );
        CREATE INDEX idx_messages_conversation ON messages(conversation_id, id);
        CREATE TABLE sleeps (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            status TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'rejected', 'failed', 'interrupted')),
            metrics TEXT,
            error TEXT
        );
        CREATE TABLE model_versions (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            base_model TEXT NOT NULL,
            path TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'ready'
                CHECK (status IN ('ready', 'current', 'previous', 'pruned')),
            notes TEXT
        );
        CREATE TABLE experts (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            level TEXT NOT NULL CHECK (level IN ('nightly', 'weekly', 'longterm')),
            path TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'retired', 'rejected', 'pruned')),
            sleep_id INTEGER REFERENCES sleeps(id),
            config TEXT
        );
        -- Provenance: which conversations each expert learned from (forget needs it).
        CREATE TABLE expert_sources (
            expert_id INTEGER NOT NULL REFERENCES experts(id),
            conversation_id INTEGER NOT NULL REFERENCES conversations(id),
            PRIMARY KEY (expert_id, conversation_id)
        );
        CREATE TABLE dreams (
            id INTEGER PRIMARY KEY,
            sleep_id INTEGER NOT NULL REFERENCES sleeps(id),
            kind TEXT NOT NULL,
            prompt TEXT NOT NULL,
            content TEXT NOT NULL,
            score REAL,
            selected INTEGER NOT NULL DEFAULT 0 CHECK (selected IN (0, 1))
        );
        CREATE TABLE probes (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            conversation_id INTEGER REFERENCES conversations(id),
            expert_id INTEGER REFERENCES experts(id),
            question TEXT NOT NULL,
            answers TEXT NOT NULL,
            kind TEXT NOT NULL DEFAULT 'heldout'
        );
        """
    )


@migration
def m002_models(db: Database) -> None:
    # Every model the user has resolved (--model / config), for status and provenance.
    _statements(
        db,
        """
        CREATE TABLE models (
            id INTEGER PRIMARY KEY,
            spec TEXT NOT NULL,
            format TEXT NOT NULL CHECK (format IN ('gguf', 'mlx')),
            path TEXT NOT NULL,
            name TEXT NOT NULL,
            first_used_at TEXT NOT NULL,
            last_used_at TEXT NOT NULL,
            UNIQUE (spec, path)
        );
        """,
    )


@migration
def m003_nightly_runs(db: Database) -> None:
    # Every run of the scheduled nightly job (or of its catch-up after a missed
    # night): when it ran, why it was started, and what came of it, so `schedule
    # status` can show the last result and a missed night can be detected.
    # `outcome` 'skipped' carries its reason in `detail` (on battery, nothing
    # pending, chat open, another sleep running); `pid` tells a live run from one
    # that was killed.
    _statements(
        db,
        """
        CREATE TABLE nightly_runs (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            trigger TEXT NOT NULL CHECK (trigger IN ('schedule', 'catch-up')),
            outcome TEXT NOT NULL DEFAULT 'running'
                CHECK (outcome IN ('running', 'slept', 'rejected', 'skipped', 'failed')),
            detail TEXT,
            sleep_id INTEGER REFERENCES sleeps(id),
            pid INTEGER
        );
        """,
    )


@migration
def m004_versions(db: Database) -> None:
    # The morning merge makes numbered versions of the personal model. A version
    # whose fused weights disagreed with base + experts is kept as a record with
    # status 'refused' (m001's CHECK has no such value, so the table is rebuilt; it
    # held no rows before this release). `switched_at` is when it last became
    # current, `checks` the fused-vs-unfused comparison (JSON), `size_bytes` its
    # files. At most one version is current. `version_experts` says which experts
    # each version holds: the engines use a version only when it holds exactly the
    # active experts, and a rollback makes that set active again.
    _statements(
        db,
        """
        CREATE TABLE model_versions_m004 (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            base_model TEXT NOT NULL,
            path TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'ready'
                CHECK (status IN ('ready', 'current', 'previous', 'refused', 'pruned')),
            notes TEXT,
            switched_at TEXT,
            size_bytes INTEGER,
            checks TEXT
        );
        INSERT INTO model_versions_m004 (id, created_at, base_model, path, status, notes)
            SELECT id, created_at, base_model, path, status, notes FROM model_versions;
        DROP TABLE model_versions;
        ALTER TABLE model_versions_m004 RENAME TO model_versions;
        CREATE UNIQUE INDEX idx_one_current_version ON model_versions(status)
            WHERE status = 'current';
        CREATE TABLE version_experts (
            version_id INTEGER NOT NULL REFERENCES model_versions(id),
            expert_id INTEGER NOT NULL REFERENCES experts(id),
            PRIMARY KEY (version_id, expert_id)
        );
        """,
    )


@migration
def m005_sleep_kinds(db: Database) -> None:
    # Besides the nightly sleep, two other runs train an expert and are recorded the
    # same way (status, metrics, error): a consolidation (nightly experts distilled
    # into one weekly expert, weeklies into the long-term one) and a rebuild (an
    # expert learned again without a conversation the user asked to forget). `kind`
    # tells them apart; every earlier row was a night.
    _statements(
        db,
        """
        ALTER TABLE sleeps ADD COLUMN kind TEXT NOT NULL DEFAULT 'night'
            CHECK (kind IN ('night', 'consolidation', 'rebuild'));
        """,
    )


@migration
def m006_dreams(db: Database) -> None:
    # Dreaming (Sleep II). m001's `dreams` table gets the dream policy's arm that
    # wrote each dream (`template`, "<kind>/<template>") and when; `dream_sources`
    # links a dream to the conversation(s) it was written from, so `forget` deletes
    # exactly the dreams that hold a conversation's text, even those of a night that
    # was rejected (no expert links that night to it). `dream_policies` keeps the
    # dream generator's policy after every night, one row each, so its evolution
    # can be shown: preferences and probabilities per arm, and the trial updates
    # (arm, reward) that moved it.
    _statements(
        db,
        """
        ALTER TABLE dreams ADD COLUMN template TEXT;
        ALTER TABLE dreams ADD COLUMN created_at TEXT;
        CREATE INDEX idx_dreams_sleep ON dreams(sleep_id);
        CREATE TABLE dream_sources (
            dream_id INTEGER NOT NULL REFERENCES dreams(id) ON DELETE CASCADE,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id),
            PRIMARY KEY (dream_id, conversation_id)
        );
        CREATE INDEX idx_dream_sources_conversation ON dream_sources(conversation_id);
        CREATE TABLE dream_policies (
            id INTEGER PRIMARY KEY,
            sleep_id INTEGER NOT NULL REFERENCES sleeps(id),
            created_at TEXT NOT NULL,
            preferences TEXT NOT NULL,
            probabilities TEXT NOT NULL,
            trials TEXT NOT NULL
        );
        """,
    )


@migration
def m007_expert_rehearsed(db: Database) -> None:
    # What an expert's night trained it to hold in place without learning it anew:
    # the conversations whose earlier probes (the earlier-night anchors) or kept
    # dreams (dream replay) it rehearsed. Those answers are in its training data, so
    # `forget` of such a conversation rebuilds it too, as it rebuilds the experts in
    # `expert_sources`. A consolidation's expert inherits its retiring experts' rows.
    # For experts made before this table, which probes their nights held is not
    # known: every conversation an earlier-made expert learned counts (rebuilding too
    # much costs minutes; too little would keep what the user asked to forget),
    # except one already forgotten for good (no expert that learned it is left).
    _statements(
        db,
        """
        CREATE TABLE expert_rehearsed (
            expert_id INTEGER NOT NULL REFERENCES experts(id),
            conversation_id INTEGER NOT NULL REFERENCES conversations(id),
            PRIMARY KEY (expert_id, conversation_id)
        );
        CREATE INDEX idx_expert_rehearsed_conversation ON expert_rehearsed(conversation_id);
        INSERT INTO expert_rehearsed SELECT DISTINCT e.id, s.conversation_id
            FROM experts e JOIN expert_sources s ON s.expert_id < e.id
            WHERE s.conversation_id NOT IN
                (SELECT conversation_id FROM expert_sources WHERE expert_id = e.id)
            AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = s.conversation_id
                AND c.status = 'forgotten' AND NOT EXISTS (SELECT 1 FROM expert_sources x
                    JOIN experts y ON y.id = x.expert_id
                    WHERE x.conversation_id = c.id AND y.status != 'pruned'));
        """,
    )


@migration
def m008_probes_taken_back(db: Database) -> None:
    # The conversation in which the user took back what a probe's answer says ("I'm
    # pescatarian now, not vegetarian": sleep/updates.py). While that conversation is
    # learned (consolidated), no night holds the probe in place or guards it; when it
    # is not (rolled back to pending, forgotten), the probe counts again.
    _statements(
        db,
        """
        ALTER TABLE probes ADD COLUMN taken_back_in INTEGER REFERENCES conversations(id);
        """,
    )
