"""Hiformer serving speed on CPU: full rank against trained low-rank composite projections, with and
without last-layer pruning, at several request sizes and two widths.

Timing does not depend on the weights, so the models are untrained, shaped like the ``hiformer-synthetic``
preset (8 categorical fields and 2 dense ones, 10 tokens with the task token, 2 layers, 2 heads) at
``d = 16`` (the preset) and ``d = 64`` (a wider model, where the composite projections weigh more). Every
ratio is against the full-rank, unpruned model measured in the same run; one thread, median of repeated
requests (``pipelines.recommendation.clicks.request_ms``). The AUC side of the trade-off comes from trained
runs (README, Recommendation).

    python -m benchmarks.hiformer_serving [--write] [--quick]
"""

from __future__ import annotations

import argparse
import sys

from pipelines.common.tracking import markdown_table
from pipelines.recommendation.clicks import request_ms
from services.recommendation import ctr, ranking


def sweep(dims: tuple[int, ...], ranks: tuple[int, ...], candidates: tuple[int, ...], repeats: int) -> list[dict]:
    data = ctr.synthetic_ctr(max(candidates), seed=0)
    tensors = (data.categorical, data.dense, data.labels)
    rows = []
    for dim in dims:
        base = {"kind": "hiformer", "cardinalities": data.cardinalities, "num_dense": 2, "dim": dim,
                "heads": 2, "head_dim": dim // 2}  # fmt: skip
        baseline: dict[int, float] = {}
        for rank in (None, *ranks):
            model = ranking.build_model({**base, "rank": rank})
            for pruned in (False, True):
                served = model.for_serving() if pruned else model.eval()
                row = {"d": dim, "projections": "full" if rank is None else f"rank {rank}", "pruned": pruned}
                for n in candidates:
                    ms = request_ms(served, tensors, candidates=n, repeats=repeats)
                    baseline.setdefault(n, ms)  # the first model timed is the full-rank, unpruned one
                    row[f"ms @{n}"] = ms
                    row[f"speed-up @{n}"] = baseline[n] / ms
                rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    """The sweep as a table: milliseconds to three decimals, speed-ups as ``1.23×``."""
    return markdown_table([
        {k: f"{v:.2f}×" if k.startswith("speed") else f"{v:.3f}" if isinstance(v, float) else v for k, v in row.items()}
        for row in rows
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="replace the section in benchmarks/RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="d = 16, ranks 8 and 16, 64 and 1,024 candidates")
    args = parser.parse_args(argv)
    if args.quick:
        rows = sweep((16,), (8, 16), (64, 1024), repeats=10)
    else:
        rows = sweep((16, 64), (8, 16, 32), (64, 256, 1024), repeats=50)
    from benchmarks.common import provenance

    text = "\n".join([
        "## Hiformer serving: low-rank composite projections and last-layer pruning (CPU)",
        "",
        provenance(),
        "One thread, median milliseconds per request of N candidates; untrained models shaped like the"
        " `hiformer-synthetic` preset (10 tokens, 2 layers, 2 heads) at d = 16 (the preset) and d = 64; speed-ups"
        " against the full-rank unpruned model of the same width in the same run. Rerun:"
        " `python -m benchmarks.hiformer_serving --write`.",
        "",
        markdown(rows),
        "",
    ])  # fmt: skip
    print(text)
    if args.write:
        from benchmarks.common import write_section

        write_section("hiformer_serving", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
