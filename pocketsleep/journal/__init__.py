"""The SQLite journal (see db.py); migrations.py holds its schema."""

from .db import Conversation, Journal, Message, Sleep

__all__ = ["Conversation", "Journal", "Message", "Sleep"]
