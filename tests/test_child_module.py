"""The child LightningModule and the in-memory batches, on small synthetic tensors."""

import itertools

import pytest
import torch
from torch import nn

from lightning_modules.child_module import ChildClassifier
from lightning_modules.datamodule import InMemoryBatches, TaskDataModule
from mnms.child.arch import ACTIVATIONS, NORMALISATIONS, OPTIMIZERS, Architecture


class Dense(nn.Module):
    def forward(self, batch):
        return batch["x"]


@pytest.mark.parametrize(("hidden", "norm"), list(itertools.product([0, 1, 3], NORMALISATIONS)))
def test_mlp_shapes(hidden: int, norm: str) -> None:
    arch = Architecture(hidden_layers=hidden, normalisation=norm, width_1=16, width_2=8, width_3=4)
    model = ChildClassifier(arch, Dense(), input_dim=12, num_classes=5)
    logits = model({"x": torch.randn(7, 12)})
    assert logits.shape == (7, 5)
    linears = [m for m in model.mlp if isinstance(m, nn.Linear)]
    assert [lin.out_features for lin in linears] == [*arch.widths, 5]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_optimizer_and_activation_trains_a_step(optimizer: str, activation: str) -> None:
    arch = Architecture(optimizer=optimizer, activation=activation, width_1=8)
    model = ChildClassifier(arch, Dense(), input_dim=4, num_classes=3)
    opt = model.configure_optimizers()
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model({"x": torch.randn(6, 4)}), torch.tensor([0, 1, 2, 0, 1, 2]))
    loss.backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_batches_cover_every_example_once_and_drop_a_trailing_single() -> None:
    x = torch.arange(21).unsqueeze(1)
    shuffled = InMemoryBatches({"x": x}, 4, shuffle=True, generator=torch.Generator().manual_seed(0))
    seen = torch.cat([b["x"] for b in shuffled]).flatten().tolist()
    assert len(shuffled) == 5 and len(seen) == 20 and len(set(seen)) == 20  # 21 = 5*4 + 1 dropped
    ordered = InMemoryBatches({"x": x}, 4)
    assert len(ordered) == 6
    assert torch.cat([b["x"] for b in ordered]).flatten().tolist() == list(range(21))


def test_shuffle_order_is_reproducible_per_seed() -> None:
    def order(seed: int) -> list[int]:
        data = TaskDataModule(
            {"train": {"x": torch.arange(50).unsqueeze(1)}},
            {"train": torch.zeros(50, dtype=torch.long)},
            batch_size=8,
            seed=seed,
        )
        return torch.cat([b["x"] for b in data.train_dataloader()]).flatten().tolist()

    assert order(1) == order(1)
    assert order(1) != order(2)


def test_mismatched_tensor_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="disagree"):
        InMemoryBatches({"x": torch.zeros(3, 2), "label": torch.zeros(4)}, 2)
