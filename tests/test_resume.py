"""The resume contract: every setting that reaches a search is shared by a resume or declared free, with the reason.

The signature is derived from the config dataclasses (``mnms.search.resume``). Here every
one of its settings is changed, one at a time, to another valid value, and the real
checkpoint check must refuse the resume naming that key; every setting declared free is
changed on a real resumed search, which must record the trials it would have recorded
anyway.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_search import comparable

from helpers.configs import compose_config
from helpers.jobs import tiny_job
from helpers.tiny_search import tiny_run
from mnms.child.arch import ACTIVATIONS, NORMALISATIONS, OPTIMIZERS, POOLINGS, WIDE, Architecture
from mnms.child.config import EPOCH_SELECTIONS, ChildTrainerConfig
from mnms.data.encoders import ENCODERS, encoder_resume_settings
from mnms.search import resume
from mnms.search.config import MODES, PRUNED_REWARDS, REPEATS, REWARDS, SCHEDULES, SearchConfig
from mnms.search.cost import MEASURES, SHAPES
from mnms.search.job import SearchJob
from mnms.search.pruning import PRUNERS
from mnms.search.records import TrialLog, load_checkpoint, read_trials, save_checkpoint
from mnms.search.space import SearchSpace
from mnms.search.strategies import STRATEGIES, strategy_config
from mnms.search.strategies.policy_gradient import ADVANTAGES, ANCHORS
from mnms.utils.config import ConfigError, free_fields
from mnms.utils.io import RunDir

# Every choice a string setting has, for finding another valid value of each.
WORDS = (
    *SCHEDULES,
    *REWARDS,
    *MODES,
    *REPEATS,
    *PRUNERS,
    *PRUNED_REWARDS,
    *ADVANTAGES,
    *ANCHORS,
    *EPOCH_SELECTIONS,
    *ENCODERS,
    *POOLINGS,
    *WIDE,
    *ACTIVATIONS,
    *NORMALISATIONS,
    *OPTIMIZERS,
    *SHAPES,
    *MEASURES,
)
# The settings a resume may change, and why each is free: a new one is a decision, so this test names it.
FREE = {
    SearchConfig: {"trials", "max_examples", "progress"},
    ChildTrainerConfig: {"progress_bar", "accelerator", "precision"},
    Architecture: set(),
}


def alternatives(value: Any) -> Iterator[Any]:
    """Candidate values other than ``value``, of the kinds config fields take."""
    if isinstance(value, bool):
        candidates: tuple = (not value,)
    elif isinstance(value, int):
        candidates = (value + 1, value + 2, 1, 2)
    elif isinstance(value, float):
        candidates = (value / 2, value + 0.5, 0.5)
    elif value is None:
        candidates = (2, 0.5, -0.5)
    elif isinstance(value, str):
        candidates = (*WORDS, f"{value}-changed")
    elif isinstance(value, list):
        candidates = ([*value[:-1], value[-1] + 1],)
    yield from (candidate for candidate in candidates if candidate != value)


def changed(config: Any, path: list[str]) -> Iterator[Any]:
    """``config`` (a dataclass or mapping) with the setting at ``path`` set to each valid alternative."""
    name, rest = path[0], path[1:]
    value = config[name] if isinstance(config, dict) else getattr(config, name)
    options = changed(value, rest) if rest else alternatives(value)
    for option in options:
        if isinstance(config, dict):
            yield {**config, name: option}
            continue
        try:
            yield dataclasses.replace(config, **{name: option})
        except ConfigError:  # not a valid value of this field: try the next
            continue


def leaves(settings: dict, prefix: tuple[str, ...] = ()) -> Iterator[list[str]]:
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, (*prefix, key))
        else:
            yield [*prefix, key]


def base_parts(kind: str, encoder: str) -> dict[str, Any]:
    """A search's settings, a pruner on (its settings count only then) and a transfer source set."""
    return {
        "tasks": ["trec", "langid-tatoeba"],
        "seed": 0,
        "space": SearchSpace.from_config({"decisions": [{"name": "hidden_layers", "choices": [0, 1]}]}),
        "search": SearchConfig(pruner="asha"),
        # Optuna's group needs multivariate: with group off, either can change alone.
        "strategy": strategy_config({"kind": kind, **({"group": False} if kind == "optuna" else {})}),
        "child": Architecture(encoder=encoder),
        "trainer": ChildTrainerConfig(time_limit_s=120),
        "encoders": {},
        "examples": {"trec": {"train": 300, "validation": 300, "test": 300}, "langid-tatoeba": {"train": 300}},
        "transfer": {"from": "outputs/pretrain/controller.pt", "init": "random", "freeze_body": False},
    }


