"""Dreaming (Sleep II): the model rehearses what it learned tonight with practice it
writes itself, so new memories hold under paraphrase and survive later nights.

One module per job: generate.py (dream writers, diversified by diversify.py),
select.py (gradient-norm scoring, top-k + m random), rehearse.py (LoRA SFT with
replay), trials.py + policy.py (RL over the dream generator), night.py (one night).
"""

from .night import dream

__all__ = ["dream"]
