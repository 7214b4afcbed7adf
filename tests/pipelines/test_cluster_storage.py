"""Checkpoints a cluster can see: a training job on a two-node Ray cluster (a head and a second
``ray start --address`` node on this machine, one CPU each, so the two workers run on different
nodes) whose run storage is an S3 bucket on a local S3-compatible server (moto). A worker is killed
after the first epoch; the job resumes from the checkpoint it finds through the URI and finishes every
epoch, and nothing of the run is written to a node's own disk."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pyarrow.fs as pafs
import pytest

VENV_BIN = Path(sys.executable).parent
AWS = {"AWS_ACCESS_KEY_ID": "suite", "AWS_SECRET_ACCESS_KEY": "suite", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_bucket(monkeypatch):
    port = _free_port()
    server = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        uri = f"s3://suite-runs/checkpoints?endpoint_override=127.0.0.1:{port}&scheme=http"
        for key, value in AWS.items():  # pyarrow reads credentials from the environment
            monkeypatch.setenv(key, value)
        pafs.FileSystem.from_uri(uri + "&allow_bucket_creation=true")[0].create_dir("suite-runs")
        fs, _ = pafs.FileSystem.from_uri(uri)
        yield uri, fs
    finally:
        server.terminate()
        server.wait(timeout=30)


def _ray(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([str(VENV_BIN / "ray"), *args], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def two_nodes():
    """A Ray head and a second node; stopped by killing exactly their processes (``ray stop`` would
    stop every Ray cluster on the machine)."""
    temp = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths live under it
    # token auth with a token of its own: a fresh machine has no ~/.ray/auth_token for `ray start` to read
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    port = _free_port()
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    try:
        _ray("start", "--head", "--temp-dir", temp, "--port", str(port), "--include-dashboard", "false",
             "--ray-client-server-port", str(_free_port()), *common, env=env)  # fmt: skip
        from ray._private.services import get_node_ip_address

        address = f"{get_node_ip_address()}:{port}"
        _ray("start", "--address", address, *common, env=env)
        yield address, env
    finally:
        for proc in psutil.process_iter(["cmdline"]):
            if any(temp in part for part in proc.info["cmdline"] or []):
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass


def test_killed_job_on_two_nodes_resumes_from_object_store_checkpoints(s3_bucket, two_nodes, tmp_path):
    uri, fs = s3_bucket
    address, env = two_nodes
    home = tmp_path / "home"
    driver = (
        "import dataclasses, json\n"
        "from pipelines.common.driver import train\n"
        "from pipelines.pointer import PRESETS, ReinforcePipeline\n"
        "preset = dataclasses.replace(PRESETS['tiny-tsp'], name='s3-tsp', epochs=3, cpus_per_worker=1)\n"
        "out = train(ReinforcePipeline, preset, workers=2, fail_at_epoch=0, promote=False)\n"
        "import ray\n"
        "nodes = sum(1 for n in ray.nodes() if n['Alive'])\n"
        "print('OUTCOME', json.dumps({'epochs': out.epochs_completed, 'run': out.run_name, 'nodes': nodes}))\n"
    )
    run_env = {
        **env,
        **AWS,
        "RAY_ADDRESS": address,
        "ATTENTION_SUITE_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "ATTENTION_SUITE_STORAGE": uri,
    }
    done = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, env=run_env, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    outcome = json.loads(done.stdout.split("OUTCOME", 1)[1])
    assert outcome["nodes"] == 2
    assert outcome["epochs"] == 3  # the killed worker cost no epoch
    run = f"suite-runs/checkpoints/{outcome['run']}"
    stored = {info.path.removeprefix(run + "/") for info in fs.get_file_info(pafs.FileSelector(run, recursive=True))}
    assert {"run_info.json", "fault-injected"} <= stored, stored
    assert any(p.startswith("checkpoint_") and p.endswith("/state.pt") for p in stored), stored
    assert not (home / "ray_results").exists()  # nothing of the run on a node's own disk
