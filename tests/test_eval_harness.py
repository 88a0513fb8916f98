"""The eval protocol end to end on a fake engine: no model loads, seconds in all."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from pocketsleep.backends.fake import FakeEngine
from pocketsleep.errors import InputError
from pocketsleep.eval.harness import TIMING_KEYS, run_eval
from pocketsleep.eval.methods import METHODS, ClosedBook, InContext, Method, parse_methods
from pocketsleep.eval.report import format_table, write_plot
from pocketsleep.eval.suite import parse_suite
from pocketsleep.prompts import HISTORY_HEADER

SUITE = {
    "name": "tiny",
    "days": [
        {"date": "2026-01-01",
         "conversations": [
             [{"role": "user", "content": "My cat is called Miso."},
              {"role": "assistant", "content": "Miso is a lovely name."}],
             [{"role": "user", "content": "I live in Porto."},
              {"role": "assistant", "content": "Porto is beautiful."}]],
         "probes": [{"question": "What is my cat called?", "answers": ["Miso"]},
                    {"question": "What tea do I drink?", "answers": ["green tea"]}]},
        {"date": "2026-01-02",
         "conversations": [[{"role": "user", "content": "I moved to Lyon last week."},
                            {"role": "assistant", "content": "Welcome to Lyon!"}]],
         "probes": [{"question": "Which city do I live in?", "answers": ["Lyon"],
                     "stale": ["Porto"]}]},
    ],
    "general_probes": [{"question": "What is the capital of France?", "answers": ["Paris"]},
                       {"question": "What do bees make?", "answers": ["honey"]}],
    "general_text": "The river runs to the sea.",
}

# What the fake model would say from what is in its context: the value mentioned
# first wins (so with Porto and Lyon both in the history, it answers the stale Porto).
CANDIDATES = {
    "What is my cat called?": ["Miso"],
    "What tea do I drink?": ["green tea"],
    "Which city do I live in?": ["Lyon", "Porto"],
}
GENERAL = {"What is the capital of France?": "Paris.", "What do bees make?": "Wax."}


class RecallEngine(FakeEngine):
    """Answers a probe only when the fact is in its system prompt."""

    def stream_chat(self, messages, options=None):
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        question = messages[-1]["content"]
        if question in GENERAL:
            reply = GENERAL[question]
        else:
            found = sorted((system.find(c), c) for c in CANDIDATES.get(question, [])
                           if HISTORY_HEADER in system and c in system)
            reply = f"It is {found[0][1]}." if found else "I don't know."
        self.enqueue(reply)
        return super().stream_chat(messages, *([options] if options else []))


@pytest.fixture
def suite():
    return parse_suite(SUITE, "tiny.json")


def run(suite, methods, engines=None, **kw):
    engines = [] if engines is None else engines

    def factory(paths, config):
        engines.append(RecallEngine(model_label="fake-model"))
        return engines[-1]

    return run_eval(suite, methods, engine_factory=factory, **kw)


def strip_timings(result: dict) -> dict:
    out = json.loads(json.dumps(result))
    for m in out["methods"].values():
        for key in TIMING_KEYS:
            m.pop(key)
    return out


def test_icl_beats_closed_book_and_the_report_has_the_stable_shape(suite, data_home):
    engines, lines = [], []
    result = run(suite, [ClosedBook, InContext], engines, seed=3, progress=lines.append)

    assert len(engines) == 1  # one engine, shared by both methods
    assert {"suite", "model", "seed", "methods"} <= set(result)
    assert (result["suite"], result["model"], result["seed"]) == ("tiny", "default", 3)
    assert (result["model_name"], result["engine"]) == ("fake-model", "fake")
    assert list(result["methods"]) == ["none", "icl"]
    stable = {"final_recall", "today_recall", "stale_answers", "general_accuracy",
              "ppl_change", "retention", "sleep_seconds", "peak_rss_mb"}
    for m in result["methods"].values():
        assert stable <= set(m)
        assert len(m["sleep_seconds"]) == len(m["peak_rss_mb"]) == 2
        assert all(s >= 0 for s in m["sleep_seconds"])
        assert all(mb > 0 for mb in m["peak_rss_mb"])
        assert m["ppl_change"] == 0.0 and m["ppl_before"] == pytest.approx(100.0)
        assert m["general_accuracy"] == 0.5 and m["general_per_night"] == [0.5, 0.5]
        for key in ("final_recall", "today_recall", "general_accuracy"):
            assert 0.0 <= m[key] <= 1.0

    none, icl = result["methods"]["none"], result["methods"]["icl"]
    assert none["retention"] == [[0.0, 0.0], [None, 0.0]]
    assert (none["final_recall"], none["today_recall"], none["stale_answers"]) == (0.0, 0.0, 0)
    # icl: Miso yes, tea never; the city comes out as the stale Porto.
    assert icl["retention"] == [[0.5, 0.5], [None, 0.0]]
    assert icl["recall_per_night"] == [0.5, 0.3333]
    assert (icl["final_correct"], icl["final_total"], icl["final_recall"]) == (1, 3, 0.3333)
    assert icl["today_recall"] == 0.25
    assert icl["stale_answers"] == 1
    assert icl["final_recall"] > none["final_recall"]

    # 2 + 3 probes and 2 x 2 general probes per method, each recorded.
    assert len(icl["answers"]) == 9
    assert icl["answers"][-3] == {"night": 2, "day": 2, "question": "Which city do I live in?",
                                  "answer": "It is Porto.", "correct": False, "stale": True}
    # Closed-book prompts carry no history; in-context ones carry every day so far, dated.
    prompts = engines[0].prompts
    assert not any(HISTORY_HEADER in p[0]["content"] for p in prompts[:9])
    assert len(prompts) == 18 and HISTORY_HEADER in prompts[9][0]["content"]
    last = prompts[-1][0]["content"]
    assert "[2026-01-01]" in last and "[2026-01-02]" in last and "Welcome to Lyon!" in last

    assert "icl: day 2/2 (2026-01-02): night" in lines
    assert "icl: day 2/2 (2026-01-02): recall 1/3, general 1/2" in lines
    # Nothing was written to the user's data home.
    assert not data_home.exists()

    table = format_table(result)
    assert "final recall" in table and "1/3 0.33" in table and "retention" in table


class Inspector(ClosedBook):
    """Records what each night finds in its journal and home."""

    name = "inspector"
    seen: list = []
    dates: list = []

    def night(self, day, journal):
        titles = [c.title for c in journal.pending_conversations()]
        Inspector.seen.append((day.date, titles, self.ctx.paths.home, self.ctx.paths.home.exists()))
        Inspector.dates.append([c.started_at[:10] for c in journal.pending_conversations()])


def test_each_method_gets_a_fresh_temporary_home_with_the_days_logged(suite, data_home):
    Inspector.seen, Inspector.dates = [], []
    run(suite, [Inspector])
    (d1, t1, home, existed), (d2, t2, home2, _) = Inspector.seen
    assert (d1, t1) == ("2026-01-01", ["2026-01-01 #1", "2026-01-01 #2"])
    assert (d2, t2) == ("2026-01-02", ["2026-01-01 #1", "2026-01-01 #2", "2026-01-02 #1"])
    assert existed and home == home2
    assert data_home not in home.parents
    assert not home.exists()  # removed after the run
    # Each day's conversations carry the suite's date, as the sleep sees them (the
    # "as of <date>" dreams order facts by it), not the day the evaluation ran.
    assert Inspector.dates == [["2026-01-01"] * 2, ["2026-01-01"] * 2 + ["2026-01-02"]]


class Noisy(ClosedBook):
    """Answers depend on random draws at night: only seeding makes them repeatable."""

    name = "noisy"

    def night(self, day, journal):
        self.draw = f"{random.random():.6f}-{np.random.rand():.6f}"

    def answer(self, question, history):
        return f"{self.draw} {super().answer(question, history)}"


class Drifting(ClosedBook):
    """Its general-text log-likelihood worsens by 10% a night."""

    name = "drifting"
    nights = 0

    def night(self, day, journal):
        self.nights += 1

    def score(self, messages, text):
        return [lp * (1 + 0.1 * self.nights) for lp in super().score(messages, text)]


def test_same_seed_same_json_minus_timings(suite):
    a = strip_timings(run(suite, [Noisy, InContext], seed=7))
    b = strip_timings(run(suite, [Noisy, InContext], seed=7))
    c = strip_timings(run(suite, [Noisy, InContext], seed=8))
    assert a == b
    assert a["methods"]["noisy"]["answers"] != c["methods"]["noisy"]["answers"]
    assert a["methods"]["icl"] == c["methods"]["icl"]


def test_perplexity_change_is_relative(suite):
    m = run(suite, [Drifting])["methods"]["drifting"]
    assert m["ppl_before"] == pytest.approx(100.0)
    assert m["ppl_change"] == pytest.approx(100 ** 0.2 - 1, rel=1e-5)


def test_general_parts_missing_give_nulls(suite):
    data = dict(SUITE)
    del data["general_probes"], data["general_text"]
    m = run(parse_suite(data), [ClosedBook])["methods"]["none"]
    assert (m["general_accuracy"], m["ppl_change"], m["general_per_night"]) == (None, None, [None, None])
    assert "general" not in format_table(run(parse_suite(data), [ClosedBook])).split("general probes")[1].split("\n")[0].strip("- ")


def test_method_names():
    assert {"none", "icl"} <= set(METHODS)
    assert parse_methods("icl, none") == [InContext, ClosedBook]
    with pytest.raises(InputError, match=r"unknown method 'sleepy'; known methods: none, icl"):
        parse_methods("none,sleepy")
    with pytest.raises(InputError, match="listed twice"):
        parse_methods("none,none")
    with pytest.raises(InputError, match="no methods"):
        parse_methods(" , ")
    assert issubclass(ClosedBook, Method)


def test_the_plot_is_written(suite, tmp_path):
    pytest.importorskip("matplotlib")
    result = run(suite, [ClosedBook, InContext])
    out = write_plot(result, tmp_path / "eval.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000


class Hog(ClosedBook):
    """Holds 120 MB during the first night only."""

    name = "hog"

    def night(self, day, journal):
        if day.date == "2026-01-01":
            block = bytearray(120 * 1024 * 1024)
            block[::4096] = b"x" * len(block[::4096])  # touch every page


def test_peak_memory_is_measured_per_night(suite):
    result = run(suite, [Hog])
    first, second = result["methods"]["hog"]["peak_rss_mb"]
    assert first > 120
    if result["peak_rss_source"] == "VmHWM":  # the high-water mark is reset each night
        assert second < first - 100
