"""The transfer study as config: study modes as a YAML group, failure records, and a real joblib multirun."""

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
from hydra.core.utils import JobReturn, JobStatus  # noqa: E402
from hydra.errors import ConfigCompositionException  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from helpers.configs import ROOT, compose_config  # noqa: E402
from helpers.wandb_reader import find_offline_runs, read_offline_run  # noqa: E402
from mnms.app.study import JobStatusCallback, check_study_job  # noqa: E402
from mnms.report import build_report  # noqa: E402
from mnms.search.config import SearchConfig  # noqa: E402
from mnms.search.records import read_trials  # noqa: E402
from mnms.search.strategies import STRATEGIES, strategy_config  # noqa: E402
from mnms.transfer.artifact import load_controller_artifact  # noqa: E402
from mnms.utils.config import from_config  # noqa: E402
from mnms.utils.io import RunDir, write_json_atomic  # noqa: E402


def study_config(*overrides: str, hydra: bool = False):
    return compose_config("experiment=transfer_study", *overrides, hydra=hydra)


def test_one_job_searches_its_held_out_task_in_the_study_group() -> None:
    cfg = study_config("study=scratch", "study.held_out=sst5", "seed=2")
    assert list(cfg.tasks) == ["sst5"]  # any task of the data dir can be held out
    # The study names its group and runs; the job_type is the job's mode, filled in when it runs.
    assert (cfg.logger.group, cfg.logger.job_type, cfg.logger.name) == ("transfer-study", None, "sst5-scratch-seed2")
    assert cfg.strategy.kind == "ppo" and cfg.transfer["from"] is None


def test_modes_choose_the_strategy_and_the_starting_point(tmp_path: Path) -> None:
    pretrained = str(tmp_path / "pretrain")
    transfer = study_config("study=transfer", f"study.pretrained={pretrained}")
    scratch = study_config("study=scratch", f"study.pretrained={pretrained}")
    assert (transfer.strategy.kind, transfer.transfer["from"]) == ("ppo", pretrained)
    assert (scratch.strategy.kind, scratch.transfer["from"]) == ("ppo", None)  # scratch never starts pretrained
    assert OmegaConf.to_container(transfer.strategy) == OmegaConf.to_container(scratch.strategy)
    for baseline in ("random", "optuna"):  # exactly as if composed with strategy=<baseline>
        cfg = study_config(f"study={baseline}", f"study.pretrained={pretrained}")
        assert OmegaConf.to_container(cfg.strategy) == OmegaConf.to_container(
            compose_config(f"strategy={baseline}").strategy
        )
        assert cfg.transfer["from"] is None and cfg.study.mode == baseline


def test_bad_study_settings_name_the_fix() -> None:
    with pytest.raises(ConfigCompositionException, match=r"Could not find 'study/bayes'"):
        study_config("study=bayes")
    with pytest.raises(
        FileNotFoundError, match=r"transfer.from='<set study.pretrained to the run dir of .*experiment=pretrain"
    ):
        load_controller_artifact(study_config("study=transfer").transfer["from"])
    stray = study_config("study=scratch", "transfer.from=outputs/pretrain/main")  # the old habit reaches every job
    with pytest.raises(
        ValueError, match=r"study=scratch starts from scratch, but transfer.from='outputs/pretrain/main'"
    ):
        check_study_job(stray, stray.transfer["from"], trains_controller=True)
    check_study_job(compose_config(), None, trains_controller=True)  # not a study: nothing to check


@pytest.mark.parametrize(
    "mode, strategy, message",
    [
        ("random", "reinforce", r"study=random runs strategy=random, but strategy=reinforce reached this job"),
        ("scratch", "optuna", r"study=scratch trains a controller, but strategy=optuna trains none"),
    ],
)
def test_a_strategy_override_that_contradicts_the_mode_is_refused(mode, strategy, message) -> None:
    cfg = study_config(f"study={mode}", f"strategy={strategy}")  # a command-line strategy beats the mode's
    with pytest.raises(ValueError, match=message + r".*study=transfer,scratch strategy=reinforce"):
        check_study_job(cfg, None, trains_controller=STRATEGIES[strategy].trains_controller)
    check_study_job(study_config("study=scratch", "strategy=reinforce"), None, trains_controller=True)


