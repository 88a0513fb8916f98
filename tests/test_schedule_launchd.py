"""launchd: the agent plist, parsed back with plistlib (and checked with `plutil -lint`
where it exists); launchctl is mocked (there is no launchd here)."""

from __future__ import annotations

import datetime as dt
import os
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

from pocketsleep.errors import ScheduleError
from pocketsleep.schedules import launchd, manage, state, tools
from pocketsleep.schedules.job import ScheduledJob, scheduled_job


def test_the_plist_runs_the_job_at_the_time_with_output_in_the_log_folder(paths):
    job = scheduled_job(paths)
    agent = plistlib.loads(launchd.plist_bytes(job, dt.time(3, 45)))
    assert agent["Label"] == job.name
    assert agent["ProgramArguments"] == list(job.argv)
    program = Path(agent["ProgramArguments"][0])
    assert program.is_absolute() and os.access(program, os.X_OK)
    assert agent["StartCalendarInterval"] == {"Hour": 3, "Minute": 45}
    assert agent["StandardOutPath"] == agent["StandardErrorPath"] == str(paths.nightly_output)
    assert Path(agent["StandardOutPath"]).parent == paths.logs and paths.logs.is_dir()
    assert agent["EnvironmentVariables"] == {"POCKETSLEEP_HOME": str(paths.home)}
    assert agent["WorkingDirectory"] == str(paths.home)


def test_markup_in_paths_is_escaped():
    job = ScheduledJob(name="n", argv=("/a/<b> & c/pocketsleep", "nightly"))
    data = launchd.plist_bytes(job, dt.time(1, 2))
    assert b"&lt;b&gt; &amp; c" in data
    assert plistlib.loads(data)["ProgramArguments"][0] == "/a/<b> & c/pocketsleep"


@pytest.mark.skipif(shutil.which("plutil") is None, reason="plutil exists only on macOS")
def test_plutil_lints_the_plist(paths, tmp_path):
    path = tmp_path / "agent.plist"
    path.write_bytes(launchd.plist_bytes(scheduled_job(paths), dt.time(3, 0)))
    done = subprocess.run(["plutil", "-lint", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


class FakeLaunchctl:
    def __init__(self, fail_on: str | None = None):
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, argv, *, input=None):
        self.calls.append(argv)
        failed = argv[1] == self.fail_on
        return subprocess.CompletedProcess(
            argv, 5 if failed else 0, b"", b"Bootstrap failed: 5: Input/output error\n"
            if failed else b"")


@pytest.fixture
def mac(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setattr(launchd, "usable", lambda: None)
    fake = FakeLaunchctl()
    monkeypatch.setattr(tools, "run", fake)
    return fake


def test_install_loads_the_agent_and_reinstall_replaces_it(paths, mac, tmp_path):
    agents = tmp_path / "user" / "Library" / "LaunchAgents"
    agents.mkdir(parents=True)
    (agents / "com.example.other.plist").write_bytes(b"not ours")
    schedule = manage.install(paths, dt.time(3, 0), using="launchd")
    plist = agents / f"{schedule.name}.plist"
    assert schedule.location == str(plist)
    domain = f"gui/{os.getuid()}"
    assert mac.calls == [["launchctl", "bootout", f"{domain}/{schedule.name}"],
                         ["launchctl", "bootstrap", domain, str(plist)]]

    manage.install(paths, dt.time(22, 15), using="launchd")
    assert plistlib.loads(plist.read_bytes())["StartCalendarInterval"] == {
        "Hour": 22, "Minute": 15}
    assert sorted(p.name for p in agents.iterdir()) == sorted(
        ["com.example.other.plist", plist.name])

    mac.calls.clear()
    assert manage.remove(paths) == ["launchd"]
    assert [p.name for p in agents.iterdir()] == ["com.example.other.plist"]
    assert (agents / "com.example.other.plist").read_bytes() == b"not ours"
    assert ["launchctl", "bootout", f"{domain}/{schedule.name}"] in mac.calls
    assert state.load(paths) is None


def test_a_failing_launchctl_is_one_clear_error(paths, mac, tmp_path):
    mac.fail_on = "bootstrap"
    with pytest.raises(ScheduleError, match=r"`launchctl bootstrap .*` failed: Bootstrap "
                                            r"failed: 5: Input/output error; the agent file"):
        manage.install(paths, dt.time(3, 0), using="launchd")
    assert not list((tmp_path / "user" / "Library" / "LaunchAgents").iterdir())


def test_off_macos_launchd_is_refused_with_what_to_use(monkeypatch):
    monkeypatch.setattr(launchd.sys, "platform", "linux")
    with pytest.raises(ScheduleError, match="launchd exists only on macOS; use --using"):
        manage.choose_system("launchd")
