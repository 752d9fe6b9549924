"""The service's arguments: the override fields come from the declaration the batch job's flags come from.

No Serve application is started: ``AppArgs`` is what ``build_app`` validates before it deploys anything.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from acousticsense.errors import ConfigError
from acousticsense.options import DEVICES, OVERRIDES, PRECISIONS
from pipelines.classify import JobOptions
from serving.config import AppArgs, load_service_bundle, parse_args


def _below(name: str) -> float | None:
    """A value just outside the declared bounds of ``name``, or None when it has none."""
    spec = OVERRIDES[name].spec
    if spec.gt is not None:
        return spec.gt
    if spec.ge is not None:
        return spec.ge - 1
    return None


@pytest.mark.parametrize("name", list(OVERRIDES))
def test_every_declared_override_is_an_optional_field_with_the_declared_type(name):
    override = OVERRIDES[name]
    field = AppArgs.model_fields[name]
    assert field.default is None and not field.is_required()
    assert field.description == override.help
    schema = AppArgs.model_json_schema()["properties"][name]
    (typed,) = [s for s in schema["anyOf"] if s["type"] != "null"]
    assert typed["type"] == {bool: "boolean", int: "integer", float: "number", str: "string"}[override.kind]
    assert tuple(typed.get("enum", ())) == (override.choices or ())
    low = _below(name)
    if low is not None:  # the bound the batch job checks is the service's too
        with pytest.raises(ValidationError, match=name):
            AppArgs(**{name: low})
        with pytest.raises(ConfigError, match=name):
            JobOptions(inputs=[], output="", **{name: low})


def test_the_service_and_the_batch_job_take_the_same_values():
    values = {"excerpt_s": 10.0, "segments": 3, "enhance": "both", "rules": False, "top_k": 2, "aggregation": "vote"}
    service, job = AppArgs(**values).overrides(), JobOptions(inputs=[], output="", **values).overrides()
    assert service == job and set(service) == set(OVERRIDES)
    assert AppArgs().overrides() == JobOptions(inputs=[], output="").overrides() == dict.fromkeys(OVERRIDES)


def test_serve_run_strings_become_typed_overrides():
    """``serve run serving.app:build_app segments=3 rules=false`` hands the builder strings."""
    args = parse_args({"segments": "3", "rules": "false", "excerpt_s": "12.5", "enhance": "denoise"})
    assert args.overrides() == {
        **dict.fromkeys(OVERRIDES),
        "segments": 3,
        "rules": False,
        "excerpt_s": 12.5,
        "enhance": "denoise",
    }


@pytest.mark.parametrize(
    "args, field",
    [
        ({"segmentz": 3}, "segmentz"),  # a typo fails the deploy
        ({"enhance": "loud"}, "enhance"),
        ({"excerpt_policy": "end"}, "excerpt_policy"),
        ({"review_threshold": 1.5}, "review_threshold"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_args_fail_validation(args, field):
    with pytest.raises(ValidationError, match=field):
        parse_args(args)


def test_device_and_precision_are_the_shared_choices():
    schema = AppArgs.model_json_schema()["properties"]
    assert tuple(schema["device"]["enum"]) == DEVICES and tuple(schema["precision"]["enum"]) == PRECISIONS


def test_args_are_immutable():
    args = AppArgs(segments=2)
    with pytest.raises(ValidationError):
        args.segments = 3  # type: ignore[misc]


def test_rules_false_turns_off_rules_that_the_bundle_turns_on(tmp_path):
    from acousticsense import load_bundle, write_bundle

    write_bundle(str(tmp_path / "b"), load_bundle("synthetic-tiny").with_overrides(rules=True))
    uri = str(tmp_path / "b")
    assert load_service_bundle(AppArgs(bundle_uri=uri)).features.rules is True
    assert load_service_bundle(AppArgs(bundle_uri=uri, rules=False)).features.rules is False
