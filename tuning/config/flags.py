"""Command-line flags made from dataclass fields, so a flag's help, type, choices and default
have one source: the field (its default) and its ``metadata={"flag": ...}``, a ``FlagSpec`` or a
plain dict of its arguments (so a dataclass below this package needs no import of it).

Used by ``tuning.config.command`` (argparse) and ``tuning.config.options`` (``run_options.yaml``);
neither the YAML writer nor the dataclasses need a parser.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

FLAG = "flag"  # the field-metadata key holding a FlagSpec


@dataclass(frozen=True)
class FlagSpec:
    """How a field appears on the command line. ``default_text`` says what a None default means
    (required for one); ``negate`` makes a switch that sets a True field False (``--no-wandb``);
    ``const`` is the value of a flag given without its optional value (``--mlflow``)."""

    help: str
    group: str = ""
    name: str | None = None  # the flag without dashes; default: the field's name with dashes
    default_text: str | None = None
    choices: tuple[Any, ...] | None = None
    metavar: str | None = None
    const: Any = None
    negate: bool = False
    type: Callable[[Any], Any] | None = None  # default: the field's annotated type


def flag(help: str, **spec: Any) -> dict[str, FlagSpec]:
    """Field metadata for a flag: ``field(default=3, metadata=flag("best configs to retrain"))``."""
    return {FLAG: FlagSpec(help, **spec)}


@dataclass(frozen=True)
class Flag:
    """One flag: its name, the field it fills and that field's default."""

    name: str
    owner: type
    field: str
    kind: Callable[[Any], Any]
    default: Any
    spec: FlagSpec
    required: bool = False  # the field has no default: a flag or a --config key must give it

    @property
    def key(self) -> str:
        """The flag's name underscored: its argparse dest and its ``--config`` key."""
        return self.name.replace("-", "_")

    @property
    def switch(self) -> bool:
        """An on/off flag that takes no value."""
        return self.kind is bool

    def help_text(self) -> str:
        """The help, with the default stated once (switches are off by default and say nothing)."""
        if self.switch or self.required:
            return self.spec.help
        shown = self.spec.default_text if self.default is None else self.default
        return f"{self.spec.help} (default: {shown})"

    def field_value(self, value: Any) -> Any:
        """The field's value for a flag value (a negated switch inverts it)."""
        return (not value) if self.spec.negate else value

    def flag_value(self, value: Any) -> Any:
        """The flag's value for a field value (the inverse of ``field_value``)."""
        return self.field_value(value)

    def from_config(self, value: Any) -> Any:
        """A ``--config`` YAML value as the flag would give it; ValueError says what is wrong."""
        if self.switch:
            if not isinstance(value, bool):
                raise ValueError(f"must be true or false, not {value!r}")
            return value
        if self.spec.const is not None and isinstance(value, bool):
            return self.spec.const if value else None
        if value is None:
            return None
        name = getattr(self.kind, "__name__", str(self.kind))
        bad_int = self.kind is int and isinstance(value, float) and not value.is_integer()
        if isinstance(value, (bool, list, dict)) or bad_int:
            raise ValueError(f"must be one {name}, not {value!r}")
        try:
            value = self.kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a valid {name}") from None
        if self.spec.choices is not None and value not in self.spec.choices:
            raise ValueError(f"{value!r} is not one of {', '.join(map(str, self.spec.choices))}")
        return value


def _plain_type(hint: Any) -> Any:
    """``int`` for ``int | None``; the hint itself when it is not optional."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else None
    return hint


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None  # a required field: it needs a value, from a flag or a --config key


def flags_of(cls: type, specs: Mapping[str, FlagSpec | Mapping[str, Any]] | None = None) -> list[Flag]:
    """The flags of a dataclass's fields that carry a ``FlagSpec`` (in ``metadata`` or, for a
    class this project does not own, in ``specs`` by field name), in field order."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        spec = (specs or {}).get(field.name) or field.metadata.get(FLAG)
        if spec is None:
            continue
        if isinstance(spec, Mapping):
            spec = FlagSpec(**spec)
        kind = spec.type or _plain_type(hints[field.name])
        if kind not in (bool, int, float, str, Path):
            raise TypeError(f"{cls.__name__}.{field.name}: cannot make a flag of {hints[field.name]!r}; "
                            "give FlagSpec(type=...)")
        default = _default(field)
        if spec.negate:  # the flag's default, not the field's
            default = not default
        if default is None and spec.default_text is None and field.default is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{field.name} defaults to None: say what that means "
                            "in FlagSpec(default_text=...)")
        found.append(Flag(name=spec.name or field.name.replace("_", "-"), owner=cls, field=field.name,
                          kind=kind, default=default, spec=spec,
                          required=field.default is dataclasses.MISSING
                          and field.default_factory is dataclasses.MISSING))
    return found
