"""End-to-end CatLIP mini reproduction for the suite: one call, a flat dict of numbers.

Why a single entry point: the suite runner needs the measured numbers (losses,
Transfer Init coverage, cost ratios, label throughput) without knowing the
pieces. ``run_mini(out_dir, profile)`` does, on the real COCO-mini pairs:

1. captions -> synsets, vocabulary with a small Vτ (795 captions cannot reach
   the paper's Vτ = 500), saved as JSON;
2. a short CatLIP and a short CLIP pre-training run on the same tiny ViT;
3. Transfer Init coverage of the 1,000 ImageNet classes against that
   vocabulary, and against the upper bound of every synset the label rule
   can produce;
4. measured step cost CatLIP vs CLIP + the analytic extrapolation;
5. label-extraction throughput, ours vs the naive corenet-style loop.

Profiles: ``smoke`` (<= 1 min on 2 CPU cores: 3 steps each, small batches) and
``mini`` (a few minutes: 3 epochs each at batch 32).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

PROFILES = {
    # batch, epochs (None -> steps), steps, v_tau, cost (batch, k), label-bench captions
    "smoke": {"batch": 8, "steps": 3, "epochs": None, "v_tau": 5, "cost_batch": 8, "cost_k": 1,
              "bench_captions": 200, "threads": 2},
    "mini": {"batch": 32, "steps": None, "epochs": 3, "v_tau": 5, "cost_batch": 64, "cost_k": 3,
             "bench_captions": None, "threads": 2},
}


def _data_dir(data_dir) -> Path:
    d = data_dir or os.environ.get("REPRO_DATA_DIR")
    if not d:
        raise RuntimeError("CatLIP pipeline needs the real data: set REPRO_DATA_DIR (folder with image_text_coco_mini/ and imagenet/meta/)")
    d = Path(d)
    if not (d / "image_text_coco_mini" / "pairs.jsonl").is_file():
        raise RuntimeError(f"{d}/image_text_coco_mini/pairs.jsonl not found (is REPRO_DATA_DIR right?)")
    return d


def _epoch_means(losses, steps_per_epoch):
    if not losses:
        return None, None
    n = max(1, min(steps_per_epoch, len(losses)))
    return sum(losses[:n]) / n, sum(losses[-n:]) / n


def run_mini(out_dir, profile: str = "smoke", data_dir=None, seed: int = 0) -> dict:
    import torch

    from . import cost as C
    from . import data as D
    from . import transfer_init as T
    from .labels import LabelExtractor, benchmark_extraction
    from .train import TrainConfig, train
    from .vocab import build_vocab

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    P = PROFILES[profile]
    t_all = time.perf_counter()
    torch.set_num_threads(P["threads"])
    dd = _data_dir(data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = dd / "image_text_coco_mini" / "pairs.jsonl"
    pairs = D.read_manifest(manifest)
    captions = [p.caption for p in pairs]
    r: dict = {"n_pairs": len(pairs)}

    ex = LabelExtractor()
    t0 = time.perf_counter()
    labels = [ex(c) for c in captions]
    r["label_extraction_s"] = time.perf_counter() - t0
    r["captions_with_labels"] = sum(1 for x in labels if x)
    r["mean_labels_per_caption"] = sum(map(len, labels)) / len(labels)
    vocab = build_vocab(captions, v_tau=P["v_tau"], extractor=ex)
    vocab.save(out / "vocab.json")
    r["v_tau"] = P["v_tau"]
    r["vocab_size"] = len(vocab)
    r["unique_synsets"] = vocab.meta["unique_synsets"]

    steps_per_epoch = len(pairs) // P["batch"]
    steps = P["steps"] or P["epochs"] * steps_per_epoch
    for method in ("catlip", "clip"):
        cfg = TrainConfig(method=method, manifest=str(manifest), out_dir=str(out / method),
                          encoder="tiny", resolution=64, batch_size=P["batch"], steps=steps,
                          warmup_steps=max(1, steps // 10), seed=seed, resume=False,
                          log_every=max(1, steps // 10), cache_images=1000)
        rec = train(cfg, vocab=vocab, extractor=ex)
        r[f"{method}_steps"] = rec["steps_done"]
        r[f"{method}_first_loss"] = rec["first_loss"]
        r[f"{method}_last_loss"] = rec["last_loss"]
        first, last = _epoch_means(rec["losses"], steps_per_epoch)
        r[f"{method}_first_epoch_mean_loss"] = first
        r[f"{method}_last_epoch_mean_loss"] = last
        r[f"{method}_images_per_s"] = rec["images_per_s"]

    meta = dd / "imagenet" / "meta"
    if (meta / "imagenet_class_index.json").is_file():
        labs = T.imagenet_labels(meta)
        cov = T.match_labels(labs, vocab.offsets, alpha=T.DEFAULT_ALPHA)
        r["in1k_alpha"] = cov.alpha
        r["in1k_exact"], r["in1k_similar"], r["in1k_unmatched"] = cov.exact, cov.similar, cov.unmatched
        upper = T.match_labels(labs, T.extractable_offsets(), alpha=T.DEFAULT_ALPHA)
        r["in1k_upper_extractable_exact"] = upper.exact
        r["in1k_upper_extractable_similar"] = upper.similar
        r["in1k_upper_extractable_unmatched"] = upper.unmatched
        r["in1k_upper_full_wordnet_exact"] = len(labs)  # every wnid is itself a WordNet noun synset
        (out / "transfer_init_coverage.json").write_text(json.dumps(
            {"vocab": cov.summary(), "upper_extractable": upper.summary()}, indent=1))

    cm = C.measure("tiny", 64, P["cost_batch"], 24320, k=P["cost_k"])
    r["cost_catlip_step_ms"] = cm["catlip"]["step_s"] * 1e3
    r["cost_clip_step_ms"] = cm["clip"]["step_s"] * 1e3
    r["cost_time_ratio_clip_over_catlip"] = cm["time_ratio_clip_over_catlip"]
    r["cost_parts_ratio_clip_over_catlip"] = cm["parts_ratio_clip_over_catlip"]
    r["cost_catlip_peak_mem_mb"] = cm["catlip"]["peak_mem_mb"]
    r["cost_clip_peak_mem_mb"] = cm["clip"]["peak_mem_mb"]
    r["cost_mem_ratio_clip_over_catlip"] = cm["mem_ratio_clip_over_catlip"]
    model = C.cost_model("vit_b_16")
    r["cost_model_ratio_vit_b16_65k"] = model["modelled_ratio_clip_over_catlip"]
    r["cost_model_flop_ratio_vit_b16"] = model["flop_ratio_clip_over_catlip"]
    (out / "cost.json").write_text(json.dumps({"measured": cm, "model": model}, indent=1))

    bench_caps = captions[: P["bench_captions"]] if P["bench_captions"] else captions
    lb = benchmark_extraction(bench_caps, 24320, repeats=1)
    r["labels_ours_cold_captions_per_s"] = lb["ours_cold_captions_per_s"]
    r["labels_ours_warm_captions_per_s"] = lb["ours_warm_captions_per_s"]
    r["labels_naive_captions_per_s"] = lb["naive_captions_per_s"]
    r["labels_identical"] = float(lb["labels_identical"])
    r["wall_s"] = time.perf_counter() - t_all
    r = {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in r.items()}
    (out / "results.json").write_text(json.dumps(r, indent=1))
    return r


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="CatLIP mini reproduction")
    ap.add_argument("out_dir")
    ap.add_argument("--profile", default="smoke", choices=sorted(PROFILES))
    a = ap.parse_args()
    print(json.dumps(run_mini(a.out_dir, a.profile), indent=1))
