"""What ``train.py`` makes of its command line before Hydra sees it: ``resume=`` of a run dir or a sweep dir.

Kept free of torch and Lightning, so ``--help`` stays fast.

- ``resume=<run dir>``: Hydra's own run dir is the resumed one (``hydra.run.dir``), and
  Hydra writes no ``.hydra/`` copy there (``hydra.output_subdir=null``): a resume leaves no
  empty ``outputs/<mode>/<time>/`` behind and keeps the record of the command that started
  the search.
- ``resume=<sweep dir>`` (a folder with Hydra's ``multirun.yaml``): the sweep is launched
  again with its own overrides in its own folder, so every job goes on where it stopped
  (a search started in a run dir that holds one continues it) and a finished job ends at
  once. Overrides given beside ``resume=`` come after the sweep's, so they win.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from hydra.errors import CompactHydraException

MULTIRUN = "multirun.yaml"  # what Hydra writes in a sweep dir: its config and the sweep's overrides
MULTIRUN_FLAGS = ("-m", "--multirun")


def with_resume(argv: list[str]) -> list[str]:
    """``argv`` (without the program name) as Hydra should see it."""
    given = [arg for arg in argv if arg.startswith("resume=")]
    if not given:
        return argv
    value = given[-1].split("=", 1)[1]
    if value.strip() in ("", "null", "None"):
        raise SystemExit(
            f"Error: resume={value!r} names no run dir: give the run dir a search printed, or drop resume="
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise SystemExit(
            f"Error: resume={value} does not exist: give the run dir a search printed (outputs/<mode>/<time>) "
            "or a sweep dir holding multirun.yaml"
        )
    # What this adds goes first: overrides after a flag such as --cfg would be taken as the flag's arguments.
    if (path / MULTIRUN).is_file():
        rest = [arg for arg in argv if not arg.startswith("resume=") and arg not in MULTIRUN_FLAGS]
        return ["--multirun", *sweep_overrides(path), f"hydra.sweep.dir={path}", *rest]
    if any(arg.startswith("hydra.run.dir=") for arg in argv):
        return argv
    return [f"hydra.run.dir={path}", "hydra.output_subdir=null", *argv]


# Hydra's own overrides of a sweep that a relaunch sets anew (the mode, its folders) rather than replays.
_SET_ANEW = ("hydra.mode=", "hydra.sweep.dir=", "hydra.run.dir=")


def sweep_overrides(sweep_dir: Path) -> list[str]:
    """The command-line overrides the sweep in ``sweep_dir`` was launched with: its own, and Hydra's
    (``hydra/launcher=mnms_slurm hydra.launcher.partition=cpu``), so it goes on where and as it ran."""
    from omegaconf import OmegaConf

    overrides = OmegaConf.load(sweep_dir / MULTIRUN).hydra.overrides
    hydra = [str(item) for item in overrides.hydra if not str(item).startswith(_SET_ANEW)]
    return [*hydra, *(str(item) for item in overrides.task)]


class UserError(CompactHydraException):
    """A mistake in what the user asked for; Hydra prints the message alone, without a traceback."""


_BAD_KEY = re.compile(r"Could not override '([^']+)'")


def did_you_mean(argv: list[str], config_dir: Path) -> str | None:
    """For a command line Hydra refused over a key the config does not have (``serch.trials=3``), the keys
    it may have meant; None when that is not why it failed. Composes the config again, so only after a failure."""
    if any(arg in MULTIRUN_FLAGS for arg in argv):
        return None
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf

    from mnms.app.schemas import register_schemas

    register_schemas()
    overrides = [arg for arg in argv if "=" in arg and not arg.lstrip("+~").startswith("hydra")]
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        try:
            compose(config_name="config", overrides=overrides)
            return None
        except ConfigCompositionException as error:
            found = _BAD_KEY.search(str(error))
        if found is None:
            return None
        bad = found.group(1)
        rest = [arg for arg in overrides if arg.split("=", 1)[0].lstrip("+~") != bad]
        try:
            keys = _dotted_keys(OmegaConf.to_container(compose(config_name="config", overrides=rest)))
        except ConfigCompositionException:
            return None
    close = difflib.get_close_matches(bad, keys, n=3, cutoff=0.75)
    return f"Did you mean {' or '.join(close)}? ({bad} is not a key of this config)" if close else None


def _dotted_keys(node: object, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix[:-1]]
    return [key for name, value in node.items() for key in _dotted_keys(value, f"{prefix}{name}.")]
