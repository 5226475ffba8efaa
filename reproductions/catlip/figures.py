"""CatLIP figures drawn from stored records only: vocabulary statistics (Figures 2(b), 2(c), 3(a), 3(b)) and
Transfer Init vs random initialisation by data share (Figure 5)."""
from __future__ import annotations

import json
from pathlib import Path

from suite.compare import TableResult
from suite.plotting import pyplot, save_figure

VOCAB_ARTIFACTS = {"catlip-vocab": "Flickr8k", "catlip-vocab-cc3m": "CC3M", "catlip-vocab-datacomp": "DataComp-1.3B"}



def _vocab_arrays(runs_root: Path, profile: str) -> dict[str, dict]:
    out = {}
    for name, label in VOCAB_ARTIFACTS.items():
        path = runs_root / profile / "artifacts" / name / "vocab_stats.json"
        if path.is_file() and (path.parent / "metrics.json").is_file():
            out[label] = json.loads(path.read_text())
    return out


def vocabulary(runs_root: Path, profile: str, out_dir: Path) -> Path | None:
    sets = _vocab_arrays(runs_root, profile)
    if not sets:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    for label, a in sets.items():
        thr = sorted(a["in1k_matched_at"], key=float)
        if thr:
            axes[0].plot([float(t) for t in thr], [a["in1k_matched_at"][t] for t in thr], "o-", label=label)
        counts = sorted(a["in1k_counts"], reverse=True)
        if counts:
            axes[1].plot(range(1, len(counts) + 1), [max(c, 0.8) for c in counts], label=label)
            axes[1].axhline(a["v_tau"], ls="--", lw=0.8, color="grey")
        sc = a["sorted_counts"]
        axes[2].loglog(range(1, len(sc) + 1), sc, label=label)
        vt = sorted(a["size_at_vtau"], key=int)
        axes[3].semilogx([int(v) for v in vt], [a["size_at_vtau"][v] for v in vt], "o-", label=label)
    axes[0].set(xlabel="WordNet path-similarity threshold", ylabel="ImageNet-1k classes matched",
                title="Fig. 2(b): label coverage")
    axes[1].set(yscale="log", xlabel="ImageNet-1k synsets (sorted)", ylabel="caption occurrences",
                title="Fig. 2(c): occurrences (dashed: Vτ)")
    axes[2].set(xlabel="synset rank", ylabel="caption occurrences", title="Fig. 3(a): long tail")
    axes[3].set(xlabel="Vτ", ylabel="synsets with count ≥ Vτ", title="Fig. 3(b): vocabulary size")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"CatLIP vocabulary statistics ({profile} profile)")
    return save_figure(fig, out_dir / "vocabulary_statistics.png", dpi=110)


def transfer_init(results: list[TableResult], profile: str, out_dir: Path) -> Path | None:
    res = next((r for r in results if r.table == "catlip-fig5"), None)
    if res is None:
        return None
    pts = []
    for key, cell in res.cells.items():
        if key.endswith(".ti") and cell.ours is not None:
            ri = res.cells.get(key[:-3] + ".ri")
            pct = float(key.split(".")[0][1:])
            pts.append((pct, cell, ri))
    if not pts:
        return None
    pts.sort(key=lambda t: t[0])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    for name, pick, style in (("Transfer Init", lambda t: t[1], "s-"), ("random init", lambda t: t[2], "o--")):
        xs = [p[0] for p in pts if pick(p) is not None and pick(p).ours is not None]
        cells = [pick(p) for p in pts if pick(p) is not None and pick(p).ours is not None]
        ys = [100 * c.ours for c in cells]
        ax.plot(xs, ys, style, label=name)
        lo = [100 * (c.ci95[0] if c.ci95 else c.ours) for c in cells]
        hi = [100 * (c.ci95[1] if c.ci95 else c.ours) for c in cells]
        ax.fill_between(xs, lo, hi, alpha=0.15)
    ax.set(xscale="log", xlabel="% of the training images", ylabel="top-1 (%)",
           title=f"Fig. 5: linear probe, Transfer Init vs random ({profile})")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out_dir / "fig5_transfer_init.png", dpi=120)


def draw_all(results: list[TableResult], runs_root: Path, profile: str, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    made = [vocabulary(runs_root, profile, out_dir), transfer_init(results, profile, out_dir)]
    return [p for p in made if p is not None]
