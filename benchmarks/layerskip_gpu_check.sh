#!/usr/bin/env bash
# LayerSkip GPU check, one command, under 10 minutes on one GPU:
#   a random-weight model of the Llama2 7B shape in bf16 decodes a handful of CNN/DM-like 1-shot prompts through
#   `repro run` (autoregressive, early exit E=8, self-speculative E=8 d=12, the Table 3 7B CNN/DM setting) on
#   --device cuda, then prints the GPU-hours per paper table that its measured ms/token imply.
#
#   benchmarks/layerskip_gpu_check.sh                                   # 7B shape, cuda, bf16
#   LAYERSKIP_GPU_CHECK_PRESET=tiny benchmarks/layerskip_gpu_check.sh   # tiny shape, cpu, fp32: tests the script
#
# Knobs (environment): LAYERSKIP_GPU_CHECK_PRESET (7b | tiny), _DEVICE (cuda | cpu), _N (examples, default 4),
# _TOKENS (new tokens per example, default 128), _DIR (work folder, default a fresh temp dir), PYTHON.
# Nothing is downloaded: the tokenizer (byte-level, padded to the model's vocabulary), the weights and the
# articles are made here. Layers from E on get their residual outputs scaled by 1e-2, so the early exit agrees
# with the last layer and self-speculation accepts nearly every draft: its time is a best case (acceptance is
# printed), AR and early-exit times are what a real checkpoint of the same shape costs.
set -euo pipefail
cd "$(dirname "$0")/.."

PRESET="${LAYERSKIP_GPU_CHECK_PRESET:-7b}"
if [ "$PRESET" = tiny ]; then DEF_DEVICE=cpu; DTYPE=float32; else DEF_DEVICE=cuda; DTYPE=bfloat16; fi
DEVICE="${LAYERSKIP_GPU_CHECK_DEVICE:-$DEF_DEVICE}"
N="${LAYERSKIP_GPU_CHECK_N:-4}"
TOKENS="${LAYERSKIP_GPU_CHECK_TOKENS:-128}"
PY="${PYTHON:-python}"
WORK="${LAYERSKIP_GPU_CHECK_DIR:-$(mktemp -d -t layerskip-gpu-check.XXXXXX)}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" HF_HUB_OFFLINE=1 REPRO_CNNDM_JSONL="$WORK/articles.jsonl"
t0=$(date +%s)

echo "== building a random $PRESET model ($DTYPE) in $WORK"
"$PY" - "$WORK" "$PRESET" "$DEVICE" <<'PYEOF'
import json, random, sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

work, preset, device = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
shape = (dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, vocab_size=32000,
              max_position_embeddings=4096) if preset == "7b" else
         dict(hidden_size=64, intermediate_size=172, num_hidden_layers=4, num_attention_heads=4, vocab_size=512,
              max_position_embeddings=4096))
exit_layer = 8 if preset == "7b" else 2

# Byte-level tokenizer, padded with inert tokens to the model's vocabulary so every generated id decodes.
alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
vocab = {"<s>": 0, "</s>": 1, **{c: i + 2 for i, c in enumerate(alphabet)}}
vocab.update({f"<x{i}>": i for i in range(len(vocab), shape["vocab_size"])})
tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
ckpt = work / "model"
PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>").save_pretrained(ckpt)

torch.manual_seed(0)
cfg = LlamaConfig(**shape, bos_token_id=0, eos_token_id=1, rms_norm_eps=1e-5, tie_word_embeddings=False)
dev = device if device.startswith("cuda") and torch.cuda.is_available() else "cpu"
torch.set_default_dtype(torch.bfloat16 if preset == "7b" else torch.float32)  # build in bf16: half the memory
with torch.device(dev):
    model = LlamaForCausalLM(cfg)
with torch.no_grad():
    for layer in model.model.layers[exit_layer:]:
        layer.self_attn.o_proj.weight.mul_(1e-2)
        layer.mlp.down_proj.weight.mul_(1e-2)
model.save_pretrained(ckpt, safe_serialization=True)

# CNN/DM-like articles: about 700 characters each, so a 1-shot prompt is ~1,500 tokens, like a real one.
rng = random.Random(0)
words = ("the city council said on monday that new rules for local transport would start next year after a long "
         "public debate about costs safety and the needs of families who travel every day").split()
with open(work / "articles.jsonl", "w") as f:
    for i in range(16):
        sents = [" ".join(rng.choice(words) for _ in range(14)).capitalize() + "." for _ in range(7)]
        f.write(json.dumps({"id": f"synthetic-{i}", "article": " ".join(sents), "highlights": " ".join(sents[:2])}) + "\n")
print(f"model {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters, exit layer {exit_layer}")
PYEOF
t1=$(date +%s)

EXIT=8; D=12
if [ "$PRESET" = tiny ]; then EXIT=2; D=4; fi
for system in layerskip-ar layerskip-early-exit layerskip-self-spec; do
  extra=()
  [ "$system" != layerskip-ar ] && extra+=(--param "exit_layer=$EXIT")
  [ "$system" = layerskip-self-spec ] && extra+=(--param "num_speculations=$D")
  echo "== repro run cnn_dm $system (${extra[*]:-}) on $DEVICE"
  "$PY" -m suite.cli run --task cnn_dm --system "$system" --profile smoke --limit "$N" --runs-dir "$WORK/runs" \
    --task-arg shots=1 --task-arg "max_new_tokens=$TOKENS" --task-arg 'stop=[]' \
    --param "model=$WORK/model" --param "dtype=$DTYPE" "${extra[@]}" --device "$DEVICE" \
    | grep -E "finished|reused|ms_per_token|acceptance_rate|generated_tokens"
done
t2=$(date +%s)

echo "== measured (random weights, $PRESET shape, $DEVICE, $DTYPE; self-speculation is a best case)"
MS=$("$PY" - "$WORK/runs/smoke" <<'PYEOF'
import json, sys
from pathlib import Path

short = {"layerskip-ar": "ar", "layerskip-early-exit": "ee", "layerskip-self-spec": "ss"}
out = []
for m in sorted(Path(sys.argv[1]).glob("cnn_dm__*/metrics.json")):
    rec = json.loads(m.read_text())
    name = short[rec["spec"]["system"]]
    ms = rec["metrics"]["ms_per_token"]["value"]
    acc = rec["metrics"].get("acceptance_rate", {}).get("value")
    print(f"  {name}: {ms:.2f} ms/token" + (f", acceptance {acc:.2f}" if acc is not None else ""), file=sys.stderr)
    out.append(f"{name}={ms:.4f}")
print(" ".join(out))
PYEOF
)
if [ "$PRESET" = 7b ]; then
  "$PY" -m reproductions.layerskip.plan --ms $MS
else
  echo "(tiny preset: the per-table estimate below scales a tiny model's times as if they were 7B's; it only tests the path)"
  "$PY" -m reproductions.layerskip.plan --ms $MS
fi
echo "== done in $(( $(date +%s) - t0 ))s (model build $(( t1 - t0 ))s, runs $(( t2 - t1 ))s); work folder $WORK"
