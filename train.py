"""Hydra entry point: compose the config, then hand it to mnms.app.run.

    python train.py mode=child task=sst2 child.arch.encoder=char-ngrams
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from mnms.app.run import run  # imported here so `--help` and tab completion stay fast

    return run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
