"""Data-parallel pre-training: two CPU processes under torchrun (gloo) train the same model as one process.

Every rank decodes its slice of each global batch and CLIP all-gathers embeddings with gradients, so the
weights after a few steps must equal the single-process ones (up to float summation order).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _train(tmp: Path, manifest: Path, vocab: Path | None, method: str, nproc: int) -> Path:
    out = tmp / f"{method}-{nproc}"
    args = ["-m", "reproductions.catlip.train", "--method", method, "--manifest", str(manifest), "--out-dir", str(out),
            "--steps", "3", "--batch-size", "4", "--warmup-steps", "1", "--precision", "fp32", "--resolution", "32",
            "--log-every", "100"]
    if vocab is not None:
        args += ["--vocab-path", str(vocab)]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
               str(29500 + os.getpid() % 1000)] + args
    else:
        cmd = [sys.executable] + args
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("method", ["catlip", "clip"])
def test_two_processes_match_one(tmp_path, synthetic_manifest, wordnet, method):
    from safetensors.torch import load_file

    from reproductions.catlip.data import read_manifest
    from reproductions.catlip.vocab import build_vocab

    vocab = None
    if method == "catlip":
        vocab = build_vocab([p.caption for p in read_manifest(synthetic_manifest)], v_tau=1).save(tmp_path / "v.json")
    one = _train(tmp_path, synthetic_manifest, vocab, method, 1)
    two = _train(tmp_path, synthetic_manifest, vocab, method, 2)
    rec1 = json.loads((one / "train_record.json").read_text())
    rec2 = json.loads((two / "train_record.json").read_text())
    assert rec2["world_size"] == 2 and rec1["steps_done"] == rec2["steps_done"] == 3
    assert rec1["losses"] == pytest.approx(rec2["losses"], rel=1e-4)
    w1, w2 = load_file(str(one / "encoder" / "model.safetensors")), load_file(str(two / "encoder" / "model.safetensors"))
    assert set(w1) == set(w2)
    for k in w1:
        a, b = w1[k], w2[k]
        if k.endswith("in_proj_bias"):
            # the key bias gets an exactly-zero gradient (softmax ignores a per-query constant); AdamW turns its
            # float noise into +-lr steps, so only the query and value parts are comparable
            d = a.shape[0] // 3
            a, b = torch.cat([a[:d], a[2 * d:]]), torch.cat([b[:d], b[2 * d:]])
        assert torch.allclose(a, b, atol=1e-5), k