EXPERIMENTS = sorted(path.stem for path in (ROOT / "conf" / "experiment").glob("*.yaml"))
STUDY_MODES = sorted(path.stem for path in (ROOT / "conf" / "study").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_a_valid_search(experiment) -> None:
    cfg = compose_config(f"experiment={experiment}")
    from_config(SearchConfig, cfg.search)
    strategy_config(cfg.strategy)


def test_the_study_learns_as_pretraining_did_on_the_budget_pretraining_used() -> None:
    """The learner and the budget are the configs' own (strategy/ppo_std.yaml, experiment/study_budget.yaml),
    not a script's: the learning modes share pretraining's, the baselines keep their own strategies."""
    pretrain = compose_config("experiment=pretrain")
    learner = strategy_config(pretrain.strategy)
    assert (learner.kind, learner.policy.advantage, learner.controller.task_descriptors) == ("ppo", "std", True)
    budget = ("max_examples", "batch_size", "pruner")
    for mode in STUDY_MODES:
        cfg = study_config(f"study={mode}")
        assert [cfg.search[key] for key in budget] == [pretrain.search[key] for key in budget], mode
        assert cfg.trainer.time_limit_s == pretrain.trainer.time_limit_s == 45
        strategy = strategy_config(cfg.strategy)
        if mode in ("random", "optuna"):
            assert strategy.kind == mode
        else:
            assert (strategy.kind, strategy.policy.advantage) == ("ppo", "std"), mode
    # A strategy on the command line replaces the mode's learner.
    replaced = strategy_config(study_config("study=scratch", "strategy=reinforce").strategy)
    assert (replaced.kind, replaced.policy.ppo_epochs) == ("reinforce", 1)


def test_the_study_is_search_only_and_pretraining_has_no_study() -> None:
    cfg = compose_config("experiment=pretrain")
    held_out = {"mr", "new-years-resolutions", "spanish-airline-tweets", "is-spanish"}  # bench.transfer_study's
    assert "study" not in cfg and len(cfg.tasks) == 17 and not held_out & set(cfg.tasks)
    with pytest.raises(ConfigCompositionException, match="experiment"):
        compose_config("mode=child", "experiment=transfer_study")


def test_the_study_runs_on_joblib_here_and_composes_for_slurm() -> None:
    local = study_config(hydra=True)
    slurm = study_config("hydra/launcher=mnms_slurm", "hydra.launcher.partition=cpu", hydra=True)
    assert local.hydra.launcher._target_.endswith("JoblibLauncher")
    assert dict(local.hydra.sweeper.params) == {
        "study": "transfer,transfer_descriptor,scratch,random,optuna",
        "seed": "0,1,2",
    }
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
        _ = restored.return_value  # the getter re-raises a failed job's error


def test_a_failed_job_keeps_a_searchs_summary_and_touches_no_locked_run_dir(tmp_path: Path) -> None:
    config = OmegaConf.create({"resume": None, "hydra": {"runtime": {"output_dir": str(tmp_path / "job")}}})
    failed = JobReturn(status=JobStatus.FAILED, _return_value=ValueError("bad seed"))
    for search_summary in ({"trials": 16, "best": {}}, {"trials": 8, "best": {}, "status": "failed"}):
        summary = write_json_atomic(tmp_path / "job" / "summary.json", search_summary)
        JobStatusCallback().on_job_end(config=config, job_return=failed)
        assert json.loads(summary.read_text()) == search_summary  # results, or why a search found none
        assert json.loads((tmp_path / "job" / "failure.json").read_text())["error"] == "ValueError: bad seed"
    config.hydra.runtime.output_dir = str(tmp_path / "held")
    with RunDir(tmp_path / "held").lock():  # a search is writing it
        JobStatusCallback().on_job_end(config=config, job_return=failed)
    assert sorted(path.name for path in (tmp_path / "held").iterdir()) == [RunDir.LOCK]


def test_a_completed_job_is_left_alone(tmp_path: Path) -> None:
    config = OmegaConf.create({"resume": None, "hydra": {"runtime": {"output_dir": str(tmp_path)}}})
    JobStatusCallback().on_job_end(config=config, job_return=JobReturn(status=JobStatus.COMPLETED, _return_value=0.5))
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.slow
def test_joblib_multirun_gives_each_job_its_own_records_and_wandb_run(data_dir: Path, tmp_path: Path) -> None:
    """scratch and random x seeds 0, 1, plus transfer without a pretrained controller (2 failing jobs)."""
    sweep = tmp_path / "sweep"
    env = {
        **os.environ,
        "MNMS_CACHE_DIR": str(tmp_path / "cache"),
        "WANDB_MODE": "offline",
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
    }
    command = [
        sys.executable,
        "train.py",
        "-m",
        "experiment=transfer_study",
        "study=scratch,random,transfer",
        "study.held_out=trec",
        "seed=0,1",
        "search_space=small",
        "search.trials=8",
        "search.batch_size=4",
        "max_examples=300",
        "trainer.max_epochs=2",
        "search.progress=false",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    # The sweep reports its failed jobs, after running them all. Exit code 0 here means the transfer jobs
    # ran as scratch: conf/study/transfer.yaml no longer sets transfer.from.
    assert done.returncode == 1, done.stderr[-3000:]
    assert "set study.pretrained" in done.stderr

    for seed in (0, 1):
        failed = json.loads((sweep / "trec" / f"transfer-seed{seed}" / "summary.json").read_text())
        assert failed["status"] == "failed" and "set study.pretrained" in failed["error"]

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
        assert [row.seed for row in rows] == [int(seed)] * 8 and {row.task for row in rows} == {"trec"}
        assert [r["trial"] for r in run.tables["trials"]] == list(range(8))
        assert [r["reward"] for r in run.tables["trials"]] == pytest.approx([row.reward for row in rows])
        assert run.config["seed"] == int(seed) and run.config["strategy"]["kind"] == (
            "ppo" if mode == "scratch" else mode
        )
        assert (run.config["logger"]["group"], run.config["logger"]["job_type"]) == ("transfer-study", mode)
        summary = json.loads((sweep / "trec" / job / "summary.json").read_text())
        assert summary["strategy"] == run.config["strategy"]["kind"]
        sequences.add(json.dumps([row.arch for row in rows]))
    assert len(sequences) == 4  # every job searched on its own

    report = build_report([sweep]).read_text()
    assert report.count("| failed: FileNotFoundError: transfer.from='<set study.pretrained") == 2
    assert report.count("| ok |") == 4
