"""The transfer-vs-scratch study end to end: baselines, pretraining, the learning modes, the report.

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.transfer_study [--steps ...]

1. ``baselines``: ``train.py -m experiment=transfer_study study=random,optuna`` over the
   held-out tasks x seeds into ``<out>/baselines`` (they need no pretraining).
2. ``pretrain``: ``train.py experiment=pretrain`` (a multitask PPO search over 17 tasks) into
   ``<out>/pretrain``; skipped when its ``controller.pt`` exists, resumed when it was cut short.
3. ``learning``: ``study=transfer,transfer_descriptor,scratch`` x held-out tasks x seeds
   into ``<out>/learning``. A rerun continues every job where it stopped.
4. ``report``: ``python -m mnms.report`` on both sweeps, written to ``docs/transfer_study/``,
   and the issue's targets per held-out task in ``bench/results/transfer_study.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd

from mnms.report import build_report
from mnms.report.load import find_run_dirs, load_jobs, load_trials
from mnms.report.tables import run_stats
from mnms.utils.io import RunDir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
# Unseen by pretraining (conf/experiment/pretrain.yaml): English sentiment and question
# type, Spanish sentiment, and a Spanish-or-not language ID task.
HELD_OUT = ("mr", "new-years-resolutions", "spanish-airline-tweets", "is-spanish")
# The baselines learn nothing from pretraining, so they run (and can start) on their own.
BASELINES = "random,optuna"
LEARNING = "transfer,transfer_descriptor,scratch"
STEPS = ("baselines", "pretrain", "learning", "report")


def pretrain(run_dir: Path) -> None:
    if RunDir(run_dir).controller.is_file():
        return
    resume = [f"resume={run_dir}"] if RunDir(run_dir).checkpoint.is_file() else []
    train(["experiment=pretrain", f"hydra.run.dir={run_dir}", *resume])


def study(sweep_dir: Path, modes: str, pretrained: Path, args: argparse.Namespace) -> None:
    train(
        [
            "experiment=transfer_study",
            f"study={modes}",
            f"study.pretrained={pretrained}",
            f"study.held_out={','.join(args.held_out)}",
            f"seed={','.join(map(str, range(args.seeds)))}",
            f"search.trials={args.trials}",
            f"hydra.sweep.dir={sweep_dir}",
            *args.overrides,
        ],
        multirun=True,
    )


def train(overrides: list[str], multirun: bool = False) -> None:
    flags = ["--multirun"] if multirun else []  # Hydra's flags go before the overrides
    subprocess.run([sys.executable, "train.py", *flags, "search.progress=false", *overrides], cwd=ROOT, check=True)


def targets(stats: pd.DataFrame) -> dict[str, dict[str, float | bool | None]]:
    """The issue's three targets per task, from the report's per-run numbers (means over seeds)."""
    means = stats.groupby(["task", "mode"]).mean(numeric_only=True)
    result = {}
    for task in sorted(stats["task"].unique()):
        mode = means.loc[task]
        speed_up = mode.loc["scratch", "reach@0.99"] / mode.loc["transfer", "reach@0.99"]
        reached = (
            not stats[(stats["task"] == task) & stats["mode"].isin(["scratch", "transfer"])]["reach@0.99"].isna().any()
        )
        result[task] = {
            "opening": {m: mode.loc[m, "opening"] for m in mode.index},
            "best@25": {m: mode.loc[m, "best@25"] for m in mode.index},
            "speed_up_to_99pct_of_scratch": speed_up if reached and math.isfinite(speed_up) else None,
            "transfer_5x_faster": bool(reached and speed_up >= 5),
            "transfer_opens_higher": bool(mode.loc["transfer", "opening"] > mode.loc["scratch", "opening"]),
            "transfer_best@25_at_least_random_and_optuna": bool(
                mode.loc["transfer", "best@25"] >= max(mode.loc["random", "best@25"], mode.loc["optuna", "best@25"])
            ),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", nargs="+", default=list(HELD_OUT))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=25, help="trials per search, the same for every mode")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="run only these steps")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "transfer_study")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "transfer_study")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for the study's searches")
    args = parser.parse_args()

    out = args.out.resolve()
    sweeps = [out / "baselines", out / "learning"]
    if "baselines" in args.steps:
        study(sweeps[0], BASELINES, out / "pretrain", args)
    if "pretrain" in args.steps:
        pretrain(out / "pretrain")
    if "learning" in args.steps:
        study(sweeps[1], LEARNING, out / "pretrain", args)
    if "report" not in args.steps:
        return
    report = build_report(sweeps, args.report)
    jobs = load_jobs(find_run_dirs(sweeps), out)
    payload = {
        "command": " ".join(sys.argv),
        "held_out": args.held_out,
        "seeds": args.seeds,
        "trials": args.trials,
        "report": str(report),
        "targets": targets(run_stats(load_trials(jobs))),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "transfer_study.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload["targets"], indent=2))


if __name__ == "__main__":
    main()
