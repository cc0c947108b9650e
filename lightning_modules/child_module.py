"""The child classifier: the wide & deep model of Wong et al. (NeurIPS 2018), built from an Architecture.

Deep tower: the encoder's input layer, then (for token-level inputs) an optional
Kim-style convolution and a pooling over positions, then the MLP. Wide tower: a sparse
linear model over hashed n-grams. The logits of the two are added; each tower has its
own learning rate and weight decay (``configure_optimizers``).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn.functional import pad
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from mnms.child.arch import Architecture
from mnms.data.encoders.bags import bag_weights, pool

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


def masked_pool(h: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool [B, L, D] over the positions ``mask`` [B, L] marks real: mean, sqrt-n or max.
    A text without a single known token pools to zeros."""
    if pooling == "max":
        pooled = h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        return torch.where(mask.any(dim=1, keepdim=True), pooled, torch.zeros_like(pooled))
    weights = mask.unsqueeze(-1).to(h.dtype)
    count = weights.sum(dim=1).clamp(min=1.0)
    return (h * weights).sum(dim=1) / (count if pooling == "mean" else count.sqrt())


class TokenPooling(nn.Module):
    """(token vectors [B, L, D], mask) -> optional convolution -> pooling -> [B, out_dim].

    The convolution is Kim (2014)'s: parallel filters of every width 1..``conv_max_width``,
    ``conv_filters`` of each, over the token sequence, padded so that each output position
    is a token and the mask still applies. Its batch norm acts on the pooled features,
    whose statistics padding cannot reach (positions past a text's end would enter a
    per-position norm's), then dropout.
    """

    def __init__(self, arch: Architecture, dim: int) -> None:
        super().__init__()
        self.pooling = arch.pooling
        self.convs = nn.ModuleList()
        self.out_dim = dim
        if arch.conv_filters:
            widths = range(1, arch.conv_max_width + 1)
            self.convs.extend(nn.Conv1d(dim, arch.conv_filters, w) for w in widths)
            self.out_dim = arch.conv_filters * len(widths)
            self.activation = _ACTIVATIONS[arch.conv_activation]()
            norm = [nn.BatchNorm1d(self.out_dim)] if arch.conv_batch_norm else []
            self.after_pooling = nn.Sequential(*norm, nn.Dropout(arch.conv_dropout))

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        h, mask = inputs
        if self.convs:
            channels = h.transpose(1, 2)  # [B, D, L]
            # Width w sees (w-1)//2 tokens before and w//2 after: the output keeps length L.
            outputs = [c(pad(channels, ((c.kernel_size[0] - 1) // 2, c.kernel_size[0] // 2))) for c in self.convs]
            h = self.activation(torch.cat(outputs, dim=1)).transpose(1, 2)
            return self.after_pooling(masked_pool(h, mask, self.pooling))
        return masked_pool(h, mask, self.pooling)


class WideTower(nn.Module):
    """A linear model over hashed n-gram ids ``batch["wide_ids"]`` (sqrt-n weighted, so long
    texts do not get large logits). Starts at zero: at first the deep tower decides alone."""

    def __init__(self, rows: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(rows, num_classes))

    def forward(self, batch: Batch) -> torch.Tensor:
        ids = batch["wide_ids"]
        return pool(ids, bag_weights(ids, "sqrtn"), self.weight)


def _metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes, average="micro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
        },
        prefix=prefix,
    )


class ChildClassifier(pl.LightningModule):
    """A text classifier over encoded inputs; logs ``val/*`` and ``test/*`` accuracy and macro-F1.

    ``token_level``: the input layer returns (token vectors, mask), pooled by a
    :class:`TokenPooling`. ``wide_rows``: rows of the wide tower's table (0 = no wide tower).
    """

    def __init__(
        self,
        arch: Architecture,
        input_layer: nn.Module,
        input_dim: int,
        num_classes: int,
        *,
        token_level: bool = False,
        wide_rows: int = 0,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.input_layer = input_layer
        self.token_pooling = TokenPooling(arch, input_dim) if token_level else None
        if self.token_pooling is not None:
            input_dim = self.token_pooling.out_dim
        self.mlp = build_mlp(arch, input_dim, num_classes)
        self.wide = WideTower(wide_rows, num_classes) if wide_rows else None
        self.val_metrics = _metrics(num_classes, "val/")
        self.test_metrics = _metrics(num_classes, "test/")
        # The update is three lines; on children this small, Lightning's automatic
        # closure and per-step logging cost more than the step (docs/benchmarks.md).
        self.automatic_optimization = False

    def forward(self, batch: Batch) -> torch.Tensor:
        deep = self.input_layer(batch)
        if self.token_pooling is not None:
            deep = self.token_pooling(deep)
        logits = self.mlp(deep)
        return logits if self.wide is None else logits + self.wide(batch)

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
        """One optimiser, one parameter group per tower: the paper gives each tower its own
        learning rate and regularisation. Frozen parameters are left out."""
        arch = self.arch
        wide = set() if self.wide is None else {id(p) for p in self.wide.parameters()}
        deep = [p for p in self.parameters() if p.requires_grad and id(p) not in wide]
        groups = [{"params": deep, "lr": arch.learning_rate, "weight_decay": arch.weight_decay}]
        if self.wide is not None:
            groups.append({"params": [self.wide.weight], "lr": arch.wide_learning_rate, "weight_decay": arch.wide_l2})
        return _OPTIMIZERS[arch.optimizer](groups, arch.learning_rate, arch.weight_decay)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
