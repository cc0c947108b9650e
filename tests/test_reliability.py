"""What a user can hand mnms, and what happens to a run dir under faults: no code runs from a file,
nothing is lost or mixed silently, and every bad input gets one message naming it and the fix."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_search import comparable

from helpers.configs import ROOT
from helpers.crafted import save_crafted
from helpers.tiny_search import tiny, tiny_run
from mnms.app.search import NoChildSucceeded
from mnms.data.feature_cache import FeatureCache
from mnms.report.load import load_jobs
from mnms.search.records import load_checkpoint, read_trials
from mnms.transfer.artifact import load_controller_artifact
from mnms.utils.faults import POINTS
from mnms.utils.io import RunDir, RunDirError, UnreadableFile

# Every step a full batch of 4 (a repeat reuses its result rather than shortening the step):
# the kill points and torn logs below are counted in steps of the batch.
SEARCH = ("tasks=[trec]", "search.trials=8", "search.repeats=reuse")


@pytest.fixture(scope="module")
def finished(data_dir: Path, session_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run dir of a finished tiny PPO search on trec (8 trials, 2 steps)."""
    run_dir = tmp_path_factory.mktemp("finished")
    tiny_run(run_dir, session_cache_dir, *SEARCH)
    return run_dir


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "copy"))


def train_py(cache_dir: Path, *overrides: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    """``python train.py`` with the tiny search settings, as a user runs it (``kill_at``: ``MNMS_KILL_AT``)."""
    env = {key: value for key, value in os.environ.items() if key != "MNMS_KILL_AT"}
    env.update({"MNMS_KILL_AT": kill_at} if kill_at else {})
    return subprocess.run(
        [sys.executable, "train.py", *tiny(), f"paths.cache_dir={cache_dir}", *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# --- no code runs from a file -------------------------------------------------------------------


def test_every_loader_refuses_a_crafted_pickle_and_runs_nothing(finished, session_cache_dir, tmp_path) -> None:
    marker = tmp_path / "code-ran"
    run_dir = copy_of(finished, tmp_path)
    save_crafted(RunDir(run_dir).checkpoint, marker, signature={})
    with pytest.raises(UnreadableFile, match="checkpoint.pt holds more than tensors.*refused unread"):
        load_checkpoint(run_dir)
    with pytest.raises(UnreadableFile, match="checkpoint.pt holds more than tensors"):
        tiny_run(tmp_path / "ignored", session_cache_dir, *SEARCH, "search.trials=12", f"resume={run_dir}")
    save_crafted(RunDir(run_dir).controller, marker, format="mnms.controller")
    with pytest.raises(UnreadableFile, match="controller.pt holds more than tensors.*refused unread"):
        load_controller_artifact(run_dir)
    cache = FeatureCache(tmp_path / "cache")
    key = {"kind": "test"}
    cache.path_for(key).parent.mkdir(parents=True)
    save_crafted(cache.path_for(key), marker)
    assert torch.equal(cache.get_or_compute(key, lambda: {"x": torch.ones(2)})["x"], torch.ones(2))  # recomputed
    assert cache.rewrites == 1
    assert not marker.exists()


# --- bad input, one clear message ----------------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: tmp / "no-such-run", r"resume='.*no-such-run' does not exist: resume= takes the run dir"),
        (
            lambda tmp: (tmp / "a-file").write_text("x") and tmp / "a-file",
            r"resume='.*a-file' is a file, not a run dir",
        ),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", r"resume='.*empty' holds no search \(no trials.jsonl"),
    ],
)
def test_resume_needs_the_run_dir_of_a_search(make, message, session_cache_dir, tmp_path) -> None:
    target = make(tmp_path)
    with pytest.raises(ValueError, match=message):
        tiny_run(tmp_path / "ignored", session_cache_dir, *SEARCH, f"resume={target}")
    assert not (tmp_path / "no-such-run").exists()  # nothing was started there


def test_bad_inputs_name_the_key_or_the_file_and_the_fix(finished, session_cache_dir, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"tasks=\[\] names no task: give at least one"):
        tiny_run(tmp_path / "a", session_cache_dir, "tasks=[]")
    text = tmp_path / "notes.txt"
    text.write_text("not a controller\n")
    with pytest.raises(UnreadableFile, match=r"notes.txt is damaged, truncated or not a file torch.save wrote"):
        tiny_run(tmp_path / "b", session_cache_dir, *SEARCH, "experiment=transfer", f"transfer.from={text}")
    run_dir = copy_of(finished, tmp_path)
    checkpoint = RunDir(run_dir).checkpoint
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated by a full disk, say
    with pytest.raises(UnreadableFile, match=r"checkpoint.pt is damaged, truncated.*Restore checkpoint.pt"):
        tiny_run(tmp_path / "c", session_cache_dir, *SEARCH, "search.trials=12", f"resume={run_dir}")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda lines: [*lines[:2], b"{not json\n", *lines[3:]], r"trials.jsonl line 3 is not JSON \(.*\): the log"),
        (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], r"trials.jsonl line 2 has trial=2, expected 1"),
    ],
)
def test_a_log_edited_by_hand_is_named_by_file_and_line(edit, message, finished, session_cache_dir, tmp_path) -> None:
    run_dir = copy_of(finished, tmp_path)
    log = RunDir(run_dir).trials
    log.write_bytes(b"".join(edit(log.read_bytes().splitlines(keepends=True))))
    with pytest.raises(ValueError, match=message + ".*restore it or start a new run dir"):
        tiny_run(tmp_path / "ignored", session_cache_dir, *SEARCH, "search.trials=12", f"resume={run_dir}")


