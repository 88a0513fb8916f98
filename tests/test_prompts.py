"""The fixed prompt sets keep apart what must stay apart: the gate's quiz measures
questions no night trains on, neither the anchors nor the quiz may be the
evaluation's own general probes, and no few-shot example may ask a memory probe
(the sleep would be tuned to its test)."""

import json
from pathlib import Path

from pocketsleep import prompts

# dev-week's general probes, as the paraphrased copy in the repository holds them
# (identical to ../shared/eval/dev-week.json's; the rewording is of memory probes).
SUITE = Path(__file__).parents[1] / "bench" / "suites" / "dev-week-paraphrased.json"
# The suite itself, beside the checkout (as CI has it) when it is there.
DEV_WEEK = Path(__file__).parents[2] / "shared" / "eval" / "dev-week.json"


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


def _texts(value) -> list[str]:
    """Every string inside a prompts constant (strings, and tuples, lists and dicts of them)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (tuple, list)):
        return [text for item in value for text in _texts(item)]
    return []


def _memory_probes() -> set[str]:
    suites = [SUITE] + ([DEV_WEEK] if DEV_WEEK.exists() else [])
    return {_norm(probe["question"]) for suite in suites
            for day in json.loads(suite.read_text())["days"] for probe in day["probes"]}


def test_no_prompt_asks_a_memory_probe():
    # The question and dream writers' examples are copied by the model: an example
    # that is a probe would train the probe itself, and recall would be measured on
    # a question the night saw (two were, until the seventeenth round).
    texts = [text.lower() for name, value in vars(prompts).items()
             if name.isupper() for text in _texts(value)]
    assert texts and len(_memory_probes()) >= 15
    asked = {probe for probe in _memory_probes() if any(probe in text for text in texts)}
    assert not asked
