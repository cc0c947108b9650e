"""One learned vector per task: how a single controller designs a different model per task.

The controller feeds the task's vector at every step, so the task embedding is the
only thing that tells tasks apart; it is trained by the same policy gradient as
the rest of the controller.  New tasks can be added later for transfer, starting
from a random vector, the mean of the known tasks, or a copy of one known task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class TaskEmbedding(nn.Module):
    """A table of task vectors addressed by task name; the names travel in the state dict."""

    def __init__(self, task_names: Sequence[str], dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not task_names:
            raise ValueError("TaskEmbedding needs at least one task name")
        if len(set(task_names)) != len(task_names):
            raise ValueError(f"task names must be unique, got {list(task_names)}")
        self.names: list[str] = list(task_names)
        # Unit-variance vectors, like nn.Embedding: distinct tasks start clearly apart.
        self.weight = nn.Parameter(torch.randn(len(self.names), dim, generator=generator))

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

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
        return self.weight[rows]

    def add_task(self, name: str, init: str = "random", generator: torch.Generator | None = None) -> None:
        """Append a task, initialised ``"random"``, as the ``"mean"`` of known tasks, or as a copy of task ``init``.

        This replaces ``weight`` by a larger parameter, so build the optimiser afterwards.
        """
        if name in self.names:
            raise ValueError(f"task {name!r} already has an embedding")
        with torch.no_grad():
            if init == "random":
                row = torch.randn(self.dim, generator=generator)
            elif init == "mean":
                row = self.weight.mean(dim=0)
            elif init in self.names:
                row = self.weight[self.index(init)].clone()
            else:
                raise ValueError(f"init must be 'random', 'mean' or a known task {self.names}, got {init!r}")
            self.weight = nn.Parameter(torch.cat([self.weight, row[None]], dim=0))
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
