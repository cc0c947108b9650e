"""A tabular benchmark: every architecture of a small space trained on every task, looked up instead of trained.

NAS-Bench-201 and HPO-B measure search algorithms this way: evaluate a space once,
store the table, then run any strategy against it with hundreds of seeds in minutes.
``ResultTable`` is mnms's own (built by ``bench/tabular.py``, stored in
``bench/results/``): for each task and architecture, the ``ChildResult`` of each child
seed that trained it, validation curve, test accuracy and seconds included.

``TableRunner`` is a ``Runner`` that answers a request from the table, so the real
``Search`` (strategies, trial log, reuse, checkpoints, resume) runs unchanged on any
executor: a search's seed picks among the recorded child seeds, so it meets real
seed-to-seed noise, and the recorded training time is the child's cost. A pruner's bars
are replayed on the recorded curve by the child's own stop rule.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnms.child import result as stopped
from mnms.child.stopping import stops_after
from mnms.executors.trial import OK, PRUNED, STATUSES, TrialOutcome, TrialRequest
from mnms.search.space import SearchSpace
from mnms.utils.config import ConfigError
from mnms.utils.io import atomic_write

FORMAT = 1


class TableError(ConfigError):
    """A table that cannot stand in for training the search's children: the message names what differs and the fix."""


def arch_key(arch: Mapping[str, Any]) -> str:
    """The table's key of an architecture: its searched decisions, canonical JSON."""
    return json.dumps(dict(arch), sort_keys=True, separators=(",", ":"))


@dataclass
class ResultTable:
    """Per task, per architecture key, one run per child seed: ``{"seed", "status", "metrics", "error"}``.

    ``fidelity`` is what every run was trained at: the split sizes per task, the data
    sampling seed, the child defaults (fields the space leaves out) and the trainer
    settings. A search may use the table only at that fidelity (``check``).
    """

    space: SearchSpace
    fidelity: dict[str, Any]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return list(self.runs)

    def key(self, arch: Mapping[str, Any]) -> str:
        """The key of a full or partial architecture: only the decisions the space makes."""
        decisions: dict[str, Any] = {}
        for decision in self.space.decisions:
            if decision.active(decisions):
                decisions[decision.name] = arch[decision.name]
        return arch_key(decisions)

    def add(self, task: str, arch: Mapping[str, Any], run: Mapping[str, Any]) -> None:
        self.runs.setdefault(task, {}).setdefault(self.key(arch), []).append(dict(run))

    # --- what the table knows ------------------------------------------------------------
    def mean_val(self, task: str) -> dict[str, float]:
        """Each architecture's mean validation accuracy over its seeds (0 for a seed that did not finish)."""
        return {
            key: sum(run["metrics"].get("val_accuracy", 0.0) if run["status"] == OK else 0.0 for run in runs)
            / len(runs)
            for key, runs in self.runs[task].items()
        }

    def ranked(self, task: str) -> list[str]:
        """Architecture keys, best mean validation accuracy first (ties: key order, so it is stable)."""
        means = self.mean_val(task)
        return sorted(means, key=lambda key: (-means[key], key))

    def seconds(self, task: str) -> float:
        """Child training seconds the table holds for ``task``: what building it cost."""
        return sum(run["metrics"].get("train_seconds", 0.0) for runs in self.runs[task].values() for run in runs)

    # --- checks --------------------------------------------------------------------------
    def check(
        self,
        space: SearchSpace,
        tasks: Sequence[str],
        fidelity: Mapping[str, Any] | None = None,
    ) -> None:
        """Refuse a search this table cannot answer: another space, a missing task or architecture, another fidelity."""
        if space.signature() != self.space.signature():
            raise TableError(
                f"the table was built over a space with signature {self.space.signature()}, the search's is "
                f"{space.signature()}: search the table's own space (its `space` entry, "
                "conf/search_space/tabular.yaml) "
                "or rebuild the table over this one (python -m bench.tabular build)"
            )
        missing = [task for task in tasks if task not in self.runs]
        if missing:
            raise TableError(f"the table has no runs for {missing}; its tasks are {self.tasks}")
        for task in tasks:
            absent = [arch for arch in space.architectures() if self.key(arch) not in self.runs[task]]
            if absent:
                raise TableError(
                    f"the table does not cover {len(absent)} architecture(s) the space can propose for {task}, "
                    f"e.g. {absent[0]}: finish building it (python -m bench.tabular build resumes) and pack it again"
                )
        for name, value in (fidelity or {}).items():
            if name in self.fidelity and self.fidelity[name] != value:
                raise TableError(
                    f"the table was built at {name}={_short(self.fidelity[name])}, the search runs at "
                    f"{_short(value)}: search at the table's fidelity, or rebuild the table at this one"
                )

    # --- files ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "space": self.space.to_config(),
            "space_signature": self.space.signature(),
            "fidelity": self.fidelity,
            "provenance": self.provenance,
            "runs": self.runs,
        }

    def save(self, path: str | Path) -> None:
        """Gzipped JSON, written atomically; floats as they came (the curves are what pruning replays)."""
        payload = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        atomic_write(path, lambda f: f.write(gzip.compress(payload, mtime=0)))

    @classmethod
    def load(cls, path: str | Path) -> ResultTable:
        path = Path(path)
        if not path.is_file():
            raise TableError(f"no result table at {path}: build one with `python -m bench.tabular build` and `pack`")
        try:
            data = json.loads(gzip.decompress(path.read_bytes()))
        except (OSError, ValueError) as error:
            raise TableError(f"{path} is not a gzipped JSON result table ({error})") from error
        if data.get("format") != FORMAT:
            raise TableError(f"{path} has table format {data.get('format')!r}; this mnms reads format {FORMAT}")
        space = SearchSpace.from_config(data["space"])
        if space.signature() != data["space_signature"]:
            raise TableError(f"{path}: its space does not match its recorded signature; the file was edited")
        for task, archs in data["runs"].items():
            for key, runs in archs.items():
                bad = [run.get("status") for run in runs if run.get("status") not in STATUSES]
                if bad or not runs:
                    raise TableError(f"{path}: {task} {key} has runs with status {bad or 'none'}; statuses: {STATUSES}")
        return cls(space, data["fidelity"], data["runs"], data.get("provenance", {}))


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else f"{text[:100]}... (sha {hashlib.sha256(text.encode()).hexdigest()[:8]})"


