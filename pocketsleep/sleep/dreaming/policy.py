"""Dreaming, RL over the dream generator: a softmax policy over the dream writers.

Each arm is a dream writer ("<kind>/<template>", prompts.DREAM_WRITERS). Tonight's
candidates are drawn from the policy, a few of them get a trial update whose reward
is 1 when held-out self-probes improve (trials.py), and REINFORCE with the trials'
mean reward as baseline moves the preferences:

    h[a] += lr · mean_i (r_i − b) · (1[a = a_i] − π(a))

The policy is kept in the journal after every night (one row each), so the next
night starts where this one ended and its evolution can be shown.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ... import prompts

ARMS: tuple[str, ...] = tuple(prompts.DREAM_WRITERS)
# Preferences stay within ±3 (probabilities within about e^6 = 400× of each other):
# one lucky week must not starve a writer of the trials that could bring it back.
MAX_PREFERENCE = 3.0


@dataclass(frozen=True)
class DreamPolicy:
    preferences: dict[str, float]

    @classmethod
    def uniform(cls) -> "DreamPolicy":
        return cls({arm: 0.0 for arm in ARMS})

    @classmethod
    def from_journal(cls, journal) -> "DreamPolicy":
        """The policy the last night left, over today's arms (a writer added since
        starts at 0, one removed is dropped)."""
        last = journal.dream_policies(limit=1)
        stored = last[0]["preferences"] if last else {}
        return cls({arm: float(stored.get(arm, 0.0)) for arm in ARMS})

    def probabilities(self) -> dict[str, float]:
        top = max(self.preferences.values())
        weights = {a: math.exp(h - top) for a, h in self.preferences.items()}
        total = sum(weights.values())
        return {a: w / total for a, w in weights.items()}

    def allocate(self, n: int, rng: random.Random) -> list[str]:
        """`n` arms drawn from the policy: which writer writes each candidate."""
        p = self.probabilities()
        arms = list(p)
        return rng.choices(arms, weights=[p[a] for a in arms], k=n)

    def update(self, trials: list[tuple[str, float]], lr: float) -> "DreamPolicy":
        """One REINFORCE step from (arm, reward) trials drawn from this policy."""
        trials = [(a, r) for a, r in trials if a in self.preferences]
        if not trials:
            return self
        p = self.probabilities()
        baseline = sum(r for _, r in trials) / len(trials)
        new = dict(self.preferences)
        for arm, reward in trials:
            advantage = (reward - baseline) / len(trials)
            for a in new:
                new[a] += lr * advantage * ((a == arm) - p[a])
        return DreamPolicy({a: max(-MAX_PREFERENCE, min(MAX_PREFERENCE, h))
                            for a, h in new.items()})

    def rounded(self) -> dict[str, float]:
        return {a: round(p, 3) for a, p in self.probabilities().items()}