def variants(parts: dict[str, Any], path: list[str]) -> Iterator[Any]:
    """Values of the ``resume.signature`` argument that holds setting ``path``, each with only that setting changed."""
    argument, inner = path[0], path[1:]
    if argument == "space":
        return iter([SearchSpace.from_config({"decisions": [{"name": "hidden_layers", "choices": [1, 0]}]})])
    if argument == "tasks":
        return iter([[*parts["tasks"], "sst2"]])
    if argument == "encoders":
        return changed(encoder_resume_settings(parts["encoders"]), inner)
    if path == ["strategy", "kind"]:  # another strategy of the same config class
        kind, cls = parts["strategy"].kind, type(parts["strategy"])
        return (
            dataclasses.replace(parts["strategy"], kind=k)
            for k, s in STRATEGIES.items()
            if s.Config is cls and k != kind
        )
    return changed(parts[argument], inner) if inner else alternatives(parts[argument])


def refused_key(run_dir: Path, parts: dict[str, Any]) -> str:
    """The setting a resume with ``parts`` is refused over, by the check a resumed ``Search`` runs."""
    with pytest.raises(ValueError, match="cannot resume") as refusal:
        resume.Checkpoint(run_dir, resume.signature(**parts)).load(TrialLog(run_dir))
    return str(refusal.value).split(": its ", 1)[1].split(" is ", 1)[0]


@pytest.mark.parametrize("kind", list(STRATEGIES))
@pytest.mark.parametrize("encoder", ["minilm-tokens", "minilm"])  # between them every child field can change
def test_a_resume_that_changes_any_shared_setting_is_refused_naming_it(kind, encoder, tmp_path) -> None:
    parts = base_parts(kind, encoder)
    signature = resume.signature(**parts)
    resume.Checkpoint(tmp_path, signature).save({})
    assert resume.Checkpoint(tmp_path, signature).load(TrialLog(tmp_path)) is not None  # the same search resumes
    unchanged = []
    for path in leaves(signature):
        variant = next(variants(parts, path), None)
        if variant is None:
            unchanged.append(".".join(path))
            continue
        assert refused_key(tmp_path, {**parts, path[0]: variant}) == ".".join(path)
    # Only what this encoder cannot build (the other encoder's run changes it) has no valid change,
    # and the kind of a strategy whose config no other strategy shares.
    cannot = {"child.fine_tune", "child.fine_tune_layers", "child.conv_filters", "child.pooling", "strategy.kind"}
    assert set(unchanged) <= cannot, unchanged


def test_a_cap_on_examples_that_changes_a_split_is_refused_through_its_effect(tmp_path) -> None:
    parts = base_parts("ppo", "words")
    resume.Checkpoint(tmp_path, resume.signature(**parts)).save({})
    smaller = {**parts["examples"], "trec": {**parts["examples"]["trec"], "train": 200}}
    assert refused_key(tmp_path, {**parts, "examples": smaller}) == "examples.trec.train"
    assert refused_key(tmp_path, {**parts, "transfer": None}) == "transfer"


def test_every_setting_is_in_the_signature_unless_declared_free_with_a_reason() -> None:
    for cls, expected in FREE.items():
        free = free_fields(cls)
        assert set(free) == expected, cls
        assert all(len(reason) > 10 for reason in free.values()), free
    for cls in STRATEGIES.values():
        assert free_fields(cls.Config) == {}, cls.Config
    parts = base_parts("ppo", "words")
    signature = resume.signature(**parts)
    for section, cls in (("search", SearchConfig), ("trainer", ChildTrainerConfig), ("child", Architecture)):
        fields = {field.name for field in dataclasses.fields(cls)}
        assert set(signature[section]) == fields - FREE[cls], section
    # A pruner's own settings mean nothing without one, so they are shared only when it is on.
    off = resume.signature(**{**parts, "search": SearchConfig()})["search"]
    assert set(signature["search"]) - set(off) == {
        "pruner_startup_trials",
        "pruner_warmup_epochs",
        "pruner_min_epochs",
        "pruner_reduction_factor",
        "pruned_reward",
    }
    assert "progress" not in signature["encoders"]["minilm"]  # an encoder's free option
    # REINFORCE shares PPO's config but reads none of its PPO settings.
    reinforce = resume.signature(**base_parts("reinforce", "words"))["strategy"]["policy"]
    assert {"ppo_clip", "ppo_epochs", "minibatch_size", "bank_capacity"}.isdisjoint(reinforce)
    assert {"ppo_clip", "ppo_epochs", "minibatch_size", "bank_capacity"} <= set(signature["strategy"]["policy"])


