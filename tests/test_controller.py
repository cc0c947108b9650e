"""The controller samples from the distribution it scores, skips inactive decisions, and keeps tasks apart."""

from __future__ import annotations

import io
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mnms.search.controller import Controller, ControllerConfig
from mnms.search.space import SearchSpace
from mnms.search.task_embedding import TaskEmbedding
from mnms.utils.config import from_config

CONF = Path(__file__).resolve().parents[1] / "conf" / "search_space"
SMALL = SearchSpace.from_config(OmegaConf.load(CONF / "small.yaml"))
DEFAULT = SearchSpace.from_config(OmegaConf.load(CONF / "default.yaml"))


def key(arch: dict) -> tuple:
    return tuple(sorted(arch.items()))


def all_archs(space: SearchSpace) -> list[dict]:
    """Every architecture of a small space, grown decision by decision."""
    archs = [{}]
    for decision in space.decisions:
        archs = [
            {**a, decision.name: c} if decision.active(a) else a
            for a in archs
            for c in (decision.choices if decision.active(a) else [None])
        ]
    return archs


def skewed_controller(space: SearchSpace, tasks=("a", "b"), seed: int = 0) -> Controller:
    """A controller with large random weights, so its policy is far from uniform."""
    torch.manual_seed(seed)
    controller = Controller(space, list(tasks), ControllerConfig(tanh_clip=None))
    with torch.no_grad():
        for p in controller.parameters():
            p.normal_(0.0, 0.7)
    return controller


def test_config_validation():
    assert from_config(ControllerConfig, {"hidden_size": 16}).hidden_size == 16
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['strategy.controller.hidden'\]"):
        from_config(ControllerConfig, {"hidden": 16})
    for bad in ({"hidden_size": 0}, {"temperature": 0.0}, {"tanh_clip": -1.0}, {"task_embedding_size": 2.5}):
        with pytest.raises(ValueError):
            ControllerConfig(**bad)


def test_log_probs_form_a_distribution_and_match_sampling_frequencies():
    controller = skewed_controller(SMALL)
    archs = all_archs(SMALL)
    assert len(archs) == SMALL.size()
    with torch.no_grad():
        log_prob, entropy = controller.log_prob_and_entropy("a", archs)
    probs = log_prob.exp()
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)  # inactive decisions add nothing
    assert (entropy > 0).all()

    n = 20_000
    samples = controller.sample("a", n, torch.Generator().manual_seed(1))
    assert all(SMALL.is_valid(a) for a in samples)
    counts = Counter(key(a) for a in samples)
    for arch, p in zip(archs, probs.tolist()):
        tolerance = 5 * math.sqrt(p * (1 - p) / n) + 1e-3
        assert counts[key(arch)] / n == pytest.approx(p, abs=tolerance), arch


def test_inactive_decisions_are_skipped_entirely():
    """With hidden_layers=0, width_1's head and embedding must not influence anything."""
    controller = skewed_controller(SMALL)
    shallow = [a for a in all_archs(SMALL) if a["hidden_layers"] == 0]
    deep = [a for a in all_archs(SMALL) if a["hidden_layers"] == 1]
    with torch.no_grad():
        before_shallow, _ = controller.log_prob_and_entropy("a", shallow)
        before_deep, _ = controller.log_prob_and_entropy("a", deep)
        i = SMALL.names.index("width_1")
        controller.choice_embeddings[i].weight.add_(1.0)  # learning_rate reads this after width_1
        after_shallow, _ = controller.log_prob_and_entropy("a", shallow)
        after_deep, _ = controller.log_prob_and_entropy("a", deep)
    assert torch.equal(before_shallow, after_shallow)
    assert not torch.allclose(before_deep, after_deep)


def test_log_prob_is_differentiable_and_batches_mixed_tasks():
    controller = skewed_controller(SMALL)
    archs = all_archs(SMALL)[:5]
    log_prob, entropy = controller.log_prob_and_entropy(["a", "b", "a", "b", "a"], archs)
    (log_prob.sum() + entropy.sum()).backward()
    assert controller.task_embedding.weight.grad.abs().sum(dim=1).gt(0).all()
    only_b, _ = controller.log_prob_and_entropy("b", archs)
    assert torch.allclose(log_prob[1::2], only_b[1::2])
    with pytest.raises(ValueError, match="not an architecture"):
        controller.log_prob_and_entropy("a", [{"encoder": "words"}])


