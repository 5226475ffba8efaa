"""Trainer: resuming after an interruption reproduces the uninterrupted run's weights exactly."""
import json
import shutil

import pytest
import torch

from reproductions.layerskip.training.recipe import SETTINGS, TrainConfig, setting
from reproductions.layerskip.training.trainer import STATE_FILE, THREADS_POLL_EVERY, latest_checkpoint, lr_at, train


class Data:
    """Synthetic stand-in for TrainBatches: a pure function of the step."""

    def __init__(self, V=37, B=4, T=9):
        self.V, self.B, self.T = V, B, T

    def batch(self, step, rank=0, world=1):
        g = torch.Generator().manual_seed(1000 + step)
        ids = torch.randint(4, self.V, (self.B, self.T), generator=g)
        labels = ids.clone()
        labels[:, :3] = -100
        labels[0, -2:] = -100
        return {"input_ids": ids[rank::world], "labels": labels[rank::world]}


class Tok:
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __len__(self):
        return 37


def cfg(**kw):
    base = dict(dim=32, n_layers=4, n_heads=2, steps=8, warmup_steps=2, lr=3e-3, batch_size=4, variant="ld+ee",
                p_max=0.5, curriculum="gradual", checkpoint_every=3, log_every=2, loss_record_every=1, seed=5,
                threads=1, keep_checkpoints=2)
    return TrainConfig(**{**base, **kw})


def weights(path):
    from safetensors.torch import load_file
    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("variant,curriculum", [("ld+ee", "gradual"), ("ld+ee", "rotational"), ("baseline", "gradual")])
def test_resume_matches_uninterrupted(tmp_path, variant, curriculum):
    c = cfg(variant=variant, curriculum=curriculum, rotation=2)
    logs = []
    full = train(c, Data(), tmp_path / "a", tokenizer=Tok(), log=logs.append)
    assert full["complete"] and (tmp_path / "a" / "final" / STATE_FILE).is_file()
    assert any("tgt tok/s" in m and "ETA" in m for m in logs)

    # "killed" after step 7: the last periodic checkpoint is step 6; the partial work after it is lost
    part = train(c, Data(), tmp_path / "b", tokenizer=Tok(), stop_after=7, log=logs.append)
    assert not part["complete"]
    shutil.rmtree(tmp_path / "b" / "checkpoint-7")  # as if the process died before saving
    assert latest_checkpoint(tmp_path / "b").name == "checkpoint-6"
    rec = train(c, Data(), tmp_path / "b", tokenizer=Tok(), log=logs.append)
    assert rec["complete"] and any("resumed" in m for m in logs)

    wa, wb = weights(tmp_path / "a" / "final"), weights(tmp_path / "b" / "final")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    r = json.loads((tmp_path / "b" / "train_record.json").read_text())
    assert [x["step"] for x in r["losses"]] == list(range(1, 9))
    assert r["losses"] == full["losses"]
    assert r["config"]["variant"] == variant and r["tokens_per_s"] > 0
    st = torch.load(tmp_path / "b" / "final" / STATE_FILE, weights_only=True)
    assert st["step"] == 8


def test_lr_schedule():
    c = cfg(steps=100, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(c, 0) == pytest.approx(1e-4) and lr_at(c, 9) == pytest.approx(1e-3)
    assert lr_at(c, 10) == pytest.approx(1e-3) and lr_at(c, 100) == pytest.approx(1e-4)
    assert lr_at(c.replace(decay="linear"), 55) == pytest.approx(1e-4 + 0.9e-3 * 0.5)


def test_settings_and_variants():
    s = setting("topv2-finetune", recipe_only=True, dim=64, n_layers=4, n_heads=2)
    assert (s.p_max, s.e_scale, s.curriculum) == (0.2, 1.0, "gradual") and s.dim == 64
    c7 = setting("continual-pretrain-llama2-7b")
    assert (c7.p_max, c7.e_scale, c7.curriculum, c7.rotation) == (0.1, 0.2, "rotational", 8)
    assert SETTINGS["pretrain-llama2-1.5b"]["dropout_schedule"] == "exp"
    assert not s.replace(variant="baseline").uses_layer_dropout
    assert s.replace(variant="baseline").effective_curriculum == "last"
    assert s.replace(variant="ld").effective_p_max == 0.2 and not s.replace(variant="ld").uses_early_exit
    assert s.replace(variant="ee").effective_p_max == 0.0
    assert TrainConfig.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError):
        TrainConfig(variant="nope")


def test_precision_follows_the_hardware_unless_forced(tmp_path):
    """``precision="auto"`` autocasts to bf16 only where the device computes it natively (suite.devices);
    float32 is honoured; records from before the field existed (``bf16``) still load."""
    from suite.devices import autocast_dtype

    auto = train(cfg(steps=2, checkpoint_every=0), Data(), tmp_path / "auto", tokenizer=Tok(), log=lambda m: None)
    want = autocast_dtype("cpu")
    assert auto["precision"] == ("float32" if want is None else str(want).removeprefix("torch."))
    fp32 = train(cfg(steps=2, checkpoint_every=0, precision="float32"), Data(), tmp_path / "fp32", tokenizer=Tok(),
                 log=lambda m: None)
    assert fp32["precision"] == "float32"
    old = {k: v for k, v in cfg().to_dict().items() if k != "precision"}
    assert TrainConfig.from_dict({**old, "bf16": True}).precision == "bfloat16"
    assert TrainConfig.from_dict({**old, "bf16": False}).precision == "float32"


def test_changing_the_thread_count_mid_run_keeps_the_weights(tmp_path):
    """What lets side-by-side trainers share cores (paper.py, suite.cores): the thread count is a speed knob only.
    Wide enough (dim 128, 16 x 24 tokens) that the GEMMs really split across threads."""
    c = cfg(dim=128, n_heads=4, steps=4 * THREADS_POLL_EVERY, checkpoint_every=0)
    data = Data(B=16, T=24)
    fixed = train(c, data, tmp_path / "a", tokenizer=Tok(), log=lambda m: None)
    calls = []

    def alternate():
        calls.append(1)
        return 1 + len(calls) % 2

    before = torch.get_num_threads()
    try:
        shared = train(c, data, tmp_path / "b", tokenizer=Tok(), log=lambda m: None, threads=alternate)
    finally:
        torch.set_num_threads(before)
    assert [x["threads"] for x in shared["thread_changes"]] == [2, 1, 2, 1]
    assert shared["losses"] == fixed["losses"]
    wa, wb = weights(tmp_path / "a" / "final"), weights(tmp_path / "b" / "final")
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
