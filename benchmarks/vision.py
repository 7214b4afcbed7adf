"""Vision speed and memory on CPU.

1. Inference images/s at 224² (batch 1 and 32) for van_b0, biformer_tiny and agent_deit_tiny beside
   timm's resnet18, deit_tiny_patch16_224 and convnext_atto, measured in the same run, with each model's
   GMACs so that "slower than its FLOPs suggest" can be read off (images/s × GMACs = effective GMAC/s).
2. Where the time goes for our three: a torch profiler table per model (top operators by self CPU time).
3. Bi-level routing attention against a Swin-style window-attention block of the same width: peak
   memory and time of one block's forward at 224², 512² and 1024² (stage-1 resolution, /4), each in a
   fresh process so the peak is its own.

    python -m benchmarks.vision [--write] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

OURS = ("van_b0", "biformer_tiny", "agent_deit_tiny")
REFERENCE = ("resnet18", "deit_tiny_patch16_224", "convnext_atto")


def _gmacs(model: torch.nn.Module) -> float:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel([SDPBackend.MATH]):
        model(torch.randn(1, 3, 224, 224))
    return counter.get_total_flops() / 2e9


def throughput(names: tuple[str, ...], batches: tuple[int, ...], seconds: float) -> list[dict]:
    import timm

    import services.vision  # noqa: F401 - registers our models

    rows = []
    for name in names:
        model = timm.create_model(name).eval()
        gmacs = _gmacs(model)
        row = {"model": name, "params_M": sum(p.numel() for p in model.parameters()) / 1e6, "GMACs": gmacs}
        for batch in batches:
            x = torch.randn(batch, 3, 224, 224)
            with torch.inference_mode():
                model(x)
                count, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds or count < 3:
                    model(x)
                    count += 1
                elapsed = time.perf_counter() - start
            row[f"img/s b{batch}"] = batch * count / elapsed
            row[f"GMAC/s b{batch}"] = batch * count / elapsed * gmacs
        rows.append(row)
    return rows


def profile(name: str, batch: int = 8, top: int = 6) -> str:
    import timm

    import services.vision  # noqa: F401

    model = timm.create_model(name).eval()
    x = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        model(x)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(x)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=40)


def block_worker(kind: str, size: int) -> dict:
    """One block at stage-1 resolution (size / 4, width 64): the peak resident memory of its first call above
    the resident set just before it, and the time of a second call."""
    import shared_attention as sa
    from services.vision.agent import WindowAttention

    torch.set_num_threads(2)
    side = size // 4
    dim = 64
    x = torch.randn(1, side, side, dim)
    if kind == "bra":
        block = sa.BiLevelRoutingAttention(dim, 2, regions=7, topk=4)
        run = lambda: block(x)  # noqa: E731
    else:
        block = WindowAttention(dim, 2, (side, side), window=7)
        tokens = x.reshape(1, side * side, dim)
        run = lambda: block(tokens)  # noqa: E731
    with torch.inference_mode():
        base = _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:  # resets the peak (VmHWM) to the current resident set
            f.write("5")
        run()  # the first call: its peak is the block's memory (a freed allocator cache would hide a second's)
        peak = _status_kib("VmHWM") - base
        start = time.perf_counter()
        run()  # the second call: its time, without first-call set-up
        elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "peak_mib": max(0, peak) / 1024}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def memory_table(sizes: tuple[int, ...]) -> list[dict]:
    rows = []
    for size in sizes:
        row = {"image": f"{size}²", "tokens": (size // 4) ** 2}
        for kind in ("bra", "window"):
            done = subprocess.run([sys.executable, "-m", "benchmarks.vision", "--block", kind, str(size)],
                                  capture_output=True, text=True, timeout=1800)  # fmt: skip
            result = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {"error": "failed"}
            row[f"{kind} ms"] = result.get("seconds", float("nan")) * 1e3
            row[f"{kind} MiB"] = result.get("peak_mib", float("nan"))
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[k]:,.2f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--quick", action="store_true", help="batch 1 only, short timing windows")
    parser.add_argument("--block", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.block:
        print(json.dumps(block_worker(args.block[0], int(args.block[1]))))
        return 0
    torch.set_num_threads(2)
    batches = (1,) if args.quick else (1, 32)
    speed = throughput(OURS + REFERENCE, batches, 2.0 if args.quick else 8.0)
    memory = memory_table((224, 512) if args.quick else (224, 512, 1024))
    from benchmarks.common import provenance

    sections = [
        "## Vision: CPU inference speed at 224² and routing-attention memory",
        "",
        provenance(),
        "Rerun: `python -m benchmarks.vision --write`. Images/s with 2 threads, random weights, `torch.inference_mode`;"
        " GMAC/s = images/s × GMACs (how busy each model keeps the CPU).",
        "",
        markdown(speed),
        "",
        "One block at stage-1 resolution (image / 4, width 64) — bi-level routing attention (7×7 regions, top-4,"
        " chunked gather) against Swin-style 7×7 window attention — forward time and peak memory above the"
        " inputs, each in a fresh process:",
        "",
        markdown(memory),
        "",
    ]
    for name in OURS:
        sections += [
            f"Profile of {name} (batch 8, top operators by self CPU time):",
            "",
            "```",
            profile(name),
            "```",
            "",
        ]
    text = "\n".join(sections)
    print(text)
    if args.write:
        from benchmarks.common import write_section

        write_section("vision", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
