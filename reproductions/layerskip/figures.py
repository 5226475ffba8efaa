"""Figures drawn from stored records only: per-layer early-exit quality and speed/acceptance vs E."""
from __future__ import annotations

import json
from pathlib import Path

from suite.compare import TableResult
from suite.plotting import pyplot, save_figure


def per_layer(runs_root: Path, profile: str, out_dir: Path) -> Path | None:
    path = runs_root / profile / "artifacts" / "layer_curves" / "metrics.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())["metrics"]
    layers = sorted({int(k.rsplit("_l", 1)[1]) for k in m if "_exact_match_l" in k})
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, title in ((axes[0], "exact_match", "greedy exact match"),
                              (axes[1], "next_token_acc", "teacher-forced next-token accuracy")):
        for model, style in (("baseline", "o--"), ("layerskip", "s-")):
            ys = [m.get(f"{model}_{metric}_l{l}", {}).get("value") for l in layers]
            ax.plot(layers, [100 * y if y is not None else float("nan") for y in ys], style, label=model)
        ax.set_xlabel("exit after layer")
        ax.set_ylabel("%")
        ax.set_ylim(0, 100)
        ax.set_title(title)
        ax.set_xticks(layers)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"TOPv2 early exit at every layer ({profile} profile, n={json.loads(path.read_text())['n_examples']})")
    return save_figure(fig, out_dir / "per_layer_early_exit.png", dpi=120)


def speed_vs_exit(results: list[TableResult], profile: str, out_dir: Path) -> Path | None:
    res = next((r for r in results if r.table == "layerskip-table11"), None)
    if res is None:
        return None
    pts = []
    for key in ("ss_lo", "ss_mid", "ss_hi", "ss_fast"):
        sp, acc = res.cells.get(f"{key}.speedup"), res.cells.get(f"{key}.acc")
        ee = res.cells.get(f"ee_{key[3:]}.ms")
        if sp and sp.ours is not None and acc and acc.ours is not None:
            pts.append((key, sp.ours, acc.ours, ee.ours if ee else None))
    if not pts:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    names = {"ss_lo": "E low", "ss_mid": "E mid", "ss_hi": "E high", "ss_fast": "E=1, d=12\nconf. 0.6"}
    ax.bar([names[p[0]] for p in pts], [p[1] for p in pts], color="#4c72b0")
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_ylim(0, 1.25 * max(max(p[1] for p in pts), 1.0))  # room for the labels above the bars
    for i, p in enumerate(pts):
        ax.text(i, p[1], f"{p[1]:.2f}×\nacc {100 * p[2]:.0f}%", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("speedup over AR (mean ms/token ratio)")
    ax.set_title(f"Self-speculative speedup vs exit layer ({profile})")
    return save_figure(fig, out_dir / "speedup_vs_exit_layer.png", dpi=120)


def draw_all(results: list[TableResult], runs_root: Path, profile: str, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [p for p in (per_layer(runs_root, profile, out_dir), speed_vs_exit(results, profile, out_dir)) if p]
