"""The tabular benchmark: build the table of every child of a small space on every task, then search it.

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.tabular build [--shard 0/2]
    .venv/bin/python -m bench.tabular pack
    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.tabular search --seeds 50 [--settings ppo random ...]

``build`` trains every architecture of ``conf/search_space/tabular.yaml`` on every task
of ``conf/benchmark/tabular.yaml`` with each of its child seeds, at its fidelity
(``max_examples`` per split drawn with ``data_seed``, the default child budget, one
thread), through the real ``ChildRunner``. Each run is appended to
``outputs/bench/tabular/runs-<shard>.jsonl`` as it finishes, so a killed build resumes
where it stopped; ``--shard i/n`` takes every n-th task, to build on n cores at once.
``pack`` gathers the runs into ``bench/results/tabular.json.gz`` (``ResultTable``,
with its fidelity and provenance) and refuses an incomplete table.

``search`` runs multitask searches over every task of the table through the real
``Search`` (strategy, trial log, checkpoints, in a scratch run dir) with a ``TableRunner``
in place of training, ``--trials-per-task`` trials per task, and ``transfer`` (pre-train
on the training tasks, then each held-out task alone). What each search found goes to
``bench/results/tabular-search.json.gz`` as it finishes; a rerun does only the (setting,
seed) pairs missing there. ``bench.tabular_report`` turns it into the tables and the
figure of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import gzip
import json
import logging
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from bench.runs import RESULTS, ROOT
from mnms.child.arch import Architecture, complete_arch
from mnms.child.config import ChildTrainerConfig
from mnms.data.tasks import Task, load_task
from mnms.executors.trial import TrialRequest
from mnms.search.space import SearchSpace
from mnms.search.table import ResultTable
from mnms.utils.config import resume_settings
from mnms.utils.io import atomic_write

CONF = ROOT / "conf"
OUT = ROOT / "outputs" / "bench" / "tabular"
TABLE = RESULTS / "tabular.json.gz"


@dataclass(frozen=True)
class Benchmark:
    """``conf/benchmark/tabular.yaml``: the table's space, tasks, held-out tasks, child seeds and fidelity."""

    space_name: str
    train: tuple[str, ...]
    held_out: tuple[str, ...]
    seeds: tuple[int, ...]
    max_examples: int
    data_seed: int

    @classmethod
    def load(cls, path: Path = CONF / "benchmark" / "tabular.yaml") -> Benchmark:
        cfg = OmegaConf.to_container(OmegaConf.load(path))
        return cls(
            cfg["space"],
            tuple(cfg["train"]),
            tuple(cfg["held_out"]),
            tuple(cfg["seeds"]),
            cfg["max_examples"],
            cfg["data_seed"],
        )

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.train + self.held_out

    def space(self) -> SearchSpace:
        return SearchSpace.from_config(
            OmegaConf.to_container(OmegaConf.load(CONF / "search_space" / f"{self.space_name}.yaml"))
        )

    def load_task(self, name: str) -> Task:
        return load_task(name, os.environ.get("MNMS_DATA_DIR"), max_examples=self.max_examples, seed=self.data_seed)

    def fidelity(self, tasks: Mapping[str, Task]) -> dict[str, Any]:
        """What every run of the table is trained at (``ResultTable.fidelity``)."""
        return {
            "max_examples": self.max_examples,
            "data_seed": self.data_seed,
            "examples": {
                name: {split: len(data) for split, data in task.splits.items()} for name, task in tasks.items()
            },
            "child": resume_settings(Architecture()),
            "trainer": resume_settings(ChildTrainerConfig()),
        }


def runs_files() -> list[Path]:
    return sorted(OUT.glob("runs-*.jsonl"))


