"""Lightning pieces of a child: the classifier module and the in-memory data module."""

from lightning_modules.child_module import ChildClassifier
from lightning_modules.datamodule import InMemoryBatches, TaskDataModule

__all__ = ["ChildClassifier", "InMemoryBatches", "TaskDataModule"]
