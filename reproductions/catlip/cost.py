"""Figure 1(c): why CatLIP pre-training is cheaper than CLIP, measured and modelled.

The paper reports one number per encoder (CatLIP = 0.37x CLIP GPU-hours for
ViT-B/16 at a 65k global batch on A100s) and four reasons: no text tower, less
memory, a cheap BCE head, and no all-gather of embeddings for the N x N
similarity matrix. A single ratio measured on a laptop says little about that
setting, so this module gives two things:

1. ``measure``: per-step cost of both methods at the same encoder and batch
   (fp32, forward + backward + AdamW step, median of k), broken down into image
   tower, text tower, head + loss and optimizer, plus peak memory (CUDA:
   ``max_memory_allocated``; CPU: high-water RSS of a fresh child process, the
   only allocator-independent peak torch exposes on CPU).
2. ``cost_model``: an analytic extrapolation to the paper's setting (FLOPs of
   each tower, the similarity matrix vs a 24k-way classifier, the all-gather of
   embeddings and the gradient all-reduce over many GPUs), with every hardware
   assumption a parameter, so one can see which term would have to dominate to
   reach the paper's 2.7x.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from .losses import bce_multilabel, clip_loss
from .models import CLIP, TEXT_CONFIGS, VIT_CONFIGS, CatLIP, count_params
from .train import param_groups

CLIP_TEXT_VOCAB = 49408  # CLIP BPE vocabulary, used for a realistic embedding table in cost runs


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, dev) -> float:
    _sync(dev)
    t0 = time.perf_counter()
    fn()
    _sync(dev)
    return time.perf_counter() - t0


def _build(method, encoder, resolution, vocab_size, dev):
    torch.manual_seed(0)
    if method == "catlip":
        m = CatLIP(vocab_size, encoder, resolution)
    else:
        m = CLIP(encoder, image_size=resolution, text_vocab_size=CLIP_TEXT_VOCAB)
    return m.to(dev)


def _inputs(method, model, batch, resolution, dev, vocab_size):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, resolution, resolution, generator=g).to(dev)
    if method == "catlip":
        t = (torch.rand(batch, vocab_size, generator=g) < 5 / vocab_size).float().to(dev)
        return images, t
    ctx = model.text_encoder.context
    tokens = torch.randint(3, CLIP_TEXT_VOCAB, (batch, ctx), generator=g)
    lens = torch.randint(8, ctx, (batch,), generator=g)
    tokens[torch.arange(batch), lens] = 2  # EOT at a random length
    return images, tokens.to(dev)


def _step_fn(method, model, opt, images, other):
    def step():
        opt.zero_grad(set_to_none=True)
        if method == "catlip":
            loss = bce_multilabel(model(images), other)
        else:
            loss = clip_loss(*model(images, other))
        loss.backward()
        opt.step()
    return step


def _parts(method, model, opt, images, other) -> dict:
    """Callables for the full step and each part of it."""
    enc = model.image_encoder
    fns = {"step_s": _step_fn(method, model, opt, images, other)}

    def image_tower():
        enc.zero_grad(set_to_none=True)
        f = enc(images)
        f.backward(torch.ones_like(f))
    fns["image_tower_s"] = image_tower
    with torch.no_grad():
        feat = enc(images).detach()
    if method == "catlip":
        def head():
            model.classifier.zero_grad(set_to_none=True)
            f = feat.clone().requires_grad_(True)
            bce_multilabel(model.classifier(f), other).backward()
    else:
        te = model.text_encoder

        def text_tower():
            te.zero_grad(set_to_none=True)
            t = te(other)
            t.backward(torch.ones_like(t))
        fns["text_tower_s"] = text_tower
        with torch.no_grad():
            temb = te(other).detach()

        def head():
            f = feat.clone().requires_grad_(True)
            t = temb.clone().requires_grad_(True)
            clip_loss(model.image_projection(f), t, model.logit_scale).backward()
    fns["head_loss_s"] = head

    def opt_step():
        opt.step()
    fns["optimizer_s"] = opt_step
    return fns


def _persistent_bytes(model) -> int:
    """fp32 weights + AdamW exp_avg + exp_avg_sq."""
    return 3 * 4 * count_params(model)


def _cpu_step_peak_bytes(step) -> int:
    """Peak of tensor memory allocated during one step (torch profiler's
    allocator events, relative to the start of the step)."""
    import tempfile

    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            ev = json.load(f)["traceEvents"]
    tot = [e["args"].get("Total Allocated", 0) for e in ev
           if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type") == 0]
    return max(tot, default=0)


def measure(encoder: str = "tiny", resolution: int = 64, batch: int = 64, vocab_size: int = 24320,
            k: int = 5, device: str = "cpu", memory: bool = True) -> dict:
    """Side-by-side CatLIP vs CLIP at the same encoder and batch.

    Timings of the two methods are interleaved (A B A B ...) so that load
    from other processes on a shared machine hits both alike; each number is
    the median of k. Peak memory: CUDA ``max_memory_allocated`` over a step
    (weights, AdamW state, activations, gradients); CPU: the same quantity as
    fp32 weights + AdamW state + the profiler's peak of tensor allocations
    during one step.
    """
    dev = torch.device(device)
    res = {"encoder": encoder, "resolution": resolution, "batch": batch, "vocab_size": vocab_size,
           "k": k, "device": device, "threads": torch.get_num_threads(), "dtype": "fp32"}
    setups = {}
    for m in ("catlip", "clip"):
        model = _build(m, encoder, resolution, vocab_size, dev)
        opt = torch.optim.AdamW(param_groups(model, 0.2), lr=1e-4)
        images, other = _inputs(m, model, batch, resolution, dev, vocab_size)
        fns = _parts(m, model, opt, images, other)
        fns["step_s"]()  # warm-up; allocates AdamW state
        setups[m] = (model, opt, fns)
        res[m] = {"method": m, "params": count_params(model), "text_tower_s": 0.0}
    samples = {m: {name: [] for name in setups[m][2]} for m in setups}
    for _ in range(k):
        for m, (_, _, fns) in setups.items():
            for name, fn in fns.items():
                if name == "optimizer_s":
                    fns["step_s"]()  # make sure gradients exist
                samples[m][name].append(_timed(fn, dev))
    for m in setups:
        for name, v in samples[m].items():
            res[m][name] = statistics.median(v)
    if memory:
        for m, (model, _opt, fns) in setups.items():
            if dev.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                fns["step_s"]()
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated()
                res[m]["mem_method"] = "torch.cuda.max_memory_allocated over one step"
            else:
                peak = _persistent_bytes(model) + _cpu_step_peak_bytes(fns["step_s"])
                res[m]["mem_method"] = "fp32 weights + AdamW state + profiler peak of step allocations"
            res[m]["peak_mem_mb"] = peak / 2**20
    res["time_ratio_clip_over_catlip"] = res["clip"]["step_s"] / res["catlip"]["step_s"]
    # the same ratio from the separately timed parts: less sensitive to a single noisy step on a shared CPU
    for m in ("catlip", "clip"):
        res[m]["parts_sum_s"] = sum(res[m][k] for k in ("image_tower_s", "text_tower_s", "head_loss_s", "optimizer_s"))
    res["parts_ratio_clip_over_catlip"] = res["clip"]["parts_sum_s"] / res["catlip"]["parts_sum_s"]
    if memory:
        res["mem_ratio_clip_over_catlip"] = res["clip"]["peak_mem_mb"] / res["catlip"]["peak_mem_mb"]
    return res


def format_table(res: dict) -> str:
    rows = [("params (M)", lambda r: f"{r['params'] / 1e6:.2f}"),
            ("step (ms)", lambda r: f"{r['step_s'] * 1e3:.1f}"),
            ("  image tower fwd+bwd (ms)", lambda r: f"{r['image_tower_s'] * 1e3:.1f}"),
            ("  text tower fwd+bwd (ms)", lambda r: f"{r['text_tower_s'] * 1e3:.1f}"),
            ("  head + loss fwd+bwd (ms)", lambda r: f"{r['head_loss_s'] * 1e3:.1f}"),
            ("  AdamW step (ms)", lambda r: f"{r['optimizer_s'] * 1e3:.1f}"),
            ("  sum of parts (ms)", lambda r: f"{r['parts_sum_s'] * 1e3:.1f}"),
            ("peak step memory (MiB)", lambda r: f"{r['peak_mem_mb']:.0f}" if "peak_mem_mb" in r else "n/a")]
    lines = [f"{res['encoder']} @ {res['resolution']}px, batch {res['batch']}, vocab {res['vocab_size']}, "
             f"{res['dtype']}, {res['device']}, {res['threads']} threads, median of {res['k']}",
             f"{'':30s} {'CatLIP':>10s} {'CLIP':>10s}"]
    for name, f in rows:
        lines.append(f"{name:30s} {f(res['catlip']):>10s} {f(res['clip']):>10s}")
    lines.append(f"CLIP/CatLIP step time: {res['time_ratio_clip_over_catlip']:.2f}x "
                 f"(sum of parts {res['parts_ratio_clip_over_catlip']:.2f}x)"
                 + (f"; peak memory: {res['mem_ratio_clip_over_catlip']:.2f}x" if "mem_ratio_clip_over_catlip" in res else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------- cost model

def vit_fwd_flops(image_size: int, patch: int, layers: int, width: int, mlp: int, tokens_extra: int = 1) -> float:
    n = (image_size // patch) ** 2 + tokens_extra
    per_layer = 2 * n * width * 3 * width + 2 * n * width * width + 2 * 2 * n * width * mlp + 2 * 2 * n * n * width
    return layers * per_layer + 2 * (n - tokens_extra) * (3 * patch * patch) * width


def text_fwd_flops(context: int, layers: int, width: int) -> float:
    return vit_fwd_flops(0, 1, layers, width, 4 * width, tokens_extra=context)


@dataclass
class Hardware:
    """Assumptions (A100 defaults). Every one of them moves the ratio."""
    peak_flops: float = 312e12      # bf16 dense
    mfu: float = 0.40               # achieved fraction of peak
    net_bw_per_gpu: float = 25e9    # bytes/s inter-node per GPU (8 x 200 Gb/s IB per 8-GPU node)
    act_bytes: int = 2              # bf16 embeddings on the wire
    grad_bytes: int = 2


def cost_model(encoder: str = "vit_b_16", vocab_size: int = 24320, global_batch: int = 65536,
               catlip_gpus: int = 64, clip_gpus: int = 256, hw: Hardware | None = None) -> dict:
    """GPU-seconds per optimisation step for each method, split by term.
    Defaults: the paper's DataComp setting (Table 6b: CatLIP-B 1024 x 64 GPUs,
    CLIP-B 256 x 256 GPUs, 65,536 global batch)."""
    hw = hw or Hardware()
    size, patch, layers, _, width, mlp = VIT_CONFIGS[encoder]
    ctx, t_layers, _, t_width, embed = TEXT_CONFIGS[encoder]
    img = vit_fwd_flops(size, patch, layers, width, mlp)
    txt = text_fwd_flops(ctx, t_layers, t_width)  # embedding look-up ~ free
    cls_head = 2 * width * vocab_size
    # per sample: its row of image->text and of text->image logits (local b x N each, as open_clip's local loss)
    sim = 2 * 2 * global_batch * embed
    proj = 2 * width * embed + 2 * t_width * embed
    rate = hw.peak_flops * hw.mfu
    enc_params = count_params_vit(encoder)
    txt_params = (12 * t_layers * t_width ** 2) + CLIP_TEXT_VOCAB * t_width + ctx * t_width
    terms = {}
    for method, gpus in (("catlip", catlip_gpus), ("clip", clip_gpus)):
        per_gpu = global_batch / gpus
        t = {}
        t["image_tower"] = 3 * img * global_batch / rate
        t["text_tower"] = 0.0 if method == "catlip" else 3 * txt * global_batch / rate
        t["head_loss"] = 3 * (cls_head if method == "catlip" else sim + proj) * global_batch / rate
        # embedding all-gather (fwd) + gradient reduce-scatter (bwd): each GPU receives ~N x E per modality
        t["embedding_all_gather"] = 0.0 if method == "catlip" else \
            gpus * (2 * 2 * global_batch * embed * hw.act_bytes) / hw.net_bw_per_gpu
        n_params = enc_params + (width * vocab_size + vocab_size if method == "catlip"
                                 else txt_params + width * embed + t_width * embed)
        t["grad_all_reduce"] = gpus * (2 * n_params * hw.grad_bytes) / hw.net_bw_per_gpu
        terms[method] = {"gpus": gpus, "per_gpu_batch": per_gpu, "params": n_params,
                         "gpu_s_per_step": sum(t.values()), "terms_gpu_s": t}
    ratio = terms["clip"]["gpu_s_per_step"] / terms["catlip"]["gpu_s_per_step"]
    flop_ratio = (img + txt + sim + proj) / (img + cls_head)
    return {"encoder": encoder, "global_batch": global_batch, "vocab_size": vocab_size,
            "hardware": asdict(hw), "image_fwd_gflops": img / 1e9, "text_fwd_gflops": txt / 1e9,
            "catlip_head_fwd_mflops_per_sample": cls_head / 1e6,
            "clip_similarity_fwd_mflops_per_sample": sim / 1e6,
            "flop_ratio_clip_over_catlip": flop_ratio,
            "modelled_ratio_clip_over_catlip": ratio, "paper_ratio_clip_over_catlip": 1 / 0.37,
            "catlip": terms["catlip"], "clip": terms["clip"]}


def count_params_vit(encoder: str) -> int:
    size, patch, layers, _, width, mlp = VIT_CONFIGS[encoder]
    n = (size // patch) ** 2 + 1
    per_layer = 4 * width * width + 4 * width + 2 * width * mlp + width + mlp + 4 * width
    return layers * per_layer + 3 * patch * patch * width + width + n * width + width + 2 * width


def cost_model_sweep(encoder: str = "vit_b_16", hw: Hardware | None = None) -> list[dict]:
    """The ratio across settings: CC3M-style 4-GPU runs up to the 65k paper setting."""
    rows = []
    for gb, cg, kg in ((2048, 4, 4), (8192, 16, 16), (65536, 64, 256), (65536, 256, 256)):
        r = cost_model(encoder, global_batch=gb, catlip_gpus=cg, clip_gpus=kg, hw=hw)
        rows.append({"global_batch": gb, "catlip_gpus": cg, "clip_gpus": kg,
                     "ratio": r["modelled_ratio_clip_over_catlip"], "flop_ratio": r["flop_ratio_clip_over_catlip"],
                     "clip_comm_share": (r["clip"]["terms_gpu_s"]["embedding_all_gather"]
                                         + r["clip"]["terms_gpu_s"]["grad_all_reduce"]) / r["clip"]["gpu_s_per_step"]})
    return rows


def format_model(m: dict, sweep: list[dict] | None = None) -> str:
    L = [f"cost model {m['encoder']}, global batch {m['global_batch']}, vocab {m['vocab_size']}; "
         f"image fwd {m['image_fwd_gflops']:.1f} GFLOPs/img, text fwd {m['text_fwd_gflops']:.1f} GFLOPs/caption, "
         f"CatLIP head {m['catlip_head_fwd_mflops_per_sample']:.0f} MFLOPs/img, "
         f"CLIP similarity {m['clip_similarity_fwd_mflops_per_sample']:.0f} MFLOPs/pair",
         f"{'GPU-seconds per step':28s} {'CatLIP':>10s} {'CLIP':>10s}"]
    for k in m["catlip"]["terms_gpu_s"]:
        L.append(f"  {k:26s} {m['catlip']['terms_gpu_s'][k]:10.2f} {m['clip']['terms_gpu_s'][k]:10.2f}")
    L.append(f"  {'total':26s} {m['catlip']['gpu_s_per_step']:10.2f} {m['clip']['gpu_s_per_step']:10.2f}")
    L.append(f"modelled CLIP/CatLIP {m['modelled_ratio_clip_over_catlip']:.2f}x (FLOPs alone "
             f"{m['flop_ratio_clip_over_catlip']:.2f}x); paper {m['paper_ratio_clip_over_catlip']:.2f}x")
    for r in sweep or []:
        L.append(f"  batch {r['global_batch']:6d}, GPUs CatLIP {r['catlip_gpus']:3d} / CLIP {r['clip_gpus']:3d}: "
                 f"{r['ratio']:.2f}x (FLOPs {r['flop_ratio']:.2f}x, CLIP comm share {100 * r['clip_comm_share']:.0f}%)")
    return "\n".join(L)