@dataclass
class TableRunner:
    """A ``Runner`` that looks a request's child up in a ``ResultTable`` instead of training it.

    Which recorded child seed answers is a hash of the search seed, task and
    architecture: every search seed meets the table's seed-to-seed noise, and a search
    repeats exactly. ``wall_seconds`` is the recorded training time. With pruning bars,
    the recorded curve is cut where the child's stop rule (``stops_after``) would have
    stopped it, with the best epoch and cost so far.
    """

    table: ResultTable
    threads: int = 1
    max_epochs: int = 10

    def prepare_process(self) -> None:
        """Nothing to set up: no child trains."""

    def __call__(self, request: TrialRequest) -> TrialOutcome:
        runs = self.table.runs[request.task][self.table.key(request.arch)]
        digest = hashlib.sha256(f"{request.seed}/{request.task}/{self.table.key(request.arch)}".encode()).digest()
        run = runs[int.from_bytes(digest[:4], "little") % len(runs)]
        metrics = dict(run["metrics"])
        seconds = float(metrics.get("train_seconds", 0.0))
        if run["status"] != OK:
            return TrialOutcome(run["status"], metrics, run.get("error"), seconds)
        if request.prune_below:
            return self._pruned(request.prune_below, metrics, seconds) or TrialOutcome(OK, metrics, None, seconds)
        return TrialOutcome(OK, metrics, None, seconds)

    def _pruned(self, bars: Mapping[int, float], metrics: dict[str, Any], seconds: float) -> TrialOutcome | None:
        """The outcome had the pruner stopped this child, or None if it survives every bar."""
        curve = metrics.get("val_curve") or []
        best = 0.0
        for epoch, accuracy in enumerate(curve, start=1):
            best = max(best, accuracy)
            if stops_after(bars, epoch, best, self.max_epochs) and epoch < len(curve):
                share = epoch / len(curve)
                cut = {
                    **metrics,
                    "val_curve": curve[:epoch],
                    "val_accuracy": best,
                    "epochs": epoch,
                    "best_epoch": 1 + curve[:epoch].index(best),
                    "train_seconds": seconds * share,
                    "stopped_by": stopped.PRUNED,
                }
                return TrialOutcome(PRUNED, cut, None, seconds * share)
        return None
