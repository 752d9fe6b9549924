"""The batch job's options: flags derived from the override declaration, checked once, immutable.

No Ray is started: every bad value or combination must fail before Ray starts and before any input is listed.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Literal

import pytest
from pydantic import ValidationError

from acousticsense.config import PostprocessConfig, per_run
from acousticsense.errors import ConfigError
from acousticsense.options import DEVICES, OVERRIDES, PRECISIONS, declared
from pipelines import classify
from pipelines.classify import JobOptions, build_parser, options_from_args, plan_resources
from tests.conftest import ROOT

BASE = ["--input", "in", "--output", "out"]


def _parsed(*flags: str) -> JobOptions:
    return options_from_args(build_parser().parse_args([*BASE, *flags]))


def _action(flag: str) -> argparse.Action:
    (action,) = [a for a in build_parser()._actions if flag in a.option_strings]
    return action


@pytest.fixture(scope="module")
def rules_on_bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The shipped tiny bundle, rewritten with rules on: a bundle whose default only ``--no-rules`` can turn off."""
    from acousticsense import load_bundle, write_bundle

    path = tmp_path_factory.mktemp("rules-on") / "bundle"
    write_bundle(str(path), load_bundle("synthetic-tiny").with_overrides(rules=True))
    return str(path)


# ------------------------------------------------------------------------------ flags from the declaration


def test_overrides_are_the_fields_declared_per_run():
    assert list(OVERRIDES) == [
        "excerpt_s",
        "excerpt_policy",
        "segments",
        "enhance",
        "rules",
        "top_k",
        "review_threshold",
        "aggregation",
    ]
    assert OVERRIDES["enhance"].choices == ("none", "denoise", "compress", "both")
    assert OVERRIDES["segments"].kind is int and OVERRIDES["excerpt_s"].kind is float
    assert "temperature" not in OVERRIDES  # a fitted value of the bundle, not a per-run option


@pytest.mark.parametrize("name", list(OVERRIDES))
def test_every_declared_override_is_a_flag_and_a_field_with_the_declared_type(name):
    override = OVERRIDES[name]
    action = _action(override.flag)
    assert action.default is None  # absent: the bundle's value, whatever it is
    assert action.help == override.help and override.spec.help in action.help
    if override.kind is bool:
        assert f"--no-{name.replace('_', '-')}" in action.option_strings
    else:
        assert action.type is override.kind
        assert (tuple(action.choices) if action.choices else None) == override.choices
    field = {f.name: f for f in dataclasses.fields(JobOptions)}[name]
    assert field.default is None and field.kw_only
    assert name in JobOptions(inputs=["in"], output="out").overrides()


@dataclasses.dataclass(frozen=True)
class _Toy:
    """A config with overrides nobody has written a flag or a field for: what a new declaration alone gives."""

    loudness_db: float = dataclasses.field(default=-14.0, metadata=per_run("target loudness", le=0.0))
    mode: Literal["fast", "exact"] = dataclasses.field(default="fast", metadata=per_run("how to analyse"))
    boost: bool = dataclasses.field(default=False, metadata=per_run("boost the low end"))
    untouched: int = 3  # not marked: no face sees it


def test_a_newly_declared_override_reaches_every_face():
    """One ``per_run`` marker is the whole change: the CLI flag, the JobOptions field and the AppArgs field follow."""
    from serving import config as service

    toys = {o.name: o for o in declared(_Toy)}
    assert list(toys) == ["loudness_db", "mode", "boost"]

    parser = argparse.ArgumentParser()
    classify._add_override_flags(parser.add_argument_group("toys"), toys)
    args = parser.parse_args(["--loudness-db", "-20", "--mode", "exact", "--no-boost"])
    assert (args.loudness_db, args.mode, args.boost) == (-20.0, "exact", False)
    assert vars(parser.parse_args([])) == dict.fromkeys(toys)  # absent: the bundle's value
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "slow"])

    job_fields = classify._override_fields(toys)(mode="exact")
    assert (job_fields.loudness_db, job_fields.mode, job_fields.boost) == (None, "exact", None)
    with pytest.raises(ConfigError, match="loudness_db must be <= 0"):
        toys["loudness_db"].check(1.0)

    service_args = service._override_fields(toys)
    assert service_args(loudness_db="-20", boost="true").model_dump() == {
        "loudness_db": -20.0,
        "mode": None,
        "boost": True,
    }
    for bad in ({"loudness_db": 1.0}, {"mode": "slow"}, {"untouched": 3}):
        with pytest.raises(ValidationError):
            service_args(**bad)


