"""What drives a child's cost: the key under which executors learn wall times for slowest-first dispatch."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from mnms.child.arch import Architecture

_DEFAULTS = Architecture().to_dict()  # for the fields a caller leaves out


def cost_key(task: str, arch: Mapping[str, Any]) -> Hashable:
    """The fields that decide most of a child's wall time: its data, input layer and step count.

    ``arch`` is not validated (``Architecture(...)``): every proposal is keyed, and the
    child validates it where it trains.
    """
    arch = {**_DEFAULTS, **arch}
    return (
        task,
        arch["encoder"],
        arch["fine_tune"],
        arch["fine_tune_layers"],
        arch["conv_filters"] > 0,
        arch["wide"],
        arch["batch_size"],
    )
