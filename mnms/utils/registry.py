"""``Registry``: the shape of the extension points whose classes carry a config section (strategies, executors).

A registry maps a name to a class and is the one place that name is written: it is the
class's ``name``, and the ``kind`` its config section carries (the Hydra schema fills
``kind`` in, ``mnms.app.schemas``). Each class names the dataclass of its section as
``Config``; ``config`` turns a section into that dataclass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from mnms.utils.config import ConfigError, from_config, plain

T = TypeVar("T")


class Registry(Mapping[str, type[T]], Generic[T]):
    """``kind -> class`` for the config section ``section``; an unknown kind is an error that lists the known ones."""

    def __init__(self, section: str, classes: Mapping[str, type[T]]) -> None:
        self.section = section
        self._classes = dict(classes)
        for name, cls in self._classes.items():
            if getattr(cls, "name", name) != name:
                raise ValueError(f"{cls.__name__} is registered as {name!r} but already named {cls.name!r}")
            cls.name = name  # type: ignore[attr-defined]

    def __getitem__(self, kind: Any) -> type[T]:
        if kind not in self._classes:
            raise ConfigError(f"{self.section}.kind={kind!r} is unknown; valid kinds are {list(self._classes)}")
        return self._classes[kind]

    def __contains__(self, kind: object) -> bool:
        return kind in self._classes

    def get(self, kind: Any, default: Any = None) -> Any:
        return self._classes.get(kind, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def config(self, values: Any) -> Any:
        """The validated config of a ``section`` node: its ``kind`` picks the class, and so the dataclass."""
        values = plain(values)
        if not isinstance(values, Mapping):
            raise ConfigError(f"{self.section} must be a mapping with a kind, got {values!r}")
        return from_config(self[values.get("kind")].Config, values, self.section)  # type: ignore[attr-defined]
