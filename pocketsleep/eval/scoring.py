"""Is an answer right? The rules of DESIGN.md §5, and the perplexity figure.

A probe is answered right when any of its aliases occurs in the answer as a whole
word (or whole phrase), ignoring case. "Whole" means no letter, digit or underscore
directly before or after it, so an alias may itself start or end with punctuation
("U.S.", "C++"), and runs of spaces in an alias match any whitespace.

A later fact can replace an earlier one (the user moved from Sheffield to Leeds).
The earlier value is listed under `stale`; an answer that gives a stale value and
no current alias is wrong, and is counted as stale so the report can say how often
the model fell back on what it learned first.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Iterable, NamedTuple, Sequence

from .suite import Probe


class Verdict(NamedTuple):
    correct: bool
    stale: bool  # wrong, and gave a value a later fact replaced


@lru_cache(maxsize=4096)
def alias_pattern(alias: str) -> re.Pattern:
    words = [re.escape(w) for w in alias.split()]
    # Lookarounds instead of \b: \b needs a word character at the alias's edge.
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def mentions(answer: str, aliases: Iterable[str]) -> bool:
    """Does `answer` contain any of `aliases` as a whole word, case-insensitively?"""
    return any(alias_pattern(a).search(answer) for a in aliases if a.strip())


def judge(probe: Probe, answer: str) -> Verdict:
    if mentions(answer, probe.answers):
        return Verdict(True, False)
    return Verdict(False, mentions(answer, probe.stale))


def perplexity(logprobs: Sequence[float]) -> float | None:
    """exp of minus the mean per-token log-probability; None for no tokens."""
    if not logprobs:
        return None
    return math.exp(-sum(logprobs) / len(logprobs))
