"""``executor=local``: a pool of worker processes on this machine, one child each at a time.

Processes, not threads: a child's Python-side training loop holds the GIL. Workers start
with ``spawn`` (or ``forkserver``) because forking a process whose torch thread pools are
running is unsafe. Each worker receives the ``ChildRunner`` once, at start, and then only
small ``TrialRequest`` objects; it keeps its imported torch, its encoders and its feature
cache memo for the whole search. Workers are pinned to disjoint shares of the cores so
two children never fight over one core.

A worker that dies mid-trial (SIGKILL, out-of-memory killer) is replaced and the trial
sent again, ``retries`` times at most, after which the trial is recorded as failed and
the search goes on.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import ClassVar

from mnms.executors.base import Executor, Runner
from mnms.executors.trial import TrialOutcome, TrialRequest
from mnms.utils.config import ConfigError, check, is_int

log = logging.getLogger(__name__)

START_METHODS = ("spawn", "forkserver")


@dataclass(frozen=True)
class LocalConfig:
    """Options of ``conf/executor/local.yaml``."""

    section: ClassVar[str] = "executor"

    kind: str
    workers: int | None = None  # null: one per available core (per child thread)
    cores_per_worker: int | None = None  # cores a worker is pinned to; null: available cores // workers
    pin_cores: bool = True  # os.sched_setaffinity per worker (Linux); false lets the OS place them
    start_method: str = "spawn"
    retries: int = 1  # re-sends of a trial whose worker died; then the trial is recorded as failed
    # CUDA devices for the workers, one each, in turn (worker i sees gpus[i % len(gpus)] as
    # its only GPU, and its children train there with trainer.accelerator=auto); null: none set.
    gpus: tuple[int, ...] | None = None

    @property
    def requests_gpus(self) -> bool:
        """Whether children are given GPUs (the search refuses that with ``trainer.accelerator=cpu``)."""
        return self.gpus is not None

    def __post_init__(self) -> None:
        for name in ("workers", "cores_per_worker"):
            value = getattr(self, name)
            check(self, name, value is None or (is_int(value) and value >= 1), "an integer >= 1 or null (automatic)")
        check(self, "retries", is_int(self.retries) and self.retries >= 0, "an integer >= 0")
        check(
            self,
            "gpus",
            self.gpus is None or (len(self.gpus) > 0 and all(is_int(g) and g >= 0 for g in self.gpus)),
            "null or a non-empty list of CUDA device indices, e.g. [0, 1]",
        )
        check(
            self,
            "start_method",
            self.start_method in START_METHODS,
            f"one of {list(START_METHODS)} (fork is unsafe once torch has started its thread pools)",
        )


def available_cores() -> list[int]:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def worker_count(workers: int | None, threads: int, cores: int) -> int:
    """``executor.workers``, or one worker per ``threads`` of the ``cores``; a warning when they oversubscribe."""
    fitting = max(1, cores // threads)
    count = workers or fitting
    if count * threads > cores:
        log.warning(
            "executor.workers=%d x trainer.threads=%d asks for %d cores and this process may use %d: the "
            "children share them, each slower, and the first trials take that much longer; set "
            "executor.workers=%d (or null, one per core)",
            count,
            threads,
            count * threads,
            cores,
            fitting,
        )
    return count


def core_shares(cores: list[int], workers: int, per_worker: int) -> list[list[int]]:
    """``workers`` consecutive slices of ``per_worker`` cores, wrapping round if cores run out."""
    return [sorted({cores[(slot * per_worker + i) % len(cores)] for i in range(per_worker)}) for slot in range(workers)]


def _serve(conn: Connection, cores: list[int] | None, gpu: int | None) -> None:
    """A worker's life: receive the runner, pin, say ready, then train one child after another."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's; it closes the pool
    if gpu is not None:  # before the runner arrives: unpickling it imports torch, which reads this once
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    # Skip interpreter teardown (seconds of freeing torch and Lightning) when the worker exits:
    # multiprocessing's clean-up has run by then, and so have the exit handlers of whatever
    # the children imported (registered later, they run earlier).
    atexit.register(os._exit, 0)
    try:
        runner: Runner = conn.recv()
        if cores is not None:
            os.sched_setaffinity(0, cores)
        runner.prepare_process()
        if gpu is not None:
            _check_gpu(gpu)
    except Exception as error:  # noqa: BLE001 - reported to the driver, which raises it
        conn.send(("error", "".join(traceback.format_exception_only(error)).strip()))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            request = conn.recv()
        except EOFError:  # the driver went away
            return
        if request is None:
            return
        conn.send(runner(request))


def _check_gpu(gpu: int) -> None:
    import torch  # the runner has imported it already

    if not torch.cuda.is_available():
        raise RuntimeError(
            f"executor.gpus gave this worker CUDA device {gpu}, which does not exist here; "
            "list the devices `nvidia-smi -L` shows, or leave executor.gpus null"
        )


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    cores: list[int] | None
    gpu: int | None
    ready: bool = False


