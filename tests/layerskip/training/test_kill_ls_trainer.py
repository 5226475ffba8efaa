"""The LayerSkip trainer killed (SIGKILL) at ten random moments in a row, then finished: the final weights
and the loss record equal an uninterrupted run's, bit for bit."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from suite.faults import kill_repeatedly

ROOT = Path(__file__).resolve().parents[3]

DRIVER = '''
import sys, time, torch
from pathlib import Path
from reproductions.layerskip.training.recipe import TrainConfig
from reproductions.layerskip.training.trainer import train

class Data:  # a pure function of the step, like TrainBatches
    def batch(self, step, rank=0, world=1):
        time.sleep(0.01)  # pace the steps so that ten kills land before the end
        g = torch.Generator().manual_seed(1000 + step)
        ids = torch.randint(4, 37, (4, 9), generator=g)
        labels = ids.clone()
        labels[:, :3] = -100
        return {"input_ids": ids[rank::world], "labels": labels[rank::world]}

class Tok:
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0
    def __len__(self):
        return 37

out, log = Path(sys.argv[1]), open(sys.argv[2], "a")
cfg = TrainConfig(dim=32, n_layers=4, n_heads=2, steps=int(sys.argv[3]), warmup_steps=2, lr=3e-3, batch_size=4,
                  variant="ld+ee", p_max=0.5, curriculum="gradual", checkpoint_every=2, log_every=1,
                  loss_record_every=1, seed=5, threads=1, keep_checkpoints=2)
def note(msg):
    log.write(msg + "\\n"); log.flush()
train(cfg, Data(), out, tokenizer=Tok(), log=note)
note("DONE")
'''
STEPS = 600


def _weights(d: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(d / "model.safetensors"))


@pytest.mark.slow
def test_ten_random_kills_then_finish_equals_uninterrupted(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "killed.log"

    def steps_logged() -> int:
        return log.read_text().count("[train] step") if log.exists() else 0

    cmd = [sys.executable, str(driver), str(tmp_path / "killed"), str(log), str(STEPS)]
    rep = kill_repeatedly(cmd, progress=steps_logged, kills=10, max_delay_s=0.4, seed=3, cwd=ROOT, env=env,
                          min_progress=3)  # past a checkpoint (every 2 steps) each time
    assert rep.kills == 10 and not rep.finished_early, rep
    assert not (tmp_path / "killed" / "final").exists()
    for name, lg in (("killed", log), ("clean", tmp_path / "clean.log")):
        out = subprocess.run([sys.executable, str(driver), str(tmp_path / name), str(lg), str(STEPS)], cwd=ROOT,
                             env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    assert log.read_text().count("resumed from") >= 5, "most attempts must resume from a checkpoint"
    wa, wb = _weights(tmp_path / "killed" / "final"), _weights(tmp_path / "clean" / "final")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ra = json.loads((tmp_path / "killed" / "train_record.json").read_text())
    rb = json.loads((tmp_path / "clean" / "train_record.json").read_text())
    assert ra["losses"] == rb["losses"] and [x["step"] for x in ra["losses"]] == list(range(1, STEPS + 1))
