"""cron: the managed block, and a round trip through the real `crontab` program that
leaves every entry pocketsleep did not write byte for byte as it was."""

from __future__ import annotations

import datetime as dt
import shlex
import subprocess
from pathlib import Path

import pytest
from schedule_support import crontab_bytes, real_crontab, set_crontab  # noqa: F401

from pocketsleep.errors import ScheduleError
from pocketsleep.schedules import cron, manage, state
from pocketsleep.schedules.job import ScheduledJob, scheduled_job

HOME = Path("/home/me/100% mine")  # a space and a percent sign, both special to cron/sh
JOB = ScheduledJob(name="pocketsleep-nightly-test",
                   argv=("/opt/ps dir/bin/pocketsleep", "nightly"),
                   env={"POCKETSLEEP_HOME": str(HOME)}, workdir=HOME,
                   output=HOME / "logs" / "out.log")


def test_the_entry_runs_at_the_time_with_absolute_paths_quoted_for_sh_and_cron():
    line = cron.entry(JOB, dt.time(3, 7))
    minute, hour, dom, month, dow, command = line.split(" ", 5)
    assert (minute, hour, dom, month, dow) == ("7", "3", "*", "*", "*")
    # cron turns a bare % into a newline: every % is escaped; what sh then sees is
    # the original path.
    assert "%" not in command.replace("\\%", "")
    words = shlex.split(command.replace("\\%", "%"))
    assert words[:3] == ["cd", "/home/me/100% mine", "&&"]
    assert words[3:7] == ["POCKETSLEEP_HOME=/home/me/100% mine", "exec",
                          "/opt/ps dir/bin/pocketsleep", "nightly"]
    assert words[7:] == [">>", "/home/me/100% mine/logs/out.log", "2>&1"]


def test_a_block_is_appended_replaced_in_place_and_removed_exactly():
    mine = "# my jobs\nMAILTO=me\n0 5 * * * backup\n\n*/10 * * * * poll  # trailing\n"
    one = cron.with_block(mine, cron.block(JOB, dt.time(3, 0)), JOB.name)
    assert one.startswith(mine) and one.count(cron.begin_line(JOB.name)) == 1
    # A user line added after ours stays after it; a reinstall replaces in place.
    edited = one + "0 6 * * * later\n"
    two = cron.with_block(edited, cron.block(JOB, dt.time(4, 30)), JOB.name)
    assert two == edited.replace(cron.entry(JOB, dt.time(3, 0)),
                                 cron.entry(JOB, dt.time(4, 30)))
    assert cron.without_block(two, JOB.name) == mine + "0 6 * * * later\n"
    assert cron.without_block(mine, JOB.name) == mine
    assert cron.without_block(cron.with_block("", cron.block(JOB, dt.time(3, 0)), JOB.name),
                              JOB.name) == ""


def test_another_homes_block_is_not_ours():
    other = cron.block(ScheduledJob(name="pocketsleep-nightly-other", argv=("/x",)),
                       dt.time(1, 0))
    text = "\n".join(other) + "\n"
    assert cron.without_block(text, JOB.name) == text
    assert cron.with_block(text, cron.block(JOB, dt.time(3, 0)), JOB.name).startswith(text)


@pytest.mark.parametrize("damage", [
    lambda b: [b[0], b[1]],  # the end line deleted
    lambda b: [b[1], b[2]],  # the begin line deleted
    lambda b: [b[2], b[1], b[0]],  # upside down
    lambda b: b + b,  # twice
])
def test_a_damaged_block_is_refused_not_guessed_at(damage):
    text = "0 5 * * * backup\n" + "\n".join(damage(cron.block(JOB, dt.time(3, 0)))) + "\n"
    with pytest.raises(ScheduleError, match="block is damaged.*crontab -e"):
        cron.with_block(text, cron.block(JOB, dt.time(3, 0)), JOB.name)
    with pytest.raises(ScheduleError, match="block is damaged"):
        cron.without_block(text, JOB.name)