def test_every_section_of_a_composed_search_is_a_signature_source_or_free() -> None:
    for overrides in ((), ("experiment=transfer_study",)):
        keys = set(compose_config(*overrides))
        assert keys <= set(resume.SOURCES) | set(resume.FREE_SECTIONS), keys - set(resume.SOURCES)


# The free settings, each changed when a half-done search resumes, and its value then. Not
# here: trainer.accelerator, the deliberate exception (a GPU changes the numerics), and
# search.max_examples, whose effect is checked (test_train_py_checks_an_example_cap_by_its_effect).
FREE_CHANGES = {
    "search.progress": ("search", {"progress": True}),
    "trainer.progress_bar": ("trainer", {"progress_bar": True}),
    "encoders.minilm.progress": ("encoders", {"minilm": {"progress": False}}),
}


def half_then_resumed(job: SearchJob, run_dir: Path, later: SearchJob) -> list[dict]:
    """``job`` for half its trials in ``run_dir``, then ``later`` resuming it to the full budget."""
    dataclasses.replace(job, search=dataclasses.replace(job.search, trials=job.search.trials // 2)).build(run_dir).run()
    later.build(run_dir).run()
    return comparable(read_trials(run_dir))


def test_a_resume_that_changes_only_free_settings_records_the_trials_it_would_have(data_dir, tmp_path) -> None:
    # The device and the precision change the numerics, not the method: free, but not the same trials.
    assert set(FREE_CHANGES) | {"search.max_examples", "trainer.accelerator", "trainer.precision"} >= {
        f"{section}.{name}"
        for section, cls in (("search", SearchConfig), ("trainer", ChildTrainerConfig))
        for name in FREE[cls] - {"trials"}
    }
    job = tiny_job(data_dir, tmp_path / "cache", trials=8)
    job.build(tmp_path / "reference").run()
    reference = comparable(read_trials(tmp_path / "reference"))
    for name, (section, change) in FREE_CHANGES.items():
        value = getattr(job, section)
        later = {**value, **change} if isinstance(value, dict) else dataclasses.replace(value, **change)
        assert half_then_resumed(job, tmp_path / name, dataclasses.replace(job, **{section: later})) == reference


@pytest.mark.parametrize(("kind", "pruner"), [("ppo", "none"), ("reinforce", "asha")])
def test_a_run_dir_from_before_the_derived_signature_resumes_to_the_same_trials(kind, pruner, data_dir, tmp_path):
    """Its flat signature lacked failure_reward, reuse_rewards, the encoders and transfer; REINFORCE's
    held only the policy fields it reads; its search reused a repeat's result; and it had no elite term."""
    job = tiny_job(
        data_dir, tmp_path / "cache", kind=kind, trials=8, pruner=pruner, pruner_startup_trials=2, repeats="reuse"
    )
    job = dataclasses.replace(job, strategy=strategy_config({"kind": kind, "policy": {"elite_weight": 0.0}}))
    job.build(tmp_path / "reference").run()
    half = dataclasses.replace(job, search=dataclasses.replace(job.search, trials=4))
    half.build(tmp_path / "flat").run()
    state = load_checkpoint(tmp_path / "flat")
    save_checkpoint(tmp_path / "flat", {**state, "signature": flat_signature(state["signature"])})
    job.build(tmp_path / "flat").run()
    assert comparable(read_trials(tmp_path / "flat")) == comparable(read_trials(tmp_path / "reference"))


def test_settings_an_old_signature_lacks_are_what_its_run_recorded(tmp_path) -> None:
    """A setting the flat signature did not hold is compared with the run's own config.yaml, or else
    with what it meant then; a run that recorded none cannot have changed it unnoticed since."""
    parts = {
        **base_parts("ppo", "words"),
        "transfer": None,
        "search": SearchConfig(failure_reward=0.5, repeats="reuse"),
    }
    resume.Checkpoint(tmp_path, flat_signature(resume.signature(**parts))).save({})
    log = TrialLog(tmp_path)
    with pytest.raises(ValueError, match=r"its search.failure_reward is 0.0, this run's is 0.5"):
        resume.Checkpoint(tmp_path, resume.signature(**parts)).load(log)
    RunDir(tmp_path).config.write_text("search:\n  failure_reward: 0.5\n")
    assert resume.Checkpoint(tmp_path, resume.signature(**parts)).load(log) is not None
    other = {**parts, "search": SearchConfig(failure_reward=0.0, repeats="reuse")}
    with pytest.raises(ValueError, match=r"its search.failure_reward is 0.5, this run's is 0.0"):
        resume.Checkpoint(tmp_path, resume.signature(**other)).load(log)


def flat_signature(derived: dict[str, Any]) -> dict[str, Any]:
    """The signature mnms wrote before it was derived (``resume_signature`` at 03bb710)."""
    search, strategy = derived["search"], dict(derived["strategy"])
    if strategy["kind"] == "reinforce":  # it recorded the policy fields its update reads
        read = ("learning_rate", "embedding_learning_rate", "entropy_weight", "baseline_decay", "advantage")
        strategy["policy"] = {key: strategy["policy"][key] for key in (*read, "max_grad_norm")}
    pruning = {key: value for key, value in search.items() if key.startswith("prune")}
    return {
        "tasks": derived["tasks"],
        "seed": derived["seed"],
        "space": derived["space"],
        "strategy": strategy,
        "batch_size": search["batch_size"],
        "task_schedule": search["task_schedule"],
        "reward": search["reward"],
        "mode": search["mode"],
        "pruning": pruning,
        "child": derived["child"],
        "trainer": {**derived["trainer"], "progress_bar": False},
        "examples": derived["examples"],
        **({"transfer": derived["transfer"]} if derived["transfer"] else {}),
    }


@pytest.mark.parametrize(
    ("override", "key"),
    [("search.failure_reward=0.5", "search.failure_reward"), ("search.reuse_rewards=false", "search.reuse_rewards")],
)
def test_train_py_refuses_a_resume_that_changes_how_trials_are_scored_or_shared(
    override, key, session_cache_dir, tmp_path
) -> None:
    common = ("tasks=[trec]", "search.trials=4")
    tiny_run(tmp_path / "run", session_cache_dir, *common)
    with pytest.raises(ValueError, match=rf"cannot resume .* its {key} is .*; a resumed search keeps every setting"):
        tiny_run(tmp_path / "ignored", session_cache_dir, *common, override, f"resume={tmp_path / 'run'}")
    # Only the budget changes: the search extends.
    tiny_run(tmp_path / "ignored", session_cache_dir, "tasks=[trec]", "search.trials=8", f"resume={tmp_path / 'run'}")
    assert [row.trial for row in read_trials(tmp_path / "run")] == list(range(8))


def test_train_py_checks_an_example_cap_by_its_effect(session_cache_dir, tmp_path) -> None:
    """search.max_examples is free, its effect (each task's split sizes) is not: a cap above every
    split of is-spanish (1600/200/200 examples) changes nothing, one below refuses the resume."""
    common = ("tasks=[is-spanish]", "max_examples=null", "search.trials=4")
    run_dir = tmp_path / "run"
    tiny_run(run_dir, session_cache_dir, *common, "search.max_examples=5000")
    with pytest.raises(ValueError, match=r"its examples.is-spanish.train is 1600, this run's is 100"):
        tiny_run(tmp_path / "ignored", session_cache_dir, *common, "search.max_examples=100", f"resume={run_dir}")
    tiny_run(tmp_path / "ignored", session_cache_dir, *common[:2], "search.trials=8", f"resume={run_dir}")
    assert [row.trial for row in read_trials(run_dir)] == list(range(8))
