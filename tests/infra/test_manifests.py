"""Structural checks of infra/: KubeRay manifests, the Dockerfile and the Grafana dashboard.

There is no Kubernetes, Docker or Grafana here, so these tests check what can be checked without them:
every file parses, has the fields KubeRay / Serve / Grafana need, and names only things that exist in
the code (CLI flags, modules, Serve deployments and arguments, metrics, copied paths, versions). No Ray
cluster is started.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
KUBERAY = INFRA / "kuberay"
DOCKERFILE = INFRA / "docker" / "Dockerfile"
DOCKERIGNORE = INFRA / "docker" / "Dockerfile.dockerignore"
DASHBOARD = INFRA / "grafana" / "acousticsense.json"
SERVE_CONFIG = INFRA / "serve" / "config.yaml"

# The metric contract (pipelines/_metrics.py records them; Prometheus sees them with Ray's `ray_` prefix).
METRICS = {
    "acousticsense_files_total": "counter",
    "acousticsense_audio_seconds_total": "counter",
    "acousticsense_windows_total": "counter",
    "acousticsense_stage_seconds": "histogram",
    "acousticsense_predictions_total": "counter",
    "acousticsense_inference_batch_windows": "histogram",
    "acousticsense_queue_files": "gauge",
    "acousticsense_gpu_peak_memory_bytes": "gauge",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

MANIFESTS = {
    "raycluster.yaml": ("ray.io/v1", "RayCluster"),
    "rayjob.yaml": ("ray.io/v1", "RayJob"),
    "rayservice.yaml": ("ray.io/v1", "RayService"),
    "podmonitor.yaml": ("monitoring.coreos.com/v1", "PodMonitor"),
}
S3_SECRET = "acousticsense-s3"
RAY_AUTH_SECRET = "acousticsense-ray-auth"
METRICS_PORT = 8080
DASHBOARD_PORT = 8265


# ------------------------------------------------------------------------------------------------ helpers


@cache
def manifest(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d is not None]
    assert len(docs) == 1, f"{name}: expected one document, found {len(docs)}"
    return docs[0]


def cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("RayCluster", manifest("raycluster.yaml")["spec"]),
        ("RayJob", manifest("rayjob.yaml")["spec"]["rayClusterSpec"]),
        ("RayService", manifest("rayservice.yaml")["spec"]["rayClusterConfig"]),
    ]


CLUSTERS = pytest.mark.parametrize(("owner", "spec"), cluster_specs(), ids=[name for name, _ in cluster_specs()])


def pod_spec(group: dict[str, Any]) -> dict[str, Any]:
    return group["template"]["spec"]


def ray_container(group: dict[str, Any]) -> dict[str, Any]:
    """KubeRay runs Ray in the first container of the pod template."""
    return pod_spec(group)["containers"][0]


def all_groups(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [spec["headGroupSpec"], *spec["workerGroupSpecs"]]


def gpus_per_pod(group: dict[str, Any]) -> int:
    limits = ray_container(group).get("resources", {}).get("limits", {})
    return int(limits.get("nvidia.com/gpu", 0))


def ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


@cache
def pinned(package: str) -> str:
    """The version requirements.txt pins for ``package`` (extras ignored)."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(rf"^{re.escape(package)}(\[[^\]]*\])?==([^\s#;]+)", line.strip())
        if m:
            return m.group(2)
    raise AssertionError(f"requirements.txt does not pin {package}")


@cache
def project_version() -> str:
    """pyproject.toml's [project] version (a regex: tomllib is 3.11+, the project supports 3.10)."""
    m = re.search(r'^\[project\][^\[]*?^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M | re.S)
    assert m, "pyproject.toml has no [project] version"
    return m.group(1)


def module_file(module: str) -> Path | None:
    """The repository file of a dotted module name (module.py or package/__init__.py), or None."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def top_level_names(path: Path) -> dict[str, str]:
    """Top-level names of a Python file: 'function' for defs, 'value' for assignments."""
    names: dict[str, str] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = "function"
        elif isinstance(node, ast.Assign):
            names.update({t.id: "value" for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = "value"
    return names


def serve_deployment_names() -> set[str]:
    """Names given in ``@serve.deployment(name=...)`` (or the class name) anywhere under serving/."""
    names: set[str] = set()
    for path in (ROOT / "serving").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            for deco in node.decorator_list:
                call = deco if isinstance(deco, ast.Call) else None
                func = call.func if call else deco
                if isinstance(func, ast.Attribute) and func.attr == "deployment":
                    given = [k.value.value for k in (call.keywords if call else []) if k.arg == "name"]
                    names.add(given[0] if given else node.name)
    return names


def serve_config() -> dict[str, Any]:
    return yaml.safe_load(manifest("rayservice.yaml")["spec"]["serveConfigV2"])


def entrypoint_tokens() -> list[str]:
    return shlex.split(manifest("rayjob.yaml")["spec"]["entrypoint"])


@cache
def parser_options() -> set[str]:
    from pipelines.classify import build_parser

    return {option for action in build_parser()._actions for option in action.option_strings}


# ------------------------------------------------------------------------------------------ all manifests


def test_every_infra_yaml_parses() -> None:
    files = sorted([*INFRA.rglob("*.yaml"), *INFRA.rglob("*.yml")])
    assert {p.name for p in files} >= set(MANIFESTS), "a KubeRay manifest is missing"
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path.relative_to(ROOT)} is empty"
        assert all(isinstance(d, dict) for d in docs), f"{path.relative_to(ROOT)}: a document is not a mapping"


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifest_kind_and_api_version(name: str) -> None:
    doc = manifest(name)
    assert (doc["apiVersion"], doc["kind"]) == MANIFESTS[name]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), "not a valid DNS-1123 name"
    assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "acousticsense"


# ------------------------------------------------------------------------------------------- cluster specs


@CLUSTERS
def test_cluster_runs_the_pinned_ray_with_autoscaling(owner: str, spec: dict[str, Any]) -> None:
    assert spec["rayVersion"] == pinned("ray"), "rayVersion must be the Ray in the image (requirements.txt)"
    assert spec["enableInTreeAutoscaling"] is True


@CLUSTERS
def test_ray_start_params_are_strings(owner: str, spec: dict[str, Any]) -> None:
    # KubeRay's CRD types rayStartParams as map[string]string: `num-gpus: 1` would be rejected.
    for group in all_groups(spec):
        params = group.get("rayStartParams", {})
        assert all(isinstance(v, str) for v in params.values()), f"non-string rayStartParams: {params}"


@CLUSTERS
def test_head_group_exports_dashboard_and_metrics(owner: str, spec: dict[str, Any]) -> None:
    head = spec["headGroupSpec"]
    params = head["rayStartParams"]
    assert params["dashboard-host"] == "0.0.0.0"
    assert params["metrics-export-port"] == str(METRICS_PORT)
    container_ports = ports(ray_container(head))
    assert container_ports["dashboard"] == DASHBOARD_PORT
    assert container_ports["metrics"] == METRICS_PORT
    assert gpus_per_pod(head) == 0


@CLUSTERS
def test_worker_groups_have_replica_bounds_and_export_metrics(owner: str, spec: dict[str, Any]) -> None:
    groups = spec["workerGroupSpecs"]
    names = [g["groupName"] for g in groups]
    assert len(set(names)) == len(names), f"duplicate group names {names}"
    for group in groups:
        low, start, high = group["minReplicas"], group["replicas"], group["maxReplicas"]
        assert all(isinstance(v, int) for v in (low, start, high)), group["groupName"]
        assert 0 <= low <= start <= high and high >= 1, f"{group['groupName']}: min {low} replicas {start} max {high}"
        assert group["rayStartParams"]["metrics-export-port"] == str(METRICS_PORT)
        assert ports(ray_container(group))["metrics"] == METRICS_PORT, "PodMonitor scrapes the port named 'metrics'"


@CLUSTERS
def test_cpu_and_gpu_worker_groups(owner: str, spec: dict[str, Any]) -> None:
    groups = spec["workerGroupSpecs"]
    gpu = [g for g in groups if gpus_per_pod(g) > 0]
    cpu = [g for g in groups if gpus_per_pod(g) == 0]
    assert cpu and gpu, "needs a CPU (featurization) group and a GPU (inference) group"
    for group in gpu:
        resources = ray_container(group)["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
        assert group["rayStartParams"]["num-gpus"] == str(gpus_per_pod(group)), "num-gpus must match the limit"
        tolerations = pod_spec(group).get("tolerations", [])
        assert any(t.get("key") == "nvidia.com/gpu" for t in tolerations), "GPU nodes are usually tainted"
    for group in cpu:
        limits = ray_container(group)["resources"]["limits"]
        assert "cpu" in limits and "memory" in limits, f"{group['groupName']}: size the pod explicitly"


@CLUSTERS
def test_images_are_the_project_image(owner: str, spec: dict[str, Any]) -> None:
    version = re.escape(project_version())
    for group in all_groups(spec):
        image = ray_container(group)["image"]
        gpu = gpus_per_pod(group) > 0
        # Optional registry prefix; the CUDA build of the image on GPU pods, the CPU build elsewhere.
        pattern = rf"(.+/)?acousticsense:{version}{'-gpu' if gpu else ''}"
        assert re.fullmatch(pattern, image), f"{group.get('groupName', 'head')}: image {image!r} !~ {pattern}"


@CLUSTERS
def test_every_ray_container_gets_s3_settings(owner: str, spec: dict[str, Any]) -> None:
    for group in all_groups(spec):
        env = {e["name"]: e for e in ray_container(group)["env"]}
        for name in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
            assert env[name].get("value"), f"{name} has no value"
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == S3_SECRET and ref["key"], f"{name} must come from Secret {S3_SECRET}"


@CLUSTERS
def test_cluster_requires_a_ray_auth_token(owner: str, spec: dict[str, Any]) -> None:
    """Token authentication through KubeRay's ``authOptions``, with the token from the one Secret clients read too."""
    assert spec["authOptions"] == {"mode": "token", "secretName": RAY_AUTH_SECRET}
    assert Version(spec["rayVersion"]) >= Version("2.52"), "token authentication needs Ray >= 2.52"
    for group in all_groups(spec):
        for container in pod_spec(group)["containers"]:
            names = {e["name"]: e for e in container.get("env", [])}
            # KubeRay injects both from the Secret; a literal in the manifest would override or leak it.
            assert "RAY_AUTH_TOKEN" not in names, f"{container['name']}: the token belongs in Secret {RAY_AUTH_SECRET}"
            mode = names.get("RAY_AUTH_MODE", {}).get("value", "token")
            assert mode == "token", f"{container['name']} sets RAY_AUTH_MODE={mode}"


def test_ray_pins_agree_and_include_the_dashboard_fix() -> None:
    """pyproject's floor admits the pinned Ray and excludes releases without the CVE-2026-27482 dashboard fix."""
    text = (ROOT / "pyproject.toml").read_text()
    found = [Requirement(r) for r in re.findall(r'"(ray\[[^"]*\][^"]*)"', text)]
    assert len(found) == 1, f"expected one ray requirement in pyproject.toml, found {found}"
    specifier = found[0].specifier
    assert Version(pinned("ray")) in specifier, (
        f"requirements.txt pins ray {pinned('ray')}, pyproject wants {specifier}"
    )
    assert not any(Version(v) in specifier for v in ("2.50.0", "2.52.1", "2.53.0")), f"{specifier} admits Ray < 2.54"
    assert Version("2.54.0") in specifier


def test_local_stack_requires_a_token_and_binds_the_dashboard_to_loopback() -> None:
    """infra/local/stack.sh starts its Ray head with token auth, and its dashboard on 127.0.0.1 only."""
    script = (INFRA / "local" / "stack.sh").read_text()
    start = script[script.index('"$RAY" start --head') - 400 : script.index('"$RAY" start --head') + 600]
    assert "RAY_AUTH_MODE=token" in start and "RAY_AUTH_TOKEN_PATH=" in start
    assert "--dashboard-host=127.0.0.1" in start
    assert "export RAY_AUTH_MODE=token" in script  # what `stack.sh up` tells clients to export
    assert yaml.safe_load(SERVE_CONFIG.read_text())["http_options"]["host"] == "127.0.0.1"  # serve deploy, locally


def test_cluster_specs_agree_on_groups() -> None:
    """The three manifests repeat one cluster spec; only sizes may differ."""

    def shape(spec: dict[str, Any]) -> Any:
        return [
            (g.get("groupName", "head"), ray_container(g)["image"], gpus_per_pod(g), g.get("rayStartParams"))
            for g in all_groups(spec)
        ]

    (_, reference), *others = cluster_specs()
    for owner, spec in others:
        assert shape(spec) == shape(reference), f"{owner}'s cluster differs from raycluster.yaml"


def test_pod_monitor_scrapes_the_metrics_port() -> None:
    spec = manifest("podmonitor.yaml")["spec"]
    assert [e["port"] for e in spec["podMetricsEndpoints"]] == ["metrics"]
    selected = spec["selector"]["matchLabels"]
    for _, cluster in cluster_specs():
        for group in all_groups(cluster):
            labels = group["template"]["metadata"]["labels"]
            missing = {k: v for k, v in selected.items() if k.startswith("app.kubernetes.io/") and labels.get(k) != v}
            assert not missing, f"pod template labels {labels} miss the PodMonitor's selector {missing}"


# ----------------------------------------------------------------------------------------------- RayJob


def test_rayjob_runs_the_classify_module() -> None:
    tokens = entrypoint_tokens()
    assert tokens[:3] == ["python", "-m", "pipelines.classify"]
    assert module_file("pipelines.classify") is not None, "pipelines/classify.py is missing"
    source = module_file("pipelines.classify").read_text()
    assert 'if __name__ == "__main__"' in source, "python -m pipelines.classify needs a __main__ guard"


def test_rayjob_flags_exist_in_the_cli() -> None:
    flags = [t.split("=", 1)[0] for t in entrypoint_tokens()[3:] if t.startswith("--")]
    assert {"--input", "--output", "--model", "--resume", "--no-progress"} <= set(flags)
    unknown = sorted(set(flags) - parser_options())
    assert not unknown, f"flags not in pipelines.classify.build_parser(): {unknown}"


def test_rayjob_entrypoint_parses_to_the_intended_job() -> None:
    from pipelines.classify import build_parser, options_from_args

    options = options_from_args(build_parser().parse_args(entrypoint_tokens()[3:]))
    assert options.inputs == ["s3://music/catalog"]
    assert options.output == "s3://music/predictions"
    assert options.model == "s3://models/acousticsense/demo"
    assert options.resume and not options.overwrite


def test_rayjob_lifecycle_and_runtime_env() -> None:
    spec = manifest("rayjob.yaml")["spec"]
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] >= 0
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    env_vars = runtime_env["env_vars"]
    assert env_vars and all(isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items())
    assert not {"working_dir", "pip", "py_modules"} & set(runtime_env), "the code and dependencies are in the image"


def test_rayjob_starts_at_the_size_it_runs_at() -> None:
    """The job plans its pools from the resources present at start, so its groups start at minReplicas > 0."""
    for group in manifest("rayjob.yaml")["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        assert group["replicas"] == group["minReplicas"] >= 1, group["groupName"]


# ------------------------------------------------------------------------------------------- RayService


def unknown_keys(data: dict[str, Any], schema: Any) -> set[str]:
    return set(data) - set(schema.model_fields)


def test_rayservice_serve_config_is_valid() -> None:
    from ray.serve.config import AutoscalingConfig, BackpressureConfig
    from ray.serve.schema import (
        DeploymentSchema,
        HTTPOptionsSchema,
        RayActorOptionsSchema,
        ServeApplicationSchema,
        ServeDeploySchema,
    )

    config = serve_config()
    ServeDeploySchema.model_validate(config)
    # Serve's schemas ignore unknown keys, so a typo (`num_cpu`, `max_ongoing_request`) would deploy silently.
    assert not unknown_keys(config, ServeDeploySchema)
    assert not unknown_keys(config.get("http_options", {}), HTTPOptionsSchema)
    for application in config["applications"]:
        assert not unknown_keys(application, ServeApplicationSchema), application["name"]
        for deployment in application["deployments"]:
            name = deployment["name"]
            assert not unknown_keys(deployment, DeploymentSchema), name
            assert not unknown_keys(deployment.get("ray_actor_options", {}), RayActorOptionsSchema), name
            assert not unknown_keys(deployment.get("autoscaling_config", {}), AutoscalingConfig), name
            assert not unknown_keys(deployment.get("backpressure_config", {}), BackpressureConfig), name
    (app,) = config["applications"]
    assert app["name"] == "acousticsense"
    assert app["route_prefix"] == "/"
    assert app["import_path"].split(":")[0] == "serving.app"
    for deployment in app["deployments"]:
        for key in ("autoscaling_config", "max_ongoing_requests", "max_queued_requests", "ray_actor_options"):
            assert key in deployment, f"{deployment['name']}: missing {key}"
        scaling = deployment["autoscaling_config"]
        assert 0 <= scaling["min_replicas"] <= scaling["max_replicas"]
        assert 0 < scaling["target_ongoing_requests"] <= deployment["max_ongoing_requests"]


def cpus_per_pod(group: dict[str, Any]) -> float:
    cpu = str(ray_container(group)["resources"]["limits"]["cpu"])
    return int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)


@pytest.mark.parametrize(("resource", "per_pod"), [("num_gpus", gpus_per_pod), ("num_cpus", cpus_per_pod)])
def test_rayservice_replicas_fit_the_worker_groups(resource: str, per_pod: Any) -> None:
    """At max_replicas, the deployments fit in the workers at maxReplicas (the head has num-cpus 0)."""
    (app,) = serve_config()["applications"]
    wanted = sum(
        d["autoscaling_config"]["max_replicas"] * d["ray_actor_options"].get(resource, 0) for d in app["deployments"]
    )
    cluster = manifest("rayservice.yaml")["spec"]["rayClusterConfig"]
    available = sum(g["maxReplicas"] * per_pod(g) for g in cluster["workerGroupSpecs"])
    assert 0 < wanted <= available, f"deployments may want {wanted} {resource}, the workers have at most {available}"


def test_rayservice_import_path_and_deployments_exist() -> None:
    app_file = module_file("serving.app")
    if app_file is None:
        pytest.skip("serving/app.py does not exist yet (the Serve application is being written)")
    (app,) = serve_config()["applications"]
    module, _, attribute = app["import_path"].partition(":")
    assert module_file(module) == app_file
    kind = top_level_names(app_file).get(attribute)
    assert kind is not None, f"{app['import_path']}: serving/app.py defines no {attribute!r}"
    if kind == "value":  # an already-built Application: Serve refuses `args` for it
        assert not app.get("args"), f"{app['import_path']} is a built application; args need a builder function"
    missing = {d["name"] for d in app["deployments"]} - serve_deployment_names()
    assert not missing, f"deployments not defined under serving/: {sorted(missing)}"


def test_rayservice_args_are_valid_app_args() -> None:
    if module_file("serving.config") is None:
        pytest.skip("serving/config.py does not exist yet")
    from serving.config import AppArgs

    (app,) = serve_config()["applications"]
    args = AppArgs.model_validate(app.get("args") or {})
    job_model = build_job_model()
    assert args.bundle_uri == job_model, "online and batch should serve the same bundle"


@pytest.mark.parametrize("where", ["infra/serve/config.yaml", "infra/kuberay/rayservice.yaml"])
def test_serve_args_name_only_app_args_fields(where: str) -> None:
    """Both Serve configs name only AppArgs fields, with valid values (the deploy would refuse anything else)."""
    from serving.config import AppArgs

    config = yaml.safe_load(SERVE_CONFIG.read_text()) if where.endswith("config.yaml") else serve_config()
    (app,) = config["applications"]
    args = app.get("args") or {}
    unknown = sorted(set(args) - set(AppArgs.model_fields))
    assert not unknown, f"{where}: args that are not serving.config.AppArgs fields: {unknown}"
    AppArgs.model_validate(args)


def test_the_batch_job_and_the_service_apply_the_same_overrides() -> None:
    """The RayJob's overrides (none today: the bundle's) are the RayService's: same bundle, same predictions."""
    from acousticsense.options import OVERRIDES
    from pipelines.classify import build_parser, options_from_args
    from serving.config import AppArgs

    job = options_from_args(build_parser().parse_args(entrypoint_tokens()[3:]))
    (app,) = serve_config()["applications"]
    service = AppArgs.model_validate(app.get("args") or {})
    assert job.overrides() == service.overrides() and set(job.overrides()) == set(OVERRIDES)


def build_job_model() -> str:
    tokens = entrypoint_tokens()
    return tokens[tokens.index("--model") + 1]


def test_rayservice_agrees_with_serve_config_file() -> None:
    if not SERVE_CONFIG.is_file():
        pytest.skip("infra/serve/config.yaml does not exist yet (the Serve config is being written)")
    local = {a["name"]: a for a in yaml.safe_load(SERVE_CONFIG.read_text())["applications"]}
    for app in serve_config()["applications"]:
        assert app["name"] in local, f"application {app['name']!r} is not in infra/serve/config.yaml"
        theirs = local[app["name"]]
        assert app["import_path"] == theirs["import_path"]
        ours_names = {d["name"] for d in app.get("deployments", [])}
        their_names = {d["name"] for d in theirs.get("deployments", [])}
        assert ours_names == their_names, f"deployments differ: RayService {ours_names}, config.yaml {their_names}"


# ------------------------------------------------------------------------------------------------ Docker


@cache
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def test_dockerfile_base_image_is_the_pinned_ray() -> None:
    args: dict[str, str] = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args[key] = value
        if keyword == "FROM":
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], rest.split()[0])
            break
    else:
        raise AssertionError("no FROM")
    assert re.fullmatch(rf"rayproject/ray:{re.escape(pinned('ray'))}-py3\d+", image), image


