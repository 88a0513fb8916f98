"""A model that can switch some of the experts it wears on and off, and the
consolidation's teacher: the personal model wearing the experts being consolidated.

In a night's sleep the teacher is the model with the day's conversation in its
context. In a consolidation the knowledge is in experts, not in a context: the
teacher is the same model with those experts switched on, asked closed-book, and
the student is the model with them switched off plus the new expert. Switching is
done through the scale ExpertStack keeps with every frozen expert, so one copy of
the weights serves as teacher and student. (The same switch, the other way round,
gives a night a teacher without the earlier nights' experts: BareTeacher, an ablation.)
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, ContextManager, Sequence

from ..backends import mlx_lora
from ..backends.mlx_lora import ExpertStack, without_trainable_expert
from .options import SleepOptions
from .sampling import Generated
from .selfstudy import ModelIO, Teacher


class ExpertSwitch:
    """Experts attached to a model that can be switched off and on together."""

    def __init__(self):
        self._entries: list[tuple[ExpertStack, int, float]] = []  # (layer, index, scale)

    def attach(self, model, folder: Path) -> None:
        """Attach an expert (mlx_lora.attach) and remember where it went."""
        before = {id(m): len(m.experts) for _, m in model.named_modules()
                  if isinstance(m, ExpertStack)}
        mlx_lora.attach(model, folder)
        for _, m in model.named_modules():
            if isinstance(m, ExpertStack):
                for i in range(before.get(id(m), 0), len(m.experts)):
                    self._entries.append((m, i, m.experts[i][2]))

    def set(self, on: bool) -> None:
        for stack, i, scale in self._entries:
            a, b, _ = stack.experts[i]
            stack.experts[i] = (a, b, scale if on else 0.0)

    def on(self):
        """Switched on inside the block, off again after it."""
        return self._within(True)

    def off(self):
        """Switched off inside the block, on again after it."""
        return self._within(False)

    @contextmanager
    def _within(self, on: bool):
        self.set(on)
        try:
            yield
        finally:
            self.set(not on)


class _Switched:
    """The model, called in a state of its experts (for `teacher_logprobs`, which
    calls `teacher.io.model(...)`). MLX builds the computation when the model is
    called, so the scales in force at the call are the ones used."""

    def __init__(self, model, state: Callable[[], ContextManager]):
        self._model, self._state = model, state

    def __call__(self, *args, **kwargs):
        with self._state():
            return self._model(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


class SwitchedTeacher(Teacher):
    """The model in another state of its experts (`state`: a context in which they
    are as the teacher has them), the new expert off. `distill` uses it like a
    night's teacher: `answer_many` for the off-policy targets,
    `teacher_logprobs(teacher, ...)` for the on-policy ones."""

    def __init__(self, io: ModelIO, state: Callable[[], ContextManager], options: SleepOptions):
        super().__init__(ModelIO(_Switched(io.model, state), io.tokenizer), options)
        self.student_io = io
        self._state = state

    @contextmanager
    def wearing(self):
        """The teacher's state on the real model, for code that takes the model itself."""
        with self._state(), without_trainable_expert(self.student_io.model):
            yield self.student_io

    def answer_many(self, conversations: list[list[dict]], temperatures: list[float],
                    seed: int, starts: Sequence[list[int]] | None = None,
                    processors: Sequence | None = None) -> list[Generated]:
        with self.wearing():
            return Teacher(self.student_io, self.options).answer_many(
                conversations, temperatures, seed, starts, processors)


class WearingTeacher(SwitchedTeacher):
    """The personal model as it is now (the experts being consolidated on, the new
    expert off), answering closed-book."""

    def __init__(self, io: ModelIO, switch: ExpertSwitch, options: SleepOptions):
        super().__init__(io, switch.on, options)
        self.switch = switch


class BareTeacher(SwitchedTeacher):
    """A night's teacher without the earlier nights' experts, reading the day
    (SleepOptions.teacher_wears_experts off; on by default because, distilled towards
    this teacher, tonight's expert learns to cancel the earlier ones)."""

    def __init__(self, io: ModelIO, switch: ExpertSwitch, options: SleepOptions):
        super().__init__(io, switch.off, options)
        self.switch = switch