def recorded() -> Iterator[dict[str, Any]]:
    """Every run the build has appended so far (a line cut short by a kill is skipped)."""
    for path in runs_files():
        for line in path.read_text().splitlines():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def build(bench: Benchmark, shard: int, shards: int, cache_dir: Path) -> None:
    from mnms.executors.runner import ChildRunner  # torch and Lightning: only where children train

    space = bench.space()
    archs = list(space.architectures())
    done = {(run["task"], json.dumps(run["arch"], sort_keys=True), run["seed"]) for run in recorded()}
    OUT.mkdir(parents=True, exist_ok=True)
    defaults = Architecture().to_dict()
    runners: dict[str, ChildRunner] = {}
    with (OUT / f"runs-{shard}.jsonl").open("a") as out:
        for seed in bench.seeds:  # seed-major: an early stop leaves whole seeds to pack with --seeds
            for name in bench.tasks[shard::shards]:
                todo = [arch for arch in archs if (name, json.dumps(arch, sort_keys=True), seed) not in done]
                if not todo:
                    continue
                if name not in runners:
                    runners[name] = ChildRunner({name: bench.load_task(name)}, ChildTrainerConfig(), str(cache_dir))
                    runners[name].prepare_process()
                started = time.perf_counter()
                for count, arch in enumerate(todo, start=1):
                    outcome = runners[name](TrialRequest(count, name, complete_arch(arch, defaults), seed))
                    run = {"task": name, "arch": arch, "seed": seed, "status": outcome.status}
                    run.update(metrics=outcome.metrics, error=outcome.error, wall_seconds=outcome.wall_seconds)
                    out.write(json.dumps(run) + "\n")
                    out.flush()
                    if count % 60 == 0 or count == len(todo):
                        elapsed = time.perf_counter() - started
                        print(
                            f"[shard {shard}] seed {seed} {name}: {count}/{len(todo)}, {elapsed:.0f} s", file=sys.stderr
                        )


def pack(bench: Benchmark, path: Path) -> ResultTable:
    """The table from the build's runs; refused while any (task, architecture, seed) is missing."""
    space = bench.space()
    tasks = {name: bench.load_task(name) for name in bench.tasks}
    table = ResultTable(space, bench.fidelity(tasks))
    latest: dict[tuple[str, str, int], dict[str, Any]] = {}
    for run in recorded():
        latest[(run["task"], table.key(run["arch"]), run["seed"])] = run
    missing = [
        (name, arch, seed)
        for name in bench.tasks
        for arch in space.architectures()
        for seed in bench.seeds
        if (name, table.key(arch), seed) not in latest
    ]
    if missing:
        raise SystemExit(f"{len(missing)} runs are missing, e.g. {missing[0]}: run `python -m bench.tabular build`")
    for name in bench.tasks:
        for arch in space.architectures():
            for seed in bench.seeds:
                run = latest[(name, table.key(arch), seed)]
                entry = {"seed": seed, "status": run["status"], "metrics": run["metrics"], "error": run["error"]}
                table.add(name, arch, entry)
    table.provenance = {
        "built_by": "python -m bench.tabular build && python -m bench.tabular pack",
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "packed": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, one thread per child",
        "train": list(bench.train),
        "held_out": list(bench.held_out),
        "seeds": list(bench.seeds),
        "child_seconds": {name: round(table.seconds(name), 1) for name in bench.tasks},
    }
    table.save(path)
    return table


def strategy_group(name: str) -> dict[str, Any]:
    """What ``conf/strategy/<name>.yaml`` sets over the ppo it extends (its own keys, defaults list aside)."""
    values = OmegaConf.to_container(OmegaConf.load(CONF / "strategy" / f"{name}.yaml"))
    values.pop("defaults")
    return {"kind": "ppo", **values}


# What each setting changes from the shipped defaults: (strategy section, search section).
SETTINGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "ppo": ({"kind": "ppo"}, {}),
    "ppo-paper": (strategy_group("ppo_paper"), {"repeats": "reuse"}),
    "reinforce": ({"kind": "reinforce"}, {}),
    "random": ({"kind": "random"}, {}),
    "optuna": ({"kind": "optuna"}, {}),
}
TRANSFER = "transfer"  # one more setting: search_all runs it as transfer_once


