"""What a command costs before any work: ``--help``, a cached ``mode=child``, and where the time goes.

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.startup [--repeats 5] [--before DIR]

``--before`` names another checkout (``git worktree add /tmp/before <commit>``) whose
``train.py`` is timed alternately with this one's, with this venv, so the two are measured
side by side on one noisy machine. The child is trec's ``words`` child on 300 examples
for one epoch with its features already cached: its training takes about 0.1 s, so its
wall time is the fixed cost every ``mode=child`` pays. The breakdown times the imports in
fresh interpreters. Medians; writes bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.runs import RESULTS

ROOT = Path(__file__).resolve().parents[1]
CHILD = ["mode=child", "task=trec", "child.arch.encoder=words", "max_examples=300", "trainer.max_epochs=1"]
IMPORTS = {  # each in a fresh interpreter, cumulative: what the next line adds is the difference
    "python": "pass",
    "torch": "import torch",
    "torch + pytorch_lightning (imports torchmetrics, and through it scipy, matplotlib, transformers)": (
        "import torch, pytorch_lightning"
    ),
    "... + wandb": "import torch, pytorch_lightning, wandb",
}


def seconds(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {cwd}:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def commands(checkout: Path, run_dir: Path) -> dict[str, list[str]]:
    return {
        "--help": [sys.executable, str(checkout / "train.py"), "--help"],
        "cached mode=child": [sys.executable, str(checkout / "train.py"), *CHILD, f"hydra.run.dir={run_dir}"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", type=Path, default=None, help="another checkout to time side by side")
    args = parser.parse_args(argv)
    checkouts = {"now": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    times: dict[str, dict[str, list[float]]] = {name: {} for name in checkouts}
    with tempfile.TemporaryDirectory() as scratch:
        for name, checkout in checkouts.items():  # once each, unmeasured: features cached, bytecode compiled
            seconds(commands(checkout, Path(scratch) / f"warm-{name}")["cached mode=child"], checkout)
        for repeat in range(args.repeats):
            for name, checkout in checkouts.items():
                for what, command in commands(checkout, Path(scratch) / f"{name}-{repeat}").items():
                    times[name].setdefault(what, []).append(seconds(command, checkout))
        imports = {
            what: statistics.median(seconds([sys.executable, "-c", code], ROOT) for _ in range(args.repeats))
            for what, code in IMPORTS.items()
        }
    result = {
        "repeats": args.repeats,
        "median_seconds": {name: {what: statistics.median(v) for what, v in t.items()} for name, t in times.items()},
        "imports_median_seconds": imports,
    }
    if args.before:
        result["before_over_now"] = {
            what: result["median_seconds"]["before"][what] / result["median_seconds"]["now"][what]
            for what in result["median_seconds"]["now"]
        }
    (RESULTS / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
