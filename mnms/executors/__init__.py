"""Executors: where a batch of children trains, behind ``base.Executor``; the registry of them.

``executor=sequential`` trains in the driver process, one child after another.
``executor=local`` trains on a pool of worker processes on this machine (``local.py``).
``executor=ray`` trains as Ray tasks on a private local Ray or an existing cluster (``ray.py``).

Every executor returns outcomes in request order and every child trains with the
runner's fixed thread count, so a seeded search records the same trials whichever
executor and worker count it uses. Each executor class names the dataclass of its
config section (``Config``); adding one is a module, a line in ``EXECUTORS`` and a
``conf/executor/<name>.yaml`` (CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Any

from mnms.executors.base import Executor, Runner, SequentialExecutor
from mnms.executors.local import LocalExecutor
from mnms.executors.ray import RayExecutor
from mnms.utils.registry import Registry

EXECUTORS: Registry[Executor] = Registry(
    "executor",
    {
        "sequential": SequentialExecutor,
        "local": LocalExecutor,
        "ray": RayExecutor,
    },
)


def executor_config(values: Any) -> Any:
    """The validated config of the ``executor`` section (its ``kind`` picks the class); starts nothing."""
    return EXECUTORS.config(values)


def make_executor(config: Any, runner: Runner) -> Executor:
    """The executor ``config`` (from ``executor_config``) describes, around ``runner``."""
    return EXECUTORS[config.kind](runner, config)
