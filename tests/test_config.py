"""The real Hydra config tree: it composes per mode, takes overrides, rejects unknown or mistyped keys,
and keeps every default in one place."""

from __future__ import annotations

import dataclasses

import pytest
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from helpers.configs import CONF, compose_config
from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.data.encoders import encoder_defaults
from mnms.model.files import PredictConfig, PredictInput
from mnms.search.selection import ChildSourceConfig
from mnms.transfer.warm_start import TransferConfig
from mnms.utils.config import from_config, plain

SEARCH_ONLY = ("search", "search_space", "strategy", "logger", "executor", "transfer", "tasks", "resume", "study")


def test_a_search_composes_every_group_and_caps_its_children() -> None:
    cfg = compose_config()
    for group in ("paths", "encoders", "trainer", "child", "search", "search_space", "strategy", "logger", "executor"):
        assert group in cfg, group
    assert (cfg.mode, cfg.logger.mode, cfg.strategy.kind, cfg.trainer.time_limit_s) == ("search", "offline", "ppo", 120)
    assert "propose" not in cfg


def test_the_main_job_searches_whole_tasks_in_the_wide_and_deep_space_on_two_workers() -> None:
    cfg = compose_config()
    assert cfg.search.max_examples is None and cfg.max_examples is None
    assert (cfg.search.trials, cfg.search.batch_size, cfg.executor.kind) == (48, 4, "local")
    decisions = {d["name"] for d in cfg.search_space.decisions}
    assert {"conv_filters", "fine_tune_layers", "wide", "wide_learning_rate", "pooling"} <= decisions
    assert (cfg.trainer.patience, cfg.trainer.epoch_selection, cfg.trainer.accelerator) == (2, "best", "auto")


def test_mode_child_has_no_search_settings_and_no_time_limit() -> None:
    cfg = compose_config("mode=child")
    assert cfg.mode == "child" and cfg.trainer.time_limit_s is None and cfg.trainer.progress_bar is True
    # Its one search-like group is the logger: the model is logged to W&B as an artifact.
    assert [key for key in SEARCH_ONLY + ("propose",) if key in cfg] == ["logger"]
    assert cfg.logger.mode == "offline" and ChildSourceConfig.from_mapping(cfg.child) == ChildSourceConfig()
    assert from_config(ChildTrainerConfig, cfg.trainer) == ChildTrainerConfig(progress_bar=True)


def test_mode_propose_has_its_section_and_no_search_settings() -> None:
    cfg = compose_config("mode=propose", "propose.k=3")
    assert cfg.propose.k == 3 and cfg.transfer["from"] is None and cfg.trainer.time_limit_s is None
    assert [key for key in SEARCH_ONLY if key in cfg and key != "transfer"] == []


def test_defaults_come_from_the_dataclasses() -> None:
    cfg = compose_config()
    assert OmegaConf.to_container(cfg.child.arch) == Architecture().to_dict()
    assert OmegaConf.to_container(cfg.encoders) == encoder_defaults()
    # transfer.from is a Python keyword, so its section is plain YAML: it must agree with the dataclass.
    assert TransferConfig.from_mapping(cfg.transfer) == TransferConfig()
    # mode=predict's keys are top-level, which no schema types: its YAML must agree with PredictConfig.
    predict = compose_config("mode=predict", "model=m", "input=t.txt")
    assert PredictConfig.from_config(predict) == PredictConfig(model="m", input=PredictInput(path="t.txt"))


SCHEMA_FILES = [path for path in sorted(CONF.glob("*/*.yaml")) if "@_here_" in path.read_text()]  # a schema per file


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_group_files_set_only_what_differs_from_their_schema(path) -> None:
    """A YAML that repeated a dataclass default would be a second copy of it, free to drift."""
    compose_config()  # registers the schemas
    raw = OmegaConf.to_container(OmegaConf.load(path))
    (schema,) = [entry.split("@")[0].lstrip("/") for entry in raw.pop("defaults") if entry.startswith("/schema/")]
    defaults = OmegaConf.to_container(ConfigStore.instance().load(f"{schema}.yaml").node)
    repeated = {key: value for key, value in raw.items() if defaults.get(key) == value}
    assert repeated == {}, f"{path} repeats the defaults of {schema}: {repeated}"


def test_command_line_overrides_reach_the_architecture() -> None:
    cfg = compose_config(
        "task=trec", "child.arch.encoder=char-ngrams", "child.arch.hidden_layers=2", "trainer.max_epochs=2"
    )
    arch = from_config(Architecture, cfg.child.arch)
    assert (cfg.task, arch.encoder, arch.hidden_layers, cfg.trainer.max_epochs) == ("trec", "char-ngrams", 2, 2)


@pytest.mark.parametrize(
    "override, key",
    [
        ("child.arch.widht_1=3", "widht_1"),
        ("trainer.max_epochs=abc", "trainer.max_epochs"),
        ("strategy.policy.lerning_rate=0.1", "lerning_rate"),
        ("strategy=bayes", "strategy/bayes"),
        ("mode=serach", "mode/serach"),
    ],
)
def test_unknown_or_mistyped_overrides_fail_at_composition_naming_the_key(override, key) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_config(override)
    messages = []
    cause: BaseException | None = error.value
    while cause is not None:  # Hydra names the key in the error or in its cause
        messages.append(str(cause))
        cause = cause.__cause__
    assert any(key in message for message in messages), messages


def test_a_key_added_with_plus_is_refused_when_the_config_is_read() -> None:
    cfg = compose_config("+trainer.max_epoch=3")  # Hydra lets `+` add a key even to a schema
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['trainer.max_epoch'\]; valid keys under trainer"):
        from_config(ChildTrainerConfig, cfg.trainer)


def test_strategy_variants_inherit_instead_of_copying() -> None:
    ppo, reinforce = compose_config("strategy=ppo").strategy, compose_config("strategy=reinforce").strategy
    assert reinforce.kind == "reinforce" and {**plain(reinforce), "kind": "ppo"} == plain(ppo)
    none, wandb = compose_config("logger=none").logger, compose_config("logger=wandb").logger
    assert none.mode == "disabled" and {**plain(none), "mode": "offline"} == plain(wandb)
    assert [f.name for f in dataclasses.fields(ChildTrainerConfig)] == list(compose_config().trainer)


def test_data_dir_comes_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MNMS_DATA_DIR", str(tmp_path))
    assert compose_config().paths.data_dir == str(tmp_path)
    assert compose_config(f"paths.data_dir={tmp_path}/other").paths.data_dir == f"{tmp_path}/other"
