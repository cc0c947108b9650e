"""The console's share of a job's log (``conf/hydra/job_logging/mnms.yaml``)."""

from __future__ import annotations

import logging
import sys

TRIALS = "mnms.trials"  # the logger of the search's one line per trial (mnms.search.loop.trial_lines)
FILE_ONLY = "mnms.record"  # what the console already showed in its own words: an error, how to go on


class TrialLinesOffTerminal(logging.Filter):
    """Drop the per-trial lines on a terminal, where the progress bar shows the search; keep them when
    stdout is a file or a pipe, which gets no bar. ``train.log`` gets them either way, and also what
    the run printed itself (``FILE_ONLY``), which the console must not show twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == FILE_ONLY:
            return False
        return record.name != TRIALS or not sys.stdout.isatty()


def record_in_log(message: str, level: int = logging.ERROR) -> None:
    """Put ``message``, already printed for the user, in the run's ``train.log`` too."""
    logging.getLogger(FILE_ONLY).log(level, message)
