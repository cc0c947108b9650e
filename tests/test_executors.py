"""Executors on real tasks and real children: the same trial log under every executor,
a worker killed mid-trial retried exactly once, and nothing left running after close.

Children here take tens of milliseconds; most of each slow test is worker start-up
(importing torch and Lightning in each worker, and for Ray, starting Ray).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from test_search import comparable

from helpers.configs import compose_config
from helpers.jobs import tiny_job
from helpers.tiny_search import tiny_run
from mnms.child.arch import Architecture
from mnms.child.cost import cost_key
from mnms.executors import executor_config, make_executor
from mnms.executors.base import Executor, SequentialConfig, SequentialExecutor
from mnms.executors.local import LocalConfig, core_shares, worker_count
from mnms.executors.ray import RayConfig, reach
from mnms.executors.runner import ChildRunner
from mnms.executors.schedule import CostModel
from mnms.executors.trial import TrialOutcome, TrialRequest
from mnms.search.records import read_trials
from mnms.utils.config import ConfigError
from mnms.utils.io import RunDir

TRIALS, BATCH = 12, 4
PARALLEL = {"local": {"kind": "local", "workers": 2}, "ray": {"kind": "ray", "num_cpus": 2}}


class KillingRunner(ChildRunner):
    """Trains as usual, then SIGKILLs its own process on the first ``deaths[trial]`` attempts.

    Every attempt leaves a marker file, so the test can count attempts across processes.
    """

    def __init__(self, *args, deaths: dict[int, int], marker_dir: Path, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.deaths, self.marker_dir = deaths, str(marker_dir)

    def __call__(self, request: TrialRequest):
        outcome = super().__call__(request)
        if request.trial in self.deaths:
            attempt = len(list(Path(self.marker_dir).glob(f"trial{request.trial}-*")))
            (Path(self.marker_dir) / f"trial{request.trial}-{attempt}").touch()
            if attempt < self.deaths[request.trial]:
                os.kill(os.getpid(), signal.SIGKILL)  # mid-trial: trained, outcome not yet sent
        return outcome


def make_runner(data_dir: Path, cache_dir: Path, cls: type = ChildRunner, **extra) -> ChildRunner:
    job = tiny_job(data_dir, cache_dir)
    return cls(dict(job.tasks), job.trainer, str(cache_dir), **extra)


def run_search(run_dir: Path, executor: Executor, data_dir: Path, cache_dir: Path) -> list[dict]:
    tiny_job(data_dir, cache_dir, trials=TRIALS, batch_size=BATCH).build(run_dir, executor=executor).run()
    return read_trials(run_dir)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("executor-cache")


@pytest.fixture(scope="module")
def reference(data_dir, cache_dir, tmp_path_factory) -> list[dict]:
    """The sequential search every executor must reproduce; it also warms the shared cache."""
    sequential = SequentialExecutor(make_runner(data_dir, cache_dir))
    return run_search(tmp_path_factory.mktemp("sequential"), sequential, data_dir, cache_dir)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process from /proc (psutil is not a dependency)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return fields[0], int(fields[1])


def descendants() -> set[int]:
    """Every live process below this one (Ray's raylet, GCS and workers, or local workers),
    except multiprocessing's resource tracker, which serves the test process until it exits."""
    parents = {
        int(entry.name): stat[1]
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[0] != "Z"
    }
    found, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {pid for pid in found if b"resource_tracker" not in _cmdline(pid)}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def assert_all_gone(pids: set[int], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while (alive := [pid for pid in pids if (stat := _stat(pid)) and stat[0] != "Z"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, [_cmdline(pid)[:120] for pid in alive]


# --- configuration -----------------------------------------------------------------


def test_joining_an_unreachable_cluster_fails_in_its_timeout_naming_the_address(session_cache_dir, tmp_path) -> None:
    unreachable = r"executor.address='127.0.0.1:1': cannot reach 127.0.0.1:1 within executor.connect_timeout_s=2"
    with pytest.raises(ConfigError, match=rf"{unreachable} \(Connection refused\)\. Is the cluster up"):
        tiny_run(
            tmp_path / "run",
            session_cache_dir,
            "executor=ray",
            "executor.address=127.0.0.1:1",
            "executor.connect_timeout_s=2",
        )
    assert not RunDir(tmp_path / "run").trials.exists()


@contextlib.contextmanager
def server(reply: bytes | None, family: int = socket.AF_INET, host: str = "127.0.0.1", backlog: int = 4):
    """A TCP server on ``host`` that sends ``reply`` to each connection (None: says nothing); yields its port."""
    listener = socket.socket(family)
    listener.bind((host, 0))
    listener.listen(backlog)
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                held.append(connection)
                if reply is not None:
                    connection.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for connection in held:
            connection.close()


GRPC_SETTINGS = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # what the GCS and a Ray Client server send first


def test_cluster_addresses_are_read_as_ray_writes_them() -> None:
    with pytest.raises(ConfigError, match=r"executor.address='ray://head:abc' is not <head>:<port>"):
        reach("ray://head:abc", 1.0)
    if not socket.has_ipv6:
        return
    with server(GRPC_SETTINGS, socket.AF_INET6, "::1") as port:  # an IPv6 head is written in brackets
        reach(f"ray://[::1]:{port}", 1.0)


@pytest.mark.parametrize(
    ("reply", "said"), [(b"HTTP/1.1 400 Bad Request\r\n\r\n", "answered b'HTTP/1.1 '"), (None, "said nothing")]
)
def test_a_cluster_address_that_answers_but_is_not_ray_fails_in_its_timeout(reply, said) -> None:
    with server(reply) as port:
        started = time.perf_counter()
        with pytest.raises(ConfigError, match=rf"127.0.0.1:{port} accepts connections but {re.escape(said)}"):
            reach(f"127.0.0.1:{port}", 1.0)
        assert time.perf_counter() - started < 5


def test_a_cluster_address_that_never_answers_times_out() -> None:
    with socket.socket() as listener:  # a listener whose queue is full: the kernel drops further connects
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued = [socket.socket() for _ in range(3)]
        for client in queued:
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
        try:
            started = time.perf_counter()
            with pytest.raises(ConfigError, match=rf"ray://127.0.0.1:{port}'.*connect_timeout_s=0.5 \(no answer\)"):
                reach(f"ray://127.0.0.1:{port}", 0.5)
            assert time.perf_counter() - started < 5
        finally:
            for client in queued:
                client.close()


def test_options_are_validated_with_the_fix_in_the_message() -> None:
    with pytest.raises(ValueError, match=r"executor.kind='threads' is unknown; valid kinds are \['sequential'"):
        executor_config({"kind": "threads"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['executor.worker'\]; valid keys under executor are"):
        executor_config({"kind": "local", "worker": 2})
    with pytest.raises(ValueError, match=r"executor.workers=0 must be an integer >= 1 or null"):
        executor_config({"kind": "local", "workers": 0})
    with pytest.raises(ValueError, match=r"executor.start_method='fork'"):
        executor_config({"kind": "local", "start_method": "fork"})
    with pytest.raises(ValueError, match=r"executor.cpus_per_child=0"):
        executor_config({"kind": "ray", "cpus_per_child": 0})
    with pytest.raises(ValueError, match=r"executor.connect_timeout_s=0 must be a number of seconds > 0"):
        executor_config({"kind": "ray", "address": "auto", "connect_timeout_s": 0})
    with pytest.raises(ValueError, match=r"leave executor.num_cpus, executor.num_gpus and executor.temp_dir null"):
        executor_config({"kind": "ray", "address": "auto", "num_cpus": 4})
    with pytest.raises(ValueError, match=r"executor.gpus_per_child=-0.5 must be 0 \(CPUs only\), a fraction"):
        executor_config({"kind": "ray", "gpus_per_child": -0.5})
    with pytest.raises(ValueError, match=r"executor.gpus_per_child=1.5"):
        executor_config({"kind": "ray", "gpus_per_child": 1.5})
    with pytest.raises(ValueError, match=r"executor.gpus=\[\] must be null or a non-empty list"):
        executor_config({"kind": "local", "gpus": []})
    with pytest.raises(
        ValueError, match=r"unknown key\(s\) \['executor.workers'\]; valid keys under executor are \['kind'\]"
    ):
        executor_config({"kind": "sequential", "workers": 2})


def test_hydra_groups_compose_to_valid_configs() -> None:
    for kind, config in (("sequential", SequentialConfig), ("local", LocalConfig), ("ray", RayConfig)):
        expected = config(kind=kind)
        assert executor_config(compose_config(f"executor={kind}").executor) == expected
    assert executor_config(compose_config("executor=local", "executor.workers=3").executor).workers == 3
    for launcher, target, key in (("mnms_joblib", "JoblibLauncher", "n_jobs"), ("mnms_ray", "RayLauncher", "ray")):
        cfg = compose_config(f"hydra/launcher={launcher}", hydra=True)
        assert cfg.hydra.launcher._target_.endswith(target) and key in cfg.hydra.launcher


def test_more_workers_than_cores_are_started_with_a_warning_naming_both(caplog) -> None:
    assert worker_count(None, 1, 2) == 2 and worker_count(None, 2, 2) == 1 and not caplog.records
    assert worker_count(64, 1, 2) == 64
    assert "executor.workers=64 x trainer.threads=1 asks for 64 cores and this process may use 2" in caplog.text
    assert "set executor.workers=2" in caplog.text


def test_core_shares_are_disjoint_until_cores_run_out() -> None:
    assert core_shares([0, 1, 2, 3], 2, 2) == [[0, 1], [2, 3]]
    assert core_shares([0, 1], 3, 1) == [[0], [1], [0]]


def test_cost_model_dispatches_unseen_then_slowest_first_ties_in_request_order() -> None:
    def request(trial: int, encoder: str, batch_size: int = 64) -> TrialRequest:
        arch = Architecture(encoder=encoder, batch_size=batch_size).to_dict()
        return TrialRequest(trial=trial, task="trec", arch=arch, seed=0, cost_key=cost_key("trec", arch))

    costs = CostModel()
    for seconds, req in [(0.4, request(0, "words")), (0.2, request(1, "words")), (2.0, request(2, "char-ngrams"))]:
        costs.record(req, TrialOutcome("ok", wall_seconds=seconds))
    assert costs.predict(request(9, "words")) == pytest.approx(0.3)
    batch = [
        request(10, "words"),
        request(11, "char-ngrams"),
        request(12, "words", batch_size=32),
        request(13, "words"),
        request(14, "char-ngrams"),
    ]
    # batch 32 words is unseen: first; then both char-ngrams, then both words, each pair in order.
    assert costs.longest_first(batch) == [2, 1, 4, 0, 3]


def test_runner_ships_without_its_memo_and_with_an_absolute_cache(data_dir, cache_dir, monkeypatch) -> None:
    runner = make_runner(data_dir, cache_dir)
    runner(TrialRequest(0, "trec", {"encoder": "words", "batch_size": 32}, 0))
    assert runner.cache.stats()["memory_entries"] > 0
    monkeypatch.chdir(cache_dir)
    relative = ChildRunner(runner.tasks, runner.trainer_cfg, "cache")
    copy = pickle.loads(pickle.dumps(relative))
    assert copy.cache_dir == str(cache_dir / "cache") and copy.trainer_cfg == runner.trainer_cfg
    assert copy.cache.stats()["memory_entries"] == 0
    # A request on the wire is well under a kilobyte; the runner goes once per worker.
    assert len(pickle.dumps(TrialRequest(0, "trec", Architecture(encoder="words").to_dict(), 0))) < 1000


# --- real searches ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", PARALLEL)
def test_same_trial_log_as_sequential_and_nothing_left_running(kind, data_dir, cache_dir, reference, tmp_path) -> None:
    before = descendants()
    evaluator = make_executor(executor_config(PARALLEL[kind]), make_runner(data_dir, cache_dir))
    try:
        rows = run_search(tmp_path / "run", evaluator, data_dir, cache_dir)
        started = descendants() - before
        if kind == "local":
            assert len(evaluator.pids) == 2 and set(evaluator.pids) <= started  # same workers all search
    finally:
        evaluator.close()
    assert comparable(rows) == comparable(reference)
    assert all(row.metrics["features_from_cache"] for row in rows if row.reused_from is None)
    assert_all_gone(started)
    if kind == "ray":
        assert evaluator.temp_dir is not None and not Path(evaluator.temp_dir).exists()


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", PARALLEL)
def test_killed_worker_is_retried_once_then_the_trial_fails(kind, data_dir, cache_dir, reference, tmp_path) -> None:
    trained = [row.trial for row in reference if row.reused_from is None]
    once, twice = trained[0], [t for t in trained if t >= TRIALS - BATCH][0]  # twice: last step, so no later drift
    markers = tmp_path / "markers"
    markers.mkdir()
    runner = make_runner(data_dir, cache_dir, cls=KillingRunner, deaths={once: 1, twice: 2}, marker_dir=markers)
    if kind == "ray":  # Ray workers cannot import this test module: ship the class by value
        import ray.cloudpickle

        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    before = descendants()
    evaluator = make_executor(executor_config(PARALLEL[kind]), runner)
    try:
        rows = run_search(tmp_path / "run", evaluator, data_dir, cache_dir)
        started = descendants() - before
    finally:
        evaluator.close()
    assert sorted(p.name for p in markers.iterdir()) == sorted(
        [f"trial{once}-0", f"trial{once}-1", f"trial{twice}-0", f"trial{twice}-1"]
    )  # one retry each
    assert comparable(rows[:twice]) == comparable(reference[:twice])  # the killed-once trial recorded right
    failed = rows[twice]
    assert (failed.status, failed.reward, failed.metrics) == ("failed", 0.0, {})
    assert {"local": "while training this child, 2 attempt(s)", "ray": "this child's Ray task failed"}[
        kind
    ] in failed.error
    assert len(rows) == TRIALS and all(row.status == "ok" for row in rows if row.trial != twice)
    assert_all_gone(started)
