"""Executors: where a batch of children trains. All implement ``mnms.evaluator.Evaluator``.

``executor=sequential`` trains in the driver process, one child after another.
"""

from __future__ import annotations

from typing import Any, Mapping

from mnms.evaluator import ChildRunner, Evaluator, SequentialEvaluator

EXECUTORS = ("sequential",)


def build_evaluator(options: Mapping[str, Any], runner: ChildRunner) -> Evaluator:
    """The evaluator ``conf/executor/<kind>.yaml`` describes, around ``runner``."""
    options = dict(options)
    kind = options.pop("kind", None)
    if kind not in EXECUTORS:
        raise ValueError(f"executor.kind={kind!r} is unknown; valid kinds are {list(EXECUTORS)}")
    if options:
        raise ValueError(f"executor={kind} takes no options, got {sorted(options)}")
    return SequentialEvaluator(runner)