def test_a_line_break_in_a_path_is_refused():
    bad = ScheduledJob(name="x", argv=("/a\nb",))
    with pytest.raises(ScheduleError, match="line break"):
        cron.entry(bad, dt.time(3, 0))


def test_without_crontab_install_says_what_to_do(monkeypatch):
    monkeypatch.setattr(cron.shutil, "which", lambda name: None)
    with pytest.raises(ScheduleError, match=r"`crontab` is not installed; install cron"):
        cron.install(JOB, dt.time(3, 0))
    assert cron.remove(JOB.name) is False  # nothing of ours can be in a missing crontab


# -- the real crontab program ----------------------------------------------------------

FOREIGN = (b"# the user's own crontab, kept byte for byte\n"
           b"SHELL=/bin/bash\nMAILTO=\"\"\n"
           b"0 5 * * *\t/usr/bin/backup --to /mnt/x \\%Y  # tab, escaped percent\n"
           b"\n"
           b"@reboot /usr/local/bin/hello\n"
           b"# caf\xe9 in latin-1, not UTF-8\n"
           b"# >>> pocketsleep-nightly-someoneelse: managed by pocketsleep; x >>>\n")


def test_install_reinstall_remove_keep_every_foreign_entry(real_crontab, paths):
    set_crontab(FOREIGN)
    job = scheduled_job(paths)
    cron.install(job, dt.time(3, 0))
    after_one = crontab_bytes()
    assert after_one.startswith(FOREIGN)
    assert after_one[len(FOREIGN):].decode().splitlines() == cron.block(job, dt.time(3, 0))

    cron.install(job, dt.time(3, 0))  # idempotent: one block, same bytes
    assert crontab_bytes() == after_one
    cron.install(job, dt.time(4, 45))  # a new time replaces the entry
    after_two = crontab_bytes()
    assert after_two.startswith(FOREIGN) and after_two.count(b"# >>> " + job.name.encode()) == 1
    assert cron.entry(job, dt.time(4, 45)).encode() in after_two
    assert cron.is_installed(job.name)

    assert cron.remove(job.name) is True
    assert crontab_bytes() == FOREIGN
    assert cron.remove(job.name) is False and crontab_bytes() == FOREIGN
    assert not cron.is_installed(job.name)


def test_a_crontab_that_held_only_our_block_is_gone_after_remove(real_crontab, paths):
    subprocess.run(["crontab", "-r"], capture_output=True)
    job = scheduled_job(paths)
    cron.install(job, dt.time(3, 0))
    assert crontab_bytes().decode().splitlines() == cron.block(job, dt.time(3, 0))
    cron.remove(job.name)
    assert subprocess.run(["crontab", "-l"], capture_output=True).returncode != 0


def test_the_installed_entry_runs_the_job_for_this_data_home(real_crontab, paths, tmp_path):
    """Run the entry's command the way cron does (sh -c, a bare environment, $HOME as
    the working folder) and see the nightly job record its run in this data home."""
    set_crontab(b"")
    job = scheduled_job(paths)
    cron.install(job, dt.time(3, 0))
    line = cron.entry(job, dt.time(3, 0))
    command = line.split(" ", 5)[5].replace("\\%", "%")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}
    subprocess.run(["/bin/sh", "-c", command], cwd=tmp_path, env=env, check=True, timeout=120)
    from pocketsleep.journal import Journal

    with Journal.open(paths.journal) as j:
        run = j.last_nightly_run()
    assert (run.trigger, run.outcome, run.detail) == ("schedule", "skipped", "nothing pending")
    assert b"Nightly run: skipped: nothing pending" in paths.nightly_output.read_bytes()


def test_manage_install_records_and_remove_forgets(real_crontab, paths, monkeypatch):
    set_crontab(FOREIGN)
    schedule = manage.install(paths, dt.time(2, 30), using="cron")
    assert state.load(paths) == schedule
    assert (schedule.system, schedule.at) == ("cron", "02:30")
    assert manage.is_in_place(schedule)
    assert manage.remove(paths) == ["cron"]
    assert state.load(paths) is None and crontab_bytes() == FOREIGN
    assert manage.remove(paths) == []
