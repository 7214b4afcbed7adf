"""The pointer solver's evaluation report: every registered champion, every decoding strategy, the
paper's test sizes, the paper's released convex hull set and TSPLIB; logged to MLflow as one run.

    python -m pipelines.pointer report --data data/combinatorial --out pointer_report.md

Reference answers: exact convex hulls and Delaunay triangulations (scipy), exact TSP tours by dynamic
programming up to 12 cities and, beyond, the best of eight nearest-neighbour starts improved by 2-opt
and Or-opt (the report measures that reference against exact tours on a sample of 20-city instances).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.common.tracking import markdown_table, set_experiment
from services.pointer import data as pdata
from services.pointer import problems, tsplib
from services.pointer.solver import Options, solve_many

from .base import registered_name
from .scoring import PROBLEMS, evaluate_decode, test_set

log = logging.getLogger("attention_suite.pointer.report")

# The paper's numbers (Vinyals et al. 2015, Tables 1-2 and §4.3) for the side-by-side columns.
PAPER = {
    ("convex_hull", 5): "92.0% / 99.6% (trained 5-50)",
    ("convex_hull", 10): "87.0% / 99.8% (trained 5-50)",
    ("convex_hull", 50): "72.6% / 99.9% (trained 50); 69.6% (5-50)",
    ("delaunay", 5): "80.7% / 93.0%",
    ("delaunay", 10): "22.6% / 81.3%",
    ("tsp", 5): "2.12 (optimal 2.12)",
    ("tsp", 10): "2.88 (optimal 2.87)",
    ("tsp", 20): "3.88 (optimal 3.83)",
}
SIZES = {"tsp": (5, 10, 20), "convex_hull": (5, 10, 50), "delaunay": (5, 10)}
DECODES = {
    "tsp": [
        Options("greedy"),
        Options("greedy", polish=True),
        Options("beam", beam_width=10),
        Options("sample", samples=64),
        Options("sample", samples=64, polish=True),
    ],
    "convex_hull": [Options("greedy"), Options("beam", beam_width=10)],
    "delaunay": [Options("greedy"), Options("beam", beam_width=10)],
}


def _label(options: Options) -> str:
    text = {"greedy": "greedy", "beam": f"beam {options.beam_width}", "sample": f"sample {options.samples}"}
    return text[options.decode] + (" + 2-opt/Or-opt" if options.polish else "")


def _row(task: str, kind: str, version: str, n: int, options: Options, summary: dict[str, float], ms: float) -> dict:
    row: dict[str, Any] = {"model": f"{kind} v{version}", "n": n, "decode": _label(options)}
    row.update(PROBLEMS[task].columns(summary))
    row["paper (Ptr-Net)"] = PAPER.get((task, n), "")
    row["ms / instance"] = ms
    return row


def model_tables(size: int) -> dict[str, list[dict[str, Any]]]:
    from modelstore import registry

    tables: dict[str, list[dict[str, Any]]] = {task: [] for task in SIZES}
    for task, sizes in SIZES.items():
        scorer = PROBLEMS[task]
        for kind in ("ptrnet", "attention"):
            name = registered_name(task, kind)
            try:
                model, info = registry.load_registered(name)
            except LookupError:
                log.warning("%s has no champion: skipped", name)
                continue
            for n in sizes:
                points, references = test_set(task, n, size)
                for options in DECODES[task]:
                    count = size if options.decode == "greedy" else min(size, 500)
                    start = time.perf_counter()
                    rows = evaluate_decode(model, scorer, points[:count], references[:count], options)
                    ms = (time.perf_counter() - start) * 1e3 / count
                    tables[task].append(_row(task, kind, info.version, n, options, scorer.summarise(rows), ms))
                    log.info("%s n=%d %s: %s", name, n, _label(options), tables[task][-1])
    return tables


def paper_hull_table(path: Path) -> list[dict[str, Any]]:
    """The paper's released n=5 convex hull test set, through the hull champions."""
    from modelstore import registry

    points, hulls = pdata.read_hull_file(path)
    scorer = PROBLEMS["convex_hull"]
    rows = []
    for kind in ("ptrnet", "attention"):
        try:
            model, info = registry.load_registered(registered_name("convex_hull", kind))
        except LookupError:
            continue
        for options in DECODES["convex_hull"]:
            summary = scorer.summarise(evaluate_decode(model, scorer, points, hulls, options))
            rows.append(
                {
                    "model": f"{kind} v{info.version}",
                    "instances": len(points),
                    "decode": _label(options),
                    "accuracy %": 100 * summary["accuracy"],
                    "area %": 100 * summary["area_coverage"],
                    "paper (Ptr-Net, trained 5-50)": "92.0% / 99.6%",
                }
            )
    return rows