def test_flags_reach_the_overrides_with_the_declared_types():
    options = _parsed("--excerpt-s", "10", "--segments", "3", "--enhance", "both", "--rules", "--top-k", "2")
    assert options.overrides() == {
        "excerpt_s": 10.0,
        "excerpt_policy": None,
        "segments": 3,
        "enhance": "both",
        "rules": True,
        "top_k": 2,
        "review_threshold": None,
        "aggregation": None,
    }
    assert set(_parsed().overrides()) == set(OVERRIDES) and not any(_parsed().overrides().values())
    assert type(JobOptions(inputs=["in"], output="out", excerpt_s=10).excerpt_s) is float  # same hash as --excerpt-s 10


def test_no_rules_turns_off_rules_that_the_bundle_turns_on(rules_on_bundle):
    """The bundle is resolved once on the driver (``_settle``): what it holds is what every stage gets."""

    def rules(*flags: str) -> bool:
        return classify._settle(_parsed("--model", rules_on_bundle, *flags), []).bundle.features.rules

    assert rules() is True  # the bundle's own value
    assert rules("--no-rules") is False
    assert rules("--rules") is True


def test_device_and_precision_choices_are_the_shared_ones():
    assert tuple(_action("--device").choices) == DEVICES
    assert tuple(_action("--precision").choices) == PRECISIONS


def test_every_override_is_documented_for_both_faces():
    readme = (ROOT / "README.md").read_text()
    serving = (ROOT / "docs" / "serving.md").read_text()
    for override in OVERRIDES.values():
        assert f"`{override.flag}" in readme, f"README.md's flag table lacks {override.flag}"
        assert f"`{override.name}`" in serving, f"docs/serving.md's args table lacks {override.name}"


# ----------------------------------------------------------------------------------- checked once, early

BAD_FLAGS = {
    "cpu-actors": (["--cpu-actors", "0"], "--cpu-actors must be an integer >= 1"),
    "accelerator-actors": (["--accelerator-actors", "0"], "--accelerator-actors must be"),
    "files-per-batch": (["--files-per-batch", "0"], "--files-per-batch must be"),
    "inference-files-per-batch": (["--inference-files-per-batch", "-1"], "--inference-files-per-batch must be"),
    "max-batch-windows": (["--max-batch-windows", "0"], "--max-batch-windows must be"),
    "files-per-shard": (["--files-per-shard", "0"], "--files-per-shard must be"),
    "segments": (["--segments", "0"], "segments must be >= 1"),
    "top-k": (["--top-k", "0"], "top_k must be >= 1"),
    "excerpt-s": (["--excerpt-s", "0"], "excerpt_s must be > 0"),
    "review-threshold": (["--review-threshold", "1.5"], "review_threshold must be <= 1"),
    "overwrite-resume": (["--overwrite", "--resume"], "--overwrite and --resume contradict"),
    "cache-accelerator": (["--features-on", "gpu", "--cache", "c"], "--cache needs --features-on cpu"),
}


