"""One learned vector per task: how a single controller designs a different model per task.

The controller feeds the task's vector at every step, so the task embedding is the
only thing that tells tasks apart; it is trained by the same policy gradient as
the rest of the controller.  New tasks can be added later for transfer, starting
from a random vector, the mean of the known tasks, or a copy of one known task.

With descriptors (``mnms.data.descriptor``: a vector computed from a task's data), a
task's vector is ``projection(descriptor) + residual``: a learned linear map shared by
all tasks plus a per-task row that starts at zero. What pre-training teaches the
projection then carries to any task with a descriptor, and a new task added with
``init="descriptor"`` starts where tasks whose data look like its own are. A task added
with another init has no descriptor: its row is its whole vector, as without descriptors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

INITS = ("random", "mean", "descriptor")


class TaskEmbedding(nn.Module):
    """A table of task vectors addressed by task name; the names travel in the state dict.

    ``descriptors`` (name -> 1-D tensor, one per task, all the same size) turns on the
    descriptor projection; without it the rows are free vectors, as in the paper.
    """

    def __init__(
        self,
        task_names: Sequence[str],
        dim: int,
        generator: torch.Generator | None = None,
        descriptors: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not task_names:
            raise ValueError("TaskEmbedding needs at least one task name")
        if len(set(task_names)) != len(task_names):
            raise ValueError(f"task names must be unique, got {list(task_names)}")
        self.names: list[str] = list(task_names)
        self.projection: nn.Linear | None = None
        if descriptors is None:
            # Unit-variance vectors, like nn.Embedding: distinct tasks start clearly apart.
            self.weight = nn.Parameter(torch.randn(len(self.names), dim, generator=generator))
            return
        missing = [name for name in self.names if name not in descriptors]
        if missing:
            raise ValueError(f"no descriptor for tasks {missing}; a table with descriptors needs one per task")
        table = torch.stack([descriptors[name].float() for name in self.names])
        self.weight = nn.Parameter(torch.zeros(len(self.names), dim))  # the residuals: all start at the projection
        self.projection = nn.Linear(table.shape[1], dim)
        with torch.no_grad():  # about unit variance per output, like the free rows, for unit-length groups
            self.projection.weight.normal_(0.0, 1.0 / math.sqrt(_norm_squared(table)), generator=generator)
            self.projection.bias.zero_()
        self.register_buffer("descriptors", table)
        self.register_buffer("described", torch.ones(len(self.names), dtype=torch.bool))

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

    @property
    def has_descriptors(self) -> bool:
        return self.projection is not None

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(
                f"unknown task {name!r}; known tasks are {self.names} (use add_task for a new one)"
            ) from None

    def forward(self, names: Sequence[str]) -> torch.Tensor:
        """The vectors of ``names`` stacked as a ``[len(names), dim]`` tensor."""
        rows = torch.tensor([self.index(n) for n in names], dtype=torch.long)
        vectors = self.weight[rows]
        if self.projection is None:
            return vectors
        projected = self.projection(self.descriptors[rows])
        return vectors + torch.where(self.described[rows, None], projected, 0.0)

    def vectors(self) -> torch.Tensor:
        """Every task's vector, in ``names`` order (what a report or a similarity map shows)."""
        return self(self.names)

    def add_task(
        self,
        name: str,
        init: str = "random",
        generator: torch.Generator | None = None,
        descriptor: torch.Tensor | None = None,
    ) -> None:
        """Append a task: ``"random"``, the ``"mean"`` of known tasks' vectors, a copy of task ``init``'s vector,
        or (tables with descriptors) ``"descriptor"``: the projection of ``descriptor`` with a zero residual.

        This replaces ``weight`` by a larger parameter, so build the optimiser afterwards.
        """
        if name in self.names:
            raise ValueError(f"task {name!r} already has an embedding")
        if (init == "descriptor") != (descriptor is not None):
            raise ValueError("init='descriptor' and a descriptor go together")
        if init == "descriptor" and self.projection is None:
            raise ValueError("this task embedding was trained without descriptors, so it cannot project one")
        with torch.no_grad():
            if init == "random":
                row = torch.randn(self.dim, generator=generator)
            elif init == "mean":
                row = self.vectors().mean(dim=0)
            elif init == "descriptor":
                row = torch.zeros(self.dim)
            elif init in self.names:
                row = self([init])[0].clone()
            else:
                raise ValueError(f"init must be one of {list(INITS)} or a known task {self.names}, got {init!r}")
            self.weight = nn.Parameter(torch.cat([self.weight, row[None]], dim=0))
            if self.projection is not None:
                size = self.descriptors.shape[1]
                if descriptor is not None and descriptor.shape != (size,):
                    raise ValueError(f"descriptor of shape {tuple(descriptor.shape)}; this table projects ({size},)")
                new = descriptor.float() if descriptor is not None else torch.zeros(size)
                self.descriptors = torch.cat([self.descriptors, new[None]])
                self.described = torch.cat([self.described, torch.tensor([descriptor is not None])])
        self.names.append(name)

    # The task names are part of the state so a loaded table is addressed the same way.
    def get_extra_state(self) -> Any:
        return {"names": list(self.names)}

    def set_extra_state(self, state: Any) -> None:
        if list(state["names"]) != self.names:
            raise ValueError(
                f"task embedding was saved for tasks {list(state['names'])} but this one has {self.names}; "
                "build it with the saved task names (and add_task any new ones after loading)"
            )


def _norm_squared(table: torch.Tensor) -> float:
    """The mean squared length of the descriptors (at least a tiny positive number)."""
    return max(float(table.pow(2).sum(dim=1).mean()), 1e-12)
