"""The child classifier: an encoder's input layer, an MLP built from an Architecture, a softmax."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from mnms.child.arch import Architecture

Batch = dict[str, torch.Tensor]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}
# SGD without momentum barely moves in a few epochs; momentum makes it a fair choice.
# fused=True: one pass over each parameter instead of several. A child's update of a
# from-scratch embedding table is memory-bound, and the fused kernel makes such a child's
# steps much cheaper, with less contention between children trained side by side
# (docs/benchmarks.md, "Lightning overhead on a child"). RMSprop has no fused kernel.
_OPTIMIZERS = {
    "adam": lambda params, lr, wd: torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=True),
    "adamw": lambda params, lr, wd: torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=True),
    "sgd": lambda params, lr, wd: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd, fused=True),
    "rmsprop": lambda params, lr, wd: torch.optim.RMSprop(params, lr=lr, weight_decay=wd),
    "adagrad": lambda params, lr, wd: torch.optim.Adagrad(params, lr=lr, weight_decay=wd, fused=True),
}


def _normalisation(kind: str, width: int) -> list[nn.Module]:
    if kind == "batch":
        return [nn.BatchNorm1d(width)]
    if kind == "layer":
        return [nn.LayerNorm(width)]
    return []


def build_mlp(arch: Architecture, input_dim: int, num_classes: int) -> nn.Sequential:
    """Hidden blocks (linear, normalisation, activation, dropout) then the output layer."""
    layers: list[nn.Module] = []
    width_in = input_dim
    for width in arch.widths:
        layers += [nn.Linear(width_in, width), *_normalisation(arch.normalisation, width)]
        layers += [_ACTIVATIONS[arch.activation](), nn.Dropout(arch.dropout)]
        width_in = width
    if not arch.widths:
        layers.append(nn.Dropout(arch.dropout))
    layers.append(nn.Linear(width_in, num_classes))
    return nn.Sequential(*layers)


def _metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes, average="micro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
        },
        prefix=prefix,
    )


class ChildClassifier(pl.LightningModule):
    """A text classifier over encoded inputs; logs ``val/*`` and ``test/*`` accuracy and macro-F1."""

    def __init__(self, arch: Architecture, input_layer: nn.Module, input_dim: int, num_classes: int) -> None:
        super().__init__()
        self.arch = arch
        self.input_layer = input_layer
        self.mlp = build_mlp(arch, input_dim, num_classes)
        self.val_metrics = _metrics(num_classes, "val/")
        self.test_metrics = _metrics(num_classes, "test/")
        # The update is three lines; on children this small, Lightning's automatic
        # closure and per-step logging cost more than the step (docs/benchmarks.md).
        self.automatic_optimization = False

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.mlp(self.input_layer(batch))

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        loss = nn.functional.cross_entropy(self(batch), batch["label"])
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        return loss.detach()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics)

    def _evaluate(self, batch: Batch, metrics: MetricCollection) -> None:
        metrics.update(self(batch).argmax(dim=-1), batch["label"])
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=len(batch["label"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        make = _OPTIMIZERS[self.arch.optimizer]
        return make(self.parameters(), self.arch.learning_rate, self.arch.weight_decay)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
