"""Scheduling the nightly sleep the way the user's system expects.

    manage.py   install / remove on the right system; what is installed
    launchd.py  macOS user agent          systemd.py  Linux user timer
    cron.py     a managed crontab block   job.py      the command they run
    timing.py   due times, next run, a missed night
    state.py    schedule.json in the data home
    tools.py    running crontab / launchctl / systemctl

The job itself (`pocketsleep nightly`) is `pocketsleep.nightly`.
"""
