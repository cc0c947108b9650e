"""``ChildRunner``: what trains one requested child, in the driver or in a worker process."""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lightning_modules.trainer import evaluate_child
from mnms.child import result as stopped
from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.child.result import ChildDiverged, ChildTimeout
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import Task
from mnms.executors.trial import DIVERGED, FAILED, OK, PRUNED, TIMEOUT, TrialOutcome, TrialRequest
from mnms.utils.config import from_config


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

    @property
    def threads(self) -> int:
        return self.trainer_cfg.threads

    def prepare_process(self) -> None:
        """Give a worker process the children's thread count once, so no child has to switch it."""
        torch.set_num_threads(self.trainer_cfg.threads)

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
                prune_below=request.prune_below,
            )
        except ChildTimeout as error:
            return TrialOutcome(TIMEOUT, error=str(error), wall_seconds=time.perf_counter() - started)
        except ChildDiverged as error:
            return TrialOutcome(DIVERGED, error=str(error), wall_seconds=time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 - any child failure becomes a recorded trial
            last = traceback.extract_tb(error.__traceback__)[-1]
            message = f"{type(error).__name__}: {error} (at {last.filename}:{last.lineno})"
            return TrialOutcome(FAILED, error=message, wall_seconds=time.perf_counter() - started)
        metrics = result.to_dict()
        if any(value != value for value in metrics.values() if isinstance(value, float)):
            return TrialOutcome(DIVERGED, metrics, "a metric is NaN", time.perf_counter() - started)
        status = PRUNED if result.stopped_by == stopped.PRUNED else OK
        return TrialOutcome(status, metrics, wall_seconds=time.perf_counter() - started)