def setting(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A named setting, or ``base+key=value+...`` (dotted strategy keys; ``search.`` for the search section)."""
    base, *changes = name.split("+")
    strategy, search = copy.deepcopy(SETTINGS[base])
    for change in changes:
        key, value = change.split("=", 1)
        parsed = yaml_value(value)
        if key.startswith("search."):
            search[key.removeprefix("search.")] = parsed
        else:
            section, field_name = key.split(".", 1) if "." in key else (None, key)
            target = strategy.setdefault(section, {}) if section else strategy
            target[field_name] = parsed
    return strategy, search


def yaml_value(text: str) -> Any:
    return yaml.safe_load(text) if text else text


def search_once(
    table: ResultTable, tasks: Mapping[str, Task], name: str, seed: int, trials_per_task: int
) -> dict[str, Any]:
    """One multitask search of every table task against the table: what each task tried, in order, and its final policy.

    It gets ``SLACK`` trials per task beyond ``trials_per_task``, since a round-robin
    schedule of batches (some cut short by redraws) does not split a budget exactly; the report
    scores each task's first ``trials_per_task``.
    """
    strategy, search_changes = setting(name)
    with table_search(table, tasks, strategy, (trials_per_task + SLACK) * len(tasks), seed, search_changes) as done:
        search, summary = done
        found = what_each_task_tried(table, search, tasks)
    return {"tasks": found, "draws": [list(entry) for entry in search.draw_log], "distinct": summary["distinct"]}


def transfer_once(
    table: ResultTable, tasks: Mapping[str, Task], train: Sequence[str], seed: int, trials_per_task: int
) -> dict[str, Any]:
    """Transfer on the table: PPO pre-trained on ``train`` (a multitask search, ``trials_per_task`` each), then
    each other task searched alone for ``trials_per_task`` trials: from that controller with the paper's fresh
    random task embedding (``transfer``); from one pre-trained with task descriptors, the new task starting at
    its descriptor (``transfer-descriptor``); from a fresh controller (``scratch``); and by random search."""
    from mnms.search.strategies import strategy_config
    from mnms.transfer.artifact import save_controller_artifact
    from mnms.transfer.warm_start import TransferConfig, warm_start

    ppo = {"kind": "ppo"}
    inits = {"transfer": (ppo, "random"), "transfer-descriptor": (DESCRIBED_PPO, "descriptor")}
    found: dict[str, dict[str, Any]] = {mode: {} for mode in [*inits, "scratch", "random"]}
    pretrain = {name: tasks[name] for name in train}
    with tempfile.TemporaryDirectory() as scratch_dir:
        sources = {mode: Path(scratch_dir) / f"{mode}.pt" for mode in inits}
        for mode, (strategy, _) in inits.items():
            with table_search(table, pretrain, strategy, (trials_per_task + SLACK) * len(train), seed) as (search, _):
                save_controller_artifact(sources[mode], search.strategy, table.space, {"benchmark": "tabular"})
        for name in (task for task in tasks if task not in train):
            alone = {name: tasks[name]}
            runs: list[tuple[str, Mapping[str, Any], Any]] = [
                ("scratch", ppo, None),
                ("random", {"kind": "random"}, None),
            ]
            for mode, (strategy, init) in inits.items():
                transfer = TransferConfig(source=str(sources[mode]), init=init)
                warm = warm_start(transfer, strategy_config(strategy), table.space, [name], seed, describe)
                runs.append((mode, strategy, warm))
            for mode, strategy, controller in runs:
                with table_search(table, alone, strategy, trials_per_task, seed, controller=controller) as (run, _):
                    found[mode] |= what_each_task_tried(table, run, alone)
    return found


# PPO whose task embeddings are projections of the tasks' data descriptors (mnms/data/descriptor.py).
DESCRIBED_PPO = {"kind": "ppo", "controller": {"task_descriptors": True}}


def describe(name: str) -> Any:
    """The descriptor of the table's task ``name`` (MiniLM through the benchmark's feature cache)."""
    from mnms.data.descriptor import describe_task
    from mnms.data.feature_cache import FeatureCache

    _, tasks = _worker_state()
    return describe_task(tasks[name], FeatureCache(OUT / "cache"))


@contextlib.contextmanager
def table_search(
    table: ResultTable,
    tasks: Mapping[str, Task],
    strategy: Mapping[str, Any],
    trials: int,
    seed: int,
    search_changes: Mapping[str, Any] | None = None,
    controller: Any = None,
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A real search of ``tasks`` answered by the table, run to its end: ``(search, summary)``, while its
    scratch run dir (a real trial log and checkpoints, cheap to redo) lasts. ``controller``: a warm start."""
    from mnms.executors.base import SequentialExecutor
    from mnms.search.config import SearchConfig
    from mnms.search.job import SearchJob
    from mnms.search.strategies import strategy_config
    from mnms.search.table import TableRunner
    from mnms.utils.config import from_config

    search_cfg = from_config(SearchConfig, {"trials": trials, "progress": False, **(search_changes or {})})
    job = SearchJob(tasks, table.space, OUT / "cache", strategy=strategy_config(strategy), search=search_cfg, seed=seed)
    table.check(job.space, job.task_names)
    built = None
    if controller is not None:
        built = job.make_strategy(controller=controller)
    elif getattr(getattr(job.strategy, "controller", None), "task_descriptors", False):
        built = job.make_strategy(descriptors={name: describe(name) for name in tasks})
    with tempfile.TemporaryDirectory() as run_dir:
        search = job.build(Path(run_dir), strategy=built, executor=SequentialExecutor(TableRunner(table)))
        with warnings_quiet():
            summary = search.run()
        yield search, summary