# --- one writer per run dir ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["child", "predict", "propose"])
def test_every_mode_that_writes_a_run_dir_is_its_only_writer(mode, session_cache_dir, tmp_path) -> None:
    run_dir = tmp_path / "shared"
    refusal = pytest.raises(RunDirError, match=r"shared is being written by the first run of process \d+ on ")
    with RunDir(run_dir).lock("the first run"), refusal:
        tiny_run(run_dir, session_cache_dir, f"mode={mode}", "task=trec", "child.arch.encoder=words")
    assert sorted(path.name for path in run_dir.iterdir()) == [RunDir.LOCK]  # the second run wrote nothing


CHILD = ("mode=child", "task=trec", "child.arch.encoder=words", "logger=none")


def test_a_child_is_never_trained_into_a_run_dir_that_holds_one(session_cache_dir, tmp_path) -> None:
    run_dir = tmp_path / "child"
    tiny_run(run_dir, session_cache_dir, *CHILD)
    result, model = RunDir(run_dir).result.read_bytes(), (RunDir(run_dir).model / "model.json").read_bytes()
    with pytest.raises(RunDirError, match=r"child already holds a trained child \(result.json\).*a new run dir"):
        tiny_run(run_dir, session_cache_dir, *CHILD, "child.arch.hidden_layers=0")
    assert RunDir(run_dir).result.read_bytes() == result
    assert (RunDir(run_dir).model / "model.json").read_bytes() == model