def test_dockerfile_copies_existing_paths_and_the_project() -> None:
    copied: set[str] = set()
    for keyword, rest in dockerfile_instructions():
        if keyword in ("COPY", "ADD"):
            sources = [a for a in shlex.split(rest) if not a.startswith("--")][:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
                copied.add(source.rstrip("/"))
    needed = {"requirements.txt", "pyproject.toml", "README.md", "acousticsense", "pipelines", "serving"}
    assert needed <= copied, f"not copied: {sorted(needed - copied)}"


def test_dockerfile_installs_requirements_then_the_project() -> None:
    steps = [(k, r) for k, r in dockerfile_instructions() if k in ("COPY", "RUN")]
    copy_requirements = next(i for i, (k, r) in enumerate(steps) if k == "COPY" and "requirements.txt" in r)
    install_requirements = next(i for i, (k, r) in enumerate(steps) if k == "RUN" and "-r requirements.txt" in r)
    install_project = next(
        i for i, (k, r) in enumerate(steps) if k == "RUN" and re.search(r"pip install --no-deps (-e )?\.", r)
    )
    assert copy_requirements < install_requirements < install_project
    # torch comes from PyTorch's index (CPU or CUDA wheel) at the version requirements.txt pins
    torch_step = next(r for k, r in steps if k == "RUN" and "--index-url" in r)
    assert "torch==" in torch_step and "requirements.txt" in torch_step


def test_docker_build_context_excludes_local_state() -> None:
    patterns = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.strip()}
    assert {".venv", "data", "out", ".git"} <= patterns