def what_each_task_tried(table: ResultTable, search: Any, tasks: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per task, its trials in order (architectures as indices of ``arch_keys``) and its final most probable one."""
    from mnms.search.records import read_trials

    index = {key: i for i, key in enumerate(arch_keys(table))}
    rows = read_trials(search.run_dir)
    found = {}
    for task in tasks:
        mine = [row for row in rows if row.task == task]
        best = most_probable(search.strategy, table, task)
        found[task] = {
            "tried": [index[table.key(row.decisions)] for row in mine],
            "rewards": [round(row.reward, 5) for row in mine],
            "reused": [row.reused_from is not None for row in mine],
            "most_probable": None if best is None else index[best],
        }
    return found


SLACK = 8  # trials per task beyond the scored ones (search_once)


@contextlib.contextmanager
def warnings_quiet() -> Iterator[None]:
    """The search's own warnings (a settled policy) are measured, not printed, here."""
    logger = logging.getLogger("mnms.search.loop")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def most_probable(strategy: Any, table: ResultTable, task: str) -> str | None:
    """The controller's most probable architecture for ``task`` (exact, over the whole space); None without one."""
    import torch

    if not getattr(strategy, "trains_controller", False):
        return None
    archs = list(table.space.architectures())
    with torch.no_grad():
        log_prob, _ = strategy.controller.log_prob_and_entropy([task] * len(archs), archs)
    return table.key(archs[int(log_prob.argmax())])


def _search_job(args: tuple[str, int, int]) -> tuple[str, int, dict[str, Any]]:
    name, seed, trials_per_task = args
    table, tasks = _worker_state()
    if name == TRANSFER:
        return name, seed, transfer_once(table, tasks, Benchmark.load().train, seed, trials_per_task)
    return name, seed, search_once(table, tasks, name, seed, trials_per_task)


@functools.cache
def _worker_state() -> tuple[ResultTable, dict[str, Task]]:
    """The table and its tasks, loaded once per worker process."""
    table, bench = ResultTable.load(TABLE), Benchmark.load()
    return table, {name: bench.load_task(name) for name in table.tasks}


def arch_keys(table: ResultTable) -> list[str]:
    """Every architecture's key in the space's order: search results name an architecture by its index here."""
    return [table.key(arch) for arch in table.space.architectures()]


def load_results(path: Path, table: ResultTable) -> dict[str, Any]:
    """``search_all``'s results with every architecture index turned back into the table's key."""
    results = json.loads(gzip.decompress(path.read_bytes()))
    keys = results.pop("keys")
    if keys != arch_keys(table):
        raise ValueError(f"{path} was searched on another table than {TABLE}; rerun `python -m bench.tabular search`")
    _decode(results, keys)
    return results


def _decode(node: Any, keys: list[str]) -> None:
    """Turn the indices of every task record (``what_each_task_tried``) under ``node`` back into keys."""
    if isinstance(node, dict) and "tried" in node:
        node["tried"] = [keys[i] for i in node["tried"]]
        if node["most_probable"] is not None:
            node["most_probable"] = keys[node["most_probable"]]
    elif isinstance(node, dict):
        for value in node.values():
            _decode(value, keys)


def search_all(settings: list[str], seeds: int, trials_per_task: int, out: Path, workers: int) -> None:
    """Every (setting, seed) search missing from ``out``, on ``workers`` processes; ``out`` is rewritten after each.

    The setting ``transfer`` is ``transfer_once`` (pre-training on the benchmark's training
    tasks, then each held-out task by transfer, scratch and random search).

    ``out`` is gzipped JSON, keyed by trials per task, setting and seed, with architectures
    as indices into its ``keys`` (the table's, in the space's order): 50 seeds of 5 settings
    fit in about a megabyte.
    """
    results = json.loads(gzip.decompress(out.read_bytes())) if out.is_file() else {}
    results["keys"] = arch_keys(ResultTable.load(TABLE))
    done = results.setdefault(str(trials_per_task), {})
    todo = [
        (name, seed, trials_per_task)
        for name in settings
        for seed in range(seeds)
        if str(seed) not in done.get(name, {})
    ]
    if not todo:
        print(
            f"all {len(settings) * seeds} searches are already in {out}: nothing to run. "
            "--out <new file> searches them again; --seeds N with more seeds adds the missing ones",
            file=sys.stderr,
        )
        return
    print(f"{len(todo)} searches to run ({len(settings) * seeds - len(todo)} already in {out})", file=sys.stderr)
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for count, (name, seed, found) in enumerate(pool.imap_unordered(_search_job, todo), start=1):
            done.setdefault(name, {})[str(seed)] = found
            payload = gzip.compress(json.dumps(results, separators=(",", ":")).encode(), mtime=0)
            atomic_write(out, lambda f, data=payload: f.write(data))
            if count % 10 == 0 or count == len(todo):
                print(f"{count}/{len(todo)} searches, {time.perf_counter() - started:.0f} s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    build_step = steps.add_parser("build", help="train the missing runs (resumable)")
    build_step.add_argument("--shard", default="0/1", help="i/n: build every n-th task, starting at the i-th")
    build_step.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "features")
    pack_step = steps.add_parser("pack", help=f"gather the runs into {TABLE.relative_to(ROOT)}")
    pack_step.add_argument("--out", type=Path, default=TABLE)
    pack_step.add_argument("--seeds", type=int, nargs="+", help="pack these child seeds only (default: the config's)")
    search_step = steps.add_parser("search", help="search the table with many seeds")
    search_step.add_argument("--settings", nargs="+", default=[*SETTINGS, TRANSFER])
    search_step.add_argument("--seeds", type=int, default=50)
    search_step.add_argument("--trials-per-task", type=int, default=50)
    search_step.add_argument("--out", type=Path, default=RESULTS / "tabular-search.json.gz")
    search_step.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    bench = Benchmark.load()
    if args.step == "build":
        shard, shards = (int(part) for part in args.shard.split("/"))
        build(bench, shard, shards, args.cache_dir)
    elif args.step == "search":
        search_all(args.settings, args.seeds, args.trials_per_task, args.out, args.workers)
    else:
        if args.seeds:
            bench = dataclasses.replace(bench, seeds=tuple(args.seeds))
        table = pack(bench, args.out)
        print(
            f"{args.out}: {len(table.tasks)} tasks, {table.space.size()} architectures, {args.out.stat().st_size} bytes"
        )


if __name__ == "__main__":
    main()
