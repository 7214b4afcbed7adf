"""Where runs and checkpoints live: one URI that every node of the cluster reaches.

``ATTENTION_SUITE_STORAGE`` is a local path (one machine, or a shared mount such as the KubeRay
manifests' volume) or a pyarrow filesystem URI such as
``s3://bucket/prefix?endpoint_override=host:port&scheme=http`` (credentials from the usual ``AWS_*``
variables); the default is ``$ATTENTION_SUITE_HOME/ray_results``. Ray Train writes its checkpoints
there through the same filesystem, and the harness reads runs and checkpoints back only through it,
never from a node's own disk.

Layout, as Ray Train writes it: ``<root>/<run name>/run_info.json`` and
``<root>/<run name>/checkpoint_<time>/state.pt``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch

STATE_FILE = "state.pt"
RUN_INFO = "run_info.json"


@dataclass(frozen=True)
class Storage:
    uri: str
    fs: pafs.FileSystem
    root: str  # the root path inside ``fs``

    @classmethod
    def from_uri(cls, uri: str) -> Storage:
        if "://" not in uri:  # a plain path: the local filesystem (or a mount every node shares)
            path = Path(uri).expanduser().resolve()
            path.mkdir(parents=True, exist_ok=True)
            return cls(uri, pafs.LocalFileSystem(), str(path))
        fs, root = pafs.FileSystem.from_uri(uri)
        return cls(uri, fs, root.rstrip("/"))

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    # ------------------------------------------------------------------------------ files
    def write_bytes(self, path: str, data: bytes) -> None:
        """Write ``data`` so that readers see the whole file or none of it (a temporary name, then a
        move: a rename on a disk, one PUT on an object store)."""
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        self.fs.move(tmp, path)

    def read_bytes(self, path: str) -> bytes | None:
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(path) as f:
            return f.read()

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def children(self, path: str, prefix: str = "") -> list[str]:
        """Names of the directories directly under ``path`` that start with ``prefix``, sorted."""
        if self.fs.get_file_info(path).type != pafs.FileType.Directory:
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        names = [i.base_name for i in infos if i.type == pafs.FileType.Directory]
        return sorted(n for n in names if n.startswith(prefix))

    # ------------------------------------------------------------------------------ runs
    def write_run_info(self, run_name: str, info: dict[str, Any]) -> None:
        self.write_bytes(self.path(run_name, RUN_INFO), json.dumps(info, indent=2).encode())

    def read_run_info(self, run_name: str) -> dict[str, Any] | None:
        data = self.read_bytes(self.path(run_name, RUN_INFO))
        return None if data is None else json.loads(data)

    def latest_run(self, prefix: str) -> str | None:
        """The newest run whose name starts with ``prefix`` (run names end in their start time)."""
        runs = [name for name in self.children(self.root, prefix) if self.exists(self.path(name, RUN_INFO))]
        return runs[-1] if runs else None

    # ------------------------------------------------------------------------------ checkpoints
    def save_state(self, run_name: str, state: dict[str, Any], keep: int = 2) -> None:
        """A new ``checkpoint_<time>`` of ``run_name`` holding ``state``; the newest ``keep`` are kept."""
        stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S.%f")
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.write_bytes(self.path(run_name, f"checkpoint_{stamp}", STATE_FILE), buffer.getvalue())
        for old in self.children(self.path(run_name), "checkpoint_")[:-keep]:
            self.fs.delete_dir(self.path(run_name, old))

    def latest_state(self, run_name: str) -> dict[str, Any] | None:
        """The newest complete checkpoint state of ``run_name`` (Ray Train names them by time)."""
        for name in reversed(self.children(self.path(run_name), "checkpoint_")):
            data = self.read_bytes(self.path(run_name, name, STATE_FILE))
            if data is None:
                continue
            try:
                return torch.load(io.BytesIO(data), weights_only=False)
            except (RuntimeError, EOFError):  # unreadable: try the one before
                continue
        return None

    def ray_train_storage(self) -> dict[str, Any]:
        """``RunConfig`` arguments that make Ray Train write into this storage."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            return {"storage_path": self.root}
        return {"storage_path": self.root, "storage_filesystem": self.fs}


def storage_uri(home: Path) -> str:
    return os.environ.get("ATTENTION_SUITE_STORAGE") or str(home / "ray_results")
