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

from mnms.executors import executor_config, make_executor
from mnms.executors.base import TrialRequest
from mnms.executors.runner import ChildRunner

WORDS = {"encoder": "words", "batch_size": 32}


class DeviceReportingRunner(ChildRunner):
    """Trains as usual and adds the GPU its process was given to the outcome's metrics."""

    def __call__(self, request: TrialRequest):
        outcome = super().__call__(request)
        outcome.metrics["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        return outcome


def ship_this_module_to_ray() -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ray_packs_fractional_children_on_a_gpu_and_gives_each_its_device(data_dir, tmp_path) -> None:
    ship_this_module_to_ray()
    runner = make_runner(data_dir, tmp_path, cls=DeviceReportingRunner)
    config = executor_config({"kind": "ray", "num_cpus": 8, "num_gpus": 1, "gpus_per_child": 0.25})
    executor = make_executor(config, runner)
    try:
        assert executor.capacity == 4  # eight CPUs, but one GPU in quarters
        outcomes = executor.evaluate([TrialRequest(trial, "trec", WORDS, 0) for trial in range(4)])
    finally:
        executor.close()
    assert [outcome.status for outcome in outcomes] == ["ok"] * 4
    assert {outcome.metrics["cuda_visible_devices"] for outcome in outcomes} == {"0"}
    expected = "cuda" if torch.cuda.is_available() else "cpu"  # a declared GPU torch cannot see trains on CPU
    assert {outcome.metrics["device"] for outcome in outcomes} == {expected}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_gpu_request_the_cluster_cannot_meet_fails_at_start(data_dir, tmp_path) -> None:
    import ray

    config = executor_config({"kind": "ray", "num_cpus": 2, "num_gpus": 0, "gpus_per_child": 0.5})
    with pytest.raises(
        ValueError, match=r"executor.gpus_per_child=0.5 but the Ray cluster has 0 GPU\(s\).*wait forever"
    ):
        make_executor(config, make_runner(data_dir, tmp_path))
    assert not ray.is_initialized()  # the private Ray it started is stopped again


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_local_workers_given_a_gpu_that_does_not_exist_fail_before_any_child_trains(data_dir, tmp_path) -> None:
    executor = make_executor(
        executor_config({"kind": "local", "workers": 1, "gpus": [0]}), make_runner(data_dir, tmp_path)
    )
    try:
        with pytest.raises(RuntimeError, match=r"CUDA device 0.*executor.gpus gave this worker CUDA device 0"):
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
