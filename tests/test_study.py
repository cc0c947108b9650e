"""The transfer study as config: mode mapping, failure records, and a real joblib multirun.

The multirun needs ``cfg = apply_study_mode(cfg)`` at the top of ``mnms.app.run.run_search``.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

os.environ.setdefault("MPLCONFIGDIR", "/tmp/mnms-test-matplotlib")  # the report below draws with matplotlib

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobReturn, JobStatus  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from mnms.search.records import read_trials  # noqa: E402
from mnms.report import build_report  # noqa: E402
from mnms.app.study import CONF_DIR, JobStatusCallback, apply_study_mode  # noqa: E402
from helpers.wandb_reader import find_offline_runs, read_offline_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def study_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=["experiment=transfer_study", *overrides])


def test_one_job_searches_its_held_out_task_in_the_study_group() -> None:
    cfg = apply_study_mode(study_config("study.mode=scratch", "study.held_out=sst5", "seed=2"))
    assert list(cfg.tasks) == ["sst5"]  # any task of the data dir can be held out
    assert (cfg.logger.group, cfg.logger.job_type, cfg.logger.name) == ("transfer-study", "scratch", "sst5-scratch-seed2")
    assert cfg.controller.kind == "ppo" and cfg.transfer["from"] is None


def test_modes_choose_the_controller_and_the_starting_point(tmp_path: Path) -> None:
    pretrained = str(tmp_path / "pretrain")
    transfer = apply_study_mode(study_config("study.mode=transfer", f"transfer.from={pretrained}"))
    scratch = apply_study_mode(study_config("study.mode=scratch", f"transfer.from={pretrained}"))
    assert (transfer.controller.kind, transfer.transfer["from"]) == ("ppo", pretrained)
    assert (scratch.controller.kind, scratch.transfer["from"]) == ("ppo", None)  # scratch never starts pretrained
    for baseline in ("random", "optuna"):  # as if composed with controller=<baseline>
        cfg = apply_study_mode(study_config(f"study.mode={baseline}", f"transfer.from={pretrained}"))
        assert OmegaConf.to_container(cfg.controller) == OmegaConf.to_container(
            OmegaConf.load(CONF_DIR / "controller" / f"{baseline}.yaml"))
        assert cfg.transfer["from"] is None


def test_bad_study_settings_name_the_fix() -> None:
    with pytest.raises(ValueError, match=r"study.mode='bayes' is unknown; valid modes are \['optuna', 'random'"):
        apply_study_mode(study_config("study.mode=bayes"))
    with pytest.raises(ValueError, match="study.mode=transfer needs transfer.from=.*experiment=pretrain"):
        apply_study_mode(study_config("study.mode=transfer"))
    with pytest.raises(ValueError, match="study.mode=scratch trains a controller but controller.kind='random'"):
        apply_study_mode(study_config("study.mode=scratch", "controller=random"))


def test_configs_without_a_study_are_untouched() -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=pretrain"])
    assert apply_study_mode(cfg) is cfg
    assert len(cfg.tasks) == 8 and "trec" not in cfg.tasks  # trec is the study's default held-out task


def test_the_study_runs_on_joblib_here_and_composes_for_slurm() -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        local = compose(config_name="config", overrides=["experiment=transfer_study"], return_hydra_config=True)
        slurm = compose(config_name="config", overrides=["experiment=transfer_study", "hydra/launcher=mnms_slurm",
                                                         "hydra.launcher.partition=cpu"], return_hydra_config=True)
    assert local.hydra.launcher._target_.endswith("JoblibLauncher")
    assert dict(local.hydra.sweeper.params) == {"study.mode": "transfer,scratch,random,optuna", "seed": "0,1,2"}
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher") and slurm.hydra.launcher.partition == "cpu"
    assert slurm.hydra.launcher.max_num_timeout > 0  # a requeued job resumes from its checkpoint


class Unpicklable(Exception):
    """An exception holding a lock: pickling it fails, as some library errors do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def test_a_failed_job_leaves_a_failed_summary_and_a_picklable_error(tmp_path: Path) -> None:
    try:
        raise Unpicklable("the held-out task exploded")
    except Unpicklable as error:
        job = JobReturn(status=JobStatus.FAILED, _return_value=error)
    config = OmegaConf.create({"resume": None, "hydra": {"runtime": {"output_dir": str(tmp_path / "job")}}})
    JobStatusCallback().on_job_end(config=config, job_return=job)
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == "Unpicklable: the held-out task exploded"
    assert "raise Unpicklable" in summary["traceback"]
    restored = pickle.loads(pickle.dumps(job))  # what the joblib worker sends back to the sweep
    with pytest.raises(RuntimeError, match="Unpicklable: the held-out task exploded"):
        restored.return_value


