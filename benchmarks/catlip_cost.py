"""CatLIP vs CLIP pre-training cost (paper Fig. 1c): measured per-step time and
peak memory at the same encoder and batch, with a breakdown, plus the analytic
extrapolation to the paper's ViT-B/16, 65k-batch, many-GPU setting.

    python benchmarks/catlip_cost.py            # tiny ViT @ 64 px, batch 64
    python benchmarks/catlip_cost.py --full     # + ViT-B/16 @ 224 px, batch 8
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from reproductions.catlip import cost as C  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="also ViT-B/16 at 224 px, batch 8")
    p.add_argument("--k", type=int, default=5, help="median of k timed steps")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--vocab-size", type=int, default=24320)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json-out")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    settings = [("tiny", 64, 64)] + ([("vit_b_16", 224, 8)] if a.full else [])
    out = {"measured": [], "model": None}
    for enc, res, batch in settings:
        r = C.measure(enc, res, batch, a.vocab_size, k=a.k, device=a.device)
        out["measured"].append(r)
        print(C.format_table(r), flush=True)
        print()
    m = C.cost_model("vit_b_16", a.vocab_size)
    sweep = C.cost_model_sweep("vit_b_16")
    out["model"], out["sweep"] = m, sweep
    print(C.format_model(m, sweep))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
