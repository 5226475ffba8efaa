"""Decoding speed: our Llama (AR, early exit, self-speculative, batched, compiled) vs transformers ``generate``
(AR, ``assistant_early_exit``), on the same weights, side by side in one run.

Weights: by default a random Llama of a few tens of millions of parameters whose layers >= E are scaled near
identity (so the early exit agrees with the last layer and acceptance is high; its acceptance says nothing
about a trained LayerSkip model). ``--checkpoint DIR`` loads a trained HF-format checkpoint; with ``--topv2 N``
the prompts are the first N TOPv2 weather test utterances, tokenised by the checkpoint's tokenizer, and every
system stops at EOS (the setting of arXiv 2404.16710v4, Appendix A.2, Table 11: greedy TOPv2 on a CPU, d = 7,
at most 50 new tokens). ``--preset 1b|7b --device cuda
--dtype bfloat16`` uses the Llama 3.2 1B / Llama 2 7B shapes with random weights and prints AR ms/token next
to the memory-bandwidth bound (weight bytes / HBM bandwidth).

On a CPU shared with other jobs, ``--threads 1 --clock cpu`` times each system by this process's CPU time,
which waiting for a core does not inflate (memory-bandwidth contention still does; systems are interleaved
per prompt so that it hits all of them alike).

Examples:
  python benchmarks/decoding.py --threads 2 --prompts 6 --max-new-tokens 64 --batch 6 --compile
  python benchmarks/decoding.py --checkpoint DIR --topv2 40 --exit-layer 1 --num-speculations 10 \
      --draft-confidence 0.5 --batch 10 --threads 1 --clock cpu
  python benchmarks/decoding.py --preset 1b --device cuda --dtype bfloat16 --compile --skip-hf
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: much better on a shared CPU
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reproductions.layerskip.checkpoint import load_llama, parse_dtype, save_llama  # noqa: E402
from reproductions.layerskip.decoding import generate, generate_batch  # noqa: E402
from reproductions.layerskip.model import Llama, LlamaConfig  # noqa: E402
from suite.devices import cpu_flags, cpu_model  # noqa: E402

PRESETS = {
    "small": None,  # from --layers/--dim/--vocab
    "1b": dict(vocab_size=128256, dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, intermediate_size=8192,
               rope_theta=500000.0, tie_word_embeddings=True,
               rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                 original_max_position_embeddings=8192)),
    "7b": dict(vocab_size=32000, dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, intermediate_size=11008),
}
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def build_random(args) -> Llama:
    if args.preset != "small":
        cfg = LlamaConfig(**PRESETS[args.preset], max_seq_len=4096)
    else:
        heads = max(1, args.dim // 64)
        cfg = LlamaConfig(vocab_size=args.vocab, dim=args.dim, n_layers=args.layers, n_heads=heads,
                          n_kv_heads=max(1, heads // 2) if heads % 2 == 0 else heads,
                          intermediate_size=int(8 * args.dim / 3 + 63) // 64 * 64, max_seq_len=4096)
    torch.manual_seed(args.seed)
    with torch.device(args.device):
        m = Llama(cfg)
    with torch.no_grad():
        for layer in m.layers[args.exit_layer:]:  # upper layers ~ identity: early exit agrees with the last layer
            layer.attn.wo.weight.mul_(0.01)
            layer.mlp.w2.weight.mul_(0.01)
        m.tok_embeddings.weight.mul_(20.0)  # peaked predictions
    return m.to(parse_dtype(args.dtype)).eval()


@dataclass
class Workload:
    """Prompts (token ids) plus how generation ends: a fixed length, or EOS (real prompts)."""

    prompts: list[list[int]]
    max_new: int
    eos: list[int] = field(default_factory=list)
    description: str = ""


def topv2_workload(ckpt: str, n: int, max_new: int, data_root: str | None) -> Workload:
    from transformers import AutoTokenizer

    from suite.tasks.topv2 import TopV2Task

    tok = AutoTokenizer.from_pretrained(ckpt)
    task = TopV2Task(domains="weather")
    exs = [ex for _, ex in zip(range(n), task.examples("test", Path(data_root) if data_root else None))]
    prompts = [tok(task.request(ex).prompt)["input_ids"] for ex in exs]
    return Workload(prompts, max_new, [tok.eos_token_id],
                    f"first {len(prompts)} TOPv2 weather test utterances, up to {max_new} new tokens, stop at EOS")


def random_workload(args, vocab: int) -> Workload:
    g = torch.Generator().manual_seed(args.seed + 1)
    prompts = [torch.randint(0, vocab, (args.prompt_len,), generator=g).tolist() for _ in range(args.prompts)]
    return Workload(prompts, args.max_new_tokens, [],
                    f"{args.prompts} x {args.prompt_len} random tokens, exactly {args.max_new_tokens} new tokens each")


Run = Callable[[list[int], int], tuple[list[int], float | None]]  # (prompt, max_new) -> tokens, acceptance
CLOCK = time.perf_counter
"""Wall clock by default; ``--clock cpu`` times this process's CPU time instead, which a CPU shared with other
jobs inflates much less (waiting for a core is not counted); use it with --threads 1."""


def timed(fn, sync):
    sync()
    t0 = CLOCK()
    out = fn()
    sync()
    return out, CLOCK() - t0


def ours(model: Llama, wl: Workload, **kw) -> Run:
    def run(p, m):
        out, st = generate(model, p, m, eos_token_ids=wl.eos, **kw)
        return out, (st.acceptance_rate if kw.get("strategy") == "self_speculative" else None)
    return run


def hf_systems(ckpt: str, args, wl: Workload, dev: torch.device, sync) -> dict[str, Run]:
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(ckpt, dtype=parse_dtype(args.dtype)).to(dev).eval()
    hf.generation_config.eos_token_id = wl.eos[0] if wl.eos else None
    hf.generation_config.pad_token_id = 0

    def system(**kw) -> Run:
        def run(p, m):
            x = torch.tensor([p], device=dev)
            fixed = {} if wl.eos else {"min_new_tokens": m}
            with torch.inference_mode():
                out = hf.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=m, **fixed, **kw)
            return out[0, x.shape[1]:].tolist(), None
        return run

    E, d = args.exit_layer, args.num_speculations
    return {"transformers AR": system(),
            f"transformers assistant_early_exit={E} d={d}": system(
                assistant_early_exit=E, num_assistant_tokens=d, num_assistant_tokens_schedule="constant",
                assistant_confidence_threshold=args.draft_confidence)}


def build_systems(model: Llama, wl: Workload, args) -> dict[str, Run]:
    E, d = args.exit_layer, args.num_speculations
    ss = dict(strategy="self_speculative", exit_layer=E, num_speculations=d, draft_confidence=args.draft_confidence)
    systems = {"ours AR": ours(model, wl),
               f"ours self-spec E={E} d={d}": ours(model, wl, **ss),
               "ours self-spec no-KVQ-reuse": ours(model, wl, **ss, reuse_cache=False),
               f"ours early-exit E={E}": ours(model, wl, strategy="early_exit", exit_layer=E)}
    if args.compile:
        systems["ours AR compiled"] = ours(model, wl, compile=True)
        systems[f"ours self-spec E={E} d={d} compiled"] = ours(model, wl, **ss, compile=True)
    return systems


def interleaved(systems: dict[str, Run], wl: Workload, sync):
    """Every system on every prompt, rotating the order per prompt so load drift on a shared machine hits all."""
    for run in systems.values():  # warm-up (and every compiled graph: several draft/verify cycles) untimed
        for p in wl.prompts[:2]:
            run(p, wl.max_new)
    walls: dict[str, list[float]] = {n: [] for n in systems}
    toks: dict[str, list[list[int]]] = {n: [] for n in systems}
    acc: dict[str, list[float]] = {}
    names = list(systems)
    for i, p in enumerate(wl.prompts):
        for name in names[i % len(names):] + names[: i % len(names)]:
            (out, a), wall = timed(lambda: systems[name](p, wl.max_new), sync)  # noqa: B023 (called at once)
            walls[name].append(wall)
            toks[name].append(out)
            if a is not None:
                acc.setdefault(name, []).append(a)
        print(f"  prompt {i + 1}/{len(wl.prompts)} done", flush=True, file=sys.stderr)
    return walls, toks, acc


def ms_per_token(walls: list[float], toks: list[list[int]]) -> float:
    return 1000 * sum(walls) / max(1, sum(map(len, toks)))


def print_table(walls, toks, acc) -> dict[str, float]:
    ms = {n: ms_per_token(walls[n], toks[n]) for n in walls}
    ar = ms["ours AR"]
    print(f"{'system':46s} {'ms/token':>9s} {'vs ours AR':>10s} {'acceptance':>10s} {'== ours AR':>10s}")
    for name in walls:
        a = f"{statistics.mean(acc[name]):.3f}" if name in acc else "-"
        same = sum(x == y for x, y in zip(toks[name], toks["ours AR"]))
        print(f"{name:46s} {ms[name]:9.3f} {ar / ms[name]:9.2f}x {a:>10s} {same:>4d}/{len(toks[name]):<5d}")
    return ms


def batched(model: Llama, wl: Workload, B: int, exit_layer: int | None, compile: bool, reference: list[list[int]],
            sync):
    """Throughput of batch-B decoding vs batch 1 on the same prompts (tokens/s), and token identity."""
    chunks = [wl.prompts[i:i + B] for i in range(0, len(wl.prompts), B)]
    kw = dict(exit_layer=exit_layer, eos_token_ids=wl.eos, compile=compile)
    for c in {len(c): c for c in chunks}.values():  # warm-up (and compilation) for each batch shape
        generate_batch(model, c, min(wl.max_new, 8), **kw)
    one = dict(strategy="early_exit", exit_layer=exit_layer) if exit_layer else {}
    t1 = sum(timed(lambda: generate(model, p, wl.max_new, eos_token_ids=wl.eos, compile=compile, **one),  # noqa: B023
                   sync)[1]
             for p in wl.prompts)
    outs, tb = [], 0.0
    for c in chunks:
        (o, _), t = timed(lambda: generate_batch(model, c, wl.max_new, **kw), sync)  # noqa: B023 (called at once)
        outs += o
        tb += t
    n = sum(map(len, outs))
    same = sum(a == b for a, b in zip(outs, reference))
    return n / t1, n / tb, same


def step_costs(model: Llama, args, prompt: list[int], sync) -> str:
    """Median cost of one draft step, one verification pass and one full AR step (eager)."""
    E, d, dev = args.exit_layer, args.num_speculations, model.output.weight.device
    P = len(prompt)
    model.setup_cache(P + d + 8)
    x1 = torch.tensor([prompt[:1]], device=dev)

    def med(fn, reps=30):
        fn()
        return 1000 * statistics.median(timed(fn, sync)[1] for _ in range(reps))
    with torch.inference_mode():
        model.run_layers(torch.tensor([prompt], device=dev), 0)
        hq = model.run_layers(torch.tensor([(prompt * (d + 1))[: d + 1]], device=dev), P, 0, E)
        t_draft = med(lambda: model.head(model.run_layers(x1, P, 0, E)))
        t_verify = med(lambda: model.head(model.run_layers(hq, P, E)))
        t_full = med(lambda: model.head(model.run_layers(x1, P)))
    L = model.config.n_layers
    return (f"draft step (layers 0..{E - 1} + head, 1 token): {t_draft:.3f} ms; verification (layers {E}..{L - 1} "
            f"+ head, {d + 1} tokens): {t_verify:.3f} ms; full AR step: {t_full:.3f} ms")


def hbm_bound(model: Llama, dev: torch.device, gbps: float | None) -> tuple[float, float] | None:
    """(ms/token lower bound = weight bytes / bandwidth, bandwidth GB/s) on a GPU, or None if unknown."""
    if dev.type != "cuda":
        return None
    if gbps is None:
        prop = torch.cuda.get_device_properties(dev)
        clock, bus = getattr(prop, "memory_clock_rate", 0), getattr(prop, "memory_bus_width", 0)  # kHz, bits
        gbps = 2 * clock * 1e3 * bus / 8 / 1e9 if clock and bus else None
    if not gbps:
        return None
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())  # tied weights counted once
    return 1000 * nbytes / (gbps * 1e9), gbps


def header(model: Llama, args, wl: Workload, weights: str) -> None:
    cfg = model.config
    nparams = sum(p.numel() for p in model.parameters())
    flags = " ".join(f for f in FLAGS if f in cpu_flags()) or "-"
    print(f"cpu: {cpu_model()} (flags: {flags}); torch {torch.__version__}; {args.threads} threads")
    if model.output.weight.device.type == "cuda":
        print(f"gpu: {torch.cuda.get_device_name(model.output.weight.device)}")
    print(f"model: {cfg.n_layers} layers, dim {cfg.dim}, heads {cfg.n_heads}/{cfg.n_kv_heads}, vocab {cfg.vocab_size}, "
          f"{nparams / 1e6:.1f}M params, {args.dtype} on {args.device}; {weights}")
    print(f"prompts: {wl.description}; greedy; E={args.exit_layer} d={args.num_speculations} "
          f"draft confidence {args.draft_confidence}")
    print(f"clock: {args.clock} ({'CPU time of this process' if args.clock == 'cpu' else 'wall time'}); systems "
          f"interleaved per prompt; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=5)
    ap.add_argument("--prompt-len", type=int, default=48)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--exit-layer", type=int, default=2)
    ap.add_argument("--num-speculations", type=int, default=6)
    ap.add_argument("--checkpoint", default=None, help="HF-format Llama checkpoint dir (else random weights)")
    ap.add_argument("--topv2", type=int, default=0, help="with --checkpoint: N TOPv2 weather test prompts")
    ap.add_argument("--data-root", default=None, help="TOPv2 data root (default $REPRO_DATA_DIR)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--draft-confidence", type=float, default=0.0,
                    help="end a draft run after a token the exit gives less than this probability (ours and "
                         "transformers' assistant_confidence_threshold alike; 0 = always d drafts, as the paper)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=0, help="also time batched AR/early-exit decoding at this batch size")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd static-shape decode steps")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time, or this process's CPU time (robust to other jobs on a shared CPU; --threads 1)")
    ap.add_argument("--hbm-gbps", type=float, default=None, help="GPU memory bandwidth (default: from the device)")
    ap.add_argument("--skip-hf", action="store_true", help="only time our implementation")
    return ap.parse_args(argv)


def main(argv=None):
    global CLOCK
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    tmp = tempfile.TemporaryDirectory()
    if args.checkpoint:
        model = load_llama(args.checkpoint, dtype=args.dtype, device=args.device)
        ckpt, weights = args.checkpoint, f"checkpoint {args.checkpoint}"
    else:
        model, ckpt = build_random(args), tmp.name
        if not args.skip_hf:
            save_llama(model, ckpt)
        weights = (f"RANDOM weights, layers >= {args.exit_layer} scaled near identity (acceptance is artificial, "
                   f"not a LayerSkip-trained model)")
    wl = (topv2_workload(ckpt, args.topv2, args.max_new_tokens, args.data_root) if args.topv2
          else random_workload(args, model.config.vocab_size))
    header(model, args, wl, weights)
    systems = build_systems(model, wl, args)
    if not args.skip_hf:
        systems.update(hf_systems(ckpt, args, wl, dev, sync))
    walls, toks, acc = interleaved(systems, wl, sync)
    print()
    ms = print_table(walls, toks, acc)
    print()
    print(step_costs(model, args, wl.prompts[0], sync))
    report_ratios(ms, args)
    if args.batch > 1:
        report_batched(model, wl, args, toks, sync)
    bound = hbm_bound(model, dev, args.hbm_gbps)
    if bound:
        for name in [n for n in ("ours AR", "ours AR compiled") if n in ms]:
            print(f"{name}: {ms[name]:.3f} ms/token vs HBM bound {bound[0]:.3f} ms/token ({bound[1]:.0f} GB/s): "
                  f"{bound[0] / ms[name]:.0%} of the bandwidth roofline")


def report_ratios(ms: dict[str, float], args) -> None:
    E, d = args.exit_layer, args.num_speculations
    ss = ms[f"ours self-spec E={E} d={d}"]
    parts = [f"ours self-spec / ours AR {ms['ours AR'] / ss:.2f}x"]
    if "ours AR compiled" in ms:
        ssc = ms[f"ours self-spec E={E} d={d} compiled"]
        parts += [f"compiled AR / eager AR {ms['ours AR'] / ms['ours AR compiled']:.2f}x",
                  f"compiled self-spec / compiled AR {ms['ours AR compiled'] / ssc:.2f}x"]
    if "transformers AR" in ms:
        parts += [f"ours AR / transformers AR {ms['transformers AR'] / ms['ours AR']:.2f}x",
                  f"ours self-spec / transformers assistant_early_exit "
                  f"{ms[f'transformers assistant_early_exit={E} d={d}'] / ss:.2f}x"]
    print("speed ratios (>1: the first is faster): " + "; ".join(parts))


def report_batched(model: Llama, wl: Workload, args, toks, sync) -> None:
    E = args.exit_layer
    for name, exit_layer, ref in (("AR", None, toks["ours AR"]), (f"early-exit E={E}", E, toks[f"ours early-exit E={E}"])):
        for compile in (False, True) if args.compile else (False,):
            b1, bb, same = batched(model, wl, args.batch, exit_layer, compile, ref, sync)
            tag = " compiled" if compile else ""
            print(f"batched {name}{tag}: batch 1 {b1:.0f} tok/s, batch {args.batch} {bb:.0f} tok/s = {bb / b1:.2f}x; "
                  f"outputs == batch 1: {same}/{len(ref)}")


if __name__ == "__main__":
    main()