def test_sampling_respects_conditions_on_the_default_space():
    controller = skewed_controller(DEFAULT)
    samples = controller.sample("b", 500, torch.Generator().manual_seed(0))
    assert all(DEFAULT.is_valid(a) for a in samples)
    assert any("width_3" in a for a in samples) and any("width_1" not in a for a in samples)
    assert all(("fine_tune" in a) == (a["encoder"] in ("minilm-tokens", "fr-vectors")) for a in samples)
    assert all(("pooling" in a) == (a["encoder"] != "minilm") for a in samples)


def test_sampling_is_determined_by_the_generator_alone():
    controller = skewed_controller(DEFAULT)
    first = controller.sample("a", 8, torch.Generator().manual_seed(3))
    torch.manual_seed(123)  # the global RNG plays no part
    assert controller.sample("a", 8, torch.Generator().manual_seed(3)) == first
    assert controller.sample("a", 8, torch.Generator().manual_seed(4)) != first


def test_greedy_takes_the_most_likely_choice_at_every_step():
    controller = skewed_controller(SMALL)
    archs = all_archs(SMALL)
    with torch.no_grad():
        probs = controller.log_prob_and_entropy("b", archs)[0].exp()
    # P(choice | prefix) is the total probability of the architectures extending prefix + choice.
    prefix: dict = {}
    for decision in SMALL.decisions:
        if not decision.active(prefix):
            continue
        mass = {
            c: sum(p for a, p in zip(archs, probs.tolist()) if a.items() >= {**prefix, decision.name: c}.items())
            for c in decision.choices
        }
        prefix[decision.name] = max(mass, key=mass.get)
    assert controller.greedy("b") == prefix


def test_choice_probabilities_match_exact_conditional_marginals():
    controller = skewed_controller(SMALL)
    archs = all_archs(SMALL)
    with torch.no_grad():
        probs = controller.log_prob_and_entropy("a", archs)[0].exp().tolist()
    table = controller.choice_probabilities("a", n_samples=4000)
    assert table == controller.choice_probabilities("a", n_samples=4000)  # fixed seed by default
    for decision in SMALL.decisions:
        active_mass = sum(p for a, p in zip(archs, probs) if decision.name in a)
        for choice in decision.choices:
            exact = sum(p for a, p in zip(archs, probs) if a.get(decision.name, None) == choice) / active_mass
            assert table[decision.name][str(choice)] == pytest.approx(exact, abs=0.02)
        assert sum(table[decision.name].values()) == pytest.approx(1.0, abs=1e-5)


def test_state_dict_round_trip_and_space_guard():
    controller = skewed_controller(DEFAULT)
    buffer = io.BytesIO()
    torch.save(controller.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = Controller(DEFAULT, ["a", "b"], ControllerConfig(tanh_clip=None))
    fresh.load_state_dict(state)
    assert fresh.greedy("a") == controller.greedy("a")
    controller_state = Controller(SMALL, ["a", "b"]).state_dict()
    # Same shapes, different condition: only the signature tells the spaces apart.
    config = SMALL.to_config()
    config["decisions"][2]["when"] = {"hidden_layers": [0]}
    with pytest.raises(ValueError, match="search space"):
        Controller(SearchSpace.from_config(config), ["a", "b"]).load_state_dict(controller_state)


def test_task_embedding_add_task_and_round_trip():
    table = TaskEmbedding(["a", "b"], 4, generator=torch.Generator().manual_seed(0))
    table.add_task("c", init="mean")
    table.add_task("d", init="a")
    table.add_task("e", generator=torch.Generator().manual_seed(1))
    w = table.weight.detach()
    assert table.names == ["a", "b", "c", "d", "e"]
    assert torch.allclose(w[2], w[:2].mean(dim=0)) and torch.equal(w[3], w[0])
    assert table(["d", "a"]).shape == (2, 4)
    with pytest.raises(KeyError, match="unknown task 'z'"):
        table(["z"])
    with pytest.raises(ValueError):
        table.add_task("a")
    with pytest.raises(ValueError):
        table.add_task("f", init="nope")

    copy = TaskEmbedding(["a", "b", "c", "d", "e"], 4)
    copy.load_state_dict(table.state_dict())
    assert torch.equal(copy.weight, table.weight)
    with pytest.raises(ValueError, match="saved for tasks"):
        TaskEmbedding(["b", "a", "c", "d", "e"], 4).load_state_dict(table.state_dict())
