"""How far does one driver scale? The real search loop with 1-1,000 simulated workers on a virtual clock.

    .venv/bin/python -m bench.scaling_sim [--workers 1 10 100 1000] [--rounds 10]

Everything but the children is real: the PPO controller over the default space,
``Search`` in sync and async mode, the trial log (fsynced), the checkpoint after every
update. No pruner: the recorded children predate learning curves in the records, so
there is nothing to prune them by (the bars' driver cost is read once per new curve, see
``Search._bars``). Only the executor is simulated (``SimulatedExecutor``): a child
takes the wall time, and gets the outcome, of a recorded child of the same task and cost
kind (``bench/results/child_times.json``, from the full-data searches of
``bench.human_baselines``), on a virtual clock that also advances by the driver's own
measured time, so a driver too slow for its workers shows as idle workers.

Speed-up is the simulated children's busy time over the makespan (how many workers were
kept busy on average), relative to one worker. Sync uses ``search.batch_size`` = workers (at least 8)
(a smaller batch caps a step's parallelism at the batch); async keeps batches of 8.
Writes ``bench/results/scaling_sim.json`` and prints markdown for docs/scaling.md.
``--record <run dir>...`` rebuilds the child-time table from search run dirs.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict, deque
from pathlib import Path

import yaml

from bench.runs import RESULTS, ROOT
from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.child.cost import cost_key
from mnms.executors.base import Executor
from mnms.executors.trial import TrialOutcome, TrialRequest, has_metrics
from mnms.search import resume
from mnms.search.config import SearchConfig
from mnms.search.loop import Search
from mnms.search.records import read_trials
from mnms.search.space import SearchSpace
from mnms.search.strategies import make_strategy, strategy_config
from mnms.tracking import Tracker, TrackingConfig

TABLE = RESULTS / "child_times.json"
RECORDED = [ROOT / "outputs" / "bench" / "human_baselines" / kind for kind in ("ppo", "random")]


def kind_of(key: tuple) -> str:
    """A child's cost kind: its ``cost_key`` without the task (the table is per task already)."""
    return json.dumps(key[1:])


def record_table(run_dirs: list[Path]) -> dict:
    """Per task and cost kind, the (wall seconds, status, metrics) of every child the run dirs trained."""
    table: dict = defaultdict(lambda: defaultdict(list))
    for run_dir in run_dirs:
        for row in read_trials(run_dir):
            if row.reused_from is None:
                kind = kind_of(cost_key(row.task, row.arch))
                table[row.task][kind].append([row.wall_seconds, row.status, row.metrics])
    return {"recorded_from": [str(d.relative_to(ROOT)) for d in run_dirs], "tasks": table}


class SimulatedExecutor(Executor):
    """``capacity`` workers on a virtual clock; each child lasts as long as a recorded child of its kind.

    The clock advances by the driver's real time between calls (proposing, learning,
    logging, checkpointing) and jumps to the next finish while the driver waits.
    """

    def __init__(self, workers: int, table: dict, seed: int) -> None:
        super().__init__()
        self.capacity, self.table, self.rng = workers, table, random.Random(seed)
        self.clock = self.busy = self.driver = 0.0
        self._events: list = []  # (finish time, order, request, outcome) of running children
        self._queue: deque[TrialRequest] = deque()
        self._order = itertools.count()
        self._mark = time.perf_counter()

    @property
    def in_flight(self) -> int:
        return len(self._events) + len(self._queue)

    def _driver_ran(self) -> None:
        now = time.perf_counter()
        self.clock += now - self._mark
        self.driver += now - self._mark
        self._mark = now

    def _sample(self, request: TrialRequest) -> tuple[float, TrialOutcome]:
        kinds = self.table[request.task]
        seconds, status, metrics = self.rng.choice(
            kinds.get(kind_of(request.cost_key)) or [child for children in kinds.values() for child in children]
        )
        outcome = TrialOutcome(status, metrics, wall_seconds=seconds)
        return seconds, outcome if has_metrics(outcome) else dataclasses.replace(outcome, error="recorded")

    def _start_queued(self) -> None:
        while self._queue and len(self._events) < self.capacity:
            request = self._queue.popleft()
            seconds, outcome = self._sample(request)
            self.busy += seconds
            heapq.heappush(self._events, (self.clock + seconds, next(self._order), request, outcome))

    def _submit(self, request: TrialRequest) -> None:
        self._driver_ran()
        self._queue.append(request)
        self._start_queued()

    def _wait(self) -> list[tuple[TrialRequest, TrialOutcome]]:
        self._driver_ran()
        self.clock = max(self.clock, self._events[0][0])
        finished = []
        while self._events and self._events[0][0] <= self.clock:
            _, _, request, outcome = heapq.heappop(self._events)
            finished.append((request, outcome))
        self._start_queued()
        self._mark = time.perf_counter()
        return finished


