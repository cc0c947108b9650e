"""Mirror a search into Weights & Biases without ever being able to stop or stall it.

The search's append-only ``trials.jsonl`` is the source of truth; W&B is only a view
of it. So every W&B call here is guarded: the first exception is logged once at
WARNING (what failed and how to fix it), the W&B run is closed as failed, and the
tracker carries on as a no-op. Offline is the default because the machines running
searches often have no network; ``wandb sync`` uploads an offline run later.

Step scheme: W&B's own ``_step`` is never passed explicitly, so it just counts log
calls and can never go backwards (W&B silently drops rows logged at an older step).
Charts get meaningful x-axes through ``define_metric`` instead:

* ``trial/<key>`` (numeric fields of each ``log_trial`` row) against ``trial_index``,
  the 0-based order in which this tracker received trials;
* every key given to ``log_metrics`` against ``search_step``, the caller's ``step``,
  so tasks may report in any order and a transfer run may restart its steps at 0.
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import re
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mnms.utils.config import check, is_int, is_number, plain

logger = logging.getLogger(__name__)

MODES = ("offline", "online", "disabled")
TABLE_KEY = "trials"
TRIAL_STEP = "trial_index"
SEARCH_STEP = "search_step"


@dataclass
class TrackingConfig:
    """How a run is mirrored to W&B; the Hydra group ``logger`` maps 1:1 onto these fields.

    ``group``, ``job_type`` and ``name`` left null are filled by the run from what it is
    (``mnms.app.common.tracking_config``): a search's tasks, its mode, ``<mode>-<seed>``.

    ``init_timeout`` bounds both ``wandb.init`` and, online, the final upload wait in
    ``finish`` (unsent data stays on disk for ``wandb sync``). ``table_every`` batches
    trial rows into one table increment per that many trials: W&B shows only the
    latest 100 increments of an incremental table, so one increment per trial would
    hide all but the last 100 trials of a long search. ``probabilities_every`` logs the
    controller's choice probabilities at every that many updates: estimating them
    samples 2,000 architectures (about 0.2 s on the default space), which on a large
    cluster is most of the driver's time (docs/scaling.md).
    """

    section: ClassVar[str] = "logger"

    mode: str = "offline"
    project: str = "mnms"
    entity: str | None = None
    group: str | None = None
    job_type: str | None = None
    tags: list[str] = field(default_factory=list)
    name: str | None = None
    dir: str | None = None
    init_timeout: float = 60.0
    table_every: int = 10
    probabilities_every: int = 1

    def __post_init__(self) -> None:
        check(
            self,
            "mode",
            self.mode in MODES,
            f"one of {list(MODES)}: offline (the default; upload later with "
            "`wandb sync`), online (needs `wandb login`) or disabled; e.g. logger.mode=offline",
        )
        check(self, "project", bool(self.project), "a non-empty string, e.g. logger.project=mnms")
        check(self, "tags", not isinstance(self.tags, str), "a list of strings, e.g. logger.tags=[pilot,sst2]")
        self.tags = list(self.tags)
        check(
            self,
            "init_timeout",
            is_number(self.init_timeout) and self.init_timeout > 0,
            "a positive number of seconds, e.g. 60",
        )
        self.init_timeout = float(self.init_timeout)
        check(self, "table_every", is_int(self.table_every) and self.table_every >= 1, "a positive integer, e.g. 10")
        check(
            self,
            "probabilities_every",
            is_int(self.probabilities_every) and self.probabilities_every >= 1,
            "a positive integer, e.g. 10",
        )


RUN_FOLDER = re.compile(r"(?:offline-)?run-(\d{8}_\d{6})-(\w+)")  # wandb/<...>-<start time>-<run id>


def previous_run_id(folder: Path) -> str | None:
    """The id of the latest W&B run whose files are under ``folder/wandb`` (a resumed search goes on with it)."""
    runs = [match for path in (folder / "wandb").glob("*run-*") if (match := RUN_FOLDER.fullmatch(path.name))]
    return max(runs, key=lambda match: match.group(1)).group(2) if runs else None


class Tracker:
    """One W&B run mirroring one search or Hydra job; a no-op when disabled or once W&B fails.

    Use as ``with Tracker(cfg, config) as tracker:`` (or call ``finish`` in ``finally``)
    so every Hydra multirun job closes its own run and a crash is recorded as failed.
    """

    def __init__(
        self, cfg: TrackingConfig, run_config: Mapping[str, Any], *, run_id: str | None = None, first_trial: int = 0
    ) -> None:
        """``run_id``: a W&B run to go on with (a resumed search's), whose trials so far number ``first_trial``."""
        self.cfg = cfg
        self._run_id = run_id
        self._run: Any = None  # the live wandb Run; None means tracking is off
        self._run_path: Path | None = None
        self._table: Any = None
        self._columns: list[str] = []
        self._pending_rows = 0
        self._trials = first_trial
        self._defined_metrics: set[str] = set()
        self._warned_extra_keys = False
        self._finished = False
        if cfg.mode == "disabled":
            return
        with self._guard(f"starting the W&B run (wandb.init, logger.mode={cfg.mode})"):
            self._run = self._start(run_config)
            self._run_path = Path(self._run.dir).parent
            self._run_id = self._run.id

    def _start(self, run_config: Mapping[str, Any]) -> Any:
        import wandb  # imported here so `logger=none` never pays for (or depends on) wandb

        # Silent process-wide output also makes wandb raise instead of showing its
        # interactive login prompt, which would block an online search on a terminal.
        wandb.setup(settings=wandb.Settings(silent=True))
        if self.cfg.dir is not None:
            Path(self.cfg.dir).mkdir(parents=True, exist_ok=True)
        run = wandb.init(
            project=self.cfg.project,
            entity=self.cfg.entity,
            group=self.cfg.group,
            job_type=self.cfg.job_type,
            tags=self.cfg.tags,
            name=self.cfg.name,
            dir=self.cfg.dir,
            mode=self.cfg.mode,
            id=self._run_id,
            resume="allow" if self._run_id else None,
            config=plain(run_config),
            reinit="finish_previous",
            settings=wandb.Settings(
                init_timeout=self.cfg.init_timeout,
                finish_timeout=self.cfg.init_timeout,
                console="off",
                silent=True,
                save_code=False,
            ),
        )
        run.define_metric(TRIAL_STEP)
        # No summary of the last trial's numbers: the summary holds each task's best (set_summary).
        run.define_metric("trial/*", step_metric=TRIAL_STEP, summary="none")
        run.define_metric(SEARCH_STEP)
        return run

    def wants_probabilities(self, update: int) -> bool:
        """Whether the search's ``update``-th controller update (from 0) should log choice probabilities."""
        return self.enabled and update % self.cfg.probabilities_every == 0

    @property
    def enabled(self) -> bool:
        """True while a W&B run is live; False when disabled, finished or after a W&B failure."""
        return self._run is not None

    @property
    def run_id(self) -> str | None:
        """The W&B run's id, which a resumed search passes back to go on with the same run."""
        return self._run_id

    @property
    def run_path(self) -> Path | None:
        """The run's local folder (``offline-run-*`` or ``run-*``), for the end-of-search message."""
        return self._run_path

    def log_trial(self, row: Mapping[str, Any], charted: Collection[str] | None = None) -> None:
        """Mirror one ``trials.jsonl`` row: a row of the ``trials`` table plus ``trial/<key>`` charts of its
        numeric fields (those of ``charted``, when given).

        The first row fixes the table's columns; later rows get None for missing keys and
        their extra keys are dropped (warned once). Rows reach W&B as one table increment
        per ``table_every`` trials and at ``finish``.
        """
        if self._run is None:
            return
        with self._guard("logging a trial row"):
            import wandb

            if self._table is None:
                self._columns = list(row)
                # Mixed types allowed: a column changing type must not end the mirroring.
                self._table = wandb.Table(columns=self._columns, log_mode="INCREMENTAL", allow_mixed_types=True)
            extra = sorted(set(row) - set(self._columns))
            if extra and not self._warned_extra_keys:
                self._warned_extra_keys = True
                logger.warning(
                    "W&B trials table: keys %s are not among the columns fixed by the first trial row %s and "
                    "are left out of the table (trials.jsonl still has them); log every key in the first row "
                    "to keep them.",
                    extra,
                    self._columns,
                )
            self._table.add_data(*(row.get(column) for column in self._columns))
            self._pending_rows += 1
            data: dict[str, Any] = {
                f"trial/{key}": value
                for key, value in row.items()
                if isinstance(value, numbers.Real)
                and not isinstance(value, bool)
                and (charted is None or key in charted)
            }
            for key in data.keys() - self._defined_metrics:
                self._defined_metrics.add(key)
                if "." in key:  # W&B reads a dot as nesting, which "trial/*" does not cover: escaped, it does
                    self._run.define_metric(key.replace(".", "\\."), step_metric=TRIAL_STEP, summary="none")
            data[TRIAL_STEP] = self._trials
            if self._pending_rows >= self.cfg.table_every:
                data[TABLE_KEY] = self._table
                self._pending_rows = 0
            self._run.log(data)
            self._trials += 1

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log per-task metrics such as ``sst2/reward`` or ``sst2/p/encoder/minilm`` at search ``step``."""
        if self._run is None:
            return
        with self._guard("logging search metrics"):
            for key in metrics:
                name = key.split("/", 1)[0] + "/*" if "/" in key else key
                if name not in self._defined_metrics:
                    self._defined_metrics.add(name)
                    self._run.define_metric(name, step_metric=SEARCH_STEP)
            self._run.log({**metrics, SEARCH_STEP: step})

    def set_summary(self, summary: Mapping[str, Any]) -> None:
        """Record end-of-run facts (e.g. the best architecture per task) in the run summary."""
        if self._run is None:
            return
        with self._guard("setting the run summary"):
            self._run.summary.update(plain(summary))

    def log_model(self, folder: Path, name: str, metadata: Mapping[str, Any]) -> None:
        """Log the model ``folder`` as an artifact of type ``model``, linked to this run as its output."""
        if self._run is None:
            return
        with self._guard("logging the model artifact"):
            import wandb

            artifact = wandb.Artifact(name, type="model", metadata=plain(metadata))
            artifact.add_dir(str(folder))
            self._run.log_artifact(artifact)

    def finish(self, exit_code: int = 0) -> None:
        """Flush the last table rows and close the run; a non-zero ``exit_code`` marks it failed. Idempotent.

        wandb-core completes the run folder on disk shortly afterwards, at the latest when
        the process exits or ``wandb.teardown()`` runs (which waits for it).
        """
        if self._finished:
            return
        self._finished = True
        if self._run is None:
            return
        with self._guard("finishing the W&B run"):
            if self._pending_rows:
                self._run.log({TABLE_KEY: self._table})
                self._pending_rows = 0
            run, self._run = self._run, None
            run.finish(exit_code=exit_code)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.finish(exit_code=1 if exc_type is not None else 0)

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn any W&B failure into one warning and a disabled tracker, never an exception."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - W&B must never stop the search
            if self.cfg.mode == "online":
                fix = (
                    "check `wandb login` / WANDB_API_KEY and the network (or raise logger.init_timeout), "
                    "or use logger.mode=offline and upload later with `wandb sync`"
                )
            else:
                fix = f"check that logger.dir={self.cfg.dir!r} is writable and not full, or use logger=none"
            logger.warning(
                "W&B tracking disabled after %s failed (%s: %s); the search continues and trials.jsonl is "
                "unaffected. Fix: %s.",
                action,
                type(exc).__name__,
                exc,
                fix,
            )
            run, self._run = self._run, None
            if run is not None:
                with contextlib.suppress(Exception):  # already reported above
                    run.finish(exit_code=1)  # close it so the next run in this process starts clean
