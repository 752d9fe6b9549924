"""The per-run overrides: the config fields that a batch job's flags and the service's arguments may replace.

They are declared once, on the fields themselves (``per_run(...)`` metadata in ``acousticsense.config``). This
module reads that declaration into :data:`OVERRIDES`, and every face derives from it: the batch CLI's flags and
``JobOptions`` fields (``pipelines.classify``), the service's ``AppArgs`` fields (``serving.config``) and the names
``ModelBundle.with_overrides`` accepts. Adding an override is one ``per_run`` marker on a config field.

The run-time choices that the batch job and the service share (``device``, ``precision``) are declared here too.
"""

from __future__ import annotations

import dataclasses
import operator
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from acousticsense.config import PER_RUN, FeatureConfig, PerRun, PostprocessConfig
from acousticsense.errors import ConfigError

__all__ = ["DEVICES", "OVERRIDES", "PRECISIONS", "Device", "Override", "Precision", "check_overrides", "declared"]

Device = Literal["auto", "cpu", "cuda", "mps"]
Precision = Literal["auto", "fp32", "fp16", "bf16", "int8"]
DEVICES: tuple[str, ...] = typing.get_args(Device)
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)


@dataclass(frozen=True)
class Override:
    """One per-run override, as its config field declares it.

    ``kind`` is ``bool``, ``int``, ``float`` or ``str`` (a ``Literal`` field: then ``choices`` lists its values).
    ``default`` is a new bundle's value; a bundle may hold another, which is what ``None`` (no override) keeps.
    """

    name: str
    config: type  # FeatureConfig or PostprocessConfig: the config the value replaces a field of
    kind: type
    choices: tuple[str, ...] | None
    default: Any
    spec: PerRun

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def annotation(self) -> Any:
        """The field's type for a face that declares it (a dataclass, a pydantic model): ``Literal`` kept."""
        return Literal[self.choices] if self.choices else self.kind  # type: ignore[valid-type]

    @property
    def help(self) -> str:
        """The declared help, with the default a new bundle has (a bundle's own value is what applies)."""
        if self.kind is bool:
            shown = "on" if self.default else "off"
        else:
            shown = f"{self.default:g}" if self.kind is float else str(self.default)
        return f"{self.spec.help} (default: the bundle's; {shown} in a new bundle)"

    def check(self, value: Any) -> Any:
        """``value`` as the field's type if it is a valid value of this override (``None``: keep the bundle's).

        Raises:
            ConfigError: a value of the wrong type, not among the choices, or out of bounds.
        """
        if value is None:
            return None
        if self.kind is bool:
            ok = isinstance(value, bool)
        elif self.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(f"{self.name} must be {self._kind_name()}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}")
        value = float(value) if self.kind is float else value
        for bound, sign, holds in ((self.spec.gt, ">", operator.gt), (self.spec.ge, ">=", operator.ge)):
            if bound is not None and not holds(value, bound):
                raise ConfigError(f"{self.name} must be {sign} {bound:g}, got {value!r}")
        if self.spec.le is not None and not value <= self.spec.le:
            raise ConfigError(f"{self.name} must be <= {self.spec.le:g}, got {value!r}")
        return value

    def _kind_name(self) -> str:
        return {bool: "true or false", int: "an integer", float: "a number"}.get(self.kind, "a string")


def declared(config: type) -> list[Override]:
    """The fields of a config dataclass marked ``per_run``, in declaration order.

    Raises:
        TypeError: a marked field whose type the faces cannot take (a declaration error, met on first import).
    """
    hints = typing.get_type_hints(config)
    found = []
    for f in dataclasses.fields(config):
        spec = f.metadata.get(PER_RUN)
        if spec is None:
            continue
        hint = hints[f.name]
        choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else None
        kind = str if choices else hint
        if kind not in (bool, int, float, str) or (choices and not all(isinstance(c, str) for c in choices)):
            # A declaration error, caught by the first import: the faces know how to take only these types.
            raise TypeError(f"{config.__name__}.{f.name}: a per-run override must be bool, int, float or a str Literal")
        found.append(Override(f.name, config, kind, choices, f.default, spec))
    return found


# Every per-run override by name: the feature fields, then the postprocessing fields, as declared.
OVERRIDES: Mapping[str, Override] = {o.name: o for c in (FeatureConfig, PostprocessConfig) for o in declared(c)}


def check_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked against the declaration, ``None`` values dropped (they keep the bundle's).

    Raises:
        ConfigError: a name that is not a per-run override, or a bad value (see :meth:`Override.check`).
    """
    unknown = sorted(set(values) - set(OVERRIDES))
    if unknown:
        raise ConfigError(f"unknown override(s) {unknown}; the per-run overrides are {sorted(OVERRIDES)}")
    checked = {name: OVERRIDES[name].check(value) for name, value in values.items()}
    return {name: value for name, value in checked.items() if value is not None}