# ----------------------------------------------------------------------------------------------- Grafana


@cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # panels of collapsed rows
    return found


def query_panels() -> list[dict[str, Any]]:
    return [p for p in panels() if p["type"] != "row"]


def metric_references(expr: str) -> list[str]:
    return re.findall(r"\b[a-zA-Z_:]*acousticsense_[a-zA-Z0-9_]*", expr)


def base_metric(reference: str) -> str:
    """``ray_acousticsense_stage_seconds_bucket`` -> ``acousticsense_stage_seconds`` (suffix only for histograms)."""
    name = reference.removeprefix("ray_")
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and METRICS.get(name.removesuffix(suffix)) == "histogram":
            return name.removesuffix(suffix)
    return name


def test_metric_contract_matches_the_code() -> None:
    path = ROOT / "pipelines" / "_metrics.py"
    if not path.is_file():
        pytest.skip("pipelines/_metrics.py does not exist")
    defined: dict[str, str] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
            first = node.args[0]
            if node.func.id in ("Counter", "Gauge", "Histogram") and isinstance(first, ast.Constant):
                defined[first.value] = node.func.id.lower()
    assert defined == METRICS, "pipelines/_metrics.py and the dashboard's metric contract differ"


def test_dashboard_is_a_prometheus_dashboard_with_a_datasource_variable() -> None:
    model = dashboard()
    assert model["uid"] and model["title"] and model["schemaVersion"] >= 30
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in query_panels():
        assert panel["gridPos"]["w"] > 0 and panel["gridPos"]["h"] > 0
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_query_uses_known_ray_prefixed_metrics() -> None:
    for panel in query_panels():
        for t in panel["targets"]:
            expr = t["expr"]
            references = metric_references(expr)
            assert references, f"{panel['title']!r}: {expr} mentions no acousticsense_ metric"
            for ref in references:
                assert ref.startswith("ray_acousticsense_"), f"{panel['title']!r}: query {ref} with Ray's ray_ prefix"
                assert base_metric(ref) in METRICS, f"{panel['title']!r}: unknown metric {ref}"
            for opening, closing in ("()", "[]", "{}"):
                assert expr.count(opening) == expr.count(closing), f"{panel['title']!r}: unbalanced {opening}"
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("definition") or ""
        assert all(base_metric(r) in METRICS for r in metric_references(query)), variable["name"]


