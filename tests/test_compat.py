"""A run dir written by mnms 0.1.0, before the restructure, still resumes, transfers and reports -- exactly.

``fixtures/run-0.1.0`` (its README says how it was made) holds an 8-trial PPO search and
what 0.1.0 recorded when it extended that search to 16 trials and when it transferred its
controller to a new task. Today's code must record the same trials, bit for bit.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("MPLCONFIGDIR", "/tmp/mnms-test-matplotlib")  # the report draws with matplotlib

from test_search import comparable  # noqa: E402

from helpers.tiny_search import tiny_run  # noqa: E402
from mnms.child.arch import Architecture  # noqa: E402
from mnms.report import build_report  # noqa: E402
from mnms.search.records import read_trials  # noqa: E402
from mnms.transfer.artifact import load_controller_artifact  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1.0"
# The settings of the fixture's search under today's names (controller.network.* became
# strategy.controller.*), with the trainer settings that reproduce how 0.1.0 trained children
# and counted trials.
SETTINGS = [
    "tasks=[trec,langid-tatoeba]",
    "trainer.patience=null",
    "trainer.epoch_selection=last",
    "strategy.controller.hidden_size=16",
    "strategy.controller.choice_embedding_size=8",
    "strategy.controller.task_embedding_size=8",
    "search.repeats=reuse",  # 0.1.0's trial counting: a repeated proposal shares its result
    "strategy=ppo_paper",  # 0.1.0's PPO: the relative advantage, 4 epochs per update
]


def as_recorded_by_0_1_0(ours: list, theirs: list) -> tuple[list[dict], list[dict]]:
    """Our records cut to the fields 0.1.0 recorded (later versions record more), after
    checking that every added architecture field holds the default that means "absent"
    (the trials replayed from the old log have none of them)."""
    ours, theirs = comparable(ours), comparable(theirs)
    for mine, old in zip(ours, theirs, strict=True):
        defaults = Architecture().to_dict()
        assert all(defaults[k] == v for k, v in mine["arch"].items() if k not in old["arch"])
        mine["arch"] = {k: v for k, v in mine["arch"].items() if k in old["arch"]}
        mine["metrics"] = {k: v for k, v in mine["metrics"].items() if k in old["metrics"]}
    return ours, theirs


def old_run_dir(tmp_path: Path) -> Path:
    """A copy of the fixture's run dir, its ``*.pt.fixture`` files under their real names."""
    run_dir = shutil.copytree(FIXTURE / "ppo8", tmp_path / "ppo8")
    for stored in run_dir.glob("*.fixture"):
        stored.rename(stored.with_suffix(""))
    return run_dir


def test_an_old_search_resumes_to_the_trials_0_1_0_recorded(data_dir, session_cache_dir, tmp_path) -> None:
    run_dir = old_run_dir(tmp_path)
    tiny_run(tmp_path / "ignored", session_cache_dir, *SETTINGS, "search.trials=16", f"resume={run_dir}")
    ours, theirs = as_recorded_by_0_1_0(read_trials(run_dir), read_trials(FIXTURE / "ppo16-trials.jsonl"))
    assert ours == theirs


def test_an_old_controller_transfers_to_the_trials_0_1_0_recorded(data_dir, session_cache_dir, tmp_path) -> None:
    source = old_run_dir(tmp_path)
    assert load_controller_artifact(source).task_names == ["trec", "langid-tatoeba"]
    tiny_run(
        tmp_path / "transfer",
        session_cache_dir,
        *SETTINGS,
        "experiment=transfer",
        f"transfer.from={source}",
        "tasks=[mr]",
        "search.trials=8",
    )
    ours, theirs = as_recorded_by_0_1_0(
        read_trials(tmp_path / "transfer"), read_trials(FIXTURE / "transfer8-trials.jsonl")
    )
    assert ours == theirs


def test_an_old_run_dir_reports(tmp_path) -> None:
    report = build_report([old_run_dir(tmp_path)], tmp_path / "report").read_text()
    assert "| multitask seed 0 | trec, langid-tatoeba | 8 | ok | `ppo8` |" in report
    assert "pareto.png" not in report  # its records predate counted FLOPs: no front to draw
