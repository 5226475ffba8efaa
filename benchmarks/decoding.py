"""Decoding speed: our Llama (AR, self-speculative) vs transformers generate (AR, assistant_early_exit).

Default: a random-weight Llama of a few tens of millions of parameters on CPU whose layers >= E are
scaled near identity (so the early exit agrees with the last layer and acceptance is high; the
acceptance numbers therefore say nothing about a trained LayerSkip model).  ``--checkpoint DIR``
loads a trained HF-format checkpoint instead.  ``--preset 1b --device cuda --dtype bfloat16`` uses the
Llama 3.2 1B shape with random weights.

Example:  python benchmarks/decoding.py --threads 2 --prompts 5 --max-new-tokens 64
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: much better on a shared CPU
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reproductions.layerskip.checkpoint import load_llama, parse_dtype, save_llama  # noqa: E402
from reproductions.layerskip.decoding import generate  # noqa: E402
from reproductions.layerskip.model import Llama, LlamaConfig  # noqa: E402

PRESETS = {
    "small": None,  # from --layers/--dim
    "1b": dict(vocab_size=128256, dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, intermediate_size=8192,
               rope_theta=500000.0, tie_word_embeddings=True,
               rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                 original_max_position_embeddings=8192)),
}


def build_random(args) -> Llama:
    if args.preset == "1b":
        cfg = LlamaConfig(**PRESETS["1b"], max_seq_len=4096)
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


def timed(fn, sync):
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t0


def main(argv=None):
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
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-hf", action="store_true", help="only time our implementation")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    E, d, n = args.exit_layer, args.num_speculations, args.max_new_tokens

    tmp = tempfile.TemporaryDirectory()
    if args.checkpoint:
        ours = load_llama(args.checkpoint, dtype=args.dtype, device=args.device)
        ckpt, weights = args.checkpoint, f"checkpoint {args.checkpoint}"
    else:
        ours = build_random(args)
        ckpt = tmp.name
        if not args.skip_hf:
            save_llama(ours, ckpt)
        weights = (f"RANDOM weights, layers >= {E} scaled near identity (acceptance is artificial, "
                   f"not a LayerSkip-trained model)")
    cfg = ours.config
    nparams = sum(p.numel() for p in ours.parameters())
    print(f"model: {cfg.n_layers} layers, dim {cfg.dim}, heads {cfg.n_heads}/{cfg.n_kv_heads}, vocab {cfg.vocab_size}, "
          f"{nparams / 1e6:.1f}M params, {args.dtype} on {args.device}, {args.threads} threads; {weights}")
    print(f"(timings on a shared CPU are noisy; systems interleaved per prompt; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})")
    print(f"prompts: {args.prompts} x {args.prompt_len} random tokens, {n} new tokens each, greedy; E={E} d={d}")

    g = torch.Generator().manual_seed(args.seed + 1)
    prompts = [torch.randint(0, cfg.vocab_size, (args.prompt_len,), generator=g).tolist() for _ in range(args.prompts)]
    results: dict[str, list[float]] = {}
    accept: dict[str, list[float]] = {}
    toks: dict[str, list[list[int]]] = {}

    systems = {}  # name -> fn(prompt, max_new) -> (tokens, ms/token, acceptance or None)

    def ours_sys(name, **kw):
        def run(p, m):
            out, st = generate(ours, p, m, **kw)
            return out, st.ms_per_token, (st.acceptance_rate if kw.get("strategy") == "self_speculative" else None)
        systems[name] = run

    ours_sys("ours AR")
    ours_sys("ours self-spec", strategy="self_speculative", exit_layer=E, num_speculations=d)
    ours_sys("ours self-spec no-KVQ-reuse", strategy="self_speculative", exit_layer=E, num_speculations=d,
             reuse_cache=False)
    ours_sys(f"ours early-exit E={E}", strategy="early_exit", exit_layer=E)
    if not args.skip_hf:
        from transformers import LlamaForCausalLM

        hf = LlamaForCausalLM.from_pretrained(ckpt, dtype=parse_dtype(args.dtype)).to(dev).eval()
        hf.generation_config.eos_token_id = None
        hf.generation_config.pad_token_id = 0

        def hf_sys(name, **kw):
            def run(p, m):
                x = torch.tensor([p], device=dev)
                with torch.inference_mode():
                    out, wall = timed(lambda: hf.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                                          max_new_tokens=m, min_new_tokens=m, **kw), sync)
                gen = out[0, x.shape[1]:].tolist()
                return gen, 1000 * wall / len(gen), None
            systems[name] = run

        hf_sys("transformers AR")
        hf_sys(f"transformers assistant_early_exit={E}", assistant_early_exit=E, num_assistant_tokens=d,
               num_assistant_tokens_schedule="constant", assistant_confidence_threshold=0.0)

    for run in systems.values():  # warm-up
        run(prompts[0], 4)
    names = list(systems)
    for i, p in enumerate(prompts):  # interleaved (rotating order) so load drift on a shared machine hits all alike
        for name in names[i % len(names):] + names[: i % len(names)]:
            out, ms, acc = systems[name](p, n)
            results.setdefault(name, []).append(ms)
            toks.setdefault(name, []).append(out)
            if acc is not None:
                accept.setdefault(name, []).append(acc)
        print(f"  prompt {i + 1}/{len(prompts)} done", flush=True)

    # cost of one draft layer vs one verification pass (median of repeated single calls)
    ours.setup_cache(args.prompt_len + 64)
    x1 = torch.tensor([prompts[0][:1]], device=dev)
    with torch.inference_mode():
        ours.run_layers(torch.tensor([prompts[0]], device=dev), 0)
        hq = ours.run_layers(torch.tensor([prompts[0][: d + 1]], device=dev), args.prompt_len, 0, E)

        def med(fn, reps=30):
            fn()
            return 1000 * statistics.median(timed(fn, sync)[1] for _ in range(reps))
        pos = args.prompt_len
        t_draft = med(lambda: ours.head(ours.run_layers(x1, pos, 0, E)))
        t_verify = med(lambda: ours.head(ours.run_layers(hq, pos, E)))
        t_full = med(lambda: ours.head(ours.run_layers(x1, pos)))

    print()
    ar = statistics.mean(results["ours AR"])
    print(f"{'system':44s} {'ms/token':>9s} {'vs ours AR':>10s} {'acceptance':>10s} {'== ours AR':>10s}")
    for name, v in results.items():
        acc = f"{statistics.mean(accept[name]):.3f}" if name in accept else "-"
        same = sum(a == b for a, b in zip(toks[name], toks["ours AR"]))
        print(f"{name:44s} {statistics.mean(v):9.2f} {ar / statistics.mean(v):9.2f}x {acc:>10s} "
              f"{same:>4d}/{len(v):<5d}")
    print()
    print(f"draft step (layers 0..{E - 1} + head, 1 token): {t_draft:.2f} ms = {t_draft / E:.2f} ms/layer; "
          f"verification pass (layers {E}..{cfg.n_layers - 1} + head, {d + 1} tokens): {t_verify:.2f} ms; "
          f"full AR step: {t_full:.2f} ms")
    if not args.skip_hf:
        hf_ar = statistics.mean(results["transformers AR"])
        hf_ee = statistics.mean(results[f"transformers assistant_early_exit={E}"])
        ss = statistics.mean(results["ours self-spec"])
        print(f"speed ratios (>1: ours faster): ours AR / transformers AR {hf_ar / ar:.2f}x; "
              f"ours self-spec / transformers assistant_early_exit {hf_ee / ss:.2f}x; "
              f"ours self-spec / ours AR {ar / ss:.2f}x")


if __name__ == "__main__":
    main()