def simulate(
    table: dict,
    workers: int,
    mode: str,
    trials: int,
    args: argparse.Namespace,
    space: SearchSpace,
    defaults: Architecture,
) -> dict:
    tasks = sorted(table["tasks"])
    batch = max(8, workers) if mode == "sync" else 8
    executor = SimulatedExecutor(workers, table["tasks"], args.seed)
    strategy_cfg = strategy_config({"kind": "ppo"})
    strategy = make_strategy(strategy_cfg, space, tasks, args.seed)
    cfg = SearchConfig(trials=trials, batch_size=batch, progress=False, mode=mode, reuse_rewards=False)
    # Simulated children: no data and no trainer, and a run dir thrown away; the signature
    # says what the search is, examples none.
    signature = resume.signature(
        tasks=tasks,
        seed=args.seed,
        space=space,
        search=cfg,
        strategy=strategy_cfg,
        child=defaults,
        trainer=ChildTrainerConfig(),
        encoders={},
        examples={},
        transfer=None,
    )
    with tempfile.TemporaryDirectory() as run_dir:
        logged = "offline" if args.wandb else "disabled"
        tracking = TrackingConfig(mode=logged, dir=run_dir, probabilities_every=args.probabilities_every)
        with Tracker(tracking, {"bench": "scaling_sim"}) as tracker:
            search = Search(
                cfg,
                tasks,
                strategy,
                executor,
                Path(run_dir),
                child_defaults=defaults.to_dict(),
                seed=args.seed,
                signature=signature,
                tracker=tracker,
            )
            started = time.perf_counter()
            summary = search.run()
            real = time.perf_counter() - started
    seconds = summary["seconds"]
    per_trial = {key: 1000 * seconds[key] / trials for key in ("policy", "records", "checkpoint", "tracking")}
    return {
        "workers": workers,
        "mode": mode,
        "wandb": args.wandb,
        "batch_size": batch,
        "trials": trials,
        "makespan_s": executor.clock,
        "child_seconds": executor.busy,
        "busy_workers": executor.busy / executor.clock,
        "trials_per_hour": 3600 * trials / executor.clock,
        "driver_busy_fraction": executor.driver / executor.clock,
        "driver_ms_per_trial": per_trial,
        "real_seconds": real,
    }


def markdown(runs: list[dict]) -> str:
    base = next(run["busy_workers"] for run in runs if run["workers"] == 1 and run["mode"] == "sync")
    lines = [
        "| workers | mode | batch | trials | speed-up vs 1 worker | trials / hour | driver busy | "
        "driver ms / trial: controller, log, checkpoint, W&B |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in runs:
        ms = run["driver_ms_per_trial"]
        lines.append(
            f"| {run['workers']} | {run['mode']} | {run['batch_size']} | {run['trials']} | "
            f"**{run['busy_workers'] / base:.1f}x** | {run['trials_per_hour']:,.0f} | "
            f"{run['driver_busy_fraction']:.1%} | "
            f"{ms['policy']:.2f}, {ms['records']:.2f}, {ms['checkpoint']:.2f}, {ms['tracking']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 10, 100, 1000])
    parser.add_argument("--modes", nargs="+", default=["sync", "async"])
    parser.add_argument("--rounds", type=int, default=20, help="trials = rounds x workers (at least --min-trials)")
    parser.add_argument("--min-trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", nargs="*", type=Path, help="rebuild the child-time table from these run dirs")
    parser.add_argument("--wandb", action="store_true", help="mirror to an offline W&B run, as a default search does")
    parser.add_argument("--probabilities-every", type=int, default=1, help="logger.probabilities_every (with --wandb)")
    parser.add_argument("--out", default="scaling_sim.json", help="results file name in bench/results")
    args = parser.parse_args()
    if args.record is not None:
        TABLE.write_text(json.dumps(record_table(args.record or RECORDED)) + "\n")
    table = json.loads(TABLE.read_text())
    space = SearchSpace.from_config(yaml.safe_load((ROOT / "conf" / "search_space" / "default.yaml").read_text()))
    defaults = Architecture()  # conf/child/default.yaml sets none of its own
    runs = []
    for workers in args.workers:
        for mode in args.modes:
            trials = max(args.min_trials, args.rounds * workers)
            runs.append(simulate(table, workers, mode, trials, args, space, defaults))
            print(json.dumps(runs[-1]), file=sys.stderr)
    children = [child[0] for kinds in table["tasks"].values() for same in kinds.values() for child in same]
    result = {
        "command": " ".join(sys.argv),
        "recorded_children": len(children),
        "recorded_child_seconds": {"median": statistics.median(children), "mean": statistics.mean(children)},
        "runs": runs,
    }
    (RESULTS / args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(runs))


if __name__ == "__main__":
    main()
