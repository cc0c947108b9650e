"""The console's share of a job's log (``conf/hydra/job_logging/mnms.yaml``)."""

from __future__ import annotations

import logging
import sys

TRIALS = "mnms.trials"  # the logger of the search's one line per trial (mnms.search.loop.trial_lines)


class TrialLinesOffTerminal(logging.Filter):
    """Drop the per-trial lines on a terminal, where the progress bar shows the search; keep them when
    stdout is a file or a pipe, which gets no bar. ``train.log`` gets them either way."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != TRIALS or not sys.stdout.isatty()
