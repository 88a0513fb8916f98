"""Naive LoRA fine-tuning on the raw transcripts: the `sft` baseline of `pocketsleep eval`.

What sleep must beat on retention (DESIGN.md §5). Each night:

    the personal model as it is (base + earlier nights' experts, frozen)
    + a new LoRA expert, shaped like the sleep's (rank, layers, projections)
    → next-token cross-entropy on the day's conversations, rendered with the model's
      chat template, every token in the loss (user turns included: that is where the
      user states facts), a fixed number of Adam steps
    → the expert is written like a sleep's (MLX adapter + GGUF LoRA) and kept: no gate.

The loss and its batches are `sleep/transcript.py`'s, which the sleep can also add as
one term of its own objective (SleepOptions.transcript_weight).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from ..config import Config, Paths
from ..sleep.options import SleepOptions
from ..sleep.transcript import (WINDOW_TOKENS, batches, collate, transcript_loss,
                                transcript_sequences)

_SLEEP = SleepOptions()


@dataclass(frozen=True)
class SftOptions:
    # The expert's shape and the batch are the sleep's defaults, so the two methods add
    # the same capacity.
    rank: int = _SLEEP.rank
    scale: float = _SLEEP.scale
    num_layers: int = _SLEEP.num_layers
    keys: tuple[str, ...] = _SLEEP.keys
    batch_size: int = _SLEEP.batch_size
    # The step count is not the sleep's: a day is a few short transcripts, and the
    # sleep's 48 steps are ~100 epochs of them. Measured on dev-week day 1 (embedded
    # model, lr 3e-4): 48 steps wrecked the model (general probes 6/6 -> 0/6,
    # perplexity x20, recall 1/4); 12 steps: recall 2/4, general 3/6, perplexity x6;
    # 6 steps: recall 2/4, general 6/6, perplexity +47%. The baseline sleep has to beat
    # should be the strongest naive one, so 6.
    steps: int = 6
    # Fixed, not the sleep's (which is being tuned): the steps above were chosen at it.
    learning_rate: float = 3e-4
    max_tokens: int = WINDOW_TOKENS
    seed: int = 0


def train_expert(model, sequences: list[list[int]], options: SftOptions,
                 progress: Callable[[str, int, int], None] = lambda *a: None) -> list[float]:
    """`options.steps` Adam steps on the model's trainable parameters (tonight's expert);
    returns each step's loss."""
    optimizer = optim.Adam(learning_rate=options.learning_rate)
    loss_and_grad = nn.value_and_grad(model, transcript_loss)
    losses = []
    draw = batches(sequences, options.batch_size, options.seed)
    for step in range(options.steps):
        progress("fine-tuning", step, options.steps)
        (loss, _), grads = loss_and_grad(model, *collate(next(draw)))
        optimizer.update(model, grads)
        mx.eval(model.trainable_parameters(), optimizer.state, loss)
        losses.append(loss.item())
    return losses


@dataclass
class SftNight:
    expert: Path | None  # None: the day had nothing to train on
    losses: list[float]


def sft_night(paths: Paths, config: Config, conversations: Sequence[Sequence[dict]],
              earlier: Sequence[Path], night: int, options: SftOptions = SftOptions(),
              progress: Callable[[str, int, int], None] = lambda *a: None) -> SftNight:
    """Train and write one night's expert in `paths`; `earlier` experts are worn frozen."""
    from ..backends import mlx_lora
    from ..backends.mlx_engine import MlxEngine
    from ..models import resolve_model
    from ..sleep.job import write_expert

    resolved = resolve_model(config.model, paths)
    engine = MlxEngine.load(resolved, paths)
    try:
        sequences = transcript_sequences(engine.tokenizer, conversations, options.max_tokens)
        if not sequences:
            return SftNight(None, [])
        for folder in earlier:
            mlx_lora.attach(engine.model, folder)
        mlx_lora.add_trainable_expert(engine.model, options.num_layers, list(options.keys),
                                      options.rank, options.scale, seed=options.seed)
        losses = train_expert(engine.model, sequences, options, progress)
        config_json = {"num_layers": options.num_layers, "fine_tune_type": "lora",
                       "lora_parameters": {"rank": options.rank, "scale": options.scale,
                                           "dropout": 0.0, "keys": list(options.keys)},
                       "base_model": resolved.spec, "sft_night": night}
        # The sleep job's atomic writer: the same folder layout, and a GGUF LoRA so
        # the llama.cpp engine can wear the expert too.
        name = write_expert(paths, engine.model, config_json, night, resolved)
    finally:
        engine.close()
    return SftNight(paths.expert_folder(name), losses)
