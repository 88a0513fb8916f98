"""The nightly job's log: logs/nightly.log, rotated, private (it names conversations)."""

from __future__ import annotations

import logging
import os
from logging.handlers import RotatingFileHandler

from ..config import PRIVATE_FILE_MODE, Paths

MAX_BYTES = 1_000_000
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s [pid %(process)d] %(message)s"


class PrivateRotatingFileHandler(RotatingFileHandler):
    """Every file it opens, the rotated ones included, is 0600 whatever the umask."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                     PRIVATE_FILE_MODE)
        os.fchmod(fd, PRIVATE_FILE_MODE)
        return os.fdopen(fd, self.mode, encoding=self.encoding, errors=self.errors)


def nightly_logger(paths: Paths, echo: bool = False) -> logging.Logger:
    """The job's logger, writing to the rotating file (and to stderr when `echo`)."""
    paths.private_subdir(paths.logs)
    logger = logging.getLogger(f"pocketsleep.nightly.{paths.home}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):  # a second run in one process (tests)
        logger.removeHandler(handler)
        handler.close()
    handler = PrivateRotatingFileHandler(paths.nightly_log, maxBytes=MAX_BYTES,
                                         backupCount=BACKUPS, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    if echo:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(stream)
    return logger
