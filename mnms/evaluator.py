"""The seam between the search and child training: requests in, outcomes out, in order.

The search never trains a child itself; it hands a batch of ``TrialRequest`` to an
``Evaluator`` and gets one ``TrialOutcome`` per request back in the same order. A
sequential evaluator lives here; parallel executors implement the same interface.
"""

from __future__ import annotations

import time
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from mnms.arch import Architecture
from mnms.child import ChildDiverged, ChildTimeout, ChildTrainerConfig, evaluate_child
from mnms.feature_cache import FeatureCache
from mnms.tasks import Task
from mnms.utils.config import from_config

STATUSES = ("ok", "failed", "timeout", "diverged")


@dataclass(frozen=True)
class TrialRequest:
    trial: int
    task: str
    arch: dict[str, Any]  # Architecture fields; any left out take the Architecture defaults
    seed: int


@dataclass(frozen=True)
class TrialOutcome:
    status: str  # one of STATUSES
    metrics: dict[str, Any] = field(default_factory=dict)  # ChildResult fields when status == "ok"
    error: str | None = None
    wall_seconds: float = 0.0


@dataclass
class ChildRunner:
    """Trains the child a request names; never raises, so one bad child cannot stop a search.

    Executors ship one runner to each worker process (pickled once, without the feature
    cache's in-memory memo) and then only ``TrialRequest`` objects.
    """

    tasks: Mapping[str, Task]
    trainer_cfg: ChildTrainerConfig
    cache_dir: str | None
    encoder_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        self.cache = FeatureCache(self.cache_dir)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["cache"]  # workers build their own: the memo's tensors are not worth shipping
        if self.cache_dir is not None:  # a worker may run in another working directory
            state["cache_dir"] = str(Path(self.cache_dir).resolve())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.cache = FeatureCache(self.cache_dir)

    def __call__(self, request: TrialRequest) -> TrialOutcome:
        started = time.perf_counter()
        try:
            result = evaluate_child(
                self.tasks[request.task],
                from_config(Architecture, request.arch),
                self.trainer_cfg,
                self.cache,
                seed=request.seed,
                encoder_options=self.encoder_options,
            )
        except ChildTimeout as error:
            return TrialOutcome("timeout", error=str(error), wall_seconds=time.perf_counter() - started)
        except ChildDiverged as error:
            return TrialOutcome("diverged", error=str(error), wall_seconds=time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 - any child failure becomes a recorded trial
            last = traceback.extract_tb(error.__traceback__)[-1]
            message = f"{type(error).__name__}: {error} (at {last.filename}:{last.lineno})"
            return TrialOutcome("failed", error=message, wall_seconds=time.perf_counter() - started)
        metrics = result.to_dict()
        if any(value != value for value in metrics.values() if isinstance(value, float)):
            return TrialOutcome("diverged", metrics, "a metric is NaN", time.perf_counter() - started)
        return TrialOutcome("ok", metrics, wall_seconds=time.perf_counter() - started)


class Evaluator(ABC):
    """Evaluates a batch of trials; outcomes come back in request order."""

    @abstractmethod
    def evaluate(self, requests: Sequence[TrialRequest]) -> list[TrialOutcome]: ...

    def close(self) -> None:
        """Release workers; the sequential evaluator holds none."""


class SequentialEvaluator(Evaluator):
    """One child after another in this process: the default, and the reference order."""

    def __init__(self, runner: ChildRunner) -> None:
        self.runner = runner

    def evaluate(self, requests: Sequence[TrialRequest]) -> list[TrialOutcome]:
        return [self.runner(request) for request in requests]
