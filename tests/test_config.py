"""The real Hydra config tree composes, takes overrides, and rejects unknown keys."""

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from helpers.configs import compose_config
from mnms.child.arch import Architecture
from mnms.utils.config import from_config



def test_defaults_compose_with_every_group() -> None:
    cfg = compose_config()
    for group in ("paths", "encoders", "trainer", "search", "search_space", "controller", "logger", "executor"):
        assert group in cfg, group
    assert cfg.logger.mode == "offline"


def test_yaml_architecture_defaults_match_the_dataclass() -> None:
    """The documented defaults in conf/config.yaml and Architecture() must not drift apart."""
    cfg = compose_config()
    assert OmegaConf.to_container(cfg.child.arch) == Architecture().to_dict()


def test_command_line_overrides_reach_the_architecture() -> None:
    cfg = compose_config("task=trec", "child.arch.encoder=char-ngrams", "child.arch.hidden_layers=2",
                         "trainer.max_epochs=2")
    arch = from_config(Architecture, cfg.child.arch)
    assert (cfg.task, arch.encoder, arch.hidden_layers, cfg.trainer.max_epochs) == ("trec", "char-ngrams", 2, 2)


def test_unknown_override_key_is_an_error() -> None:
    with pytest.raises(ConfigCompositionException, match="widht_1"):
        compose_config("child.arch.widht_1=3")


def test_data_dir_comes_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MNMS_DATA_DIR", str(tmp_path))
    assert compose_config().paths.data_dir == str(tmp_path)
    assert compose_config(f"paths.data_dir={tmp_path}/other").paths.data_dir == f"{tmp_path}/other"
