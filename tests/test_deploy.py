"""The deploy files parse, name only things that exist in the code, and agree with each other."""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path

import yaml

from modelstore.artifacts import resolve

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# app -> route prefix, as the README and issues define them (the studio: a page per domain app)
ROUTES = {"pointer": "/pointer", "recommend": "/recommend", "vision": "/vision", "genomics": "/genomics",
          "studio": "/studio"}  # fmt: skip
PIPELINES = {"pointer", "recommendation", "vision", "genomics"}  # each needs a RayJob manifest


def _serve_config() -> dict:
    return yaml.safe_load((DEPLOY / "serve.yaml").read_text())


def _rayservice_config() -> dict:
    manifest = yaml.safe_load((DEPLOY / "kuberay" / "rayservice.yaml").read_text())
    assert manifest["kind"] == "RayService"
    return yaml.safe_load(manifest["spec"]["serveConfigV2"])


def test_serve_config_apps_exist_and_have_their_routes():
    apps = _serve_config()["applications"]
    assert {a["name"]: a["route_prefix"] for a in apps} == ROUTES
    for app in apps:
        builder = resolve(app["import_path"])
        assert callable(builder)
        assert app["args"]["tracking_uri"] == app["runtime_env"]["env_vars"]["MLFLOW_TRACKING_URI"]
        assert "working_dir" not in app.get("runtime_env", {})  # must be a remote URI in Serve configs


def test_rayservice_carries_the_same_applications():
    local, cluster = _serve_config()["applications"], _rayservice_config()["applications"]

    def comparable(app: dict) -> dict:
        app = yaml.safe_load(yaml.safe_dump(app))
        app["args"].pop("tracking_uri")
        app["args"].pop("num_cpus")  # CPU shares are sized per cluster (see serve.yaml's header)
        app["runtime_env"]["env_vars"].pop("MLFLOW_TRACKING_URI")
        return app

    assert [comparable(a) for a in local] == [comparable(a) for a in cluster]


def _entrypoint_exists(entrypoint: str) -> None:
    words = shlex.split(entrypoint)
    assert words[:2] == ["python", "-m"], entrypoint
    module = importlib.import_module(words[2])
    assert hasattr(module, "main"), f"{words[2]} has no main()"
    for flag in ("--preset", "--task"):  # genomics' `finetune --task T` runs preset T
        if flag in words:
            preset = words[words.index(flag) + 1]
            assert preset in module.DOMAIN.presets, f"{words[2]} has no preset {preset}"


def test_rayjobs_name_existing_pipelines_and_presets():
    jobs = sorted((DEPLOY / "kuberay").glob("rayjob-*.yaml"))
    assert jobs, "no RayJob manifests"
    covered = set()
    for path in jobs:
        manifest = yaml.safe_load(path.read_text())
        assert manifest["kind"] == "RayJob"
        _entrypoint_exists(manifest["spec"]["entrypoint"])
        covered.add(shlex.split(manifest["spec"]["entrypoint"])[2])
    pipelines = {f"pipelines.{domain}" for domain in PIPELINES}
    assert pipelines <= covered, f"pipelines without a RayJob: {pipelines - covered}"


def test_rayjobs_keep_checkpoints_where_every_pod_reads_them():
    for path in sorted((DEPLOY / "kuberay").glob("rayjob-*.yaml")):
        spec = yaml.safe_load(path.read_text())["spec"]
        storage = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]["ATTENTION_SUITE_STORAGE"]
        assert storage.startswith("s3://"), f"{path.name}: {storage} is not shared by the pods"
        pods = [spec["rayClusterSpec"]["headGroupSpec"], *spec["rayClusterSpec"]["workerGroupSpecs"]]
        for group in pods:
            (container,) = group["template"]["spec"]["containers"]
            assert container["envFrom"], f"{path.name}: {container['name']} gets no storage credentials"


def test_cluster_launcher_config_and_up_script_entrypoints():
    cluster = yaml.safe_load((DEPLOY / "cluster.yaml").read_text())
    assert cluster["provider"]["type"] == "local"
    assert any("pip install -e" in c for c in cluster["setup_commands"])
    up = (DEPLOY / "up.sh").read_text()
    for line in up.splitlines():
        if line.strip().startswith(('"pointer-', '"recommend-', '"vision-', '"genomics-')):
            _, module, preset = line.strip().strip('"').split()
            _entrypoint_exists(f"python -m {module} train --preset {preset}")


def test_every_serve_cluster_waits_for_proxies_as_make_up_does():
    """deploy/env.sh raises Serve's 5 s proxy ready check; the cluster definitions set the same value."""
    (line,) = [x for x in (DEPLOY / "env.sh").read_text().splitlines() if "PROXY_READY_CHECK_TIMEOUT_S=" in x]
    value = line.split(":-")[1].split("}")[0]
    cluster = yaml.safe_load((DEPLOY / "kuberay" / "rayservice.yaml").read_text())["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        (container,) = group["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        assert env.get("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S") == value, container["name"]
    spec = yaml.safe_load((DEPLOY / "cluster.yaml").read_text())
    (head,) = [c for c in spec["head_start_ray_commands"] if "ray start" in c]
    assert f"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S={value} " in head
