"""Captions/second of CatLIP label extraction: ours (cached dict look-ups) vs a
naive corenet-style loop (lemmatise + wn.synset + list.index per token), on the
real COCO-mini captions, in one run. Also asserts both give the same labels.

    REPRO_DATA_DIR=<data root holding image_text_coco_mini/> python benchmarks/catlip_labels.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reproductions.catlip import data as D  # noqa: E402
from reproductions.catlip.labels import benchmark_extraction  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("REPRO_DATA_DIR"))
    p.add_argument("--vocab-size", type=int, default=24320)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if not a.data_dir:
        p.error("set REPRO_DATA_DIR or --data-dir (folder holding image_text_coco_mini/)")
    caps = [x.caption for x in D.read_manifest(Path(a.data_dir) / "image_text_coco_mini" / "pairs.jsonl")]
    r = benchmark_extraction(caps, a.vocab_size, a.repeats)
    if a.json:
        print(json.dumps(r, indent=1))
        return
    print(f"{r['captions']} captions, vocabulary list of {r['vocab_size']} synsets (noisy: shared CPU)")
    print(f"  ours, cold cache : {r['ours_cold_captions_per_s']:10.0f} captions/s  "
          f"(+{r['ours_init_s']:.2f}s one-off: our noun dicts + NLTK WordNet load)")
    print(f"  ours, warm cache : {r['ours_warm_captions_per_s']:10.0f} captions/s")
    print(f"  naive corenet    : {r['naive_captions_per_s']:10.0f} captions/s")
    print(f"  speed-up {r['speedup_cold']:.1f}x cold, {r['speedup_warm']:.1f}x warm; labels identical: {r['labels_identical']}")


if __name__ == "__main__":
    main()