def tsplib_table(folder: Path, max_cities: int = 200) -> list[dict[str, Any]]:
    """TSPLIB instances with coordinates and at most ``max_cities`` cities: gap to the optimum."""
    from modelstore import registry

    best = tsplib.read_solutions(folder / "solutions")
    model, info = registry.load_registered(registered_name("tsp", "attention"))
    rows = []
    for path in sorted(folder.glob("*.tsp")):
        try:
            instance = tsplib.read_tsp(path)
        except ValueError:
            continue  # explicit weight matrices have no coordinates for a planar model
        if instance.dimension > max_cities or instance.name not in best:
            continue
        points = problems.check_points(instance.planar(), allow_collinear=True)
        dist = instance.distances()
        optimum = best[instance.name]
        row: dict[str, Any] = {
            "instance": instance.name,
            "n": instance.dimension,
            "type": instance.edge_weight_type,
            "optimum": optimum,
        }
        for options in (Options("greedy"), Options("sample", samples=64)):
            start = time.perf_counter()
            tour = solve_many(model, "tsp", [points], options)[0]["tour"]
            polished = problems.polish(dist, tour)
            row[f"{_label(options)} gap %"] = 100 * (problems.tour_cost(dist, tour) / optimum - 1)
            row[f"{_label(options)} + polish gap %"] = 100 * (problems.tour_cost(dist, polished) / optimum - 1)
            row[f"{_label(options)} + polish s"] = time.perf_counter() - start
        rows.append(row)
        log.info("TSPLIB %s: %s", instance.name, row)
    if rows:
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k.endswith("%")}
        rows.append({"instance": f"mean of {len(rows)}", "n": "", "type": "", "optimum": "", **mean})
    for row in rows:
        row["model"] = f"attention v{info.version}"
    return rows


def reference_check(count: int = 50, n: int = 20) -> dict[str, float]:
    """How far the n=20 reference (multi-start 2-opt + Or-opt) is from exact Held-Karp tours."""
    points, references = test_set("tsp", n, 1000)
    exact = [problems.held_karp(problems.distance_matrix(p))[0] for p in points[:count]]
    gaps = [r / e - 1 for r, e in zip(references[:count], exact)]
    return {
        "instances": count,
        "mean_gap_pct": 100 * float(np.mean(gaps)),
        "max_gap_pct": 100 * float(np.max(gaps)),
        # points are float32 values, so equal tours differ in length by ~1e-7 relative
        "optimal_share_pct": 100 * float(np.mean(np.abs(gaps) < 1e-6)),
    }


def configure(parser: argparse.ArgumentParser) -> None:
    """The ``report`` command's arguments."""
    parser.add_argument("--data", help="folder with convex_hull_5_test.txt and tsplib/ (optional)")
    parser.add_argument("--size", type=int, default=1000, help="test instances per (task, n)")
    parser.add_argument("--out", default=None, help="also write the markdown tables to this file")


def run_report(args: argparse.Namespace) -> int:
    import mlflow

    sections = []
    tables = model_tables(args.size)
    titles = {
        "tsp": "TSP: mean tour length (uniform points)",
        "convex_hull": "Convex hull: exact accuracy and area",
        "delaunay": "Delaunay: exact accuracy and triangle coverage",
    }
    for task, rows in tables.items():
        if rows:
            sections.append(f"### {titles[task]}\n\n{markdown_table(rows)}")
    check = reference_check()
    sections.append(
        "TSP reference at n = 20 (multi-start 2-opt + Or-opt) against exact Held-Karp tours on "
        f"{check['instances']} test instances: mean gap {check['mean_gap_pct']:.3f}%, "
        f"max {check['max_gap_pct']:.3f}%, optimal on {check['optimal_share_pct']:.0f}%.\n"
    )
    if args.data:
        folder = Path(args.data)
        hull_file = folder / "convex_hull_5_test.txt"
        if hull_file.exists():
            table = markdown_table(paper_hull_table(hull_file))
            sections.append(f"### Convex hull, the paper's released n = 5 test set\n\n{table}")
        if (folder / "tsplib").is_dir():
            rows = tsplib_table(folder / "tsplib")
            title = "### TSPLIB (≤ 200 cities; gap to the optimum in each instance's metric)"
            sections.append(f"{title}\n\n{markdown_table(rows)}")
    text = "\n".join(sections)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    experiment = set_experiment("pointer")
    with mlflow.start_run(run_name="report", experiment_id=experiment.experiment_id):
        mlflow.log_text(text, "report/pointer_report.md")
        mlflow.log_params({"size": args.size, "data": args.data or ""})
        mlflow.log_metrics({f"reference/{k}": v for k, v in check.items()})
    return 0
