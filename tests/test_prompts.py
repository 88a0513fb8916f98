"""The fixed prompt sets keep apart what must stay apart: the gate's quiz measures
questions no night trains on, and neither the anchors nor the quiz may be the
evaluation's own general probes (the sleep would be tuned to its test)."""

import json
from pathlib import Path

from pocketsleep import prompts

# dev-week's general probes, as the paraphrased copy in the repository holds them
# (identical to ../shared/eval/dev-week.json's; the rewording is of memory probes).
SUITE = Path(__file__).parents[1] / "bench" / "suites" / "dev-week-paraphrased.json"


def _norm(question: str) -> str:
    return question.lower().strip(" ?.")


def test_the_quiz_is_never_trained_on():
    quiz = {_norm(q) for q in prompts.GATE_PROMPTS}
    assert len(quiz) == len(prompts.GATE_QUIZ)
    assert not quiz & {_norm(q) for q in prompts.ANCHOR_PROMPTS}
    assert not quiz & {_norm(q) for q in prompts.RECALL_PROMPTS}
    assert all(answers and all(a.strip() for a in answers) for _, answers in prompts.GATE_QUIZ)


def test_neither_anchors_nor_quiz_are_the_memory_suites_general_probes():
    probes = {_norm(p["question"]) for p in json.loads(SUITE.read_text())["general_probes"]}
    assert not probes & {_norm(q) for q in prompts.ANCHOR_PROMPTS}
    assert not probes & {_norm(q) for q in prompts.GATE_PROMPTS}
