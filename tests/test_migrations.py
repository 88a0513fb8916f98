"""The journal schema: exact on a blank database, and every earlier schema upgrades to it."""

import sqlite3

from sqlite_utils import Database

from pocketsleep.journal.migrations import MIGRATIONS, MIGRATIONS_TABLE_SQL, migrate

# The current schema, table by table: (column, type, notnull, default, pk).
EXPECTED = {
    "_migrations": [
        ("name", "TEXT", 0, None, 1),
        ("applied_at", "TEXT", 1, None, 0),
    ],
    "conversations": [
        ("id", "INTEGER", 0, None, 1),
        ("started_at", "TEXT", 1, None, 0),
        ("updated_at", "TEXT", 1, None, 0),
        ("title", "TEXT", 0, None, 0),
        ("private", "INTEGER", 1, "0", 0),
        ("status", "TEXT", 1, "'pending'", 0),
        ("source", "TEXT", 1, "'chat'", 0),
    ],
    "messages": [
        ("id", "INTEGER", 0, None, 1),
        ("conversation_id", "INTEGER", 1, None, 0),
        ("role", "TEXT", 1, None, 0),
        ("content", "TEXT", 1, None, 0),
        ("created_at", "TEXT", 1, None, 0),
        ("model_version", "INTEGER", 0, None, 0),
        ("token_count", "INTEGER", 0, None, 0),
        ("state", "TEXT", 1, "'complete'", 0),
    ],
    "sleeps": [
        ("id", "INTEGER", 0, None, 1),
        ("started_at", "TEXT", 1, None, 0),
        ("ended_at", "TEXT", 0, None, 0),
        ("status", "TEXT", 1, "'running'", 0),
        ("metrics", "TEXT", 0, None, 0),
        ("error", "TEXT", 0, None, 0),
        ("kind", "TEXT", 1, "'night'", 0),
    ],
    "model_versions": [
        ("id", "INTEGER", 0, None, 1),
        ("created_at", "TEXT", 1, None, 0),
        ("base_model", "TEXT", 1, None, 0),
        ("path", "TEXT", 1, None, 0),
        ("status", "TEXT", 1, "'ready'", 0),
        ("notes", "TEXT", 0, None, 0),
        ("switched_at", "TEXT", 0, None, 0),
        ("size_bytes", "INTEGER", 0, None, 0),
        ("checks", "TEXT", 0, None, 0),
    ],
    "version_experts": [
        ("version_id", "INTEGER", 1, None, 1),
        ("expert_id", "INTEGER", 1, None, 2),
    ],
    "experts": [
        ("id", "INTEGER", 0, None, 1),
        ("created_at", "TEXT", 1, None, 0),
        ("level", "TEXT", 1, None, 0),
        ("path", "TEXT", 1, None, 0),
        ("status", "TEXT", 1, "'active'", 0),
        ("sleep_id", "INTEGER", 0, None, 0),
        ("config", "TEXT", 0, None, 0),
    ],
    "expert_sources": [
        ("expert_id", "INTEGER", 1, None, 1),
        ("conversation_id", "INTEGER", 1, None, 2),
    ],
    "expert_rehearsed": [
        ("expert_id", "INTEGER", 1, None, 1),
        ("conversation_id", "INTEGER", 1, None, 2),
    ],
    "dreams": [
        ("id", "INTEGER", 0, None, 1),
        ("sleep_id", "INTEGER", 1, None, 0),
        ("kind", "TEXT", 1, None, 0),
        ("prompt", "TEXT", 1, None, 0),
        ("content", "TEXT", 1, None, 0),
        ("score", "REAL", 0, None, 0),
        ("selected", "INTEGER", 1, "0", 0),
        ("template", "TEXT", 0, None, 0),
        ("created_at", "TEXT", 0, None, 0),
    ],
    "dream_sources": [
        ("dream_id", "INTEGER", 1, None, 1),
        ("conversation_id", "INTEGER", 1, None, 2),
    ],
    "dream_policies": [
        ("id", "INTEGER", 0, None, 1),
        ("sleep_id", "INTEGER", 1, None, 0),
        ("created_at", "TEXT", 1, None, 0),
        ("preferences", "TEXT", 1, None, 0),
        ("probabilities", "TEXT", 1, None, 0),
        ("trials", "TEXT", 1, None, 0),
    ],
    "probes": [
        ("id", "INTEGER", 0, None, 1),
        ("created_at", "TEXT", 1, None, 0),
        ("conversation_id", "INTEGER", 0, None, 0),
        ("expert_id", "INTEGER", 0, None, 0),
        ("question", "TEXT", 1, None, 0),
        ("answers", "TEXT", 1, None, 0),
        ("kind", "TEXT", 1, "'heldout'", 0),
        ("taken_back_in", "INTEGER", 0, None, 0),
    ],
    "models": [
        ("id", "INTEGER", 0, None, 1),
        ("spec", "TEXT", 1, None, 0),
        ("format", "TEXT", 1, None, 0),
        ("path", "TEXT", 1, None, 0),
        ("name", "TEXT", 1, None, 0),
        ("first_used_at", "TEXT", 1, None, 0),
        ("last_used_at", "TEXT", 1, None, 0),
    ],
    "nightly_runs": [
        ("id", "INTEGER", 0, None, 1),
        ("started_at", "TEXT", 1, None, 0),
        ("finished_at", "TEXT", 0, None, 0),
        ("trigger", "TEXT", 1, None, 0),
        ("outcome", "TEXT", 1, "'running'", 0),
        ("detail", "TEXT", 0, None, 0),
        ("sleep_id", "INTEGER", 0, None, 0),
        ("pid", "INTEGER", 0, None, 0),
    ],
}


