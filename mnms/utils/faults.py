"""Kill points for fault-injection tests: ``MNMS_KILL_AT=<point>:<n>`` SIGKILLs the n-th pass of ``<point>``.

A search passes these points at the moments where a crash could leave its run dir
inconsistent (``docs/reliability.md`` lists them), so a test can kill it exactly there
and check that a resume loses and repeats nothing. Without the variable a point costs
one comparison.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

POINTS = (
    "search.setup",  # the run dir is locked; the tasks are not loaded yet
    "search.start",  # the search is built and its first checkpoint written
    "search.proposed",  # a step's architectures are proposed, none trained
    "search.evaluated",  # a step's children are trained, none logged
    "log.appended",  # one more trial is in trials.jsonl
    "search.observed",  # the strategy learned from the step, not yet checkpointed
    "atomic.before_replace",  # a file (checkpoint, summary, controller) is written beside its target, not renamed
    "checkpoint.written",  # a step's checkpoint is in place
)


def _target() -> tuple[str, int] | None:
    value = os.environ.get("MNMS_KILL_AT")
    if not value:
        return None
    point, _, n = value.rpartition(":")
    if point not in POINTS or not n.isdigit():
        raise ValueError(f"MNMS_KILL_AT={value!r} must be <point>:<n> with a point of {list(POINTS)}")
    return point, int(n)


_TARGET = _target()
_passes: Counter[str] = Counter()


def kill_point(point: str) -> None:
    """SIGKILL this process if ``MNMS_KILL_AT`` names this pass of ``point``."""
    if _TARGET is None or point != _TARGET[0]:
        return
    _passes[point] += 1
    if _passes[point] == _TARGET[1]:
        os.kill(os.getpid(), signal.SIGKILL)
