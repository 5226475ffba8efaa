"""The few-row linear kernels of CPU decoding: ours (``model.linear``) vs ``F.linear``, weights cold and hot.

Decoding multiplies 1-13 rows by each weight. Which kernel wins depends on whether the weight comes from DRAM
(a full AR step or a verification pass reads the whole model) or from cache (draft steps through the first
layers re-read a small working set): ``model.linear`` takes the 2-column GEMM for one streamed row and
``W @ x^T`` for 2-8 rows; this prints the measured ratio per shape, so the rule can be re-checked on any CPU.

  python benchmarks/linear_kernels.py [--dim 256 --ffn 704 --vocab 4194] [--threads 1]
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

from reproductions.layerskip.model import linear  # noqa: E402
from suite.devices import cpu_flags, cpu_model  # noqa: E402

ROWS = (1, 2, 3, 4, 5, 8, 13)


def per_call_us(fn, weights, x, reps: int = 25) -> float:
    """Median over reps of the mean time per weight, cycling through ``weights`` (cold when they exceed the cache)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for w in weights:
            fn(x, w)
        times.append((time.perf_counter() - t0) / len(weights))
    return 1e6 * statistics.median(times[3:])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--ffn", type=int, default=704)
    ap.add_argument("--vocab", type=int, default=4194)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cold-mb", type=int, default=64, help="weights cycled per shape for the cold case")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in cpu_flags()) or "-"
    print(f"cpu: {cpu_model()} (flags: {flags}); torch {torch.__version__}; {a.threads} thread(s); fp32")
    print("per call, us: F.linear / ours (ratio F.linear / ours; > 1: ours is faster)")
    shapes = {"qkv": (3 * a.dim, a.dim), "wo": (a.dim, a.dim), "w13": (2 * a.ffn, a.dim), "w2": (a.dim, a.ffn),
              "head": (a.vocab, a.dim)}
    with torch.inference_mode():
        for name, (o, i) in shapes.items():
            for cold in (True, False):
                n = max(2, (a.cold_mb << 20) // (o * i * 4)) if cold else 1
                ws = [torch.randn(o, i) * 0.05 for _ in range(n)]
                cells = []
                for rows in ROWS:
                    x = torch.randn(1, rows, i)
                    ref = per_call_us(lambda x, w: F.linear(x, w), ws, x)
                    ours = per_call_us(lambda x, w: linear(x, w, streamed=cold), ws, x)  # noqa: B023
                    cells.append(f"{rows}: {ref:.0f}/{ours:.0f} ({ref / ours:.2f}x)")
                print(f"{name:4s} {o}x{i} {'cold' if cold else 'hot '}  " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
