"""Executors: where a batch of children trains. All implement ``mnms.evaluator.Evaluator``.

``executor=sequential`` trains in the driver process, one child after another.
``executor=local`` trains on a pool of worker processes on this machine (``local.py``).
``executor=ray`` trains as Ray tasks on a private local Ray or an existing cluster
(``ray_executor.py``).

Every executor returns outcomes in request order and every child trains with the
runner's fixed thread count, so a seeded search records the same trials whichever
executor and worker count it uses. The parallel executors are imported only when
chosen, so a sequential run never pays for ``import ray``.
"""

from __future__ import annotations

from typing import Any, Mapping

from mnms.evaluator import ChildRunner, Evaluator, SequentialEvaluator
from mnms.utils.config import ConfigError, from_config, plain

EXECUTORS = ("sequential", "local", "ray")


def executor_config(options: Mapping[str, Any]) -> tuple[str, Any]:
    """The executor kind and its validated config (``None`` for sequential); starts nothing."""
    options = plain(options)
    kind = options.pop("kind", None)
    if kind == "sequential":
        if options:
            raise ConfigError(f"executor=sequential takes no options, got {sorted(options)}")
        return kind, None
    if kind == "local":
        from mnms.executors.local import LocalConfig

        return kind, from_config(LocalConfig, options)
    if kind == "ray":
        from mnms.executors.ray_executor import RayConfig

        return kind, from_config(RayConfig, options)
    raise ConfigError(f"executor.kind={kind!r} is unknown; valid kinds are {list(EXECUTORS)}")


def build_evaluator(options: Mapping[str, Any], runner: ChildRunner) -> Evaluator:
    """The evaluator ``conf/executor/<kind>.yaml`` describes, around ``runner``."""
    kind, config = executor_config(options)
    if kind == "local":
        from mnms.executors.local import LocalEvaluator

        return LocalEvaluator(runner, config)
    if kind == "ray":
        from mnms.executors.ray_executor import RayEvaluator

        return RayEvaluator(runner, config)
    return SequentialEvaluator(runner)
