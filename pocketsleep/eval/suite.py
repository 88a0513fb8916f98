"""Memory suites: the JSON files `pocketsleep eval` runs (DESIGN.md §5).

A suite is `days[]`, each with a `date`, its `conversations` (lists of {role,
content}) and the `probes` asked about them (`question`, `answers` — any alias
counts — and optional `stale` values a later fact replaced), plus optional
`general_probes` (knowledge the base model has and must keep) and `general_text`
(for the perplexity drift figure). Keys not named here (name, description, ...) are
allowed and ignored.

Every problem is reported as one line naming the file and the JSON path of the
offending value, e.g. `dev-week.json: days[2].probes[0] has no 'answers'`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..files import read_json
from ..journal.db import ROLES


@dataclass(frozen=True)
class Probe:
    question: str
    answers: tuple[str, ...]
    stale: tuple[str, ...] = ()


@dataclass(frozen=True)
class Day:
    date: str
    conversations: tuple[tuple[dict, ...], ...]
    probes: tuple[Probe, ...]


@dataclass(frozen=True)
class Suite:
    name: str
    days: tuple[Day, ...]
    general_probes: tuple[Probe, ...] = ()
    general_text: str | None = None

    def first(self, n: int | None) -> "Suite":
        """The same suite cut to its first `n` days (all of them for None)."""
        if n is None:
            return self
        if n > len(self.days):
            raise InputError(f"--days {n}: the suite '{self.name}' has only {len(self.days)} days")
        return Suite(self.name, self.days[:n], self.general_probes, self.general_text)


def load_suite(path: Path | str) -> Suite:
    """Read and check a suite file; any problem is an InputError of one line."""
    path = Path(path)
    raw = read_json(path, "suite file")
    return parse_suite(raw, source=path.name, default_name=path.stem)


def parse_suite(raw, source: str = "suite", default_name: str = "suite") -> Suite:
    check = _Checker(source)
    check.kind(raw, dict, "the top level", "an object")
    days_raw = check.key(raw, "days", "", list, "a list")
    check.nonempty(days_raw, "days")
    days = tuple(_day(check, d, f"days[{i}]") for i, d in enumerate(days_raw))

    general_probes: tuple[Probe, ...] = ()
    if "general_probes" in raw:
        gp = check.key(raw, "general_probes", "", list, "a list")
        check.nonempty(gp, "general_probes")
        general_probes = tuple(_probe(check, p, f"general_probes[{i}]") for i, p in enumerate(gp))
    general_text = None
    if "general_text" in raw:
        general_text = check.key(raw, "general_text", "", str, "a string")
        check.text(general_text, "general_text")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        name = default_name
    return Suite(name, days, general_probes, general_text)


def _day(check: "_Checker", raw, where: str) -> Day:
    check.kind(raw, dict, where, "an object")
    date = check.key(raw, "date", where, str, "a string")
    check.day(date, f"{where}.date")
    convs_raw = check.key(raw, "conversations", where, list, "a list")
    check.nonempty(convs_raw, f"{where}.conversations")
    conversations = []
    for i, conv in enumerate(convs_raw):
        cwhere = f"{where}.conversations[{i}]"
        check.kind(conv, list, cwhere, "a list of messages")
        check.nonempty(conv, cwhere)
        messages = []
        for j, m in enumerate(conv):
            mwhere = f"{cwhere}[{j}]"
            check.kind(m, dict, mwhere, "an object")
            role = check.key(m, "role", mwhere, str, "a string")
            if role not in ROLES:
                check.fail(f"{mwhere}.role is {role!r}; use one of {', '.join(ROLES)}")
            content = check.key(m, "content", mwhere, str, "a string")
            messages.append({"role": role, "content": content})
        conversations.append(tuple(messages))
    probes_raw = check.key(raw, "probes", where, list, "a list")
    check.nonempty(probes_raw, f"{where}.probes")
    probes = tuple(_probe(check, p, f"{where}.probes[{i}]") for i, p in enumerate(probes_raw))
    return Day(date, tuple(conversations), probes)


def _probe(check: "_Checker", raw, where: str) -> Probe:
    check.kind(raw, dict, where, "an object")
    question = check.key(raw, "question", where, str, "a string")
    check.text(question, f"{where}.question")
    answers = check.strings(check.key(raw, "answers", where, list, "a list of strings"),
                            f"{where}.answers")
    check.nonempty(answers, f"{where}.answers")
    stale: list[str] = []
    if "stale" in raw:
        stale = check.strings(check.key(raw, "stale", where, list, "a list of strings"),
                              f"{where}.stale")
    return Probe(question, tuple(answers), tuple(stale))


class _Checker:
    """Raises InputError("<file>: <json path> <problem>")."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, message: str):
        raise InputError(f"{self.source}: {message}")

    def kind(self, value, expected: type, where: str, described: str) -> None:
        if not isinstance(value, expected):
            self.fail(f"{where} must be {described}, got {_json_type(value)}")

    def key(self, obj: dict, key: str, where: str, expected: type, described: str):
        if key not in obj:
            self.fail(f"{where} has no '{key}'" if where else f"no '{key}' at the top level")
        value = obj[key]
        self.kind(value, expected, f"{where}.{key}" if where else key, described)
        return value

    def nonempty(self, value: list, where: str) -> None:
        if not value:
            self.fail(f"{where} is empty")

    def text(self, value: str, where: str) -> None:
        if not value.strip():
            self.fail(f"{where} is blank")

    def day(self, value: str, where: str) -> None:
        """A calendar day, YYYY-MM-DD: the day's conversations are logged as held then."""
        try:
            ok = dt.date.fromisoformat(value).isoformat() == value
        except ValueError:
            ok = False
        if not ok:
            self.fail(f"{where} is {value!r}, not a day as YYYY-MM-DD")

    def strings(self, values: list, where: str) -> list[str]:
        for i, v in enumerate(values):
            self.kind(v, str, f"{where}[{i}]", "a string")
            self.text(v, f"{where}[{i}]")
        return list(values)


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
