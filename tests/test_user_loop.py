"""The user's everyday loop: what a run is called, resuming from its run dir alone, W&B that compares runs of a
task, a log a person can read, and config mistakes that get one clear message.

In-process runs use the real Hydra composition (``tiny_run``); the command-line behaviour
(``resume=`` rewriting, Ctrl-C, typos, tracebacks) runs ``train.py`` as a user does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_search import comparable

from helpers.configs import ROOT
from helpers.tiny_search import pretrained, tiny, tiny_run  # noqa: F401 - fixture
from helpers.wandb_reader import find_offline_runs, read_offline_run
from mnms.report.load import load_jobs
from mnms.search.records import load_checkpoint, read_trials, save_checkpoint
from mnms.utils.config import ConfigError
from mnms.utils.io import RunDir

WANDB = ("logger=wandb", "logger.mode=offline")


def wandb_runs(run_dir: Path) -> list:
    import wandb

    wandb.teardown()  # wandb-core finishes writing a run's file after finish() returns
    return [read_offline_run(path) for path in find_offline_runs(run_dir)]


# --- what a run is called ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "group", "mode"),
    [
        (("experiment=random", "tasks=[trec]"), "trec", "random"),
        (("strategy=optuna", "tasks=[trec]"), "trec", "optuna"),
        (("experiment=scratch", "tasks=[trec]"), "trec", "scratch"),
        (("tasks=[trec,langid-tatoeba]",), "langid-tatoeba,trec", "multitask"),
    ],
)
def test_a_run_is_labelled_by_what_it_is_in_its_summary_w_and_b_and_the_report(
    overrides, group, mode, session_cache_dir, tmp_path
) -> None:
    """experiment=scratch and the multitask default label nothing themselves: an Optuna search started from the
    multitask experiment is optuna, and runs of the same tasks share a W&B group whatever they are."""
    tiny_run(tmp_path, session_cache_dir, *overrides, "search.trials=8", "seed=3", *WANDB)
    assert json.loads(RunDir(tmp_path).summary.read_text())["mode"] == mode
    (run,) = wandb_runs(tmp_path)
    logger = run.config["logger"]
    assert (logger["group"], logger["job_type"], logger["name"]) == (group, mode, f"{mode}-3")
    assert "task" not in run.config  # mode=child's task is not a search's setting
    assert load_jobs([tmp_path], tmp_path).iloc[0]["mode"] == mode


def test_a_transfer_run_is_transfer_and_searches_its_controllers_space_unasked(
    pretrained, session_cache_dir, tmp_path
) -> None:
    # The controller was pre-trained on TINY_SEARCH's space; this run names no search_space.
    cfg, _ = tiny_run(tmp_path, session_cache_dir, f"transfer.from={pretrained}", "tasks=[mr]", "search.trials=4")
    assert json.loads(RunDir(tmp_path).summary.read_text())["mode"] == "transfer"
    assert (
        yaml.safe_load(RunDir(tmp_path).config.read_text())["search_space"]
        == yaml.safe_load(RunDir(pretrained).config.read_text())["search_space"]
    )


def test_one_task_given_without_brackets_is_one_task_and_task_is_refused_in_a_search(
    session_cache_dir, tmp_path
) -> None:
    tiny_run(tmp_path / "one", session_cache_dir, "tasks=trec", "search.trials=4")
    assert {row.task for row in read_trials(tmp_path / "one")} == {"trec"}
    with pytest.raises(ConfigError, match=r"task=mr is the task of mode=child and mode=propose; .* give tasks=\[mr\]"):
        tiny_run(tmp_path / "two", session_cache_dir, "task=mr", "search.trials=4")


# --- resume from the run dir alone ---------------------------------------------------------------


def test_resume_needs_only_the_run_dir_and_extends_to_the_trials_of_a_longer_search(
    session_cache_dir, tmp_path
) -> None:
    search = ("tasks=[trec]", "search.trials=8", "search.repeats=reuse", "seed=1")
    tiny_run(tmp_path / "reference", session_cache_dir, *search)
    tiny_run(tmp_path / "run", session_cache_dir, "tasks=[trec]", "search.trials=4", "search.repeats=reuse", "seed=1")
    # Nothing but the run dir and the new budget: the rest is the run's own config.yaml.
    tiny_run(tmp_path / "ignored", session_cache_dir, f"resume={tmp_path / 'run'}", "search.trials=8")
    assert comparable(read_trials(tmp_path / "run")) == comparable(read_trials(tmp_path / "reference"))
    assert not (tmp_path / "ignored").exists()


def test_an_old_run_dir_resumes_with_what_its_settings_meant_not_todays_defaults(session_cache_dir, tmp_path) -> None:
    """A run from before the elite term: its config.yaml and checkpoint do not have the setting at all."""
    search = ("tasks=[trec]", "search.trials=8", "search.repeats=reuse", "strategy.policy.elite_weight=0.0")
    tiny_run(tmp_path / "reference", session_cache_dir, *search)
    run_dir = tmp_path / "run"
    tiny_run(run_dir, session_cache_dir, *search[:1], "search.trials=4", *search[2:])
    recorded = yaml.safe_load(RunDir(run_dir).config.read_text())
    del recorded["strategy"]["policy"]["elite_weight"], recorded["strategy"]["policy"]["elite_size"]
    RunDir(run_dir).config.write_text(yaml.safe_dump(recorded))
    state = load_checkpoint(run_dir)
    for key in ("elite_weight", "elite_size"):
        del state["signature"]["strategy"]["policy"][key]
    save_checkpoint(run_dir, state)
    tiny_run(tmp_path / "ignored", session_cache_dir, f"resume={run_dir}", "search.trials=8")
    assert comparable(read_trials(run_dir)) == comparable(read_trials(tmp_path / "reference"))


def test_a_resume_that_changes_a_setting_is_refused_before_w_and_b_starts(session_cache_dir, tmp_path) -> None:
    tiny_run(tmp_path / "run", session_cache_dir, "tasks=[trec]", "search.trials=4", *WANDB)
    with pytest.raises(ConfigError, match=r"its strategy.policy.learning_rate is 0.01, this run's is 0.1; .* drop"):
        tiny_run(tmp_path / "x", session_cache_dir, f"resume={tmp_path / 'run'}", "strategy.policy.learning_rate=0.1")
    # A whole group given anew is compared as it would compose, not merged into the recorded one.
    with pytest.raises(ConfigError, match=r"its strategy.kind is 'ppo', this run's is 'random'"):
        tiny_run(tmp_path / "x", session_cache_dir, f"resume={tmp_path / 'run'}", "strategy=random")
    assert len(find_offline_runs(tmp_path / "run")) == 1  # the refusals started no W&B run


def test_a_resumed_search_goes_on_with_its_w_and_b_run_and_logs_best_so_far_per_trial(
    session_cache_dir, tmp_path
) -> None:
    tiny_run(tmp_path, session_cache_dir, "tasks=[trec]", "search.trials=4", *WANDB)
    tiny_run(tmp_path / "x", session_cache_dir, f"resume={tmp_path}", "search.trials=8", *WANDB)  # tiny() says none
    first, second = wandb_runs(tmp_path)
    assert first.run_id == second.run_id  # one W&B run: `wandb sync` of both folders appends the second
    indices = [row["trial_index"] for run in (first, second) for row in run.history if "trial/reward" in row]
    assert indices == list(range(8))
    rows = read_trials(tmp_path)
    best = [max(row.reward for row in rows[: i + 1]) for i in range(8)]
    logged = [row["trial/best_so_far"] for run in (first, second) for row in run.history if "trial/reward" in row]
    assert logged == pytest.approx(best)
    assert not [key for key in second.summary if key.startswith("trial/")], second.summary  # not the last trial
    assert second.summary["best/trec"]["reward"] == pytest.approx(max(best))


# --- train.py as a user runs it -----------------------------------------------------------------


def train_py(cache_dir: Path, *overrides: str, **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    """``python train.py`` with the tiny settings; flags such as ``-m`` go first, as Hydra wants them."""
    flags = [item for item in overrides if item.startswith("-")]
    rest = [item for item in overrides if not item.startswith("-")]
    command = [sys.executable, "train.py", *flags, *tiny(), f"paths.cache_dir={cache_dir}", *rest]
    if kwargs.pop("background", False):
        return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_ctrl_c_keeps_the_best_so_far_says_how_to_go_on_and_resume_alone_finishes(session_cache_dir, tmp_path) -> None:
    run_dir = tmp_path / "run"
    process = train_py(
        session_cache_dir, "tasks=[trec]", "search.trials=400", f"hydra.run.dir={run_dir}", background=True
    )
    deadline = time.monotonic() + 240
    while not (RunDir(run_dir).trials.exists() and RunDir(run_dir).trials.read_text().count("\n") >= 4):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert f"Go on with: python train.py resume={run_dir}" in err and "Traceback" not in err
    summary = json.loads(RunDir(run_dir).summary.read_text())
    assert summary["status"] == "interrupted" and summary["best"]["trec"]["trial"] < summary["trials"]
    # The run dir alone, and a smaller budget to finish sooner: nothing else on the command line.
    done = subprocess.run(
        [sys.executable, "train.py", f"resume={run_dir}", f"search.trials={summary['trials'] + 4}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(RunDir(run_dir).summary.read_text()).get("status", "ok") == "ok"
    assert len(read_trials(run_dir)) == summary["trials"] + 4
    assert not (run_dir / ".hydra" / "overrides.yaml").read_text().count("resume=")  # the start's record is kept
    lines = (run_dir / "train.log").read_text().splitlines()
    assert sum(" trec: ok, reward " in line for line in lines) == summary["trials"] + 4
    assert " trec: ok, reward " in done.stdout  # stdout is not a terminal: the trial lines, not a cut-off bar


@pytest.mark.slow
def test_a_sweep_resumes_as_a_whole_from_its_sweep_dir(session_cache_dir, tmp_path) -> None:
    sweep = tmp_path / "sweep"
    first = train_py(session_cache_dir, "-m", "tasks=[trec]", "search.trials=4", "seed=0,1", f"hydra.sweep.dir={sweep}")
    assert first.returncode == 0, first.stderr[-3000:]
    again = subprocess.run(
        [sys.executable, "train.py", f"resume={sweep}", "search.trials=8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    for job in ("0", "1"):
        assert len(read_trials(sweep / job)) == 8


@pytest.mark.slow
def test_mistakes_get_one_message_and_typos_a_did_you_mean(session_cache_dir, tmp_path) -> None:
    refused = train_py(session_cache_dir, "task=mr", f"hydra.run.dir={tmp_path / 'a'}")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "Error: task=mr is the task of mode=child and mode=propose" in refused.stderr
    typo = train_py(session_cache_dir, "serch.trials=3", f"hydra.run.dir={tmp_path / 'b'}")
    assert typo.returncode == 1 and "Did you mean search.trials?" in typo.stderr
    full = subprocess.run(
        [sys.executable, "train.py", *tiny(), "task=mr", f"hydra.run.dir={tmp_path / 'c'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )
    assert "Traceback" in full.stderr  # the traceback is one variable away


# --- finding one's way: --help, mode=tasks, run dirs named by experiment -------------------------------------


def test_help_says_every_mode_and_experiment_and_imports_no_torch() -> None:
    shown = subprocess.run(
        [sys.executable, "-X", "importtime", "train.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in shown.stderr.splitlines() if line.startswith("import time")}
    assert "torch" not in imported and "lightning" not in imported and "wandb" not in imported
    for mode in (ROOT / "conf" / "mode").glob("*.yaml"):
        assert f"\n  {mode.stem} " in shown.stdout, mode.stem  # each mode, one line saying what it does
    for experiment in (ROOT / "conf" / "experiment").glob("*.yaml"):
        assert experiment.stem in shown.stdout
    assert "  strategy      optuna | ppo* | " in shown.stdout  # groups with their options, the default starred


def test_mode_tasks_lists_the_data_dir_apart_from_the_spec_files(data_dir, tmp_path) -> None:
    _, listed = tiny_run(tmp_path / "run", tmp_path / "cache", "mode=tasks")
    folders = {row["name"]: row for row in listed["folders"]}
    meta = json.loads((data_dir / "trec" / "meta.json").read_text())
    assert set(folders) == {p.name for p in data_dir.iterdir() if (p / "train.jsonl").is_file()}
    assert folders["trec"]["classes"] == 6 and folders["trec"]["train"] == meta["counts"]["train"]
    specs = {row["name"]: row["source"] for row in listed["specs"]}
    assert specs == {"example_csv": "missing reviews.csv", "example_download": "download from example.com"}


@pytest.mark.slow
def test_a_search_run_dir_is_named_by_what_it_is_and_one_that_cannot_be_made_is_refused(
    data_dir, session_cache_dir, tmp_path
) -> None:
    def search(*overrides: str) -> subprocess.CompletedProcess:
        settings = [*tiny(), f"paths.data_dir={data_dir}", f"paths.cache_dir={session_cache_dir}", *overrides]
        command = [sys.executable, str(ROOT / "train.py"), *settings]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)

    (tmp_path / "outputs").write_text("")  # a file where the run dir's parent should be
    refused = search("strategy=optuna", "tasks=[trec]", "search.trials=2")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert "hydra.run.dir='outputs/optuna/" in refused.stderr and "outputs is a file, not a folder" in refused.stderr
    (tmp_path / "outputs").unlink()
    done = search("strategy=optuna", "tasks=[trec]", "search.trials=2")  # an optuna baseline, whatever experiment
    assert done.returncode == 0, done.stderr[-2000:]
    assert [path.name for path in (tmp_path / "outputs").iterdir()] == ["optuna"]


def test_resume_without_a_run_dir_is_refused_and_what_it_adds_goes_before_any_flag(tmp_path) -> None:
    from mnms.app.launch import with_resume

    for value in ("", "null"):
        with pytest.raises(SystemExit, match=r"names no run dir"):
            with_resume([f"resume={value}"])
    with pytest.raises(SystemExit, match=r"resume=.*missing does not exist"):
        with_resume([f"resume={tmp_path / 'missing'}"])
    argv = with_resume([f"resume={tmp_path}", "--cfg", "job"])
    assert argv[-2:] == ["--cfg", "job"] and f"hydra.run.dir={tmp_path}" in argv


def test_a_refusal_names_the_key_to_drop_as_the_command_line_spells_it() -> None:
    from mnms.search.resume import config_key

    assert config_key("child.hidden_layers") == "child.arch.hidden_layers"
    assert config_key("examples.trec.train") == "max_examples" and config_key("space") == "search_space"
    assert config_key("search.cost.shape") == "search.cost.shape" and config_key("seed") == "seed"
