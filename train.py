"""Hydra entry point: compose the config, then hand it to mnms.app.run.

python train.py mode=child task=sst2 child.arch.encoder=char-ngrams
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mnms.app.schemas import register_schemas

register_schemas()  # the dataclasses every config group's YAML is composed over


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from mnms.app.run import run  # imported here so `--help` and tab completion never import Lightning

    return run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
