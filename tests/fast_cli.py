"""The real `pocketsleep` command line, run as its own process, with one change: a
sleep's default options are the FAST test options (sleep_support.FAST: one block,
two steps, a few tokens), so that a whole `pocketsleep sleep` on a tiny model takes
seconds. Everything else (argument parsing, locks, the journal, the merge, export,
error lines, exit codes) is the product's own code.

    python tests/fast_cli.py sleep --no-gate      # as `pocketsleep sleep --no-gate`

Used by the reliability tests, which kill it at scripted points (pocketsleep/faults.py).
"""

import sys

from sleep_support import FAST

from pocketsleep.cli import main
from pocketsleep.cli import sleep as sleep_cli

sleep_cli.SleepOptions = lambda: FAST

sys.exit(main(sys.argv[1:]))
