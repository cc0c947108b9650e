"""The report builds its figures and tables from real small searches' run dirs.

Four real searches (PPO as the study's ``scratch`` mode and random search, two seeds each,
on two small real tasks) are laid out as Hydra jobs are: ``trials.jsonl``, ``summary.json``,
``.hydra/config.yaml`` and, for the PPO runs, a ``controller.pt`` with the learned task
embeddings. Values in the report are checked against the trial logs read independently.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import statistics
from pathlib import Path

os.environ.setdefault("MPLCONFIGDIR", "/tmp/mnms-test-matplotlib")  # before matplotlib is imported

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.image import imread  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from helpers.crafted import save_crafted  # noqa: E402
from helpers.jobs import TASKS, tiny_job  # noqa: E402
from mnms.report import build_report  # noqa: E402
from mnms.report.__main__ import main as report_main  # noqa: E402
from mnms.report.plots import inherited_tasks, placement_table  # noqa: E402
from mnms.report.tables import censored_median, run_stats, speed_up  # noqa: E402
from mnms.transfer.artifact import save_controller_artifact  # noqa: E402
from mnms.utils.io import RunDir, RunDirError  # noqa: E402

SPACE = {
    "decisions": [
        {"name": "encoder", "choices": ["words", "char-ngrams"]},
        {"name": "hidden_layers", "choices": [0, 1]},
        {"name": "width_1", "choices": [32, 128], "when": {"hidden_layers": [1]}},
        {"name": "learning_rate", "choices": [0.003, 0.03]},
    ]
}
TRIALS = 24  # 12 per task: enough for the @10 column and two choice windows of 10


def _search_run(run_dir: Path, data_dir: Path, cache_dir: Path, *, kind: str, study: str | None, seed: int) -> None:
    """A real search in ``run_dir``, plus the files a Hydra job and the artifact writer leave there."""
    job = tiny_job(data_dir, cache_dir, space=SPACE, kind=kind, seed=seed, trials=TRIALS)
    strategy = job.make_strategy()
    search = job.build(run_dir, strategy=strategy)
    (run_dir / "summary.json").write_text(json.dumps(search.run()))
    config = {"seed": seed, "tasks": list(TASKS), "strategy": {"kind": kind}, "study": {"mode": study}}
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.create(config), run_dir / ".hydra" / "config.yaml")
    if strategy.trains_controller:
        save_controller_artifact(run_dir / "controller.pt", strategy, job.space, config)


@pytest.fixture(scope="module")
def study_dir(data_dir: Path, session_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scratch (PPO, a study job) and random search, seeds 0 and 1; random runs are their strategy's mode."""
    root = tmp_path_factory.mktemp("study")
    for kind, study in (("ppo", "scratch"), ("random", None)):
        for seed in (0, 1):
            _search_run(root / f"{kind}-seed{seed}", data_dir, session_cache_dir, kind=kind, study=study, seed=seed)
    return root


@pytest.fixture(scope="module")
def report(study_dir: Path) -> Path:
    return build_report([study_dir])


def _table(markdown: str, task: str) -> dict[str, dict[str, str]]:
    """The table under ``### task`` as {mode: {column: cell}}."""
    section = markdown.split(f"### {task}\n", 1)[1].strip().split("\n\n", 1)[0]
    header, _, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()]
    return {row[0]: dict(zip(header, row)) for row in rows}


def _trials(run_dir: Path, task: str) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]
    return [row for row in rows if row["task"] == task]


def test_report_writes_valid_figures_linked_from_the_markdown(report: Path) -> None:
    markdown = report.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert {"best_so_far.png", "reward.png", "task_similarity.png", "pareto.png"} <= set(links)
    decisions = [link for link in links if link.startswith("decision_")]
    assert len(decisions) == 3 and decisions[0] == "decision_encoder.png"  # the encoder, then the two moving most
    for link in links:
        path = report.parent / link  # relative links resolve next to report.md
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
        pixels = imread(path)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 500, (link, pixels.shape)
        colours = np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)
        assert len(colours) > 50, f"{link} looks blank ({len(colours)} colours)"


