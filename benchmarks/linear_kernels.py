"""fp32 CPU linear kernels: ours (``suite.cpu_linear``, oneDNN) vs ``F.linear`` (MKL), decoding and training shapes.

Decoding multiplies 1-13 rows by each weight, with the weight coming from DRAM (a full AR step or a verification
pass reads the whole model) or from cache (draft steps through the first layers re-read a small working set);
training multiplies thousands of rows, forward and backward. This prints the time of both kernels per shape and
their ratio, so the choice ``suite.cpu_linear`` makes (oneDNN for every fp32 CPU linear) can be re-checked on any
CPU: MKL takes a slower code path on AMD CPUs than on Intel ones.

  python benchmarks/linear_kernels.py [--dim 256 --ffn 704 --vocab 4194] [--threads 1] [--train-rows 2560]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite import cpu_linear  # noqa: E402
from suite.devices import cpu_flags, cpu_model  # noqa: E402

ROWS = (1, 2, 3, 5, 8, 13)


def per_call_us(fn, weights, x, reps: int = 25) -> float:
    """Median over reps of the mean time per weight, cycling through ``weights`` (cold when they exceed the cache)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for w in weights:
            fn(x, w)
        times.append((time.perf_counter() - t0) / len(weights))
    return 1e6 * statistics.median(times[3:])


def decode_row(o: int, i: int, cold: bool, cold_mb: int) -> str:
    n = max(2, (cold_mb << 20) // (o * i * 4)) if cold else 1
    ws = [torch.randn(o, i) * 0.05 for _ in range(n)]
    cells = []
    with torch.inference_mode():
        for rows in ROWS:
            x = torch.randn(1, rows, i)
            ref = per_call_us(lambda x, w: F.linear(x, w), ws, x)
            ours = per_call_us(cpu_linear.linear, ws, x)
            cells.append(f"{rows}: {ref:.0f}/{ours:.0f} ({ref / ours:.2f}x)")
    return "  ".join(cells)


def train_ms(fn, x: torch.Tensor, w: torch.Tensor, reps: int = 5) -> float:
    """Forward + backward (both gradients) of one linear, median ms."""
    dy = torch.randn(x.shape[0], w.shape[0])
    times = []
    for _ in range(reps + 1):
        xx, ww = x.detach().requires_grad_(), w.detach().requires_grad_()
        t0 = time.perf_counter()
        fn(xx, ww).backward(dy)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times[1:])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--ffn", type=int, default=704)
    ap.add_argument("--vocab", type=int, default=4194)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cold-mb", type=int, default=64, help="weights cycled per shape for the cold case")
    ap.add_argument("--train-rows", type=int, default=2560, help="rows of a training step (batch x tokens)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in cpu_flags()) or "-"
    print(f"cpu: {cpu_model()} (flags: {flags}); torch {torch.__version__}; {a.threads} thread(s); fp32; "
          f"oneDNN available: {cpu_linear.available()}")
    if not cpu_linear.available():
        print("this PyTorch build has no oneDNN: suite.cpu_linear is F.linear here, nothing to compare")
        return
    shapes = {"qkv": (3 * a.dim, a.dim), "wo": (a.dim, a.dim), "w13": (2 * a.ffn, a.dim), "w2": (a.dim, a.ffn),
              "head": (a.vocab, a.dim)}
    print("decoding, per call, us by rows: F.linear / ours (ratio; > 1: ours is faster)")
    for name, (o, i) in shapes.items():
        for cold in (True, False):
            print(f"{name:4s} {o}x{i} {'cold' if cold else 'hot '}  {decode_row(o, i, cold, a.cold_mb)}", flush=True)
    print(f"training, forward + backward of {a.train_rows} rows, ms: F.linear / ours (ratio)")
    for name, (o, i) in shapes.items():
        x, w = torch.randn(a.train_rows, i), torch.randn(o, i) * 0.05
        ref, ours = train_ms(F.linear, x, w), train_ms(cpu_linear.linear, x, w)
        print(f"{name:4s} {o}x{i}  {ref:.1f} / {ours:.1f} ({ref / ours:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
