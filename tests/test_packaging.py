"""The built wheel: only `pocketsleep/` at top level, with the mapped subpackages inside."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = out.glob("pocketsleep-*.whl")
    return zipfile.ZipFile(wheel).namelist()


def test_only_pocketsleep_at_top_level(wheel_names):
    top = {n.split("/")[0] for n in wheel_names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"pocketsleep"}


def test_mapped_subpackages_are_inside(wheel_names):
    for sub in ("backends", "tui", "schedules"):
        assert f"pocketsleep/{sub}/__init__.py" in wheel_names


def test_every_source_package_is_in_the_wheel(wheel_names):
    # An unlisted subpackage is silently dropped from the wheel yet importable in
    # editable mode; compare against the source tree.
    mapping = {"pocketsleep": "pocketsleep", "backends": "pocketsleep/backends",
               "tui": "pocketsleep/tui", "schedules": "pocketsleep/schedules"}
    for folder, prefix in mapping.items():
        for source in (ROOT / folder).rglob("*"):
            if "__pycache__" in source.parts or source.is_dir():
                continue
            if source.suffix in (".py", ".tcss") or "templates" in source.parts:
                rel = source.relative_to(ROOT / folder).as_posix()
                assert f"{prefix}/{rel}" in wheel_names, rel
