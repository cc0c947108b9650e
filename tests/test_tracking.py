"""The W&B mirror: what reaches W&B offline, run hygiene, and that W&B can never stop a search.

Every test points all of W&B's folders at tmp paths and tears wandb's process-wide
state down, so each test sees its own environment and nothing is written elsewhere.
"""

from __future__ import annotations

import logging
import os
import pty
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import wandb
from omegaconf import OmegaConf

from helpers.configs import compose_config
from helpers.wandb_reader import OfflineRun, find_offline_runs, read_offline_run
from mnms.tracking import Tracker, TrackingConfig
from mnms.utils.config import from_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(60)  # a hang in W&B must fail the test, not stall CI


@pytest.fixture(autouse=True)
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Isolate W&B: its folders under tmp, no credentials, and a closed port as the server."""
    home = tmp_path / "wandb-home"
    for var, sub in [
        ("WANDB_DIR", "dir"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_DATA_DIR", "data"),
    ]:
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("NETRC", str(home / "no-netrc"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    wandb.teardown()  # wandb reads its environment once per process: start from a fresh state
    yield home
    wandb.teardown()


def _config(tmp_path: Path, **overrides: object) -> TrackingConfig:
    return TrackingConfig(dir=str(tmp_path / "run"), **overrides)


def _read(run_path: Path | None) -> OfflineRun:
    """Read a finished run once wandb-core has finished writing it (teardown waits for that)."""
    assert run_path is not None
    wandb.teardown()
    return read_offline_run(run_path)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mnms.tracking" and r.levelno == logging.WARNING]


def _trial(i: int) -> dict:
    return {
        "trial": i,
        "task": ("sst2", "cola")[i % 2],
        "reward": round(0.5 + i / 200, 4),
        "arch": {"encoder": "minilm", "hidden_layers": i % 3},
        "status": "ok",
    }


def test_offline_run_holds_config_every_trial_metrics_and_summary(tmp_path: Path) -> None:
    cfg = _config(tmp_path, group="study-1", job_type="multitask", tags=["test"], table_every=8)
    run_config = OmegaConf.create({"seed": 3, "lr": 0.01, "child": {"lr": "${lr}", "epochs": 2}})
    rows = [_trial(i) for i in range(50)]
    with Tracker(cfg, run_config) as tracker:
        assert tracker.enabled
        for i, row in enumerate(rows):
            tracker.log_trial(row)
            if i % 10 == 9:
                step = i // 10
                tracker.log_metrics(
                    {"sst2/reward": row["reward"], "sst2/best": 0.9, "sst2/p/encoder/minilm": 0.25 + step / 10},
                    step=step,
                )
        tracker.set_summary({"best": {"sst2": {"encoder": "minilm", "reward": 0.9}}})

    assert tracker.run_path is not None and tracker.run_path.is_relative_to(tmp_path / "run")
    assert find_offline_runs(tmp_path) == [tracker.run_path]
    run = _read(tracker.run_path)
    assert run.config == {"seed": 3, "lr": 0.01, "child": {"lr": 0.01, "epochs": 2}}
    assert run.tables["trials"] == rows  # all 50, in order, with their values
    increments = [h for h in run.history if "trials" in h]
    assert len(increments) == 7  # 6 full batches of 8 while running, the last 2 rows at finish
    trial_rows = [h for h in run.history if "trial_index" in h]
    assert [h["trial_index"] for h in trial_rows] == list(range(50))
    assert [h["trial/reward"] for h in trial_rows] == [r["reward"] for r in rows]
    metric_rows = [h for h in run.history if "search_step" in h]
    assert [h["search_step"] for h in metric_rows] == [0, 1, 2, 3, 4]
    assert [h["sst2/p/encoder/minilm"] for h in metric_rows] == [0.25, 0.35, 0.45, 0.55, 0.65]
    assert [h["_step"] for h in run.history] == sorted(h["_step"] for h in run.history)
    assert run.summary["best"] == {"sst2": {"encoder": "minilm", "reward": 0.9}}
    assert run.summary["sst2/best"] == 0.9
    assert run.exit_code == 0


def test_two_trackers_in_one_process_get_separate_runs(tmp_path: Path) -> None:
    paths = []
    for job in range(2):  # like two Hydra multirun jobs in the basic launcher's process
        with Tracker(_config(tmp_path, name=f"job-{job}"), {"job": job}) as tracker:
            for i in range(3):
                tracker.log_trial({"job": job, "trial": i})
        paths.append(tracker.run_path)

    assert paths[0] != paths[1] and sorted(find_offline_runs(tmp_path)) == sorted(paths)
    for job, path in enumerate(paths):
        run = _read(path)
        assert run.config == {"job": job}
        assert run.tables["trials"] == [{"job": job, "trial": i} for i in range(3)]
        assert run.exit_code == 0


def test_a_crash_marks_the_run_failed_and_finish_is_idempotent(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="search crashed"), Tracker(_config(tmp_path), {}) as tracker:
        tracker.log_trial(_trial(0))
        raise RuntimeError("search crashed")
    tracker.finish(exit_code=0)  # a later `finally: finish()` must not rewrite the outcome

    run = _read(tracker.run_path)
    assert run.exit_code == 1
    assert run.tables["trials"] == [_trial(0)]  # pending rows are flushed even on failure


def test_later_rows_are_aligned_to_the_first_rows_columns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Tracker(_config(tmp_path), {}) as tracker:
        tracker.log_trial({"trial": 0, "reward": 0.5})
        tracker.log_trial({"trial": 1, "seconds": 3.0})
        tracker.log_trial({"trial": 2, "error": "oom"})

    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "['seconds']" in warnings[0]  # reported once, not per row
    run = _read(tracker.run_path)
    assert run.tables["trials"] == [
        {"trial": 0, "reward": 0.5},
        {"trial": 1, "reward": None},
        {"trial": 2, "reward": None},
    ]


def test_disabled_mode_writes_nothing(tmp_path: Path) -> None:
    with Tracker(_config(tmp_path, mode="disabled"), {"seed": 1}) as tracker:
        tracker.log_trial(_trial(0))
        tracker.log_metrics({"sst2/reward": 0.5}, step=0)
        tracker.set_summary({"best": "x"})
    assert not tracker.enabled and tracker.run_path is None
    assert list(tmp_path.rglob("*")) == []


def test_online_without_api_key_degrades_to_disabled_quickly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    start = time.monotonic()
    with Tracker(_config(tmp_path, mode="online", init_timeout=30), {"seed": 1}) as tracker:
        tracker.log_trial(_trial(0))
        tracker.log_metrics({"sst2/reward": 0.5}, step=0)
    assert time.monotonic() - start < 10  # failed fast, well inside init_timeout

    assert not tracker.enabled and tracker.run_path is None
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert "wandb.init" in warnings[0] and "logger.mode=offline" in warnings[0]


def test_an_exception_inside_wandb_log_disables_tracking_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_log(self: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated W&B failure")

    with Tracker(_config(tmp_path), {}) as tracker:
        monkeypatch.setattr(wandb.Run, "log", broken_log)
        start = time.monotonic()
        for i in range(3):
            tracker.log_trial(_trial(i))
            tracker.log_metrics({"sst2/reward": 0.5}, step=i)
        tracker.set_summary({"best": "x"})
        assert time.monotonic() - start < 5
        assert not tracker.enabled

    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "simulated W&B failure" in warnings[0] and "logger=none" in warnings[0]
    assert _read(tracker.run_path).exit_code == 1  # the broken run is closed as failed


def test_online_on_a_terminal_fails_fast_instead_of_prompting_for_a_key(tmp_path: Path) -> None:
    """wandb's login prompt would block an unattended search; on a tty we must still fail fast."""
    result = tmp_path / "result.txt"
    script = (
        "import logging, sys\n"
        f"logging.basicConfig(filename={str(tmp_path / 'child.log')!r})\n"
        "from mnms.tracking import Tracker, TrackingConfig\n"
        f"t = Tracker(TrackingConfig(mode='online', dir={str(tmp_path / 'run')!r}, init_timeout=30), {{}})\n"
        f"open({str(result)!r}, 'w').write(f'{{sys.stdin.isatty()}} {{t.enabled}}')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SILENT"}  # the default a user has
    env["PYTHONPATH"] = str(REPO)
    primary, secondary = pty.openpty()
    try:
        subprocess.run(
            [sys.executable, "-c", script],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            env=env,
            cwd=REPO,
            timeout=45,
            check=True,
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.read_text() == "True False"
    assert "logger.mode=offline" in (tmp_path / "child.log").read_text()


def test_config_validation_and_the_hydra_logger_group() -> None:
    with pytest.raises(ValueError, match=r"logger.mode='live'.*logger.mode=offline"):
        TrackingConfig(mode="live")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['logger.projet'\]"):
        from_config(TrackingConfig, {"projet": "x"})
    with pytest.raises(ValueError, match="init_timeout"):
        TrackingConfig(init_timeout=0)
    loaded = {
        name: from_config(TrackingConfig, compose_config(f"logger={name}", "~experiment").logger)
        for name in ("wandb", "none")
    }
    assert loaded["wandb"] == TrackingConfig()  # the yaml defaults are the dataclass defaults
    assert loaded["none"].mode == "disabled"
    assert from_config(TrackingConfig, OmegaConf.create({"tags": ["a", "b"]})).tags == ["a", "b"]
