"""`make up`'s head (deploy/head.sh: MLflow, the Ray head, Serve's proxy) listens on loopback only:
the listening sockets of every process it started, workers and agents included, are on 127.0.0.1/::1."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _started_processes(run: Path, ray_tmp: str) -> dict[int, psutil.Process]:
    roots = [p for p in psutil.process_iter(["cmdline"]) if any(ray_tmp in c for c in p.info["cmdline"] or [])]
    roots.append(psutil.Process(int((run / "mlflow.pid").read_text())))
    procs = {}
    for proc in roots:
        try:
            procs.update((p.pid, p) for p in (proc, *proc.children(recursive=True)))
        except psutil.NoSuchProcess:
            pass
    return procs


def _alive_name(proc: psutil.Process) -> str | None:
    try:
        return proc.name() if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE else None
    except psutil.NoSuchProcess:
        return None


def test_make_up_head_listens_on_loopback_only(tmp_path):
    run = tmp_path / "run"
    ray_tmp = tempfile.mkdtemp(prefix="lb", dir="/tmp")
    names = "MLFLOW_PORT RAY_DASHBOARD_PORT SERVE_PORT RAY_GCS_PORT RAY_CLIENT_PORT RAY_AGENT_PORT RAY_METRICS_PORT"
    ports = {name: str(_free_port()) for name in names.split()}
    env = {**os.environ, **ports, "RUN": str(run), "RAY_TMP": ray_tmp, "RAY_NUM_CPUS": "1"}
    env.pop("RAY_ADDRESS", None)
    started: list[psutil.Process] = []
    try:
        done = subprocess.run([str(ROOT / "deploy" / "head.sh")], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        wanted = {int(ports[k]) for k in ("MLFLOW_PORT", "RAY_DASHBOARD_PORT", "SERVE_PORT", "RAY_GCS_PORT")}
        deadline = time.monotonic() + 60
        while True:  # the proxy and the agents come up a little after the script returns on a busy machine
            procs = _started_processes(run, ray_tmp)
            pids, started = set(procs), list(procs.values())
            listening = {
                (c.laddr.ip, c.laddr.port)
                for c in psutil.net_connections("inet")
                if c.status == "LISTEN" and c.pid in pids
            }
            if wanted <= {port for _, port in listening} or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert wanted <= {port for _, port in listening}, (wanted, listening)
        exposed = sorted((ip, port) for ip, port in listening if not _loopback(ip))
        print(f"{len(listening)} listening sockets of {len(pids)} processes; beyond loopback: {exposed}")
        assert not exposed, exposed
    finally:
        subprocess.run([str(ROOT / "deploy" / "down.sh")], env=env, capture_output=True, timeout=120)
    left = [p for p in psutil.process_iter(["cmdline"]) if any(ray_tmp in c for c in p.info["cmdline"] or [])]
    assert not left, "make down left processes of the head running"
    # the children too (the raylet's agents rename themselves, so no command line names the temp dir)
    psutil.wait_procs(started, timeout=20)  # terminated in down.sh; MLflow's workers take a moment to exit
    orphans = [name for name in map(_alive_name, started) if name]
    assert not orphans, f"make down left processes the head started running: {orphans}"