def test_each_task_has_a_row_per_mode_with_seed_counts(report: Path) -> None:
    markdown = report.read_text()
    for task in TASKS:
        table = _table(markdown, task)
        assert list(table) == ["scratch", "random"]  # the study's reading order
        assert all(row["seeds"] == "2" for row in table.values())
        assert "best val @10" in next(iter(table.values()))
        assert "best val @25" not in next(iter(table.values()))  # 12 trials per task: no run reached it
        for reach in ("95%", "99%"):
            assert table["scratch"][f"speed-up {reach}"] in ("1.00×", "—")
            assert table["scratch"][f"compute speed-up {reach}"] in ("1.00×", "—")
    assert "## Runs" in markdown and markdown.count("| ok |") == 4


def test_table_numbers_match_the_trial_logs(study_dir: Path, report: Path) -> None:
    table = _table(report.read_text(), "trec")
    best_at_10 = [
        max(
            r["metrics"]["val_accuracy"]
            for r in _trials(study_dir / f"random-seed{s}", "trec")[:10]
            if r["status"] == "ok"
        )
        for s in (0, 1)
    ]
    expected = f"{statistics.mean(best_at_10):.3f} ± {statistics.stdev(best_at_10):.3f}"
    assert table["random"]["best val @10"] == expected

    opening = [statistics.mean(r["reward"] for r in _trials(study_dir / f"ppo-seed{s}", "trec")[:10]) for s in (0, 1)]
    assert (
        table["scratch"]["mean reward, first 10"] == f"{statistics.mean(opening):.3f} ± {statistics.stdev(opening):.3f}"
    )

    top_test = []
    for seed in (0, 1):
        distinct = {
            json.dumps(r["arch"], sort_keys=True): r
            for r in reversed(_trials(study_dir / f"ppo-seed{seed}", "trec"))
            if r["status"] == "ok"
        }  # reversed: the first trial of an architecture wins
        ranked = sorted(distinct.values(), key=lambda r: (-r["metrics"]["val_accuracy"], r["trial"]))[:5]
        top_test.append(statistics.mean(r["metrics"]["test_accuracy"] for r in ranked))
    assert table["scratch"]["top-5 test acc"] == f"{statistics.mean(top_test):.3f} ± {statistics.stdev(top_test):.3f}"

    target = 0.95 * statistics.mean(
        max(r["metrics"]["val_accuracy"] for r in _trials(study_dir / f"ppo-seed{s}", "trec") if r["status"] == "ok")
        for s in (0, 1)
    )
    reach, spent = [], []
    for seed in (0, 1):
        best, seconds = 0.0, 0.0
        for n, row in enumerate(_trials(study_dir / f"random-seed{seed}", "trec"), start=1):
            best = max(best, row["metrics"]["val_accuracy"] if row["status"] == "ok" else 0.0)
            # training time, not encoding: a child that filled the feature cache is not charged for it
            if row["reused_from"] is None:
                seconds += row["metrics"].get("train_seconds", row["wall_seconds"])
            if best >= target:
                reach.append(n)
                spent.append(seconds)
                break
    cells = table["random"]["trials to 95% of scratch"], table["random"]["child s to 95%"]
    if len(reach) < 2:  # the median of two seeds is "never" when one never got there
        assert cells == (f"not reached ({len(reach)}/2)",) * 2
    else:
        seconds = statistics.median(spent)  # whole seconds from 10 s up, tenths below (never a bare "0")
        assert cells == (f"{statistics.median(reach):.1f}", f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}")


