"""Suite files: the shipped example loads; every mistake is one line with its JSON path."""

import copy
import json
from pathlib import Path

import pytest

from pocketsleep.errors import InputError
from pocketsleep.eval.suite import load_suite

# ../shared beside the checkout, as CI has it (not /work/shared: a clone may live elsewhere).
DEV_WEEK = Path(__file__).parents[2] / "shared" / "eval" / "dev-week.json"

GOOD = {
    "name": "tiny",
    "days": [
        {"date": "2026-01-01",
         "conversations": [[{"role": "user", "content": "My cat is Miso."},
                            {"role": "assistant", "content": "Hello Miso!"}]],
         "probes": [{"question": "What is my cat called?", "answers": ["Miso"]}]},
        {"date": "2026-01-02",
         "conversations": [[{"role": "user", "content": "I moved to Lyon."}]],
         "probes": [{"question": "Where do I live?", "answers": ["Lyon"], "stale": ["Porto"]}]},
    ],
    "general_probes": [{"question": "Capital of France?", "answers": ["Paris"]}],
    "general_text": "The river runs to the sea.",
}


def write(tmp_path, data, name="tiny.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def broken(change):
    data = copy.deepcopy(GOOD)
    change(data)
    return data


def test_a_good_suite_loads(tmp_path):
    suite = load_suite(write(tmp_path, GOOD))
    assert suite.name == "tiny"
    assert [d.date for d in suite.days] == ["2026-01-01", "2026-01-02"]
    assert suite.days[1].probes[0].stale == ("Porto",)
    assert suite.days[0].conversations[0][1] == {"role": "assistant", "content": "Hello Miso!"}
    assert suite.general_text.startswith("The river")
    assert suite.first(1).days == suite.days[:1]
    with pytest.raises(InputError, match="has only 2 days"):
        suite.first(3)


def test_general_parts_are_optional_and_the_name_defaults_to_the_file(tmp_path):
    data = broken(lambda d: [d.pop(k) for k in ("general_probes", "general_text", "name")])
    suite = load_suite(write(tmp_path, data, "mine.json"))
    assert (suite.name, suite.general_probes, suite.general_text) == ("mine", (), None)


@pytest.mark.skipif(not DEV_WEEK.exists(), reason="the shared dev-week suite is not here")
def test_the_dev_week_suite_loads():
    suite = load_suite(DEV_WEEK)
    assert len(suite.days) == 5
    assert sum(len(d.probes) for d in suite.days) == 15
    assert len(suite.general_probes) == 6


@pytest.mark.parametrize("change, message", [
    (lambda d: d["days"][1]["probes"][0].pop("answers"),
     "tiny.json: days[1].probes[0] has no 'answers'"),
    (lambda d: d.pop("days"), "tiny.json: no 'days' at the top level"),
    (lambda d: d.update(days=[]), "tiny.json: days is empty"),
    (lambda d: d.update(days={}), "tiny.json: days must be a list, got an object"),
    (lambda d: d["days"][0].pop("date"), "tiny.json: days[0] has no 'date'"),
    (lambda d: d["days"][0].update(date=20260101),
     "tiny.json: days[0].date must be a string, got a number"),
    (lambda d: d["days"][0].update(date="  "),
     "tiny.json: days[0].date is '  ', not a day as YYYY-MM-DD"),
    (lambda d: d["days"][0].update(date="Monday"),
     "tiny.json: days[0].date is 'Monday', not a day as YYYY-MM-DD"),
    (lambda d: d["days"][0].update(date="2026-01-01T09:00"),
     "tiny.json: days[0].date is '2026-01-01T09:00', not a day as YYYY-MM-DD"),
    (lambda d: d["days"][0].update(conversations=[]), "tiny.json: days[0].conversations is empty"),
    (lambda d: d["days"][0]["conversations"].append([]),
     "tiny.json: days[0].conversations[1] is empty"),
    (lambda d: d["days"][0]["conversations"][0][1].update(role="bot"),
     "tiny.json: days[0].conversations[0][1].role is 'bot'; use one of system, user, assistant"),
    (lambda d: d["days"][0]["conversations"][0][0].pop("content"),
     "tiny.json: days[0].conversations[0][0] has no 'content'"),
    (lambda d: d["days"][0]["conversations"][0][0].update(content=None),
     "tiny.json: days[0].conversations[0][0].content must be a string, got null"),
    (lambda d: d["days"][0]["conversations"].__setitem__(0, "hello"),
     "tiny.json: days[0].conversations[0] must be a list of messages, got a string"),
    (lambda d: d["days"][0].update(probes=[]), "tiny.json: days[0].probes is empty"),
    (lambda d: d["days"][0]["probes"][0].update(answers=[]),
     "tiny.json: days[0].probes[0].answers is empty"),
    (lambda d: d["days"][0]["probes"][0].update(answers="Miso"),
     "tiny.json: days[0].probes[0].answers must be a list of strings, got a string"),
    (lambda d: d["days"][0]["probes"][0].update(answers=["Miso", 3]),
     "tiny.json: days[0].probes[0].answers[1] must be a string, got a number"),
    (lambda d: d["days"][1]["probes"][0].update(stale=[""]),
     "tiny.json: days[1].probes[0].stale[0] is blank"),
    (lambda d: d["days"][0]["probes"][0].pop("question"),
     "tiny.json: days[0].probes[0] has no 'question'"),
    (lambda d: d.update(general_probes=[]), "tiny.json: general_probes is empty"),
    (lambda d: d["general_probes"][0].pop("answers"),
     "tiny.json: general_probes[0] has no 'answers'"),
    (lambda d: d.update(general_text=["x"]),
     "tiny.json: general_text must be a string, got a list"),
])
def test_mistakes_name_the_file_and_the_json_path(tmp_path, change, message):
    with pytest.raises(InputError) as e:
        load_suite(write(tmp_path, broken(change)))
    assert str(e.value) == message


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="no such suite file"):
        load_suite(tmp_path / "missing.json")
    with pytest.raises(InputError, match=r"tiny.json is not valid JSON \(line 1, column"):
        load_suite(write(tmp_path, "{days: 1"))
    with pytest.raises(InputError, match="tiny.json: the top level must be an object, got a list"):
        load_suite(write(tmp_path, "[]"))
    with pytest.raises(InputError, match="is a folder"):
        load_suite(tmp_path)
