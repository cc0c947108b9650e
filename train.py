"""Hydra entry point: compose the config, then hand it to mnms.app.run.

python train.py mode=child task=sst2 child.arch.encoder=char-ngrams
python train.py --help    what each mode does, and the config groups (mnms/app/help.py)
"""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mnms.app.help import HELP_FLAGS, help_text
from mnms.app.launch import UserError, did_you_mean, with_resume
from mnms.app.logs import record_in_log

CONF_DIR = Path(__file__).parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from mnms.app.run import USER_ERRORS, run  # imported here so `--help` and tab completion never import Lightning

    job = HydraConfig.get()
    try:
        return run(cfg, Path(job.runtime.output_dir), list(job.overrides.task))
    except (
        USER_ERRORS
    ) as error:  # a mistake in what was asked: its message, not a traceback (HYDRA_FULL_ERROR=1 shows it)
        record_in_log(f"Error: {error}")  # train.log keeps why the run stopped
        raise UserError(f"Error: {error}") from error


if __name__ == "__main__":
    if any(flag in sys.argv[1:] for flag in HELP_FLAGS):
        print(help_text(CONF_DIR), end="")  # before any schema import: no torch, so it answers at once
        sys.exit(0)
    from mnms.app.schemas import register_schemas

    register_schemas()  # the dataclasses every config group's YAML is composed over (imports torch)
    sys.argv[1:] = with_resume(sys.argv[1:])  # resume=<run dir or sweep dir> (mnms/app/launch.py)
    try:
        main()
    except SystemExit as exit_:
        if exit_.code == 1 and (hint := did_you_mean(sys.argv[1:], CONF_DIR)):
            print(hint, file=sys.stderr)
        raise
