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

import dataclasses
from typing import Any, Mapping

from mnms.evaluator import ChildRunner, Evaluator, SequentialEvaluator

EXECUTORS = ("sequential", "local", "ray")


def check_int(name: str, value: Any, minimum: int, *, optional: bool = False) -> None:
    """Reject a non-integer (or ``bool``) option value below ``minimum``, naming the option."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = f"an integer >= {minimum}" + (" or null (automatic)" if optional else "")
        raise ValueError(f"executor.{name}={value!r} must be {allowed}")


def config_from_options(cls: type, kind: str, options: Mapping[str, Any]) -> Any:
    """``cls(**options)``, with an unknown key reported by name next to the valid ones."""
    known = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"executor={kind} has no option(s) {unknown}; valid options are {known}")
    return cls(**options)


def executor_config(options: Mapping[str, Any]) -> tuple[str, Any]:
    """The executor kind and its validated config (``None`` for sequential); starts nothing."""
    options = dict(options)
    kind = options.pop("kind", None)
    if kind == "sequential":
        if options:
            raise ValueError(f"executor=sequential takes no options, got {sorted(options)}")
        return kind, None
    if kind == "local":
        from mnms.executors.local import LocalConfig

        return kind, config_from_options(LocalConfig, kind, options)
    if kind == "ray":
        from mnms.executors.ray_executor import RayConfig

        return kind, config_from_options(RayConfig, kind, options)
    raise ValueError(f"executor.kind={kind!r} is unknown; valid kinds are {list(EXECUTORS)}")


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
