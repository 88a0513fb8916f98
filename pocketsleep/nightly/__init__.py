"""The scheduled nightly job, and catching up a night it missed.

    job.py        the steps of one run, each run recorded in the journal
    power.py      on battery? (Linux: /sys/class/power_supply; macOS: pmset)
    chat_lock.py  never a scheduled sleep while a chat is open
    log.py        logs/nightly.log, rotated, private
    catchup.py    a missed night runs at the next start

The schedules themselves (launchd, systemd, cron) are in `pocketsleep.schedules`.
Nothing is imported here: the chat imports `chat_lock` alone, and cheaply.
"""
