"""``python train.py --help``: what each mode does, how to list tasks, and the config groups with their options.

Printed before Hydra composes anything, so it imports neither torch nor Lightning and
answers in well under a second. Hydra's own help stays at ``--hydra-help``; every setting,
composed, at ``python train.py --cfg job``. The groups and their options are read from
``conf/`` each time, so a new option file shows up here with no edit.
"""

from __future__ import annotations

from pathlib import Path

import yaml

HELP_FLAGS = ("--help", "-h")
NOT_SELECTED = {"hydra", "dataset", "benchmark"}  # Hydra's own; task spec files (task=); bench/'s configs

USAGE = """\
mnms: Multitask Neural Model Search. A controller learns which text-classifier
architectures work, for many tasks at once, and carries that to new tasks.

Usage: python train.py [mode=MODE] [key=value ...]        one run
       python train.py -m key=a,b [key=value ...]         a Hydra sweep, one run per combination

Modes (mode=...):
  search   the default: search architectures for the tasks in tasks=[...]; experiment= picks the recipe
  child    train one architecture on task=...: child.arch.*=..., or child.from=<search run dir> for its best
  propose  a pre-trained controller's likely architectures for task=..., without searching (transfer.from=...)
  predict  classify a file's texts with a saved model: model=<run dir>/model input=<file>
  tasks    list the tasks a run can name (the folders of $MNMS_DATA_DIR, and task spec files), with sizes

Experiments (experiment=..., for a search; conf/experiment/):
  multitask       the default: one PPO controller searches all tasks at once
  scratch         a controller trained from scratch on one task, the baseline transfer is measured against
  random          random search over the same space and budget
  transfer        start from a pre-trained controller: transfer.from=<search run dir> tasks=[new task]
  pretrain        the transfer study's step 1: a multitask search of 17 shared tasks
  transfer_study  one job of the transfer-vs-scratch study (with -m over study=... and seeds)
  study_budget    the children's budget pretrain and transfer_study share (a part of those two)

Examples:
  python train.py mode=tasks                                   the tasks there are
  python train.py tasks=[trec,sst2] search.trials=24           a quick multitask search
  python train.py strategy=optuna tasks=[trec]                 a baseline: optuna | random | reinforce | ppo
  python train.py resume=outputs/multitask/<time>              go on where a search stopped (search.trials= to extend)
  python train.py mode=child task=trec child.from=outputs/multitask/<time> child.save=true
  python train.py --cfg job                                    every setting, composed (add overrides to see theirs)
  python -m mnms.report outputs/<runs or sweep dir>            tables and figures comparing runs

Runs land in outputs/<mode>/<time>/, a search's mode being what it is: multitask, scratch,
transfer, random, optuna, ... (summary.json, trials.jsonl, train.log);
W&B logs offline unless logger.mode=online. More: README.md and docs/.
"""


def help_text(conf_dir: Path) -> str:
    """The whole help: ``USAGE`` and the config groups of ``conf_dir`` with their options, defaults marked."""
    defaults = _defaults(conf_dir / "config.yaml") | _defaults(conf_dir / "mode" / "search.yaml")
    lines = ["Config groups (group=option; * the default; a search composes all, other modes what they use):"]
    for group in sorted(p for p in conf_dir.iterdir() if p.is_dir() and p.name not in NOT_SELECTED):
        options = sorted(p.stem for p in group.glob("*.yaml"))
        marked = [f"{option}*" if defaults.get(group.name) == option else option for option in options]
        lines.append(f"  {group.name:<13} {' | '.join(marked)}")
    return USAGE + "\n" + "\n".join(lines) + "\n"


def _defaults(path: Path) -> dict[str, str]:
    """``group -> option`` of a config file's defaults list (``- /search: default`` and ``- paths: default``)."""
    entries = yaml.safe_load(path.read_text()).get("defaults", [])
    pairs = (next(iter(entry.items())) for entry in entries if isinstance(entry, dict))
    return {key.lstrip("/"): str(value) for key, value in pairs if not key.startswith("override")}