class LocalExecutor(Executor):
    """Trains children on a pool of pinned worker processes, one child per worker at a time."""

    Config = LocalConfig

    def __init__(self, runner: Runner, cfg: LocalConfig) -> None:
        super().__init__()
        cores = available_cores()
        count = worker_count(cfg.workers, runner.threads, len(cores))
        per_worker = cfg.cores_per_worker or max(1, len(cores) // count)
        self.cfg = cfg
        self.capacity = count
        self._runner_bytes = pickle.dumps(runner)  # pickled once, sent once to each worker
        self._context = multiprocessing.get_context(cfg.start_method)
        shares = core_shares(cores, count, per_worker) if cfg.pin_cores and hasattr(os, "sched_setaffinity") else None
        self._queue: deque[TrialRequest] = deque()  # submitted, waiting for a free worker
        self._running: dict[int, TrialRequest] = {}  # worker slot -> its child
        self._attempts: dict[int, int] = {}  # trial -> times sent to a worker
        # Start every process before feeding any: they boot and import torch in parallel,
        # while the driver goes on setting up the search.
        gpus = cfg.gpus or ()
        self._workers = [
            self._start(shares[slot] if shares else None, gpus[slot % len(gpus)] if gpus else None)
            for slot in range(count)
        ]
        for worker in self._workers:
            self._send_runner(worker)

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers (a replaced worker has a new one)."""
        return [worker.process.pid for worker in self._workers]

    @property
    def in_flight(self) -> int:
        return len(self._queue) + len(self._running)

    def _start(self, cores: list[int] | None, gpu: int | None) -> _Worker:
        mine, theirs = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(theirs, cores, gpu), daemon=True, name="mnms-child-worker")
        process.start()
        theirs.close()  # so that the worker's death reads as EOF on our end
        return _Worker(process, mine, cores, gpu)

    def _send_runner(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):  # died while booting: _await_ready reports it
            worker.conn.send_bytes(self._runner_bytes)

    def _await_ready(self, worker: _Worker) -> None:
        if worker.ready:
            return
        try:
            status, detail = worker.conn.recv()
        except EOFError:
            worker.process.join(timeout=5)
            raise RuntimeError(
                f"a local worker died while starting (exit code {worker.process.exitcode}); its error is printed above"
            ) from None
        if status == "error":  # what it was given (cores, a GPU) does not exist here: a setting to fix
            place = f"cores {worker.cores}" + (f", CUDA device {worker.gpu}" if worker.gpu is not None else "")
            raise ConfigError(
                f"a local worker could not start ({place}): {detail}; "
                "check executor.cores_per_worker, executor.workers and executor.gpus"
            )
        worker.ready = True

    def _replace(self, slot: int) -> int | None:
        """Start a fresh worker in ``slot``; return the dead one's exit code."""
        dead = self._workers[slot]
        dead.conn.close()
        dead.process.join(timeout=5)
        self._workers[slot] = self._start(dead.cores, dead.gpu)
        self._send_runner(self._workers[slot])
        self._await_ready(self._workers[slot])
        return dead.process.exitcode

    def _dispatch(self) -> None:
        """Hand queued children to free workers."""
        for slot, worker in enumerate(self._workers):
            if not self._queue:
                return
            if slot not in self._running:
                self._await_ready(worker)
                request = self._running[slot] = self._queue.popleft()
                self._attempts[request.trial] = self._attempts.get(request.trial, 0) + 1
                with contextlib.suppress(OSError):  # already dead: its pipe reads as EOF in _wait
                    worker.conn.send(request)

    def _submit(self, request: TrialRequest) -> None:
        self._queue.append(request)
        self._dispatch()

    def _wait(self) -> list[tuple[TrialRequest, TrialOutcome]]:
        finished: list[tuple[TrialRequest, TrialOutcome]] = []
        while not finished:
            ready = wait([self._workers[slot].conn for slot in self._running])
            for slot in [slot for slot in self._running if self._workers[slot].conn in ready]:
                request = self._running.pop(slot)
                try:
                    finished.append((request, self._workers[slot].conn.recv()))
                except (EOFError, OSError):
                    if outcome := self._lost(slot, request):
                        finished.append((request, outcome))
            self._dispatch()  # keep every worker busy before the driver looks at the outcomes
        for request, _ in finished:
            del self._attempts[request.trial]
        return finished

    def _lost(self, slot: int, request: TrialRequest) -> TrialOutcome | None:
        """A worker died training ``request``: replace it and send the child again, or fail it after the retries."""
        pid, exit_code = self._workers[slot].process.pid, self._replace(slot)
        attempts = self._attempts[request.trial]
        if attempts <= self.cfg.retries:
            self._queue.appendleft(request)
            return None
        return TrialOutcome(
            "failed",
            error=(
                f"worker process {pid} died (exit code {exit_code}) while training this child, "
                f"{attempts} attempt(s); killed or out of memory?"
            ),
        )

    def close(self) -> None:
        """Ask every worker to exit after its current child; kill those that do not."""
        for worker in self._workers:
            with contextlib.suppress(OSError):  # a dead worker has nothing to be told
                worker.conn.send(None)
        for worker in self._workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._workers = []
