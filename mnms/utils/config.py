"""Config values into validated dataclasses, converted once where they enter the code.

Every config class is a dataclass, and its field defaults are the only defaults: Hydra
composes the YAML files over the same dataclasses (structured configs registered by
``mnms.app.schemas``), so a typo or a wrongly typed override already fails there.
``from_config`` is the one way in for everything else -- a composed node, a saved file's
dict, a test's mapping: it turns the value into plain Python once, names an unknown or
missing key as ``section.key`` next to the valid keys, checks every value against its
field's type (nested dataclasses included) and then lets the class check its ranges
with ``check``. Every message names the key, the bad value and what would be valid.

A field that a resumed search may change is declared with ``free(default, why)``;
``resume_settings`` gives every other field, so a new setting is part of the resume
contract (``mnms.search.resume``) unless its author says why it need not be.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from omegaconf import OmegaConf

T = TypeVar("T")

FREE = "resume_free"  # dataclass field metadata: why a resumed search may change the setting


class ConfigError(ValueError):
    """A config value that cannot be used; the message names ``section.key``, the value and what is valid."""


def plain(value: Any) -> Any:
    """A plain-Python copy of a config value: OmegaConf nodes resolved, mappings as dicts, sequences as lists."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def dotted(section: str, key: str) -> str:
    """``section.key``; a key of the top level (section ``""``) alone."""
    return f"{section}.{key}" if section else key


def unknown_keys(keys: Iterable[str], valid: Iterable[str]) -> list[str]:
    """The keys of ``keys`` that are not in ``valid``, sorted."""
    return sorted(set(keys) - set(valid))


def reject_unknown(keys: Iterable[str], valid: Sequence[str], section: str) -> None:
    """Raise ``ConfigError`` naming every key of ``keys`` that is not in ``valid`` as ``section.key``."""
    if unknown := unknown_keys(keys, valid):
        names = [dotted(section, key) for key in unknown]
        raise ConfigError(f"unknown key(s) {names}; valid keys under {section} are {list(valid)}")


def from_config(cls: type[T], values: Any, section: str | None = None) -> T:
    """``cls`` built from ``values`` (a config node or mapping; None means all defaults).

    ``section`` is where the values come from (``search``, ``strategy.controller``), for
    messages; it defaults to ``cls.section``. Lists become tuples for tuple fields;
    nothing else is converted, so an integer stays an integer in a float field.
    """
    section = section if section is not None else getattr(cls, "section", cls.__name__)
    values = {} if values is None else plain(values)
    if not isinstance(values, Mapping):
        raise ConfigError(f"{section} must be a mapping of {cls.__name__} fields, got {values!r}")
    fields = _init_fields(cls)
    reject_unknown(values, list(fields), section)
    missing = [dotted(section, name) for name, field in fields.items() if _required(field) and name not in values]
    if missing:
        raise ConfigError(f"missing key(s) {missing}; {cls.__name__} needs them")
    hints = _hints(cls)
    return cls(**{key: _converted(value, hints[key], dotted(section, key)) for key, value in values.items()})


def from_keyword_mapping(cls: type[T], values: Any, keyword: str = "from", name: str = "source") -> T:
    """``from_config`` for a section whose YAML key ``keyword`` is a Python keyword, the field ``name``."""
    values = dict(plain(values) or {})
    section = cls.section
    if name in values:
        raise ConfigError(f"the {section} section's key is {keyword!r} ({section}.{keyword}=...), not {name!r}")
    if keyword in values:
        values[name] = values.pop(keyword)
    return from_config(cls, values)


def to_keyword_mapping(config: Any, keyword: str = "from", name: str = "source") -> dict[str, Any]:
    """The section ``from_keyword_mapping`` reads back as ``config``: its field ``name`` as the key ``keyword``."""
    values = dataclasses.asdict(config)
    return {keyword: values.pop(name), **values}


def check(config: Any, name: str, ok: bool, valid: str) -> None:
    """Raise ``ConfigError`` ``<section>.<name>=<value> must be <valid>`` unless ``ok`` (for ``__post_init__``).

    A config of top-level keys has the section ``""``: its keys are named alone.
    """
    if not ok:
        raise ConfigError(f"{dotted(config.section, name)}={getattr(config, name)!r} must be {valid}")


def free(default: Any, why: str) -> Any:
    """A field a resumed search may change: ``why`` says how it changes neither what is proposed
    nor how a child trains and is scored (or why it is a deliberate exception)."""
    return dataclasses.field(default=default, metadata={FREE: why})


def free_fields(cls: type) -> dict[str, str]:
    """The fields of dataclass ``cls`` declared ``free``, with the reason each is."""
    return {field.name: field.metadata[FREE] for field in dataclasses.fields(cls) if FREE in field.metadata}


def resume_settings(config: Any) -> dict[str, Any]:
    """``config``'s fields as a resumed search must share them: all but the ``free`` ones, nested dataclasses too."""
    settings = {}
    for field in dataclasses.fields(config):
        if FREE not in field.metadata:
            value = getattr(config, field.name)
            settings[field.name] = resume_settings(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
    return settings


def is_number(value: Any) -> bool:
    """An int or a float, but not a bool (``True`` is an ``int`` in Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@functools.cache
def _init_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {field.name: field for field in dataclasses.fields(cls) if field.init}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _converted(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the type ``hint``: nested dataclasses built, lists made tuples where declared."""
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_config(hint, value, key)
    if not _matches(value, hint):
        raise ConfigError(f"{key}={value!r} must be {_describe(hint)}")
    if get_origin(hint) is tuple:
        return tuple(value)
    if get_origin(hint) is dict:
        (_, item) = get_args(hint) or (Any, Any)
        return {name: _converted(v, item, f"{key}.{name}") for name, v in value.items()}
    return value


def _matches(value: Any, hint: Any) -> bool:
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return is_number(value)
    if hint is int:
        return is_int(value)
    if origin in (list, tuple, Sequence):
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0] if args else Any) for v in value)
    if origin in (dict, Mapping):
        return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return isinstance(value, origin or hint)


def _describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin in (list, tuple, Sequence):
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, f"a {getattr(hint, '__name__', hint)}")
