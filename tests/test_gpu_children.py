"""GPU requests: Ray packs fractional children on a GPU, the local pool gives each worker one, no GPU fails at start.

This machine has no GPU. Ray is told it has one (``executor.num_gpus=1``), which is what
Ray's scheduling and its ``CUDA_VISIBLE_DEVICES`` assignment act on; a test that needs
CUDA itself is skipped without it.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch
from test_executors import make_runner

from helpers.tiny_search import tiny_run
from mnms.executors import executor_config, make_executor
from mnms.executors.ray import RayConfig, capacity
from mnms.executors.runner import ChildRunner
from mnms.executors.trial import TrialRequest
from mnms.utils.config import ConfigError
from mnms.utils.io import RunDir

WORDS = {"encoder": "words", "batch_size": 32}


class DeviceReportingRunner(ChildRunner):
    """Trains as usual and adds the GPU its process was given to the outcome's metrics."""

    def __call__(self, request: TrialRequest):
        outcome = super().__call__(request)
        outcome.metrics["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        outcome.metrics["pid"] = os.getpid()
        return outcome


def ship_this_module_to_ray() -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_packs_fractional_children_on_a_gpu_and_gives_each_its_device(data_dir, tmp_path) -> None:
    ship_this_module_to_ray()
    runner = make_runner(data_dir, tmp_path, cls=DeviceReportingRunner)
    config = executor_config({"kind": "ray", "num_cpus": 8, "num_gpus": 1, "gpus_per_child": 0.25})
    executor = make_executor(config, runner)
    try:
        assert executor.capacity == 4  # eight CPUs, but one GPU in quarters
        outcomes = executor.evaluate([TrialRequest(trial, "trec", WORDS, 0) for trial in range(8)])
    finally:
        executor.close()
    assert [outcome.status for outcome in outcomes] == ["ok"] * 8
    assert {outcome.metrics["cuda_visible_devices"] for outcome in outcomes} == {"0"}
    # Each GPU child in a fresh worker, the later four too: CUDA binds a process to the devices it first saw.
    assert len({outcome.metrics["pid"] for outcome in outcomes}) == 8
    expected = "cuda" if torch.cuda.is_available() else "cpu"  # a declared GPU torch cannot see trains on CPU
    assert {outcome.metrics["device"] for outcome in outcomes} == {expected}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_gpu_request_the_cluster_cannot_meet_fails_at_start(data_dir, tmp_path) -> None:
    import ray

    config = executor_config({"kind": "ray", "num_cpus": 2, "num_gpus": 0, "gpus_per_child": 0.5})
    with pytest.raises(
        ValueError, match=r"executor.gpus_per_child=0.5, but none .* 1 node\(s\) .* 2 CPU\(s\), 0 GPU\(s\)\).*forever"
    ):
        make_executor(config, make_runner(data_dir, tmp_path))
    assert not ray.is_initialized()  # the private Ray it started is stopped again


def test_capacity_counts_what_each_node_fits_and_refuses_what_none_can() -> None:
    nodes = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 4.0}, {"CPU": 16.0, "GPU": 2.0}]
    assert capacity(RayConfig("ray", cpus_per_child=2), nodes) == 4 + 2 + 8
    assert capacity(RayConfig("ray", cpus_per_child=1, gpus_per_child=0.25), nodes) == 4 + 0 + 8
    assert capacity(RayConfig("ray", cpus_per_child=0.1), [{"CPU": 0.3}]) == 3  # no float round-down
    # Twelve CPUs on the cluster, but no node has six for one child: it would queue forever.
    with pytest.raises(
        ConfigError, match=r"cpus_per_child=6 .* none of the Ray cluster's 2 node\(s\) has that much .* 4 CPU"
    ):
        capacity(RayConfig("ray", cpus_per_child=6), [{"CPU": 4.0}, {"CPU": 4.0, "GPU": 0.0}])
    with pytest.raises(ConfigError, match=r"gpus_per_child=2, but .*the most any has: 16 CPU\(s\), 1 GPU"):
        capacity(RayConfig("ray", gpus_per_child=2), [{"CPU": 16.0, "GPU": 1.0}, {"CPU": 4.0}])
    # The most CPUs and the most GPUs, each from the node that has them.
    with pytest.raises(ConfigError, match=r"the most any has: 32 CPU\(s\), 1 GPU"):
        capacity(RayConfig("ray", cpus_per_child=10, gpus_per_child=1), [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 32.0}])


def test_gpus_for_children_trained_on_cpus_are_refused(session_cache_dir, tmp_path) -> None:
    overrides = ("executor=local", "executor.gpus=[0]", "trainer.accelerator=cpu")
    with pytest.raises(
        ConfigError, match=r"executor gives children GPUs .* trainer.accelerator=cpu .* set trainer.accelerator=auto"
    ):
        tiny_run(tmp_path, session_cache_dir, *overrides)
    assert not RunDir(tmp_path).trials.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_local_workers_given_a_gpu_that_does_not_exist_fail_before_any_child_trains(data_dir, tmp_path) -> None:
    executor = make_executor(
        executor_config({"kind": "local", "workers": 1, "gpus": [0]}), make_runner(data_dir, tmp_path)
    )
    try:
        with pytest.raises(ConfigError, match=r"CUDA device 0.*executor.gpus gave this worker CUDA device 0"):
            executor.submit(TrialRequest(0, "trec", WORDS, 0))
    finally:
        executor.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_local_workers_train_on_the_gpu_they_were_given(data_dir, tmp_path) -> None:
    runner = make_runner(data_dir, tmp_path, cls=DeviceReportingRunner)
    executor = make_executor(executor_config({"kind": "local", "workers": 1, "gpus": [0]}), runner)
    try:
        (outcome,) = executor.evaluate([TrialRequest(0, "trec", WORDS, 0)])
    finally:
        executor.close()
    assert (outcome.metrics["cuda_visible_devices"], outcome.metrics["device"]) == ("0", "cuda")
