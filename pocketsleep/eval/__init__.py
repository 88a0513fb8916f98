"""Measuring what matters (DESIGN.md §5): memory suites, scoring, the methods
compared, the day/night protocol, and the report."""

from .harness import run_eval
from .methods import METHODS, Method, MethodContext, register
from .suite import Suite, load_suite

__all__ = ["METHODS", "Method", "MethodContext", "Suite", "load_suite", "register", "run_eval"]
