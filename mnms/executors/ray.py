"""``executor=ray``: each child is a Ray task, on a private local Ray or an existing cluster.

The runner is put into Ray's object store once; each task receives a reference to it
(wrapped in a list, so Ray does not resolve it per call) and a ``TrialRequest``. A Ray
worker process fetches the runner on its first task and keeps it, with its imported
torch, loaded encoders and feature cache memo, for every later task of the search.

Tasks rather than actors: Ray then schedules children onto whatever CPUs the cluster has
(autoscaled nodes included) and retries a task whose worker or node died
(``max_retries``); a task that died on every attempt is recorded as a failed trial.

Ray is imported when this executor is first used, not with this module: the executor
registry (and so every run and every local worker) imports the module for its config.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar
from urllib.parse import urlsplit

from mnms.executors.base import Executor, Runner
from mnms.executors.local import available_cores
from mnms.executors.trial import TrialOutcome, TrialRequest
from mnms.utils.config import ConfigError, check, is_int, is_number


@dataclass(frozen=True)
class RayConfig:
    """Options of ``conf/executor/ray.yaml``."""

    section: ClassVar[str] = "executor"

    kind: str
    address: str | None = None  # null: a private local Ray for this run; "auto" / "ray://host:10001": a cluster
    num_cpus: int | None = None  # CPUs of the private Ray; null: this process's available cores
    cpus_per_child: float = 1.0  # Ray CPU request of each child; keep it >= the child's torch threads
    # Ray GPU request of each child; a fraction packs children on one GPU (0.25: four per GPU).
    # A child trains on the GPU Ray gives it (trainer.accelerator=auto); 0 trains on CPUs.
    gpus_per_child: float = 0.0
    num_gpus: int | None = None  # GPUs of the private Ray; null: the ones it detects
    temp_dir: str | None = None  # the private Ray's session folder; null: a fresh temp folder, removed on close
    retries: int = 1  # re-runs of a child whose worker or node died; then the trial is recorded as failed
    connect_timeout_s: float = 30.0  # how long a cluster's address may take to answer before the run fails

    @property
    def requests_gpus(self) -> bool:
        """Whether children are given GPUs (the search refuses that with ``trainer.accelerator=cpu``)."""
        return self.gpus_per_child > 0

    def __post_init__(self) -> None:
        check(
            self,
            "num_cpus",
            self.num_cpus is None or (is_int(self.num_cpus) and self.num_cpus >= 1),
            "an integer >= 1 or null (automatic)",
        )
        check(self, "retries", is_int(self.retries) and self.retries >= 0, "an integer >= 0")
        check(
            self,
            "connect_timeout_s",
            is_number(self.connect_timeout_s) and self.connect_timeout_s > 0,
            "a number of seconds > 0, e.g. 30",
        )
        check(
            self, "cpus_per_child", is_number(self.cpus_per_child) and self.cpus_per_child > 0, "a number > 0, e.g. 1"
        )
        check(
            self,
            "gpus_per_child",
            is_number(self.gpus_per_child)
            and self.gpus_per_child >= 0
            and (self.gpus_per_child <= 1 or self.gpus_per_child == int(self.gpus_per_child)),
            "0 (CPUs only), a fraction of one GPU such as 0.25, or a whole number of GPUs",
        )
        check(
            self,
            "num_gpus",
            self.num_gpus is None or (is_int(self.num_gpus) and self.num_gpus >= 0),
            "an integer >= 0 or null (detected)",
        )
        owned = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "temp_dir": self.temp_dir}
        if self.address is not None and any(value is not None for value in owned.values()):
            raise ConfigError(
                f"executor.address={self.address!r} joins an existing cluster, which owns its CPUs, GPUs and "
                "folders: leave executor.num_cpus, executor.num_gpus and executor.temp_dir null"
            )


_RUNNERS: dict[str, Runner] = {}  # per Ray worker process: the runner of the current search


def _ray() -> ModuleType:
    """Ray itself, imported on first use (an optional heavy dependency, so not at module import)."""
    import ray

    return ray


# An HTTP/2 client's connection preface and an empty SETTINGS frame: a gRPC server (the
# GCS, a Ray Client server) answers with a SETTINGS frame of its own.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
SETTINGS = 4  # the frame type, byte 3 of a frame header


def reach(address: str, timeout_s: float) -> None:
    """Fail in ``timeout_s`` unless a gRPC server answers at a cluster ``address``: ``ray.init`` would
    retry forever (and ignore SIGTERM) at an address where nothing, or something else, listens.

    ``address`` is ``ray://<head>[:10001]`` (Ray Client) or ``<head>[:6379]`` (the GCS, from a
    cluster node); an IPv6 head is written ``[::1]``. The probe opens the TCP port and sends
    an HTTP/2 preface, which both Ray servers answer at once; whether the cluster is healthy
    is Ray's to judge. A host name is resolved before the clock starts.
    """
    client = address.startswith("ray://")
    parts = urlsplit(address if client else f"//{address}")
    try:
        host, port = parts.hostname or "", parts.port or (10001 if client else 6379)
    except ValueError:  # a port that is not a number
        raise ConfigError(
            f"executor.address={address!r} is not <head>:<port> or ray://<head>:<port>, e.g. ray://10.0.0.5:10001"
        ) from None
    ports = "(ray://<head>:10001 for Ray Client, <head>:6379 from a cluster node)"
    deadline = time.monotonic() + timeout_s
    try:
        connection = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else error.strerror or type(error).__name__
        raise ConfigError(
            f"executor.address={address!r}: cannot reach {host}:{port} within executor.connect_timeout_s="
            f"{timeout_s:g} ({reason}). Is the cluster up (`ray status` on its head)? Check the host and the port "
            f"{ports}, raise executor.connect_timeout_s for a slow network, or drop executor.address to run a "
            "private Ray"
        ) from None
    with connection:
        reply = _first_bytes(connection, 9, deadline)
    if len(reply) < 9 or reply[3] != SETTINGS:
        said = f"answered {reply[:16]!r}" if reply else f"said nothing within executor.connect_timeout_s={timeout_s:g}"
        raise ConfigError(
            f"executor.address={address!r}: {host}:{port} accepts connections but {said}, not as a Ray cluster "
            f"(gRPC) does: it is another service. Check the port {ports}, or drop executor.address to run a "
            "private Ray"
        )


def _first_bytes(connection: socket.socket, count: int, deadline: float) -> bytes:
    """Up to ``count`` bytes the server sends after the HTTP/2 preface, by ``deadline``; fewer if it stops."""
    received = b""
    try:
        connection.settimeout(max(deadline - time.monotonic(), 0.01))
        connection.sendall(HTTP2_PREFACE)
        while len(received) < count:
            connection.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = connection.recv(count - len(received))
            if not chunk:
                break
            received += chunk
    except OSError:  # a timeout, or a reset: what arrived is all there is
        pass
    return received


def capacity(cfg: RayConfig, nodes: list[dict[str, float]]) -> int:
    """Children a Ray cluster's nodes can train at once (``nodes``: each live node's resources).

    A child runs on one node, so a request no single node can meet (more CPUs or GPUs per
    child than the largest node has) fails now instead of queueing forever.
    """
    need = {"CPU": cfg.cpus_per_child, "GPU": cfg.gpus_per_child}
    fits = [min(int(node.get(kind, 0.0) / amount + 1e-9) for kind, amount in need.items() if amount) for node in nodes]
    if not any(fits):
        most = {kind: max((node.get(kind, 0.0) for node in nodes), default=0.0) for kind in need}
        raise ConfigError(
            f"executor.cpus_per_child={cfg.cpus_per_child:g} and executor.gpus_per_child="
            f"{cfg.gpus_per_child:g}, but none of the Ray cluster's {len(nodes)} node(s) has that much (the most any "
            f"has: {most['CPU']:g} CPU(s), {most['GPU']:g} GPU(s)): its children would "
            "wait forever. Ask for less per child (executor.gpus_per_child=0 trains on CPUs), or join a "
            "cluster with bigger nodes (executor.address)"
        )
    return sum(fits)


def _train(runner_ref: list[Any], request: TrialRequest) -> TrialOutcome:
    """One child, in a Ray worker; the runner is fetched on the worker's first trial only.

    (A GPU child has a worker of its own, so it fetches the runner, and sets up, every time.)
    """
    key = runner_ref[0].hex()
    if key not in _RUNNERS:
        _RUNNERS.clear()  # a worker serves one search at a time; drop an earlier search's runner
        _RUNNERS[key] = _ray().get(runner_ref[0])
        _RUNNERS[key].prepare_process()
    return _RUNNERS[key](request)


class RayExecutor(Executor):
    """Submits each batch as Ray tasks and collects the outcomes in request order."""

    Config = RayConfig

    def __init__(self, runner: Runner, cfg: RayConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self._refs: dict[Any, TrialRequest] = {}  # submitted tasks and what they train
        self.temp_dir: str | None = None  # the private Ray's session folder (logs); None on a cluster
        self._started_ray = False
        self._owns_temp_dir = False  # created here, so removed on close
        if cfg.address not in (None, "auto", "local"):  # "auto"/"local": Ray finds a cluster on this node
            reach(cfg.address, cfg.connect_timeout_s)
        ray = _ray()
        if not ray.is_initialized():  # inside a Hydra Ray launcher job, Ray is already up (and kept)
            self._init_ray(ray)
        try:
            self.capacity = capacity(cfg, [node["Resources"] for node in ray.nodes() if node["Alive"]])
            self._runner_ref = ray.put(runner)
        except BaseException:
            self.close()
            raise
        options = {"num_cpus": cfg.cpus_per_child, "num_gpus": cfg.gpus_per_child, "max_retries": cfg.retries}
        # Given to ray.remote, not .options(): Ray then gives each GPU child a fresh worker
        # (max_calls=1 for a task with GPUs; CUDA binds a process to the devices it saw first).
        self._task = ray.remote(**options)(_train)

    def _init_ray(self, ray: ModuleType) -> None:
        common = {"log_to_driver": False, "logging_level": logging.WARNING}  # progress stays the driver's
        if self.cfg.address is not None:
            ray.init(address=self.cfg.address, **common)
        else:
            # A private, short-lived Ray on this machine: no token file in $HOME, no usage
            # report attempts (machines are often offline), no dashboard process, and
            # workers at normal priority like the local pool's (Ray's default, nice 15,
            # starves the children, which are this run's main work, on a busy machine).
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            self._owns_temp_dir = self.cfg.temp_dir is None
            # Short on purpose: Ray's socket paths inside it must fit in 107 bytes.
            self.temp_dir = os.path.abspath(self.cfg.temp_dir or tempfile.mkdtemp(prefix="mnms-ray-"))
            ray.init(
                num_cpus=self.cfg.num_cpus or len(available_cores()),
                num_gpus=self.cfg.num_gpus,
                include_dashboard=False,
                _temp_dir=self.temp_dir,
                _system_config={"worker_niceness": 0},
                **common,
            )
        self._started_ray = True

    @property
    def in_flight(self) -> int:
        return len(self._refs)

    def _submit(self, request: TrialRequest) -> None:
        # evaluate() submits slowest-predicted first: Ray starts queued tasks of one shape in order.
        self._refs[self._task.remote([self._runner_ref], request)] = request

    def _wait(self) -> list[tuple[TrialRequest, TrialOutcome]]:
        refs = list(self._refs)
        _ray().wait(refs, num_returns=1)  # the first to finish, then every other one finished by now
        ready, _ = _ray().wait(refs, num_returns=len(refs), timeout=0)
        finished = []
        for ref in ready:
            request = self._refs.pop(ref)
            finished.append((request, self._outcome(ref, request)))
        return finished

    def _outcome(self, ref: Any, request: TrialRequest) -> TrialOutcome:
        ray = _ray()
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as error:  # e.g. its worker or node died on every attempt
            reason = (str(error).strip().splitlines() or [""])[0]
            return TrialOutcome(
                "failed",
                error=(
                    f"this child's Ray task failed ({type(error).__name__}: {reason}); "
                    f"a dead worker or node is retried executor.retries={self.cfg.retries} time(s)"
                ),
            )

    def close(self) -> None:
        """Stop the private Ray, or disconnect from a joined cluster (which keeps running)."""
        if self._started_ray:
            _ray().shutdown()
            self._started_ray = False
        if self._owns_temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self._owns_temp_dir = False
