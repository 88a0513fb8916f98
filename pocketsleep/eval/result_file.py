"""The eval's JSON file: rewritten whole after every night, read back to resume.

A run of every method takes hours on a CPU. The file is replaced atomically (a
temporary sibling, then a rename) each time the result grows, so a run stopped at
any point leaves a whole file holding every night and method it finished, with
`"complete": false` until the run ends.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..files import read_json, write_file_atomic

#: Settings a resumed run must share with the earlier one.
MUST_MATCH = ("suite", "model", "engine_requested", "seed", "max_tokens", "days", "probes",
              "general_probes", "suite_digest")


def write_result(path: Path, result: dict) -> None:
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    try:
        write_file_atomic(Path(path), text.encode("utf-8"), mode=0o644)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror}") from None


def read_result(path: Path) -> dict:
    """An earlier result file (to resume); any problem is one InputError line."""
    result = read_json(path, "eval result")
    if not isinstance(result, dict) or not isinstance(result.get("methods"), dict):
        raise InputError(f"{path} is not a result of pocketsleep eval (no 'methods')")
    return result


def finished_methods(earlier: dict, settings: dict) -> dict[str, dict]:
    """The methods `earlier` ran to the end, by name, if it was run with `settings`
    (else an InputError saying what differs). A method stopped part-way is not
    among them: its data home is gone, so it runs again from night 1."""
    for key in MUST_MATCH:
        # A file written before a setting was recorded cannot be checked against it.
        if key in earlier and earlier[key] != settings[key]:
            raise InputError(f"cannot resume from an earlier result with {key} "
                             f"{earlier[key]!r} (this run: {settings[key]!r})")
    return {name: m for name, m in earlier["methods"].items()
            if m.get("complete", True) and m.get("final_recall") is not None}