def schema(db: Database) -> dict:
    tables = [
        r[0]
        for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall()
    ]
    return {
        t: [(c[1], c[2], c[3], c[4], c[5]) for c in db.execute(f"PRAGMA table_info({t})")]
        for t in tables
    }


def full_sql(db: Database) -> list:
    return sorted(
        (r[0], r[1], r[2])
        for r in db.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    )


def test_blank_database_gets_exact_schema():
    db = Database(memory=True)
    applied = migrate(db)
    assert applied == [m.__name__ for m in MIGRATIONS]
    assert schema(db) == EXPECTED


def test_migrations_are_recorded_and_not_reapplied():
    db = Database(memory=True)
    migrate(db)
    assert migrate(db) == []
    names = [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY rowid")]
    assert names == [m.__name__ for m in MIGRATIONS]


def test_every_earlier_schema_upgrades_to_the_current_one():
    fresh = Database(memory=True)
    migrate(fresh)
    for k in range(len(MIGRATIONS)):
        db = Database(memory=True)
        # Build the schema as it was after the first k migrations...
        for fn in MIGRATIONS[:k]:
            fn(db)
        db.execute(MIGRATIONS_TABLE_SQL)
        for fn in MIGRATIONS[:k]:
            db.execute("INSERT INTO _migrations VALUES (?, 'then')", [fn.__name__])
        # ...then upgrade it.
        assert migrate(db) == [m.__name__ for m in MIGRATIONS[k:]]
        assert full_sql(db) == full_sql(fresh)


def test_a_failing_migration_leaves_nothing_behind(monkeypatch):
    import pocketsleep.journal.migrations as migrations

    def m999_broken(db):
        db.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("boom")

    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS + [m999_broken])
    db = Database(memory=True)
    try:
        migrations.migrate(db)
    except sqlite3.OperationalError:
        pass
    assert "half_done" not in db.table_names()
    assert "m999_broken" not in [r[0] for r in db.execute("SELECT name FROM _migrations")]


def test_a_real_m001_journal_upgrades_and_keeps_its_conversations(tmp_path):
    """tests/data/journal-m001.db was written by the first released schema."""
    import shutil
    from pathlib import Path

    from pocketsleep.journal import Journal

    copy = tmp_path / "journal.db"
    shutil.copy(Path(__file__).parent / "data" / "journal-m001.db", copy)
    with Journal.open(copy) as j:
        assert j.schema_version() == [m.__name__ for m in MIGRATIONS]
        assert [m.content for m in j.messages(1)] == ["My dog is Biscuit."]
        assert schema(j.db) == EXPECTED


def test_m004_keeps_version_rows_and_allows_one_current_version():
    db = Database(memory=True)
    db.execute(MIGRATIONS_TABLE_SQL)
    for fn in MIGRATIONS:
        if fn.__name__ == "m004_versions":
            db.execute("INSERT INTO model_versions (created_at, base_model, path, status)"
                       " VALUES ('then', 'default', 'v0001', 'current')")
        fn(db)
    row = db.execute("SELECT base_model, path, status, switched_at FROM model_versions").fetchone()
    assert row == ("default", "v0001", "current", None)
    try:
        db.execute("INSERT INTO model_versions (created_at, base_model, path, status)"
                   " VALUES ('now', 'default', 'v0002', 'current')")
    except sqlite3.IntegrityError:
        pass
    else:
        raise AssertionError("two current versions were accepted")
    db.execute("INSERT INTO model_versions (created_at, base_model, path, status)"
               " VALUES ('now', 'default', 'v0002', 'refused')")
