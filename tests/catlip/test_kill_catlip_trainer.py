"""The CatLIP trainer killed (SIGKILL) at ten random moments in a row, then finished: the final weights and
losses equal an uninterrupted run's, bit for bit. Runs on generated images with a stub label extractor, so it
needs neither data nor WordNet."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from suite.faults import kill_repeatedly

ROOT = Path(__file__).resolve().parents[2]
STEPS = 300

DRIVER = '''
import sys, time
from reproductions.catlip import train as T
from reproductions.catlip.vocab import Vocab

WORDS = ["dog", "cat", "man", "woman", "table", "car", "horse", "pizza", "bus", "kitchen"]
vocab = Vocab(offsets=list(range(1, 11)), counts=[5] * 10, v_tau=1)
def extractor(caption):  # stub for the WordNet extractor: word -> fake synset offset
    return [WORDS.index(w) + 1 for w in caption.lower().replace(".", "").split() if w in WORDS]

class Paced(T.D.Batcher):  # pace the steps so that ten kills land before the end
    def next_batch(self, *a, **k):
        time.sleep(0.01)
        return super().next_batch(*a, **k)
T.D.Batcher = Paced

cfg = T.TrainConfig(method="catlip", manifest=sys.argv[1], out_dir=sys.argv[2], encoder="tiny", resolution=32,
                    batch_size=4, steps=int(sys.argv[3]), warmup_steps=2, checkpoint_every=2, log_every=1,
                    num_threads=1, precision="fp32", seed=3)
T.train(cfg, vocab=vocab, extractor=extractor)
print("DONE", flush=True)
'''


def _weights(d: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(d / "checkpoint" / "model.safetensors"))


@pytest.mark.slow
def test_ten_random_kills_then_finish_equals_uninterrupted(tmp_path, synthetic_manifest):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "killed.log"

    def steps_logged() -> int:
        return log.read_text(errors="replace").count("[catlip] step") if log.exists() else 0

    cmd = [sys.executable, str(driver), str(synthetic_manifest), str(tmp_path / "killed"), str(STEPS)]
    rep = kill_repeatedly(cmd, progress=steps_logged, kills=10, max_delay_s=0.4, seed=7, cwd=ROOT, env=env, log=log,
                          min_progress=3)  # past a checkpoint (every 2 steps) each time
    assert rep.kills == 10 and not rep.finished_early, (rep, log.read_text()[-2000:])
    assert not (tmp_path / "killed" / "train_record.json").exists()
    for name in ("killed", "clean"):
        out = subprocess.run([sys.executable, str(driver), str(synthetic_manifest), str(tmp_path / name), str(STEPS)],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
    ra = json.loads((tmp_path / "killed" / "train_record.json").read_text())
    rb = json.loads((tmp_path / "clean" / "train_record.json").read_text())
    assert ra["resumed_from"] and ra["steps_done"] == rb["steps_done"] == STEPS
    assert ra["losses"] == rb["losses"] and ra["data_state"] == rb["data_state"]
    wa, wb = _weights(tmp_path / "killed"), _weights(tmp_path / "clean")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
