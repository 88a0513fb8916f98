"""The chat app's screens: the main chat screen and its modals."""

from .chat import ChatScreen
from .confirm import ConfirmScreen
from .help import HelpScreen
from .rename import RenameScreen

__all__ = ["ChatScreen", "ConfirmScreen", "HelpScreen", "RenameScreen"]
