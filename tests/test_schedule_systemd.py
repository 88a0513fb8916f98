"""systemd: the user service and timer, checked by systemd-analyze with the real
executable in ExecStart; enabling them is mocked (no user manager runs here)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

from pocketsleep.errors import ScheduleError
from pocketsleep.schedules import manage, state, systemd, tools
from pocketsleep.schedules.job import ScheduledJob, scheduled_job


def unit_values(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_the_units_run_the_job_daily_and_catch_up_a_missed_night(paths):
    job = scheduled_job(paths)
    service = unit_values(systemd.service_text(job))
    timer = unit_values(systemd.timer_text(job, dt.time(3, 5)))
    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == [" ".join(f'"{a}"' for a in job.argv)]
    assert Path(job.argv[0]).is_absolute() and job.argv[-1] == "nightly"
    assert service["Environment"] == [f'"POCKETSLEEP_HOME={paths.home}"']
    assert service["StandardOutput"] == [f"append:{paths.nightly_output}"]
    assert timer["OnCalendar"] == ["*-*-* 03:05:00"]
    assert timer["Persistent"] == ["true"]
    assert timer["Unit"] == [f"{job.name}.service"]
    assert timer["WantedBy"] == ["timers.target"]


def test_special_characters_are_taken_literally():
    job = ScheduledJob(name="n", argv=('/opt/a "b"/pocketsleep', "nightly"),
                       env={"POCKETSLEEP_HOME": "/h/100% $HOME\\x"}, workdir=Path("/h/50%"),
                       output=Path("/h/50%/out.log"))
    text = systemd.service_text(job)
    assert 'ExecStart="/opt/a \\"b\\"/pocketsleep" "nightly"' in text
    assert 'Environment="POCKETSLEEP_HOME=/h/100%% $$HOME\\\\x"' in text
    assert "WorkingDirectory=/h/50%%\n" in text and "append:/h/50%%/out.log\n" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_units(paths, tmp_path):
    job = scheduled_job(paths)
    folder = tmp_path / "units"
    folder.mkdir()
    service = folder / f"{job.name}.service"
    timer = folder / f"{job.name}.timer"
    service.write_text(systemd.service_text(job))
    timer.write_text(systemd.timer_text(job, dt.time(3, 0)))
    done = subprocess.run(["systemd-analyze", "verify", str(service), str(timer)],
                          capture_output=True, text=True, timeout=60)
    # Warnings (an unknown key, say) leave the exit status 0: none may mention ours.
    ours = [line for line in done.stderr.splitlines() if job.name in line]
    assert done.returncode == 0 and ours == [], done.stderr

    # The check is real: a unit whose program does not exist fails it.
    service.write_text(systemd.service_text(ScheduledJob(
        name=job.name, argv=(str(tmp_path / "missing" / "pocketsleep"), "nightly"),
        workdir=paths.home, output=paths.nightly_output)))
    done = subprocess.run(["systemd-analyze", "verify", str(service), str(timer)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "not executable" in done.stderr


class FakeSystemctl:
    """Stands in for `systemctl --user` (no user manager runs in the test machine)."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, argv, *, input=None):
        self.calls.append(argv)
        failed = self.fail_on is not None and self.fail_on in argv
        return subprocess.CompletedProcess(
            argv, 1 if failed else 0, b"", b"Failed to enable unit: boom\n" if failed else b"")


@pytest.fixture
def user_manager(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run" / "systemd").mkdir(parents=True)
    (tmp_path / "run" / "systemd" / "private").touch()  # the user manager's socket
    fake = FakeSystemctl()
    monkeypatch.setattr(tools, "run", fake)
    return fake


def test_usable_only_where_a_user_manager_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert "no systemd user session" in systemd.usable()
    (tmp_path / "systemd").mkdir()
    (tmp_path / "systemd" / "private").touch()
    if shutil.which("systemctl"):
        assert systemd.usable() is None


def test_install_writes_enables_and_reinstall_replaces(paths, user_manager, tmp_path):
    folder = tmp_path / "config" / "systemd" / "user"
    folder.mkdir(parents=True)
    (folder / "someone-else.timer").write_text("[Timer]\nOnCalendar=daily\n")
    schedule = manage.install(paths, dt.time(3, 0), using="systemd")
    name = schedule.name
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{name}.service", f"{name}.timer", "someone-else.timer"])
    assert user_manager.calls == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", f"{name}.timer"],
        ["systemctl", "--user", "restart", f"{name}.timer"]]
    assert (folder / f"{name}.timer").stat().st_mode & 0o777 == 0o644

    manage.install(paths, dt.time(4, 20), using="systemd")
    assert "OnCalendar=*-*-* 04:20:00" in (folder / f"{name}.timer").read_text()
    assert len(list(folder.glob("pocketsleep-*"))) == 2
    assert state.load(paths).at == "04:20"

    user_manager.calls.clear()
    assert manage.remove(paths) == ["systemd"]
    assert [p.name for p in folder.iterdir()] == ["someone-else.timer"]
    assert ["systemctl", "--user", "disable", "--now", f"{name}.timer"] in user_manager.calls


def test_a_failing_systemctl_is_one_clear_error_and_leaves_nothing(
        paths, user_manager, tmp_path):
    user_manager.fail_on = "enable"
    with pytest.raises(ScheduleError, match=r"`systemctl --user enable .*` failed: "
                                            r"Failed to enable unit: boom; nothing is scheduled"):
        manage.install(paths, dt.time(3, 0), using="systemd")
    assert state.load(paths) is None  # not recorded as installed
    assert list((tmp_path / "config" / "systemd" / "user").iterdir()) == []


def test_switching_systems_leaves_one_schedule(paths, user_manager, monkeypatch):
    """cron first, then systemd: the crontab block goes (here a fake crontab)."""
    from pocketsleep.schedules import cron

    crontab = {"text": "0 5 * * * mine\n"}
    monkeypatch.setattr(cron, "usable", lambda: None)
    monkeypatch.setattr(cron, "read_crontab", lambda: crontab["text"])
    monkeypatch.setattr(cron, "write_crontab", lambda text: crontab.update(text=text))
    manage.install(paths, dt.time(3, 0), using="cron")
    assert cron.begin_line(state.load(paths).name) in crontab["text"]
    manage.install(paths, dt.time(3, 0), using="systemd")
    assert crontab["text"] == "0 5 * * * mine\n"
    assert state.load(paths).system == "systemd"
