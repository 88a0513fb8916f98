"""The SQLite journal (see db.py); migrations.py holds its schema."""

from .db import Conversation, Journal, Message, Sleep, superseded_ids

__all__ = ["Conversation", "Journal", "Message", "Sleep", "superseded_ids"]
