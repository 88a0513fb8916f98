"""Shared pieces of the sleep tests: a tiny GGUF, options that sleep in a second or two,
a day of conversations, and a self-study set that does not depend on a random model
writing good questions."""

from __future__ import annotations

from pathlib import Path

from tiny_models import write_tiny_gguf

from pocketsleep.sleep.options import SleepOptions

# Everything small: one block gets the expert, a few tokens per answer, every objective
# term on every step (when there is something learnable). Dreaming is on, though off by
# default, so that every test of forgetting, privacy and crashes covers dreams too.
FAST = SleepOptions(steps=2, questions_per_statement=1, question_lists=1,
                    answers_per_question=1, anchors=2,
                    max_answer_tokens=8, num_layers=1, rank=2, batch_size=2, lti_group=2,
                    on_policy_every=1, lti_every=1, gate=False, dream=True)

DAY = [
    [{"role": "user", "content": "My sister Anna lives in Lisbon and likes green tea."},
     {"role": "assistant", "content": "That sounds lovely."},
     {"role": "user", "content": "We meet every Sunday at the old harbour."}],
    [{"role": "user", "content": "My dog is called Biscuit and he is three."},
     {"role": "assistant", "content": "Biscuit is a great name."}],
]
SECRET = "ZEBRA-4471"
PRIVATE = [{"role": "user", "content": f"The vault code is {SECRET} and nobody knows it."},
           {"role": "assistant", "content": "I will keep that to myself."}]


def tiny_model(folder: Path) -> Path:
    # A context long enough for the teacher's prompt (the episode plus a question).
    return write_tiny_gguf(Path(folder) / "tiny.gguf", arch="llama", n_ctx=2048).path


def log_day(journal, day=DAY) -> list[int]:
    return [journal.log_conversation(c, title=f"day {i}") for i, c in enumerate(day)]


def learnable_self_study(monkeypatch) -> None:
    """Make self-study keep what the teacher says: one fixed question per statement
    (a random model writes none that look like questions) and every answer usable
    (a random model's answers are never grounded). The rest runs for real."""
    from pocketsleep.sleep import questions, selfstudy

    def write_questions(io, statements, n, seed):
        return [[f"What did I tell you in statement {i}?"] for i, _ in enumerate(statements)]

    monkeypatch.setattr(questions, "write_questions", write_questions)
    monkeypatch.setattr(questions, "write_question_lists",
                        lambda io, statements, n, seed: [[] for _ in statements])
    # Whole answers: a random model's text has sentence ends anywhere.
    monkeypatch.setattr(selfstudy, "through_sentence_stating", lambda io, answer, words: answer)
    monkeypatch.setattr(selfstudy, "grounded", lambda *a, **k: True)
    monkeypatch.setattr(selfstudy, "usable_answer", lambda *a, **k: True, raising=False)


def student_and_teacher(gguf: Path, options: SleepOptions = FAST):
    """A tiny model wearing tonight's (zero) expert, the teacher with DAY in context,
    and a few examples (two recall questions, two anchors) answered by the teacher."""
    from pocketsleep import prompts
    from pocketsleep.backends import mlx_lora
    from pocketsleep.backends.gguf_import import load_gguf
    from pocketsleep.sleep.selfstudy import Example, ModelIO, Teacher

    model, tokenizer = load_gguf(gguf)
    io = ModelIO(model, tokenizer)
    mlx_lora.add_trainable_expert(model, options.num_layers, list(options.keys),
                                  options.rank, options.scale)
    teacher = Teacher(io, options)
    recall = [prompts.teacher_view(DAY[0], q) for q in prompts.RECALL_PROMPTS[:2]]
    answers = teacher.answer_many(recall, [0.0, 0.0], seed=0)
    examples = [Example("recall", m[-1]["content"], m, a) for m, a in zip(recall, answers)]
    anchors = [prompts.closed_book(q) for q in prompts.ANCHOR_PROMPTS[:2]]
    anchor_answers = teacher.answer_many(anchors, [0.0, 0.0], seed=0)
    examples += [Example("anchor", m[-1]["content"], m, a)
                 for m, a in zip(anchors, anchor_answers)]
    assert all(e.answer.answer_ids for e in examples)
    return io, teacher, examples
