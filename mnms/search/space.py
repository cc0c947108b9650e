"""The search space: an ordered list of decisions, some only active given earlier choices.

The controller emits the decisions in this order, one softmax per decision, and
skips a decision whose condition is false for the choices made so far.  A
conditional decision can therefore only depend on *earlier* decisions, which is
what makes the space a tree the controller can walk top to bottom.

An architecture is a plain dict holding exactly the active decisions' values; the
child fills the inactive fields with its defaults (see ``mnms.child.arch.Architecture``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mnms.child.arch import ENCODER_DEPENDENT, ArchitectureError, check_value, incompatibility
from mnms.utils.config import ConfigError, reject_unknown


class SearchSpaceError(ConfigError):
    """A search space that cannot be searched; the message names the decision and the fix."""


def _key(value: Any) -> tuple[bool, Any]:
    # ``True == 1`` in Python; a choice of ``true`` must not match a choice of ``1``.
    return (isinstance(value, bool), value)


@dataclass(frozen=True)
class Decision:
    """One field of the architecture, its possible values, and when it is decided.

    ``when`` maps an earlier decision's name to the values that make this decision
    active; all listed conditions must hold.  An inactive earlier decision satisfies
    no condition.
    """

    name: str
    choices: tuple[Any, ...]
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # Lookup tables derived from the above: the controller asks these questions in its inner loop.
    _positions: dict[tuple[bool, Any], int] = field(init=False, repr=False, compare=False)
    _allowed: dict[str, frozenset] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.choices:
            raise SearchSpaceError(f"decision {self.name!r} has no choices; list at least one value")
        keys = [_key(c) for c in self.choices]
        duplicates = sorted({repr(c) for c, k in zip(self.choices, keys) if keys.count(k) > 1})
        if duplicates:
            raise SearchSpaceError(
                f"decision {self.name!r} lists {', '.join(duplicates)} more than once; remove the duplicates"
            )
        for choice in self.choices:
            try:
                check_value(self.name, choice)
            except ArchitectureError as error:
                raise SearchSpaceError(f"decision {self.name!r}: {error}; remove or fix that choice") from error
        try:
            allowed = {n: frozenset(_key(v) for v in vs) for n, vs in self.when.items()}
        except TypeError:
            raise SearchSpaceError(
                f"decision {self.name!r}: condition values must be plain values, got {self.when}"
            ) from None
        object.__setattr__(self, "_positions", {k: i for i, k in enumerate(keys)})
        object.__setattr__(self, "_allowed", allowed)

    def index(self, value: Any) -> int:
        """Position of ``value`` among the choices (the controller's softmax index)."""
        try:
            return self._positions[_key(value)]
        except (KeyError, TypeError):
            raise SearchSpaceError(
                f"{value!r} is not a choice of decision {self.name!r}; choices are {list(self.choices)}"
            ) from None

    def active(self, partial: Mapping[str, Any]) -> bool:
        """Whether this decision is made, given the earlier decisions' values in ``partial``."""
        return all(name in partial and _key(partial[name]) in allowed for name, allowed in self._allowed.items())


class SearchSpace:
    """An ordered, validated sequence of decisions."""

    def __init__(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            raise SearchSpaceError("the search space has no decisions; list at least one under 'decisions'")
        seen: dict[str, Decision] = {}
        for decision in decisions:
            if decision.name in seen:
                raise SearchSpaceError(f"decision {decision.name!r} is listed twice; keep one entry")
            for other, allowed in decision.when.items():
                if other not in seen:
                    if other == decision.name:
                        where = "itself"
                    elif any(d.name == other for d in decisions):
                        where = "a later decision"
                    else:
                        where = "an unknown decision"
                    raise SearchSpaceError(
                        f"decision {decision.name!r} has a condition on {other!r}, which is {where}; "
                        "conditions may only name decisions listed before it"
                    )
                for value in allowed:
                    try:
                        seen[other].index(value)
                    except SearchSpaceError:
                        raise SearchSpaceError(
                            f"decision {decision.name!r} has a condition {other} in {list(allowed)}, but "
                            f"{value!r} is not a choice of {other!r} ({list(seen[other].choices)}); fix the condition"
                        ) from None
            seen[decision.name] = decision
        self.decisions: tuple[Decision, ...] = tuple(decisions)
        self._by_name = seen
        self.check_buildable()

    def check_buildable(self, defaults: Mapping[str, Any] | None = None) -> None:
        """Refuse a choice that an encoder able to reach it cannot build (a convolution over
        one vector per text, fine-tuning what has no pretrained parameters), and, given the
        child's ``defaults`` for the fields the space leaves out, a default no encoder choice
        can build. Without the check such a child would fail, or silently ignore the choice,
        at training time. The check reads only conditions on ``encoder`` itself, so a
        choice gated through another decision must also be gated on ``encoder``.
        """
        defaults = defaults or {}
        if "encoder" in self._by_name:
            encoders = self._by_name["encoder"].choices
        else:
            encoders = (defaults["encoder"],) if "encoder" in defaults else ()
        for decision in self.decisions:
            for encoder in decision.when.get("encoder", encoders):
                for choice in decision.choices:
                    if problem := incompatibility(encoder, decision.name, choice):
                        able = [e for e in encoders if not incompatibility(e, decision.name, choice)]
                        raise SearchSpaceError(
                            f"decision {decision.name!r} offers {choice!r} to encoder {encoder!r}, but {problem}; "
                            f"add `when: {{encoder: {able}}}` to it, or remove that choice"
                        )
        for name in sorted(set(ENCODER_DEPENDENT) & set(defaults)):
            for encoder in self._default_takers(name, encoders):
                if problem := incompatibility(encoder, name, defaults[name]):
                    raise SearchSpaceError(
                        f"child.arch.{name}={defaults[name]!r} applies to every child, but {problem}; "
                        f"set child.arch.{name}={ENCODER_DEPENDENT[name]!r} or make {name} a decision"
                    )

    def unoffered(self) -> list[tuple[str, Any]]:
        """``(decision, encoder)`` for each encoder choice a decision's ``when: {encoder: [...]}`` leaves
        out although it could build every one of the decision's choices.

        ``check_buildable`` is the other direction (a listed encoder must be able to build
        each choice). An encoder missing from a list it qualifies for is silently never
        offered the decision, so the shipped spaces are checked to leave out only the ones
        they mean to (``tests/test_search_space.py``).
        """
        encoders = self._by_name["encoder"].choices if "encoder" in self._by_name else ()
        return [
            (decision.name, encoder)
            for decision in self.decisions
            if "encoder" in decision.when
            for encoder in encoders
            if encoder not in decision.when["encoder"]
            and not any(incompatibility(encoder, decision.name, choice) for choice in decision.choices)
        ]

    def _default_takers(self, name: str, encoders: Sequence[Any]) -> list[Any]:
        """The encoders whose children may take field ``name`` from the defaults: all of them
        unless ``name`` is a decision, else those its conditions can leave it undecided for
        (conservatively, all of them when a condition names another decision)."""
        if name not in self._by_name:
            return list(encoders)
        when = self._by_name[name].when
        if set(when) - {"encoder"}:
            return list(encoders)
        return [e for e in encoders if e not in when.get("encoder", encoders)]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SearchSpace:
        """Build from ``{"decisions": [{"name": ..., "choices": [...], "when": {...}}, ...]}``."""
        _check_keys("the search space", "search_space", config, required={"decisions"}, optional=set())
        entries = config["decisions"]
        if isinstance(entries, (str, Mapping)) or not isinstance(entries, Sequence):
            raise SearchSpaceError("'decisions' must be a list of {name, choices, when} entries")
        decisions = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise SearchSpaceError(f"decision #{i} must be a mapping with 'name' and 'choices'")
            label = f"decision {entry.get('name', f'#{i}')!r}"
            _check_keys(label, f"search_space.decisions.{i}", entry, required={"name", "choices"}, optional={"when"})
            when = entry.get("when") or {}
            if not isinstance(when, Mapping):
                raise SearchSpaceError(f"{label}: 'when' must map earlier decision names to lists of values")
            decisions.append(
                Decision(
                    name=str(entry["name"]),
                    choices=_as_tuple(label, "choices", entry["choices"]),
                    when={str(k): _as_tuple(label, f"when.{k}", v) for k, v in when.items()},
                )
            )
        return cls(decisions)

    def to_config(self) -> dict[str, Any]:
        """The plain mapping ``from_config`` accepts (round trip)."""
        entries = []
        for d in self.decisions:
            entry: dict[str, Any] = {"name": d.name, "choices": list(d.choices)}
            if d.when:
                entry["when"] = {k: list(v) for k, v in d.when.items()}
            entries.append(entry)
        return {"decisions": entries}

    def __getitem__(self, name: str) -> Decision:
        return self._by_name[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.decisions)

    def is_valid(self, arch: Mapping[str, Any]) -> bool:
        """True when ``arch`` holds exactly the active decisions, each with one of its choices."""
        for decision in self.decisions:
            if not decision.active(arch):
                if decision.name in arch:
                    return False
                continue
            if decision.name not in arch:
                return False
            try:
                decision.index(arch[decision.name])
            except SearchSpaceError:
                return False
        return set(arch) <= set(self._by_name)

    def signature(self) -> str:
        """A stable hash of the decisions, their choices and conditions, in order.

        Two spaces with the same signature give the controller the same heads and
        the same meaning for every softmax index, so its weights transfer between them.
        """
        canonical = json.dumps(self.to_config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def architectures(self) -> Iterator[dict[str, Any]]:
        """Every distinct architecture (active decisions only), in the order of the decisions and choices.

        For spaces small enough to evaluate exhaustively (a tabular benchmark); ``size`` counts
        without enumerating.
        """
        partials: list[dict[str, Any]] = [{}]
        for decision in self.decisions:
            partials = [
                {**arch, decision.name: choice} if decision.active(arch) else arch
                for arch in partials
                for choice in (decision.choices if decision.active(arch) else (None,))
            ]
        yield from partials

    def size(self) -> int:
        """Number of distinct complete architectures.

        Counted without enumerating them: walk the decisions keeping, for each
        assignment of the decisions that later conditions look at, how many paths
        reach it.  Decisions no condition reads only multiply the count.
        """
        read_later = {name for d in self.decisions for name in d.when}
        paths: dict[tuple[tuple[str, Any], ...], int] = {(): 1}
        for decision in self.decisions:
            grown: dict[tuple[tuple[str, Any], ...], int] = {}
            for state, count in paths.items():
                if not decision.active(dict(state)):
                    branches = [(state, count)]
                elif decision.name in read_later:
                    branches = [(state + ((decision.name, c),), count) for c in decision.choices]
                else:
                    branches = [(state, count * len(decision.choices))]
                for key, n in branches:
                    grown[key] = grown.get(key, 0) + n
            paths = grown
        return sum(paths.values())


def _check_keys(label: str, section: str, mapping: Mapping[str, Any], required: set[str], optional: set[str]) -> None:
    try:
        reject_unknown(mapping, sorted(required | optional), section)
    except ConfigError as error:
        raise SearchSpaceError(f"{label}: {error}") from None
    if missing := sorted(required - set(mapping)):
        raise SearchSpaceError(f"{label}: missing key(s) {missing}; valid keys are {sorted(required | optional)}")


def _as_tuple(label: str, key: str, values: Any) -> tuple[Any, ...]:
    if isinstance(values, (str, Mapping)) or not isinstance(values, Sequence):
        raise SearchSpaceError(f"{label}: {key!r} must be a list of values, got {values!r}")
    return tuple(values)
