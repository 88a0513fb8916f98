"""pocketsleep: a local assistant that learns what you tell it while you sleep."""

__version__ = "0.1.0"
