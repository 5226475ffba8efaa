"""The CatLIP prepare step at the smoke and mini profiles: every model and measurement the tables read.

Why stages with their own records: the whole mini must fit 30 minutes on 2 CPU cores and be resumable, so
each piece (vocabulary, cost, each pre-training, each transfer model) is an artifact folder under
``runs/<profile>/artifacts/<name>/`` with a ``metrics.json`` whose ``key`` is a hash of the stage's
settings, of the code it runs and of the keys of the stages it builds on. A rerun reuses every stage whose
key still matches and recomputes the rest (a new encoder retrains every head built on it).

Stages, in order:

1. ``catlip-vocab``: captions -> synsets (corenet's rule), vocabulary at Vτ, the statistics of Figures 2-3
   and 6, Transfer Init coverage of ImageNet-1k and of the transfer classes, label-extraction throughput;
2. ``catlip-cost``: measured step time/memory of CatLIP vs CLIP (same ViT, same batch) and the cost model
   at the paper's settings (Figure 1(c));
3. ``catlip-enc-catlip``, ``catlip-enc-clip`` (pre-trained on the same pairs, same steps) and
   ``catlip-enc-random`` (the same ViT, untrained): encoder folders (``models.load_encoder``);
4. classification transfer (``transfer.py``): linear probes of the three encoders, fine-tuning of the
   pre-trained two, and the Figure 5 probes (Transfer Init vs random head at 1-100% of the data);
5. dense transfer: ``dense.prepare_dense`` (multi-label, detection, segmentation) when that module exists.

The evaluation of every transfer model is not done here: the tables' runs do it through the suite's task
adapters and the ``catlip-*`` systems.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

HERE = Path(__file__).parent
FLICKR = "image_text_flickr8k/pairs.jsonl"
IMAGENET_META = "imagenet/meta/imagenet_class_index.json"
IMAGENETTE = "imagenet/imagenette_112"


@dataclass(frozen=True)
class Pretrain:
    encoder: str = "tiny"
    resolution: int = 64
    batch: int = 64
    steps: int = 800
    max_pairs: int | None = None
    """Use only the first N pairs (smoke); None = all."""
    lr_catlip: float = 5e-4
    """Appendix Table 6a gives 2e-3 for a 2,048 batch; at batch 64 it left the tiny ViT no better than random
    weights (measured: linear probe 27.6% vs 31.8%), 5e-4 (CLIP's rate) trains."""
    lr_clip: float = 5e-4
    crop_scale_min: float = 0.35
    """Random-resized-crop area range (0.35, 1): at 64 px the usual 0.08 often crops away what the caption names."""
    parallel: bool = True
    """On CPU, pre-train CatLIP and CLIP at once in two processes of one thread each (2 cores fully used)."""


@dataclass(frozen=True)
class Transfer:
    root: str = IMAGENETTE
    layout: str = "imagefolder"
    resize: int = 73
    crop: int = 64
    train_percent: float = 100.0
    """Share of the training split used by the Table 1/2 models (smoke trains on a sliver)."""
    probe_epochs: int = 30
    probe_lr: float = 1e-3
    probe_min_lr: float = 1e-5
    probe_batch: int = 256
    ft_epochs: int = 3
    ft_lr: float = 2e-4
    ft_min_lr: float = 2e-6
    ft_batch: int = 64
    ft_warmup: int = 20
    ft_scale_min: float = 0.25
    fractions: tuple[float, ...] = (1, 5, 10, 25, 50, 100)


@dataclass(frozen=True)
class Profile:
    name: str
    v_tau: int
    alpha: float
    """Transfer Init threshold on path similarity (the paper states none)."""
    vocab_captions: int | None
    """Captions used for the vocabulary and its statistics (None = all)."""
    bench_captions: int
    cost_batch: int
    cost_k: int
    threads: int
    pretrain: Pretrain = Pretrain()
    transfer: Transfer = Transfer()
    seed: int = 0


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", v_tau=5, alpha=0.25, vocab_captions=2000, bench_captions=200, cost_batch=8, cost_k=1,
                     threads=2, pretrain=Pretrain(batch=8, steps=3, max_pairs=400),
                     transfer=Transfer(train_percent=2, probe_epochs=5, ft_epochs=1, ft_batch=16, ft_warmup=1,
                                       fractions=(10, 100))),
    "mini": Profile("mini", v_tau=100, alpha=0.25, vocab_captions=None, bench_captions=5000, cost_batch=64,
                    cost_k=3, threads=2),
}


def profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"CatLIP pipeline: profile must be one of {sorted(PROFILES)}, got {name!r}")
    return PROFILES[name]


# ----------------------------------------------------------------------------- stage bookkeeping


def code_hash(*modules: str) -> str:
    h = hashlib.sha256()
    for m in modules:
        h.update((HERE / f"{m}.py").read_bytes())
    return h.hexdigest()[:16]


def stage_key(settings: Any, code: str, *deps: str) -> str:
    blob = json.dumps({"settings": settings, "code": code, "deps": list(deps)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _kind(name: str) -> str:
    timing = ("_ms", "_per_s", "_s", "ratio_clip_over_catlip", "peak_mem_mb", "wall")
    return "stat" if any(name.endswith(t) or t in name for t in timing) else "score"


@dataclass
class Stages:
    """Runs or reuses stages; remembers each stage's key so dependants can hash it."""

    artifacts: Path
    force: bool = False
    log: Callable[[str], None] = print
    keys: dict[str, str] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)

    def run(self, name: str, key: str, fn: Callable[[Path], tuple[Mapping[str, float], int, list[Path]]],
            seeds: Mapping[str, int] | None = None) -> Path:
        out = self.artifacts / name
        if self._begin(name, key):
            t0 = time.perf_counter()
            self._finish(name, key, fn(out), t0, seeds)
        return out

    def run_parallel(self, jobs: list[tuple[str, str, Callable]], workers: int) -> dict[str, Path]:
        """Several independent stages at once, one single-threaded process each (``fn`` must be picklable:
        a module-level function or a ``functools.partial`` of one)."""
        todo = [(n, k, f) for n, k, f in jobs if self._begin(n, k)]
        if workers > 1 and len(todo) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            t0 = time.perf_counter()
            with ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                                     initializer=_one_thread) as ex:
                futures = {n: (k, ex.submit(f, self.artifacts / n)) for n, k, f in todo}
                for n, (k, fut) in futures.items():
                    self._finish(n, k, fut.result(), t0, None)
        else:
            for n, k, f in todo:
                t0 = time.perf_counter()
                self._finish(n, k, f(self.artifacts / n), t0, None)
        return {n: self.artifacts / n for n, _, _ in jobs}

    def _begin(self, name: str, key: str) -> bool:
        """True when the stage must run (its folder is then ready); False when its record is current."""
        from suite.records import artifact_record_is_current

        out = self.artifacts / name
        record = out / "metrics.json"
        self.keys[name] = key
        if not self.force and artifact_record_is_current(record, key):
            self.reused.append(name)
            return False
        if record.exists():
            record.unlink()  # a stale record must not survive a failed recomputation
        marker = out / ".stage_key"
        if out.exists() and (self.force or not marker.is_file() or marker.read_text() != key):
            shutil.rmtree(out)  # other settings or code: a half-trained checkpoint here must not be resumed
        self.log(f"[catlip] {name} ...")
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text(key)  # same key after a kill: training resumes from its last checkpoint
        return True

    def _finish(self, name: str, key: str, result: tuple[Mapping[str, float], int, list[Path]], t0: float,
                seeds: Mapping[str, int] | None) -> None:
        from suite.records import write_artifact_record

        numbers, n, files = result
        metrics = {k: {"value": float(v), "kind": _kind(k)} for k, v in numbers.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        write_artifact_record(self.artifacts / name / "metrics.json", key=key, metrics=metrics, n_examples=int(n),
                              data_files=files, started=t0, seeds=dict(seeds or {"stage": 0}))
        self.log(f"[catlip] {name} done in {time.perf_counter() - t0:.0f}s")


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


# ----------------------------------------------------------------------------- the stages


def _captions(dd: Path, p: Profile) -> tuple[list[str], Path]:
    from .data import read_manifest

    manifest = dd / FLICKR
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: not found (the Flickr8k image-caption pairs; set REPRO_DATA_DIR)")
    caps = [x.caption for x in read_manifest(manifest)]
    return (caps[: p.vocab_captions] if p.vocab_captions else caps), manifest


def stage_vocab(dd: Path, p: Profile, out: Path) -> tuple[dict, int, list[Path]]:
    from . import transfer_init as T
    from . import vocab_stats as VS
    from .labels import LabelExtractor, benchmark_extraction
    from .transfer_data import imagefolder
    from .vocab import Vocab, captions_sha256, count_synsets, select

    caps, manifest = _captions(dd, p)
    ex = LabelExtractor()
    t0 = time.perf_counter()
    labels = [ex(c) for c in caps]
    r: dict[str, float] = {"label_extraction_s": time.perf_counter() - t0, "n_pairs": len(caps),
                           "captions_with_labels": sum(1 for x in labels if x),
                           "mean_labels_per_caption": sum(map(len, labels)) / len(labels), "alpha": p.alpha}
    counts = count_synsets(labels)
    keep = select(counts, p.v_tau)
    vocab = Vocab(offsets=[o for o, _ in keep], counts=[n for _, n in keep], v_tau=p.v_tau,
                  source_sha256=captions_sha256(caps), n_captions=len(caps),
                  meta={"extractor": ex.info(), "top_k": None, "unique_synsets": len(counts)})
    vocab.save(out / "vocab.json")
    meta = dd / IMAGENET_META
    wnids = T.imagenet_labels(meta.parent) if meta.is_file() else None
    stats = VS.compute(labels, p.v_tau, wnids, vtaus=sorted({5, 10, 25, 50, *VS.PAPER_VTAUS}))
    r.update(stats.metrics())
    (out / "vocab_stats.json").write_text(json.dumps(stats.arrays()))
    files = [manifest]
    if wnids:
        files.append(meta)
        cov = T.match_labels(wnids, vocab.offsets, alpha=p.alpha)
        r.update({"in1k_exact": cov.exact, "in1k_similar": cov.similar, "in1k_unmatched": cov.unmatched})
        upper = T.match_labels(wnids, T.extractable_offsets(), alpha=p.alpha)
        r.update({"in1k_upper_extractable_exact": upper.exact, "in1k_upper_extractable_similar": upper.similar,
                  "in1k_upper_extractable_unmatched": upper.unmatched})
        root = dd / p.transfer.root
        if (root / "train").is_dir():
            data = imagefolder(root, "train", meta)
            tcov = T.match_labels(list(data.label_names), vocab.offsets, alpha=p.alpha)
            r.update({"transfer_exact": tcov.exact, "transfer_similar": tcov.similar,
                      "transfer_unmatched": tcov.unmatched, "transfer_classes": tcov.n_labels})
            (out / "transfer_coverage.json").write_text(json.dumps(
                [{"label": m.label, "kind": m.kind, "similarity": m.similarity,
                  "rows": [vocab.wnids[i] for i in m.rows]} for m in tcov.matches], indent=1))
    bench = benchmark_extraction(caps[: p.bench_captions], 24320, repeats=1)
    r.update({"labels_ours_cold_captions_per_s": bench["ours_cold_captions_per_s"],
              "labels_ours_warm_captions_per_s": bench["ours_warm_captions_per_s"],
              "labels_naive_captions_per_s": bench["naive_captions_per_s"],
              "labels_identical": float(bench["labels_identical"]), "labels_bench_captions": bench["captions"]})
    return r, len(caps), files


def stage_cost(p: Profile, out: Path) -> tuple[dict, int, list[Path]]:
    from . import cost as C

    cm = C.measure(p.pretrain.encoder, p.pretrain.resolution, p.cost_batch, 24320, k=p.cost_k)
    r = {"cost_catlip_step_ms": cm["catlip"]["step_s"] * 1e3, "cost_clip_step_ms": cm["clip"]["step_s"] * 1e3,
         "cost_time_ratio_clip_over_catlip": cm["time_ratio_clip_over_catlip"],
         "cost_parts_ratio_clip_over_catlip": cm["parts_ratio_clip_over_catlip"],
         "cost_catlip_peak_mem_mb": cm["catlip"]["peak_mem_mb"], "cost_clip_peak_mem_mb": cm["clip"]["peak_mem_mb"],
         "cost_mem_ratio_clip_over_catlip": cm["mem_ratio_clip_over_catlip"]}
    b16 = C.cost_model("vit_b_16")
    h16 = C.cost_model("vit_h_16", catlip_gpus=256, clip_gpus=256)
    r.update({"cost_model_ratio_vit_b16_65k": b16["modelled_ratio_clip_over_catlip"],
              "cost_model_flop_ratio_vit_b16": b16["flop_ratio_clip_over_catlip"],
              "cost_model_ratio_vit_h16_65k": h16["modelled_ratio_clip_over_catlip"],
              "cost_model_flop_ratio_vit_h16": h16["flop_ratio_clip_over_catlip"]})
    (out / "cost.json").write_text(json.dumps({"measured": cm, "model_b16": b16, "model_h16": h16}, indent=1))
    return r, p.cost_k, []


def _epoch_means(losses: list[float], steps_per_epoch: int) -> tuple[float, float]:
    n = max(1, min(steps_per_epoch, len(losses) // 2 or 1))
    return sum(losses[:n]) / n, sum(losses[-n:]) / n


def stage_pretrain(method: str, dd: Path, p: Profile, vocab_dir: Path, device: str, out: Path
                   ) -> tuple[dict, int, list[Path]]:
    from .data import read_manifest
    from .train import TrainConfig, export_encoder, train
    from .vocab import load_vocab

    manifest = dd / FLICKR
    if p.pretrain.max_pairs:  # smoke: a small manifest of the first pairs, written next to the encoder
        pairs = read_manifest(manifest)[: p.pretrain.max_pairs]
        small = out / "pairs.tsv"
        small.write_text("image_path\tcaption\n" + "".join(f"{x.image}\t{x.caption}\n" for x in pairs))
        src = small
    else:
        src = manifest
    vocab = load_vocab(vocab_dir / "vocab.json") if method == "catlip" else None
    pt = p.pretrain
    cfg = TrainConfig(method=method, manifest=str(src), out_dir=str(out / "train"), encoder=pt.encoder,
                      resolution=pt.resolution, batch_size=pt.batch, steps=pt.steps,
                      lr=pt.lr_catlip if method == "catlip" else pt.lr_clip, crop_scale_min=pt.crop_scale_min,
                      warmup_steps=max(1, pt.steps // 10), seed=p.seed, resume=True, device=device,
                      log_every=max(1, pt.steps // 10), cache_images=10000, checkpoint_every=max(50, pt.steps // 4))
    rec = train(cfg, vocab=vocab)
    export_encoder(rec["model"], cfg.resolved(), out, vocab=vocab)
    n_pairs = len(read_manifest(src))
    first, last = _epoch_means(rec["losses"], max(1, pt.steps // 10))
    r = {"steps": rec["steps_done"], "first_loss": rec["first_loss"], "last_loss": rec["last_loss"],
         "first_tenth_mean_loss": first, "last_tenth_mean_loss": last, "images_per_s": rec["images_per_s"],
         "pairs_seen": rec["steps_done"] * pt.batch, "pairs_available": n_pairs,
         "epochs": rec["steps_done"] * pt.batch / n_pairs, "vocab_size": len(vocab) if vocab else 0}
    return r, rec["steps_done"] * pt.batch, [manifest]


def stage_random_encoder(p: Profile, out: Path) -> tuple[dict, int, list[Path]]:
    import torch

    from .models import EncoderConfig, build_from_config, save_encoder

    torch.manual_seed(p.seed)
    cfg = EncoderConfig.preset(p.pretrain.encoder, p.pretrain.resolution, method="random", seed=p.seed)
    save_encoder(build_from_config(cfg), cfg, out)
    return {"steps": 0}, 0, []


# ----------------------------------------------------------------------------- classification transfer


@dataclass
class TransferContext:
    dd: Path
    p: Profile
    device: str
    stages: Stages
    _data: dict = field(default_factory=dict)
    _features: dict = field(default_factory=dict)
    _cache: Any = None

    def data(self, percent: float):
        from .transfer_data import fraction, imagefolder

        if "full" not in self._data:
            t = self.p.transfer
            self._data["full"] = imagefolder(self.dd / t.root, "train", self.dd / IMAGENET_META)
        if percent not in self._data:
            self._data[percent] = fraction(self._data["full"], percent, self.p.seed)
        return self._data[percent]

    def cache(self):
        from .transfer import ImageCache

        if self._cache is None:
            self._cache = ImageCache(True)
        return self._cache

    def features(self, enc_dir: Path, percent: float):
        """Probe features of the encoder on the training subset (computed once per encoder, then sliced)."""
        import torch

        from .models import load_encoder
        from .transfer import EvalProtocol, encode

        key = str(enc_dir)
        if key not in self._features:
            full = self.data(self.p.transfer.train_percent)
            enc = load_encoder(enc_dir, self.device)
            t = self.p.transfer
            feats = encode(enc, full.files(), EvalProtocol(t.resize, t.crop), device=self.device, cache=self.cache())
            self._features[key] = {path: f for path, f in zip(full.files(), feats)}
        sub = self.data(percent)
        table = self._features[key]
        return torch.stack([table[f] for f in sub.files()]), torch.tensor([y for _, y in sub.items]), sub


def _probe_stage(tc: TransferContext, enc_name: str, enc_dir: Path, percent: float, head_init: str, out: Path
                 ) -> tuple[dict, int, list[Path]]:
    from .transfer import EvalProtocol, ProbeConfig, fit_probe, random_head, save_classifier, transfer_init_head

    t = tc.p.transfer
    feats, labels, sub = tc.features(enc_dir, percent)
    cov = None
    if head_init == "transfer":
        head, cov = transfer_init_head(enc_dir, sub, tc.p.alpha, seed=tc.p.seed)
    else:
        head = random_head(feats.shape[1], sub.num_classes, seed=tc.p.seed)
    cfg = ProbeConfig(epochs=t.probe_epochs, batch_size=t.probe_batch, lr=t.probe_lr, min_lr=t.probe_min_lr,
                      seed=tc.p.seed)
    res = fit_probe(feats, labels, head, cfg)
    save_classifier(out, res.head, sub, EvalProtocol(t.resize, t.crop), mode="linear-probe", head_init=head_init,
                    encoder_dir=enc_dir, meta={"encoder": enc_name, "train_percent": percent, "probe": asdict(cfg),
                                               "coverage": cov, "train_images": len(sub.items)})
    r = {"train_images": len(sub.items), "first_loss": res.losses[0], "last_loss": res.losses[-1]}
    if cov:
        r.update({"ti_exact": cov["exact"], "ti_similar": cov["similar"], "ti_unmatched": cov["unmatched"]})
    return r, len(sub.items), []


def finetune_job(dd: Path, p: Profile, device: str, enc_dir: Path, out: Path) -> tuple[dict, int, list[Path]]:
    """A fine-tuning stage that can run in its own process (its own data cache)."""
    return _finetune_stage(TransferContext(dd, p, device, Stages(out.parent, log=print)), enc_dir, out)


def _finetune_stage(tc: TransferContext, enc_dir: Path, out: Path) -> tuple[dict, int, list[Path]]:
    from .models import load_encoder
    from .transfer import EvalProtocol, FinetuneConfig, finetune, random_head, save_classifier

    t = tc.p.transfer
    data = tc.data(t.train_percent)
    enc = load_encoder(enc_dir, tc.device)
    cfg = FinetuneConfig(epochs=t.ft_epochs, batch_size=t.ft_batch, lr=t.ft_lr, min_lr=t.ft_min_lr,
                         warmup_steps=t.ft_warmup, crop_scale_min=t.ft_scale_min, seed=tc.p.seed)
    res = finetune(enc, random_head(enc.width, data.num_classes, seed=tc.p.seed), data, cfg, device=tc.device,
                   cache=tc.cache(), log=tc.stages.log)
    save_classifier(out, res.head, data, EvalProtocol(t.resize, t.crop), mode="finetune", head_init="random",
                    encoder=enc, meta={"finetune": asdict(cfg), "train_images": len(data.items)})
    n = max(1, len(res.losses) // max(1, t.ft_epochs))
    return ({"train_images": len(data.items), "steps": len(res.losses), "first_epoch_loss": sum(res.losses[:n]) / n,
             "last_epoch_loss": sum(res.losses[-n:]) / n, "wall_s": res.wall_s}, len(data.items), [])


def fig5_alias(head_init: str, percent: float) -> str:
    return f"catlip-fig5-{'ti' if head_init == 'transfer' else 'ri'}-{percent:g}"


def classification_transfer(tc: TransferContext, encoders: Mapping[str, Path]) -> dict[str, Path]:
    st, t = tc.stages, tc.p.transfer
    code = code_hash("transfer", "transfer_data", "transfer_init", "models")
    base = {"transfer": asdict(t), "seed": tc.p.seed, "alpha": tc.p.alpha}
    out: dict[str, Path] = {}
    for name, enc_dir in encoders.items():
        alias = f"catlip-lp-{name}"
        key = stage_key({**base, "kind": "lp", "percent": t.train_percent}, code, st.keys[f"catlip-enc-{name}"])
        out[alias] = st.run(alias, key, lambda o, n=name, d=enc_dir: _probe_stage(tc, n, d, t.train_percent,
                                                                                  "random", o))
    jobs = [(f"catlip-ft-{name}", stage_key({**base, "kind": "ft"}, code, st.keys[f"catlip-enc-{name}"]),
             functools.partial(finetune_job, tc.dd, tc.p, tc.device, encoders[name])) for name in ("catlip", "clip")]
    out.update(st.run_parallel(jobs, workers=_workers(tc.p, tc.device)))
    for percent in t.fractions:
        for head_init in ("transfer", "random"):
            alias = fig5_alias(head_init, percent)
            key = stage_key({**base, "kind": "fig5", "percent": percent, "init": head_init}, code,
                            st.keys["catlip-enc-catlip"], st.keys["catlip-vocab"])
            out[alias] = st.run(alias, key, lambda o, pc=percent, h=head_init: _probe_stage(
                tc, "catlip", encoders["catlip"], pc * t.train_percent / 100, h, o))
    return out


# ----------------------------------------------------------------------------- everything


def _workers(p: Profile, device: str) -> int:
    """Two single-threaded processes on a CPU with at least two cores; one process (all threads) on a GPU."""
    return 2 if p.pretrain.parallel and device == "cpu" and (os.cpu_count() or 1) >= 2 else 1


def data_dir(explicit: Path | None) -> Path:
    d = explicit or (Path(os.environ["REPRO_DATA_DIR"]) if os.environ.get("REPRO_DATA_DIR") else None)
    if d is None:
        raise FileNotFoundError("CatLIP needs the real data: set REPRO_DATA_DIR (a folder with "
                                "image_text_flickr8k/, imagenet/meta/ and imagenet/imagenette_112/)")
    if not (Path(d) / FLICKR).is_file():
        raise FileNotFoundError(f"{Path(d) / FLICKR}: not found (is REPRO_DATA_DIR right?)")
    return Path(d)


def run(artifacts: Path, profile_name: str, data_root: Path | None, *, device: str = "cpu", force: bool = False,
        log: Callable[[str], None] = print) -> dict[str, Path]:
    """Run or reuse every stage; return artifact aliases -> folders (models and measurement records).

    On a CPU the two pre-trainings (and the two fine-tunings) run side by side in ``spawn``ed processes, so a
    script calling this must guard its entry point with ``if __name__ == "__main__":`` (``repro`` does)."""
    import torch

    p = profile(profile_name)
    dd = data_dir(data_root)
    if device == "cpu":
        torch.set_num_threads(p.threads)
    st = Stages(Path(artifacts), force=force, log=log)
    out: dict[str, Path] = {}
    vocab_key = stage_key({"v_tau": p.v_tau, "alpha": p.alpha, "captions": p.vocab_captions,
                           "bench": p.bench_captions, "transfer_root": p.transfer.root},
                          code_hash("labels", "vocab", "vocab_stats", "transfer_init", "wordnet"))
    out["catlip-vocab"] = st.run("catlip-vocab", vocab_key, lambda o: stage_vocab(dd, p, o))
    cost_key = stage_key({"encoder": p.pretrain.encoder, "res": p.pretrain.resolution, "batch": p.cost_batch,
                          "k": p.cost_k, "device": device}, code_hash("cost", "models", "losses"))
    out["catlip-cost"] = st.run("catlip-cost", cost_key, lambda o: stage_cost(p, o))
    pt_code = code_hash("train", "data", "models", "losses", "labels")
    jobs = [(f"catlip-enc-{m}", stage_key({"pretrain": asdict(p.pretrain), "seed": p.seed, "method": m}, pt_code,
                                          vocab_key if m == "catlip" else ""),
             functools.partial(stage_pretrain, m, dd, p, out["catlip-vocab"], device)) for m in ("catlip", "clip")]
    out.update(st.run_parallel(jobs, workers=_workers(p, device)))
    out["catlip-enc-random"] = st.run("catlip-enc-random", stage_key(
        {"pretrain": asdict(p.pretrain), "seed": p.seed}, code_hash("models")), lambda o: stage_random_encoder(p, o))
    encoders = {m: out[f"catlip-enc-{m}"] for m in ("catlip", "clip", "random")}
    tc = TransferContext(dd, p, device, st)
    out.update(classification_transfer(tc, encoders))
    out.update(dense_transfer(encoders, Path(artifacts), profile_name, dd, device, log))
    if st.reused:
        log(f"[catlip] reused {len(st.reused)} stage(s) whose settings and code are unchanged: {', '.join(st.reused)}")
    return out


def dense_transfer(encoders: Mapping[str, Path], artifacts: Path, profile_name: str, dd: Path, device: str,
                   log: Callable[[str], None]) -> dict[str, Path]:
    """The dense engineer's trainers (multi-label, Mask R-CNN, DeepLabv3), when ``dense.py`` is present."""
    import importlib.util

    if importlib.util.find_spec(f"{__package__}.dense") is None:
        log("[catlip] dense.py not present: Tables 3-5 have no models at this profile")
        return {}
    from .dense import prepare_dense

    return dict(prepare_dense({k: v for k, v in encoders.items()}, artifacts, profile_name, dd, device))