def test_a_completed_job_is_left_alone(tmp_path: Path) -> None:
    config = OmegaConf.create({"resume": None, "hydra": {"runtime": {"output_dir": str(tmp_path)}}})
    JobStatusCallback().on_job_end(config=config, job_return=JobReturn(status=JobStatus.COMPLETED, _return_value=0.5))
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.slow
def test_joblib_multirun_gives_each_job_its_own_records_and_wandb_run(data_dir: Path, tmp_path: Path) -> None:
    """scratch and random x seeds 0, 1, plus transfer without a pretrained controller (2 failing jobs)."""
    sweep = tmp_path / "sweep"
    env = {**os.environ, "MNMS_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "offline",
           "MPLCONFIGDIR": str(tmp_path / "mpl")}
    command = [sys.executable, "train.py", "-m", "experiment=transfer_study", "study.mode=scratch,random,transfer",
               "seed=0,1", "search_space=small", "search.trials=8", "search.batch_size=4", "max_examples=300",
               "trainer.max_epochs=2", "search.progress=false", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    # The sweep reports its failed jobs, after running them all. Exit code 0 here means the transfer jobs
    # ran as scratch: mnms.app.run.run_search lacks `cfg = apply_study_mode(cfg)`.
    assert done.returncode == 1, done.stderr[-3000:]
    assert "study.mode=transfer needs transfer.from" in done.stderr

    for seed in (0, 1):
        failed = json.loads((sweep / "trec" / f"transfer-seed{seed}" / "summary.json").read_text())
        assert failed["status"] == "failed" and "transfer.from" in failed["error"]

    runs = {}
    for path in find_offline_runs(sweep):
        run = read_offline_run(path)
        runs[path.relative_to(sweep).parts[:2]] = run
        assert run.exit_code == 0
    assert sorted(runs) == [("trec", f"{mode}-seed{seed}") for mode in ("random", "scratch") for seed in (0, 1)]
    sequences = set()
    for (_, job), run in runs.items():
        mode, seed = job.split("-seed")
        rows = read_trials(sweep / "trec" / job)
        assert [row["seed"] for row in rows] == [int(seed)] * 8 and {row["task"] for row in rows} == {"trec"}
        assert [r["trial"] for r in run.tables["trials"]] == list(range(8))
        assert [r["reward"] for r in run.tables["trials"]] == pytest.approx([row["reward"] for row in rows])
        assert run.config["seed"] == int(seed) and run.config["controller"]["kind"] == ("ppo" if mode == "scratch" else mode)
        assert (run.config["logger"]["group"], run.config["logger"]["job_type"]) == ("transfer-study", mode)
        summary = json.loads((sweep / "trec" / job / "summary.json").read_text())
        assert summary["strategy"] == run.config["controller"]["kind"]
        sequences.add(json.dumps([row["arch"] for row in rows]))
    assert len(sequences) == 4  # every job searched on its own

    report = build_report([sweep]).read_text()
    assert report.count("| failed: ValueError: study.mode=transfer needs transfer.from") == 2
    assert report.count("| ok |") == 4