@pytest.mark.slow
def test_two_children_started_in_one_run_dir_at_once_one_trains_the_other_is_refused(
    session_cache_dir, tmp_path
) -> None:
    run_dir = tmp_path / "both"
    command = [sys.executable, "train.py", *tiny(*CHILD), f"paths.cache_dir={session_cache_dir}"]
    command += [*CHILD, f"hydra.run.dir={run_dir}"]
    runs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    runs.append(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [run.communicate(timeout=300) for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes[0] == 0 and codes[1] != 0, outputs
    refused = next(err for run, (_, err) in zip(runs, outputs, strict=True) if run.returncode)
    assert "is being written by mode=child of process" in refused or "already holds a trained child" in refused
    assert json.loads(RunDir(run_dir).result.read_text())["task"] == "trec"


def test_a_second_search_in_a_locked_run_dir_fails_at_once_naming_the_first(session_cache_dir, tmp_path) -> None:
    run_dir = tmp_path / "shared"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom mnms.utils.io import RunDir\n"
            "with RunDir(sys.argv[1]).lock():\n    print('held', flush=True)\n    time.sleep(60)\n",
            str(run_dir),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"shared is being written by the search of process {holder.pid} on "):
            tiny_run(run_dir, session_cache_dir, *SEARCH)
    finally:
        holder.kill()
        holder.wait()
    assert not RunDir(run_dir).trials.exists()  # the second search wrote nothing
    tiny_run(run_dir, session_cache_dir, *SEARCH, "search.trials=4")  # the lock went with its process
    assert len(read_trials(run_dir)) == 4


def test_a_run_dir_that_cannot_be_written_is_named_with_the_fix(session_cache_dir, tmp_path) -> None:
    folder = tmp_path / "frozen"
    folder.mkdir()
    # Root writes anywhere, so a read-only mode proves nothing here; an immutable folder (ext4) does.
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
        pytest.skip("needs chattr +i to make a folder unwritable")
    try:
        with pytest.raises(RunDirError, match=r"cannot write the run dir .*frozen/run.*point hydra.run.dir"):
            tiny_run(folder / "run", session_cache_dir, *SEARCH)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_train_py_names_a_run_dir_hydra_could_not_make_instead_of_an_os_error(tmp_path) -> None:
    (tmp_path / "a-file").write_text("")
    for key, mode in (("hydra.run.dir", ()), ("hydra.sweep.dir", ("--multirun",))):
        done = subprocess.run(
            [sys.executable, "train.py", *mode, "mode=child", "task=trec", f"{key}={tmp_path / 'a-file' / 'run'}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr[-2000:]
        assert f"Error: {key}='{tmp_path / 'a-file' / 'run'}' cannot be made: " in done.stderr
        assert "a-file is a file, not a folder; point" in done.stderr and "Traceback" not in done.stderr


# --- a failure never costs a finished run its results ---------------------------------------------

STATUS_CALLBACK = "+hydra.callbacks.job_status._target_=mnms.app.study.JobStatusCallback"  # as experiments set it


@pytest.mark.slow
def test_a_failed_rerun_of_a_finished_run_keeps_its_results(finished, session_cache_dir, tmp_path) -> None:
    run_dir = copy_of(finished, tmp_path)
    kept = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != RunDir.LOCK}
    job = tmp_path / "job"
    for where in (f"resume={run_dir} hydra.run.dir={job}", f"hydra.run.dir={run_dir}"):
        failed = train_py(session_cache_dir, *SEARCH, "seed=1", STATUS_CALLBACK, *where.split())
        assert failed.returncode != 0 and "seed" in failed.stderr, where
        assert {name: (run_dir / name).read_bytes() for name in kept} == kept, where  # summary.json too
    failure = json.loads(RunDir(run_dir).failure.read_text())  # the re-run in place left its error beside
    assert failure["status"] == "failed" and "seed" in failure["error"] and "Traceback" in failure["traceback"]
    job_summary = json.loads(RunDir(job).summary.read_text())  # the failed resume is reported as its own job
    assert job_summary["status"] == "failed" and job_summary == json.loads(RunDir(job).failure.read_text())
    (row,) = load_jobs([run_dir], tmp_path).itertuples()  # Hydra's .hydra/config.yaml now says seed=1
    assert (row.status, row.seed) == ("ok", 0)


# --- a search that found nothing says so --------------------------------------------------------


def test_a_search_where_no_child_finished_fails_naming_the_error(session_cache_dir, tmp_path) -> None:
    missing = f"st:{tmp_path}/no-such-model"  # a sentence-transformers model that is not there: loading raises
    with pytest.raises(NoChildSucceeded, match=r"no child finished in 8 trials.*trec: failed: .*no-such-model"):
        tiny_run(tmp_path / "run", session_cache_dir, *SEARCH, f"search_space.decisions.0.choices=['{missing}']")
    summary = json.loads(RunDir(tmp_path / "run").summary.read_text())
    assert summary["status"] == "failed" and summary["unsuccessful"]["trec"]["trials"] == 8
    assert len(read_trials(tmp_path / "run")) == 8  # every failed trial is kept, with its error


# --- the log and the checkpoint agree at every kill point -----------------------------------------


def test_a_log_that_lost_lines_the_checkpoint_counted_is_restored_from_it(
    finished, session_cache_dir, tmp_path
) -> None:
    reference = tmp_path / "reference"
    tiny_run(reference, session_cache_dir, *SEARCH, "search.trials=12")
    run_dir = copy_of(finished, tmp_path)
    log = RunDir(run_dir).trials
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-2]) + lines[-2][:20])  # the last line torn, the one before lost
    tiny_run(tmp_path / "ignored", session_cache_dir, *SEARCH, "search.trials=12", f"resume={run_dir}")
    assert comparable(read_trials(run_dir)) == comparable(read_trials(reference))


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["search.setup:1", "atomic.before_replace:1", "search.observed:1"])
def test_a_search_killed_before_its_first_step_is_checkpointed_resumes(
    kill_at, finished, session_cache_dir, tmp_path
) -> None:
    """Killed while it set up, while it wrote its first checkpoint, or after it logged its first step."""
    run_dir = tmp_path / "run"
    killed = train_py(session_cache_dir, *SEARCH, f"hydra.run.dir={run_dir}", kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    logged = RunDir(run_dir).trials.read_bytes() if RunDir(run_dir).trials.exists() else b""
    resumed = train_py(session_cache_dir, *SEARCH, f"resume={run_dir}", f"hydra.run.dir={tmp_path / 'ignored'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert comparable(read_trials(run_dir)) == comparable(read_trials(finished))
    assert RunDir(run_dir).trials.read_bytes().startswith(logged)  # what was logged was kept, not trained again


def _other_run(lines: list[bytes]) -> list[bytes]:
    """The log with its last trial lost and the one before it from another run (another reward)."""
    row = json.loads(lines[-2])
    return [*lines[:-2], (json.dumps({**row, "reward": row["reward"] / 2}, sort_keys=True) + "\n").encode()]


@pytest.mark.parametrize(
    "edit, held",
    [(lambda lines: lines[:3], 3), (_other_run, 7)],
    ids=["more than the last step lost", "the rest of the step is another run's"],
)
def test_a_log_the_checkpoint_cannot_restore_is_refused(edit, held, finished, session_cache_dir, tmp_path) -> None:
    run_dir = copy_of(finished, tmp_path)
    log = RunDir(run_dir).trials
    log.write_bytes(b"".join(edit(log.read_bytes().splitlines(keepends=True))))
    with pytest.raises(
        ValueError, match=rf"holds {held} trials but checkpoint.pt counted 8.*put back a complete trials.jsonl"
    ):
        tiny_run(tmp_path / "ignored", session_cache_dir, *SEARCH, "search.trials=12", f"resume={run_dir}")
    assert len(read_trials(run_dir)) == held  # nothing was appended


def test_a_resume_cannot_shrink_a_search(finished, session_cache_dir, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"search.trials=4 is below the 8 trials .*give search.trials >= 8"):
        tiny_run(
            tmp_path / "ignored", session_cache_dir, *SEARCH, "search.trials=4", f"resume={copy_of(finished, tmp_path)}"
        )


def _passes(trials: int, batch: int) -> list[tuple[str, int]]:
    """Every (kill point, pass) a fresh search of ``trials`` in steps of ``batch`` goes through."""
    steps = -(-trials // batch)
    checkpoints = 1 + steps  # the first one, written before any trial, then one per step
    return [("search.setup", 1), ("search.start", 1)] + [
        (point, n)
        for point, count in (
            ("search.proposed", steps),
            ("search.evaluated", steps),
            ("log.appended", trials),
            ("search.observed", steps),
            ("atomic.before_replace", checkpoints),
            ("checkpoint.written", steps),
        )
        for n in range(1, count + 1)
    ]


PHASES = {
    "setup": ("search.setup", "search.start"),
    "training": ("search.proposed", "search.evaluated"),
    "logging": ("log.appended", "search.observed"),
    "checkpointing": ("atomic.before_replace", "checkpoint.written"),
}


def _moments(seed: int, n: int, trials: int, batch: int) -> list[tuple[str, int]]:
    """``n`` seeded kill moments of a search: one in each phase, the rest anywhere."""
    passes, rng = _passes(trials, batch), random.Random(seed)
    assert {point for points in PHASES.values() for point in points} == set(POINTS)
    picks = [rng.choice([(point, k) for point, k in passes if point in points]) for points in PHASES.values()]
    return picks + rng.sample([moment for moment in passes if moment not in picks], n - len(picks))


@pytest.mark.slow
def test_a_search_killed_at_ten_random_moments_resumes_to_the_same_trials(data_dir, session_cache_dir, tmp_path):
    """SIGKILL at 10 seeded kill points, at least one in each of setup, training, logging and checkpointing.

    Every resumed search records the uninterrupted one's trials, and keeps every line it
    had logged before the kill as it was: only the in-flight step is trained again.
    """
    search = ("tasks=[trec,langid-tatoeba]", "search.trials=12")

    def train(run_dir: Path, *extra: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
        return train_py(session_cache_dir, *search, f"hydra.run.dir={run_dir}", *extra, kill_at=kill_at)

    done = train(tmp_path / "reference")
    assert done.returncode == 0, done.stderr[-3000:]
    reference = comparable(read_trials(tmp_path / "reference"))
    for point, n in _moments(seed=0, n=10, trials=12, batch=4):
        run_dir = tmp_path / f"{point}-{n}"
        killed = train(run_dir, kill_at=f"{point}:{n}")
        assert killed.returncode == -signal.SIGKILL, (point, n, killed.stderr[-2000:])
        logged = RunDir(run_dir).trials.read_bytes() if RunDir(run_dir).trials.exists() else b""
        resumed = train(tmp_path / "ignored", f"resume={run_dir}")
        assert resumed.returncode == 0, (point, n, resumed.stderr[-3000:])
        assert comparable(read_trials(run_dir)) == reference, (point, n)
        assert RunDir(run_dir).trials.read_bytes().startswith(logged), (point, n)
        assert json.loads(RunDir(run_dir).summary.read_text())["trials"] == 12, (point, n)
