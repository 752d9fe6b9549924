"""The per-run override declaration (``per_run`` metadata read by ``acousticsense.options``), without any face."""

from __future__ import annotations

import dataclasses

import pytest

from acousticsense.config import FeatureConfig, PostprocessConfig, per_run
from acousticsense.errors import ConfigError
from acousticsense.options import OVERRIDES, check_overrides, declared


def test_each_override_carries_its_fields_default_and_config():
    for config in (FeatureConfig, PostprocessConfig):
        defaults = {f.name: f.default for f in dataclasses.fields(config)}
        for override in declared(config):
            assert OVERRIDES[override.name].config is config
            assert override.default == defaults[override.name]


def test_a_declaration_the_faces_cannot_take_fails_on_import():
    @dataclasses.dataclass(frozen=True)
    class Optional:
        gain: float | None = dataclasses.field(default=None, metadata=per_run("no face can say 'unset' twice"))

    with pytest.raises(TypeError, match="Optional.gain"):
        declared(Optional)


def test_check_overrides_drops_nones_converts_and_refuses_unknown_names():
    assert check_overrides({"excerpt_s": 10, "segments": None, "rules": False}) == {"excerpt_s": 10.0, "rules": False}
    with pytest.raises(ConfigError, match=r"unknown override\(s\) \['temperature'\]"):
        check_overrides({"temperature": 2.0})
    with pytest.raises(ConfigError, match="aggregation must be one of mean, vote"):
        check_overrides({"aggregation": "median"})