@pytest.mark.parametrize("flags, message", BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_flags_fail_before_listing_and_before_ray(flags, message, monkeypatch, capsys, tmp_path):
    def never(*args, **kwargs):
        raise AssertionError("a job with bad options went on")

    monkeypatch.setattr(classify, "_list_inputs", never)
    monkeypatch.setattr(classify, "connect_ray", never)
    (tmp_path / "in").mkdir()
    code = classify.main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), *flags])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # the output was not prepared either


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"enhance": "loud"}, "enhance must be one of"),
        ({"excerpt_policy": "end"}, "excerpt_policy must be one of"),
        ({"rules": "yes"}, "rules must be true or false"),
        ({"segments": 2.5}, "segments must be an integer"),
        ({"top_k": True}, "top_k must be an integer"),
        ({"review_threshold": -0.1}, "review_threshold must be >= 0"),
        ({"storage_options": "key=x"}, "storage_options must be a mapping"),
        ({"inputs": "music/"}, "inputs must be a list"),
        ({"extensions": "wav"}, "extensions must be a set"),
        ({"device": "tpu"}, "device must be one of"),
        ({"precision": "fp8"}, "precision one of"),
        ({"features_on": "tpu"}, "features_on must be"),
        ({"writer_actors": -1}, "writer_actors must be an integer >= 0"),
        ({"files_per_batch": None}, "--files-per-batch must be"),
        ({"overwrite": True, "resume": True}, "contradict"),
    ],
)
def test_job_options_refuse_bad_values_when_built(changes, message):
    with pytest.raises(ConfigError, match=message):
        JobOptions(**({"inputs": ["in"], "output": "out"} | changes))


def test_job_options_are_immutable_and_a_replacement_is_checked_again():
    options = _parsed("--features-on", "gpu", "--segments", "2")
    assert options.features_on == "accelerator"  # the alias, settled when built
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.segments = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.resume = True  # type: ignore[misc]
    assert dataclasses.replace(options, enhance="both").overrides()["enhance"] == "both"
    assert dataclasses.replace(options, overwrite=True).overwrite
    with pytest.raises(ConfigError, match="contradict"):
        dataclasses.replace(options, overwrite=True, resume=True)
    with pytest.raises(ConfigError, match="--cache needs"):
        dataclasses.replace(options, cache="c")


def test_the_bundle_refuses_names_that_are_not_overrides():
    from acousticsense import load_bundle

    bundle = load_bundle("synthetic-tiny", weights=False)
    with pytest.raises(ConfigError, match="unknown override"):
        bundle.with_overrides(temperature=2.0)  # a fitted value: with_postprocess sets it
    with pytest.raises(ConfigError, match="enhance must be one of"):
        bundle.with_overrides(enhance="loud")
    assert bundle.with_postprocess(temperature=2.0).postprocess.temperature == 2.0
    assert bundle.with_overrides(top_k=2, segments=None).postprocess.top_k == 2  # None keeps the bundle's segments
    assert bundle.with_overrides(segments=None).features == bundle.features
    assert PostprocessConfig().top_k == OVERRIDES["top_k"].default


# --------------------------------------------------------------------------------------------- the plan


def test_the_plan_keeps_what_varies_and_pools_have_a_fixed_size():
    options = JobOptions(inputs=["in"], output="out")
    fused = plan_resources(options, {"CPU": 4})
    on_gpus = plan_resources(options, {"CPU": 8, "GPU": 2})
    assert fused.fused and fused.gpus_per_actor == 0.0 and fused.accelerator_actors == 0
    assert not on_gpus.fused and on_gpus.gpus_per_actor == 1.0 and on_gpus.accelerator_actors == 2
    assert set(dataclasses.asdict(fused)) == {
        "cpu_actors",
        "cpus_per_featurize_actor",
        "accelerator_actors",
        "inference_files_per_batch",
        "max_batch_windows",
        "files_per_shard",
        "device",
        "writer_actors",
    }
    few, many = classify._pool(3, 10), classify._pool(3, 1000)
    assert (few.min_size, few.max_size, few.max_tasks_in_flight_per_actor) == (3, 3, 1)
    assert (many.min_size, many.max_size) == (3, 3) and many.max_tasks_in_flight_per_actor != 1