def test_counters_and_histograms_are_queried_as_rates() -> None:
    for panel in query_panels():
        for t in panel["targets"]:
            expr = t["expr"]
            for ref in metric_references(expr):
                if METRICS[base_metric(ref)] == "gauge":
                    continue
                wrapped = len(re.findall(rf"\b(rate|increase)\(\s*{ref}\b", expr))
                assert wrapped == len(re.findall(rf"\b{ref}\b", expr)), f"{panel['title']!r}: raw counter {ref}"
                if METRICS[base_metric(ref)] == "histogram":
                    assert ref.endswith(HISTOGRAM_SUFFIXES), f"{panel['title']!r}: {ref} has no _bucket/_sum/_count"


def test_dashboard_covers_every_metric_and_the_required_panels() -> None:
    exprs = [t["expr"] for p in query_panels() for t in p["targets"]]
    used = {base_metric(r) for e in exprs for r in metric_references(e)}
    assert used == set(METRICS), f"metrics without a panel: {sorted(set(METRICS) - used)}"
    stage = "ray_acousticsense_stage_seconds_bucket"
    for q in ("0.5", "0.95"):
        assert any(f"histogram_quantile({q}," in e and stage in e and "stage" in e for e in exprs), f"stage p{q}"
    assert any("acousticsense_files_total" in e and "by (status)" in e and "rate(" in e for e in exprs), "files/s"
    assert any('status="error"' in e and "/" in e for e in exprs), "error ratio"
    stacked_genres = [
        p
        for p in query_panels()
        if any("predictions_total" in t["expr"] and "by (genre)" in t["expr"] for t in p["targets"])
        and p.get("fieldConfig", {}).get("defaults", {}).get("custom", {}).get("stacking", {}).get("mode") == "normal"
    ]
    assert stacked_genres, "predictions per genre must be a stacked panel"
    assert any(p["type"] == "heatmap" and "inference_batch_windows_bucket" in p["targets"][0]["expr"] for p in panels())


def test_readme_names_every_metric_in_both_forms() -> None:
    text = (INFRA / "README.md").read_text()
    for name in METRICS:
        assert f"`{name}`" in text and f"ray_{name}" in text, name
