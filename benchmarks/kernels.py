"""Correctness and speed of the Triton kernels on a GPU (the lent H200), in one run.

1. Correctness in bf16 against an fp32 reference (relative error <= 1e-2, no NaN), with every output
   buffer poisoned with NaN before the run, so an element a kernel fails to write shows up.
2. Softmax and sigmoid attention against ``scaled_dot_product_attention`` with the flash backend: bf16,
   head dims 64 and 128, sequence 1k/4k/16k at batch x seq = 32k tokens and model width 2048, causal and
   not, forward and forward+backward, in TFLOP/s (4·B·H·N²·D, halved when causal, x3.5 for fwd+bwd).
3. Lightning attention forward and forward+backward tokens/s from 2k to 128k tokens per sequence at 128k
   tokens per batch (16 heads x 128), beside flash-linear-attention's ``chunk_lightning_attn`` (when the
   ``fla`` package is importable) and softmax SDPA (causal) at the same lengths.

Times are medians of ``triton.testing.do_bench`` (device events, warm-up excluded). The table goes to
``benchmarks/RESULTS.md`` with date, commit, GPU and versions.

    python -m benchmarks.kernels --write          # on the GPU machine
    python -m benchmarks.kernels --smoke          # CPU, Triton interpreter, tiny shapes: checks the script
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

import torch


def _sdpa_flash(q, k, v, causal):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


def _ours(score):
    from kernels.attention import fused_attention

    def run(q, k, v, causal):
        return fused_attention(q, k, v, score=score, causal=causal)

    return run


def _bench(fn, smoke: bool) -> float:
    """Median milliseconds."""
    if smoke:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3
    import triton

    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def check_correctness(device: str, dtype: torch.dtype, smoke: bool) -> list[dict]:
    """bf16 (fp32 on the CPU interpreter) kernels against fp32 references, outputs poisoned."""
    from kernels import poisoned_outputs

    with poisoned_outputs():
        return _check_correctness(device, dtype, smoke)


def _check_correctness(device: str, dtype: torch.dtype, smoke: bool) -> list[dict]:
    import shared_attention as sa

    rows = []
    shapes = [(1, 2, 70, 32)] if smoke else [(2, 16, 1000, 128), (2, 32, 1000, 64), (1, 16, 4097, 128)]
    for b, h, n, d in shapes:
        g = torch.Generator(device=device).manual_seed(0)
        q, k, v = (torch.randn(b, h, n, d, device=device, generator=g, dtype=torch.float32) for _ in range(3))
        lengths = torch.tensor([n - 7] * b, device=device)
        for name, run in {
            "softmax": lambda *a, **kw: sa.softmax_attention(*a, **kw),
            "sigmoid": lambda *a, **kw: sa.sigmoid_attention(*a, **kw),
        }.items():
            for causal in (False, True):
                leaves = [t.detach().to(dtype).clone().requires_grad_(True) for t in (q, k, v)]
                out = run(*leaves, causal=causal, key_lengths=lengths, backend="triton")
                out.float().square().sum().backward()
                refs = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
                ref = run(*refs, causal=causal, key_lengths=lengths, backend="torch")
                ref.square().sum().backward()
                errors = [_rel(out, ref)] + [_rel(a.grad, r.grad) for a, r in zip(leaves, refs)]
                rows.append({"kernel": name, "shape": f"{b}x{h}x{n}x{d}", "causal": causal,
                             "max_rel_err": max(errors), "nan": not torch.isfinite(out).all().item(),
                             "ok": max(errors) <= 1e-2 and torch.isfinite(out).all().item()})  # fmt: skip
        slopes = sa.alibi_slopes(h).to(device)
        leaves = [t.detach().to(dtype).clone().requires_grad_(True) for t in (q, k, v)]
        out = sa.lightning_attention(*leaves, slopes, key_lengths=lengths, backend="triton")
        out.float().square().sum().backward()
        refs = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
        ref = sa.lightning_attention(*refs, slopes, key_lengths=lengths, backend="torch")
        ref.square().sum().backward()
        errors = [_rel(out, ref)] + [_rel(a.grad, r.grad) for a, r in zip(leaves, refs)]
        rows.append({"kernel": "lightning", "shape": f"{b}x{h}x{n}x{d}", "causal": True,
                     "max_rel_err": max(errors), "nan": not torch.isfinite(out).all().item(),
                     "ok": max(errors) <= 1e-2})  # fmt: skip
    return rows


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative RMS error ‖a - b‖ / ‖b‖ (fla's criterion), nan if a has NaN."""
    a, b = a.detach().double(), b.detach().double()
    if not torch.isfinite(a).all():
        return math.nan
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def attention_speed(device: str, dtype: torch.dtype, smoke: bool) -> list[dict]:
    rows = []
    tokens, width = (256, 64) if smoke else (32 * 1024, 2048)
    for d in (32,) if smoke else (64, 128):
        heads = width // d
        for n in (64, 128) if smoke else (1024, 4096, 16384):
            b = max(1, tokens // n)
            q, k, v = (torch.randn(b, heads, n, d, device=device, dtype=dtype) for _ in range(3))
            for causal in (False, True):
                flops = 4 * b * heads * n * n * d * (0.5 if causal else 1.0)
                for mode in ("fwd", "fwd+bwd"):
                    row = {"head_dim": d, "seq": n, "batch": b, "causal": causal, "mode": mode}
                    for name, fn in {"sdpa_flash": _sdpa_flash, "softmax": _ours("softmax"),
                                     "sigmoid": _ours("sigmoid")}.items():  # fmt: skip
                        if smoke and name == "sdpa_flash":
                            continue
                        row[name] = _tflops(fn, q, k, v, causal, mode, flops, smoke)
                    rows.append(row)
    return rows


def _tflops(fn, q, k, v, causal, mode, flops, smoke) -> float:
    if mode == "fwd":
        ms = _bench(lambda: fn(q, k, v, causal), smoke)
        return flops / ms / 1e9
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    grad = torch.randn_like(q)

    def step():
        out = fn(*leaves, causal)
        out.backward(grad)

    ms = _bench(step, smoke)
    return 3.5 * flops / ms / 1e9


def lightning_speed(device: str, dtype: torch.dtype, smoke: bool) -> list[dict]:
    import shared_attention as sa

    have_fla = importlib.util.find_spec("fla") is not None
    rows = []
    heads, d = (2, 32) if smoke else (16, 128)
    total = 256 if smoke else 128 * 1024
    for n in (64, 128) if smoke else (2048, 8192, 32768, 131072):
        b = max(1, total // n)
        q, k, v = (torch.randn(b, heads, n, d, device=device, dtype=dtype) * 0.1 for _ in range(3))
        slopes = sa.alibi_slopes(heads).to(device)
        row = {"seq": n, "batch": b}
        for mode in ("fwd", "fwd+bwd"):

            def ours(q=q, k=k, v=v, slopes=slopes):
                return sa.lightning_attention(q, k, v, slopes, backend="triton")

            row[f"ours {mode}"] = _tokens_per_s(ours, (q, k, v), mode, b * n, smoke)
            if have_fla and not smoke:
                from fla.ops.lightning_attn import chunk_lightning_attn

                def fla(q=q, k=k, v=v):  # fla takes [B, T, H, K]
                    out, _ = chunk_lightning_attn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                  layer_idx=0, num_layers=12)  # fmt: skip
                    return out

                row[f"fla {mode}"] = _tokens_per_s(fla, (q, k, v), mode, b * n, smoke)
            if not smoke and n <= 32768:

                def sdpa(q=q, k=k, v=v):
                    return _sdpa_flash(q, k, v, True)

                row[f"sdpa {mode}"] = _tokens_per_s(sdpa, (q, k, v), mode, b * n, smoke)
        rows.append(row)
    return rows


def _tokens_per_s(fn, tensors, mode, tokens, smoke) -> float:
    if mode == "fwd":
        ms = _bench(lambda: fn(*tensors), smoke)
    else:
        leaves = [t.detach().clone().requires_grad_(True) for t in tensors]

        def step():
            fn(*leaves).float().sum().backward()

        ms = _bench(step, smoke)
    return tokens / ms * 1e3 / 1e6  # M tokens / s


def _verdict(what: str, value: float, target: float, note: str = "") -> str:
    return f"- {what}: {value:.2f}x (target >= {target}x{note}): {'met' if value >= target else 'MISSED'}"


def _targets(attention: list[dict], lightning: list[dict]) -> list[str]:
    lines = []
    big = [r for r in attention if r["seq"] >= 4096 and "sdpa_flash" in r]
    if big:
        fwd = min(r["softmax"] / r["sdpa_flash"] for r in big if r["mode"] == "fwd")
        bwd = min(r["softmax"] / r["sdpa_flash"] for r in big if r["mode"] == "fwd+bwd")
        sig_f = min(r["sigmoid"] / r["softmax"] for r in attention if r["mode"] == "fwd")
        sig_b = min(r["sigmoid"] / r["softmax"] for r in attention if r["mode"] == "fwd+bwd")
        lines += [
            _verdict("softmax forward / SDPA flash, worst shape with N >= 4k", fwd, 1.0, ", stretch 1.2x"),
            _verdict("softmax fwd+bwd / SDPA flash, worst shape with N >= 4k", bwd, 0.9),
            _verdict("sigmoid / softmax forward, worst shape", sig_f, 1.15),
            _verdict("sigmoid / softmax fwd+bwd, worst shape", sig_b, 1.05),
        ]
    if lightning and "fla fwd" in lightning[0]:
        for mode in ("fwd", "fwd+bwd"):
            ratio = min(r[f"ours {mode}"] / r[f"fla {mode}"] for r in lightning)
            flat = lightning[-1][f"ours {mode}"] / lightning[0][f"ours {mode}"]
            lines.append(_verdict(f"lightning {mode} / fla, worst length", ratio, 1.0))
            lines.append(_verdict(f"lightning {mode} 128k / 2k tokens/s (flatness)", flat, 0.9))
    return lines


def _markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU interpreter, tiny shapes (checks the script)")
    parser.add_argument("--write", action="store_true", help="write the tables into benchmarks/RESULTS.md")
    parser.add_argument("--json", help="also dump the raw rows to this file")
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")
        device, dtype = "cpu", torch.float32  # the interpreter has no bf16 arithmetic
    else:
        if not torch.cuda.is_available():
            print("no GPU: run with --smoke to check the script on the CPU", file=sys.stderr)
            return 2
        device, dtype = "cuda", torch.bfloat16
    correctness = check_correctness(device, dtype, args.smoke)
    attention = attention_speed(device, dtype, args.smoke)
    lightning = lightning_speed(device, dtype, args.smoke)
    import triton

    from benchmarks.common import provenance

    title = "## Triton kernels (smoke run on the CPU interpreter)" if args.smoke else "## Triton kernels (GPU)"
    text = "\n".join([
        title,
        "",
        provenance() + f" Triton {triton.__version__}.",
        "Rerun: `python -m benchmarks.kernels --write` on the GPU machine.",
        "",
        "Correctness (bf16 against fp32, relative RMS error of outputs and gradients, outputs poisoned):",
        "",
        _markdown(correctness),
        "",
        "Attention TFLOP/s (4·B·H·N²·D, halved when causal, x3.5 for fwd+bwd):",
        "",
        _markdown(attention),
        "",
        "Lightning attention, M tokens/s at 128k tokens per batch (16 heads x 128):",
        "",
        _markdown(lightning),
        "",
        *_targets(attention, lightning),
    ])  # fmt: skip
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"correctness": correctness, "attention": attention,
                                               "lightning": lightning}, indent=2))  # fmt: skip
    if args.write and not args.smoke:
        from benchmarks.common import write_section

        write_section("kernels", text)
    return 0 if all(r["ok"] for r in correctness) else 1


if __name__ == "__main__":
    sys.exit(main())
