"""The chat app's widgets: each posts its own nested Message classes."""

from .conversation_list import ConversationList
from .job_panel import JobPanel, JobView
from .message_view import ChatLog, MessageView
from .prompt_input import PromptInput
from .status_bar import StatusBar

__all__ = [
    "ChatLog",
    "ConversationList",
    "JobPanel",
    "JobView",
    "MessageView",
    "PromptInput",
    "StatusBar",
]
