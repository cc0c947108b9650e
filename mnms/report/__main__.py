"""``python -m mnms.report RUN_OR_MULTIRUN_DIR ... [--out DIR]``: write report.md and its figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnms.report import build_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnms.report",
        description="Plots and tables of search runs (from their trials.jsonl, never W&B): best accuracy "
        "and reward curves per mode, decision choices over time, task-embedding similarity, "
        "and a markdown table of accuracy and speed-up against scratch per task.",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        help="search run dirs, or folders holding them (e.g. a multirun dir), searched recursively",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where report.md and the PNGs go (default: the runs' common parent; one run's: <run>-report beside it)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=10,
        help="trials per window for the moving-average reward and the choice frequencies (default 10)",
    )
    parser.add_argument(
        "--decisions",
        type=int,
        default=3,
        help="decision figures: the encoder, then those whose choices shift most (default 3)",
    )
    args = parser.parse_args(argv)
    try:
        report = build_report(args.paths, args.out, window=args.window, decisions=args.decisions)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"report: {report}")


if __name__ == "__main__":
    main()
