"""A child's compute in FLOPs: a cost that is the same on every machine, every run and every resume.

Training seconds say what a child cost on one machine under one load; a search whose
reward reads them is not reproducible. FLOPs are counted instead, by torch's
``FlopCounterMode``, on one forward pass of the child's model over the first
``PROBE_EXAMPLES`` training examples (in file order, evaluation mode), plus the bag
lookups it has no formula for (a sparse-times-dense product: 2 FLOPs per non-zero per
output column). Training an example is taken as three forwards (the backward pass costs
about twice the forward, as in Kaplan et al.'s 6N per token), validating it as one.

What is not counted: attention's own products (at 40 tokens about 2% of a MiniLM
layer's linear FLOPs), element-wise work, and features an encoder computed once for
the feature cache (a frozen encoder's forward, shared by every child of the task).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

PROBE_EXAMPLES = 64
TRAIN_FORWARDS = 3  # forward + backward, in forwards


def _sparse_addmm_flops(
    bias: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor, *args: Any, **kwargs: Any
) -> int:
    """A bag's weighted sum of table rows: a multiply and an add per non-zero weight per column."""
    return 2 * sparse._nnz() * dense.shape[1]


_sparse_addmm_flops._get_raw = True  # FlopCounterMode passes the tensors, not their shapes
_EXTRA = {torch.ops.aten._sparse_addmm: _sparse_addmm_flops}


def forward_flops_per_example(module: torch.nn.Module, train: Mapping[str, torch.Tensor]) -> float:
    """FLOPs of one forward pass per example, on the first ``PROBE_EXAMPLES`` of ``train``.

    Evaluation mode under ``inference_mode``: no dropout draws from the RNG and no batch
    norm statistic moves, so probing changes nothing the child does afterwards.
    """
    size = next(iter(train.values())).shape[0]
    probe = {name: tensor[:PROBE_EXAMPLES] for name, tensor in train.items() if name != "label"}
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=_EXTRA) as counter:
            module(probe)
    finally:
        module.train(was_training)
    return counter.get_total_flops() / min(size, PROBE_EXAMPLES)


def examples_trained(steps: int, examples: int, batch_size: int, batches_per_epoch: int) -> int:
    """Training examples ``steps`` optimiser steps went through: whole epochs, then full batches."""
    epochs, rest = divmod(steps, batches_per_epoch)
    per_epoch = min(examples, batches_per_epoch * batch_size)  # a trailing batch of one is dropped
    return epochs * per_epoch + rest * batch_size


def child_flops(per_example: float, trained: int, validated: int) -> float:
    """The FLOPs a child's training and validation computed."""
    return per_example * (TRAIN_FORWARDS * trained + validated)


def gflops(metrics: Mapping[str, Any]) -> str:
    """A child's counted compute (its metrics' ``flops``) in GFLOPs for a table; ``-`` for a record
    from before children counted it."""
    flops = metrics.get("flops")
    return "-" if not flops else f"{flops / 1e9:,.3g}"