def test_cli_writes_to_out_and_names_a_folder_without_runs(
    study_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(study_dir.parent)
    report_main(
        [
            str(study_dir / "ppo-seed0"),
            str(study_dir / "random-seed1"),
            "--out",
            str(tmp_path / "out"),
            "--decisions",
            "1",
        ]
    )
    assert f"report: {tmp_path / 'out' / 'report.md'}" in capsys.readouterr().out
    # Runs below the working directory are named relative to it (a committed report names no home dir).
    assert f"2 runs under `{study_dir.name}` " in (tmp_path / "out" / "report.md").read_text()
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"report.md", "best_so_far.png", "reward.png", "task_similarity.png"} < written
    assert [name for name in written if name.startswith("decision_")] == ["decision_encoder.png"]  # always first
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(tmp_path / "empty")])
    assert exit_info.value.code == 2
    assert f"no trials.jsonl under '{tmp_path / 'empty'}'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # among real runs, a path with none is named, not skipped
        report_main([str(study_dir), str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert f"no trials.jsonl under '{tmp_path / 'empty'}'" in capsys.readouterr().err


def test_one_run_is_reported_beside_it_with_runs_named_by_mode_and_seed_and_small_n_said(study_dir: Path) -> None:
    report = build_report([study_dir / "ppo-seed0"])
    assert report == study_dir / "ppo-seed0-report" / "report.md"  # never written inside the run dir
    markdown = build_report([study_dir]).read_text()
    runs = markdown.split("## Runs", 1)[1]
    assert f"| scratch seed 0 | {', '.join(TASKS)} | {TRIALS} | ok | `ppo-seed0` |" in runs
    assert "Fewer than 3 seeds for random (n=2), scratch (n=2)" in markdown
    assert "No task has both transfer and scratch runs: no verdict." in markdown


def test_the_verdict_says_helped_only_when_every_transfer_seed_beats_scratchs_median_with_three_seeds() -> None:
    from mnms.report.tables import transfer_verdicts

    rows = []
    for seed, (low, high) in enumerate([(0.5, 0.80), (0.5, 0.81), (0.5, 0.82)]):
        rows += _curve_trials(f"s{seed}", "scratch", seed, [low] * 5 + [high] * 5, 10.0)
    helped = [*rows]
    for seed in range(3):
        helped += _curve_trials(f"t{seed}", "transfer", seed, [0.7] + [0.83 + seed / 100] * 11, 10.0)
    (line,) = transfer_verdicts(pd.DataFrame(helped))
    # The budget is the fewest trials any run made (10), where transfer's worst seed 0.83 > scratch's median 0.81.
    assert line == (
        "- **t**, transfer: **transfer helped**: its worst seed 0.830 is above scratch's median 0.810 "
        "(n=3 transfer, 3 scratch seeds, 10 trials)."
    )
    overlap = [*rows]
    for seed, best in enumerate([0.9, 0.9, 0.805]):
        overlap += _curve_trials(f"t{seed}", "transfer", seed, [best] * 10, 10.0)
    assert (
        "no clear difference: its worst seed 0.805, scratch's median 0.810"
        in transfer_verdicts(pd.DataFrame(overlap))[0]
    )
    two = [row for row in helped if row["run"] not in ("t2", "s2")]
    assert (
        "too few seeds to tell (n=2 transfer, 2 scratch seeds, 10 trials; 3 of each needed)"
        in (transfer_verdicts(pd.DataFrame(two))[0])
    )


def test_flat_curves_get_a_readable_y_axis_and_reused_results_no_speed_up() -> None:
    from mnms.report.plots import MIN_SPAN, best_so_far_figure

    trials = pd.DataFrame(_curve_trials("s0", "scratch", 0, [0.801, 0.802, 0.803], 10.0))
    (ax,) = best_so_far_figure(trials).axes
    low, high = ax.get_ylim()
    assert high - low == pytest.approx(MIN_SPAN) and low < 0.801 and high > 0.803
    reached_free = pd.DataFrame({"seconds@0.99": [0.0, 0.0, 0.0], "child_seconds": [5.0] * 3})
    scratch = pd.DataFrame({"seconds@0.99": [30.0, 40.0, 50.0], "child_seconds": [60.0] * 3})
    assert str(speed_up(scratch, reached_free, "seconds@0.99")) == "— (reused: 0 s)"


def test_transfer_runs_are_placed_among_their_inherited_tasks_within_their_own_controller() -> None:
    """Each transfer run's task is compared with the tasks its controller inherited, in that
    run's own vectors: a descriptor projection moves during transfer, so runs do not share a space."""
    basis = torch.eye(4)
    names = ["sst2", "trec", "subj"]
    runs = {  # mr ends on sst2 in one run, on trec in the other, whose inherited vectors moved
        "mr/transfer-seed0": ([*names, "mr"], torch.stack([basis[0], basis[1], basis[2], basis[0]])),
        "mr/transfer-seed1": ([*names, "mr"], torch.stack([basis[3], basis[1], basis[2], basis[1]])),
        "multitask-seed0": (names, torch.randn(3, 4)),  # an independent search: inherits nothing
    }
    own = {"mr/transfer-seed0": ["mr"], "mr/transfer-seed1": ["mr"], "multitask-seed0": names}
    assert inherited_tasks(runs["mr/transfer-seed0"], own["mr/transfer-seed0"]) == names
    assert inherited_tasks(runs["multitask-seed0"], own["multitask-seed0"]) == []
    transfers = {run: runs[run] for run in ("mr/transfer-seed0", "mr/transfer-seed1")}
    table = placement_table(transfers, own)
    assert list(table.columns) == names and list(table.index) == list(transfers)
    assert table.loc["mr/transfer-seed0"].tolist() == [1.0, 0.0, 0.0]
    assert table.loc["mr/transfer-seed1"].tolist() == [0.0, 1.0, 0.0]  # sst2's moved vector, not seed 0's


def test_a_crafted_controller_file_is_refused_unread(study_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    crafted = shutil.copytree(study_dir / "ppo-seed0", runs / "crafted")
    marker = tmp_path / "code-ran"
    save_crafted(crafted / "controller.pt", marker, format="mnms.controller")
    with pytest.raises(ValueError, match=r"controller.pt holds more than tensors and plain containers.*refused unread"):
        build_report([runs], tmp_path / "report")
    assert not marker.exists()


DAMAGED = {
    "summary.json": ("{not json", r"summary.json is not valid UTF-8 JSON"),
    "summary.json ": ("[1, 2]", r"summary.json holds a JSON list, not a search's summary"),
    "config.yaml": ("search: [unclosed", r"config.yaml is not valid YAML"),
    "config.yaml ": ("{}", r"config.yaml has no 'seed': it is not a search's config"),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_run_dir_is_named_with_its_file_and_the_fix(name, study_dir: Path, tmp_path: Path) -> None:
    content, message = DAMAGED[name]
    damaged = shutil.copytree(study_dir / "ppo-seed0", tmp_path / "runs" / "damaged")
    (damaged / name.strip()).write_text(content)
    with pytest.raises(ValueError, match=message):
        build_report([tmp_path / "runs"], tmp_path / "report")


def test_a_trial_row_of_the_wrong_types_and_an_unwritable_out_are_named(study_dir: Path, tmp_path: Path) -> None:
    damaged = shutil.copytree(study_dir / "ppo-seed0", tmp_path / "runs" / "damaged")
    lines = (damaged / "trials.jsonl").read_text().splitlines()
    lines[3] = json.dumps({**json.loads(lines[3]), "reward": "high"})
    (damaged / "trials.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"trials.jsonl line 4 has mistyped fields \[\"reward='high'\"\]"):
        build_report([tmp_path / "runs"], tmp_path / "report")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ValueError, match=r"--out .*a-file/report: cannot create or write it"):
        build_report([study_dir / "ppo-seed0"], tmp_path / "a-file" / "report")
    # One report writes into a folder at a time (a search may still be writing its run dir there).
    out = tmp_path / "shared-out"
    refusal = pytest.raises(RunDirError, match=r"shared-out is being written by another report of process")
    with RunDir(out).lock("another report", RunDir.REPORT_LOCK), RunDir(out).lock("a search"), refusal:
        build_report([study_dir / "ppo-seed0"], out)
    assert not (out / "report.md").exists()


def _curve_trials(run: str, mode: str, seed: int, accuracies: list[float], seconds: float) -> list[dict]:
    """A run's trials on task "t": these validation accuracies, each child taking ``seconds``."""
    return [
        {
            "run": run,
            "mode": mode,
            "seed": seed,
            "task": "t",
            "reward": acc,
            "val_accuracy": acc,
            "test_accuracy": acc - 0.01,
            "seconds": seconds,
            "arch": json.dumps({"i": i}),
            "task_trial": i + 1,
        }
        for i, acc in enumerate(accuracies)
    ]


def test_study_targets_count_trials_and_child_seconds_and_pick_one_transfer_init() -> None:
    """bench.transfer_study's targets: scratch needs 10 trials of 10 s to its best, transfer
    (random init) 2 trials of 20 s, the descriptor init 5 trials of 10 s; random never gets there."""
    from bench.transfer_study import targets

    rows = []
    for seed in range(3):
        rows += _curve_trials(f"s{seed}", "scratch", seed, [0.5] * 9 + [0.8] * 16, 10.0)
        rows += _curve_trials(f"t{seed}", "transfer", seed, [0.7] + [0.8] * 24, 20.0)
        rows += _curve_trials(f"d{seed}", "transfer-descriptor", seed, [0.6] * 4 + [0.8] * 21, 10.0)
        rows += _curve_trials(f"r{seed}", "random", seed, [0.6] * 25, 1.0)
    result = targets(run_stats(pd.DataFrame(rows)))
    assert result["transfer_mode"] == "transfer"  # 5x in trials (10/2) and 2.5x in compute: neither reaches 5x both
    task = result["tasks"]["t"]
    transfer = task["modes"]["transfer"]
    assert transfer["trials_to_0.99"] == 2 and transfer["child_seconds_to_0.99"] == 40
    assert transfer["trials_speed_up_0.99"] == 5 and transfer["child_seconds_speed_up_0.99"] == 2.5
    assert transfer["trials_speed_up_0.99_bound"] == transfer["child_seconds_speed_up_0.99_bound"] == ""  # exact
    assert task["modes"]["random"]["trials_to_0.95"] is None  # never reached
    assert not task["transfer_5x_faster_in_trials_and_compute"]  # compute is only 2.5x
    assert task["transfer_opens_higher_than_scratch"] and task["transfer_best@25_at_least_random_and_optuna"]
    assert result["tasks_meeting"]["transfer_top5_test_not_worse_than_scratch"] == 1


def test_speed_up_is_a_median_over_seeds_that_counts_a_seed_never_there_as_never() -> None:
    """Dropping the seeds that never reached a target would reward a mode for failing; a
    censored median instead gives an exact speed-up, a lower bound (scratch's median never
    got there: its budget stands in) or an upper bound (the mode's never did)."""
    nan = math.nan

    def runs(reach: list[float], trials: int = 25) -> pd.DataFrame:
        return pd.DataFrame({"reach@0.99": reach, "trials": [trials] * len(reach)})

    assert censored_median(pd.Series([4.0, nan, 6.0])) == 6 and math.isinf(censored_median(pd.Series([nan, nan, 6.0])))
    exact = speed_up(runs([4, nan, 6]), runs([1, 1, nan]), "reach@0.99")
    assert (exact.value, exact.bound, str(exact)) == (6, "", "6.00×") and exact.at_least(5)
    lower = speed_up(runs([nan, nan, 6], trials=20), runs([2, 4, 3]), "reach@0.99")
    assert (lower.value, lower.bound, str(lower)) == (20 / 3, "≥", "≥6.67×") and lower.at_least(5)
    upper = speed_up(runs([10, 10, 10]), runs([1, nan, nan], trials=25), "reach@0.99")
    assert (upper.value, upper.bound) == (10 / 25, "≤")
    assert not speed_up(runs([30] * 3), runs([1, nan, nan]), "reach@0.99").at_least(1)  # a bound from above proves none
    neither = speed_up(runs([nan, nan, 1]), runs([nan, nan, 1]), "reach@0.99")
    assert math.isnan(neither.value) and str(neither) == "—" and not neither.at_least(1)


def test_study_sweeps_only_the_chosen_modes_of_a_step(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``--modes`` splits a step across processes: each sweep gets only its share of the
    step's modes, and a step with none of them launches nothing."""
    import bench.transfer_study as bench

    launched: list[list[str]] = []
    monkeypatch.setattr(bench, "train", lambda overrides, multirun=False: launched.append(overrides))
    args = bench.argparse.Namespace(
        modes=["optuna", "scratch"], held_out=["mr"], seeds=2, trials=5, overrides=["hydra.launcher.n_jobs=1"]
    )
    bench.study(tmp_path / "baselines", bench.BASELINES, tmp_path / "pretrain", args)
    bench.study(tmp_path / "learning", bench.LEARNING, tmp_path / "pretrain", args)
    args.modes = ["transfer"]
    bench.study(tmp_path / "baselines", bench.BASELINES, tmp_path / "pretrain", args)
    assert [[o for o in overrides if o.startswith("study=")] for overrides in launched] == [
        ["study=optuna"],
        ["study=scratch"],
    ]
    assert "seed=0,1" in launched[0] and "hydra.launcher.n_jobs=1" in launched[1]


def test_the_pareto_front_keeps_the_children_no_cheaper_one_matches() -> None:
    from mnms.report.plots import _front

    children = pd.DataFrame({"flops": [5.0, 1.0, 3.0, 2.0, 4.0, 2.0], "val_accuracy": [0.9, 0.5, 0.7, 0.6, 0.65, 0.55]})
    front = _front(children)
    assert list(zip(front["flops"], front["val_accuracy"])) == [(1.0, 0.5), (2.0, 0.6), (3.0, 0.7), (5.0, 0.9)]
