"""The SQLite journal: db.py owns all SQL, migrations.py the schema, records.py the rows."""

from .db import Conversation, Journal, Message, Sleep, superseded_ids

__all__ = ["Conversation", "Journal", "Message", "Sleep", "superseded_ids"]
