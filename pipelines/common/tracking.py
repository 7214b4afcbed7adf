"""Where runs live and what MLflow sees of them: the suite's home, the tracking store, experiments,
metric names, tables and figures (learning curves, confusion matrices)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .storage import Storage, storage_uri


# ----------------------------------------------------------------------------------------- locations
def suite_home() -> Path:
    """Where runs, checkpoints and the default MLflow store live (``ATTENTION_SUITE_HOME``)."""
    home = Path(os.environ.get("ATTENTION_SUITE_HOME", Path.home() / ".attention-suite")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a sqlite store in :func:`suite_home`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{suite_home() / 'mlflow.db'}"


def storage() -> Storage:
    """The run storage (``ATTENTION_SUITE_STORAGE``, default ``<home>/ray_results``)."""
    return Storage.from_uri(storage_uri(suite_home()))


def set_experiment(name: str):
    """Create (with local artifacts next to a sqlite store) or select the experiment ``name``."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    if mlflow.get_experiment_by_name(name) is None:
        location = None
        if tracking_uri().startswith("sqlite:"):
            location = (suite_home() / "mlartifacts" / name).as_uri()
        try:
            mlflow.create_experiment(name, artifact_location=location)
        except Exception:  # created concurrently by another process
            if mlflow.get_experiment_by_name(name) is None:
                raise
    return mlflow.set_experiment(name)


def metric_name(key: str) -> str:
    """MLflow accepts letters, digits and ``_-. :/`` in metric names: ``HR@10`` becomes ``HR_at_10``."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", key.replace("@", "_at_"))


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts as MLflow params: ``{"preset": {"lr": 1e-3}}`` becomes ``{"preset.lr": "0.001"}``."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flatten_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as a Markdown table (floats to 4 significant digits)."""
    if not rows:
        return ""
    keys = list(rows[0])

    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def log_figures(figures: dict[str, Any]) -> None:
    """Log each figure to the active MLflow run under ``plots/`` and close it (pyplot keeps every figure
    alive until closed)."""
    import matplotlib.pyplot as plt
    import mlflow

    for artifact, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{artifact}")
        plt.close(figure)


def learning_curves(run_id: str) -> dict[str, Any]:
    """One figure of every logged train/ and val/ metric against its step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    client = MlflowClient()
    keys = sorted(k for k in client.get_run(run_id).data.metrics if k.startswith(("train/", "val/")))
    if not keys:
        return {}
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        ax.plot([m.step for m in history], [m.value for m in history], marker="." if len(history) < 50 else None)
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step (train/*: optimizer steps; epoch metrics: epochs)")
    fig.tight_layout()
    return {"learning_curves.png": fig}


def confusion_figure(labels: np.ndarray, predictions: np.ndarray, classes: list[str]):
    """A confusion matrix (rows true, columns predicted) with its counts, sized to the number of classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(labels, predictions, labels=list(range(len(classes))))
    size = max(4, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            color = "white" if count > matrix.max() / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", fontsize=6, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return fig
