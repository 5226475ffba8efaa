"""CatLIP table specs, the CI-bound claim references they use, the resumable stages and the dry-run plan."""
import json

import pytest

from reproductions.catlip.paper import PAPER
from suite.papers import PrepareContext


@pytest.mark.parametrize("profile", ["smoke", "mini", "paper"])
def test_every_spec_loads_and_names_only_catlip_systems(profile):
    tables = PAPER.all_tables(profile)
    ids = {t.id for t in tables}
    assert {"catlip-table1", "catlip-table2", "catlip-fig1c-cost", "catlip-fig5", "catlip-vocab-stats"} <= ids
    for t in tables:
        assert "reference/" not in t.source and "reference §" not in t.source
        for run in t.runs():
            assert run.system.startswith("catlip-"), (t.id, run.system)


def test_mini_runs_use_models_the_pipeline_makes():
    from reproductions.catlip.pipeline import PROFILES, fig5_alias

    made = {"catlip-lp-catlip", "catlip-lp-clip", "catlip-lp-random", "catlip-ft-catlip", "catlip-ft-clip"}
    made |= {fig5_alias(h, p) for p in PROFILES["mini"].transfer.fractions for h in ("transfer", "random")}
    wanted = {r.params_dict["model"] for t in PAPER.tables("mini") for r in t.runs() if r.task == "imagenet"}
    assert wanted == made


def test_claims_can_compare_ci_bounds(tmp_path):
    """``row.col@lo`` / ``@hi`` read a cell's 95% CI: a difference smaller than the noise does not hold."""
    from suite.compare import evaluate_table
    from suite.tables import load_table

    spec = tmp_path / "t.yaml"
    spec.write_text("""
id: t
paper: catlip
title: t
profiles: {smoke: {}}
columns: [{id: acc, metric: top1}]
rows:
  - {id: a, artifact: a}
  - {id: b, artifact: b}
claims:
  - {id: sep, text: separated, check: {left: a.acc@lo, op: ">", right: b.acc@hi}}
  - {id: point, text: point, check: {left: a.acc, op: ">", right: b.acc}}
""")
    for name, v, ci in (("a", 0.60, [0.55, 0.65]), ("b", 0.58, [0.53, 0.63])):
        d = tmp_path / "runs" / "smoke" / "artifacts" / name
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"metrics": {"top1": {"value": v, "ci95": ci}}}))
    res = evaluate_table(load_table(spec, "smoke"), tmp_path / "runs")
    holds = {c.id: c.holds for c in res.claims}
    assert holds == {"sep": False, "point": True}


def test_stages_reuse_and_recompute(tmp_path):
    from reproductions.catlip.pipeline import Stages

    calls = []

    def fn(out):
        calls.append(out.name)
        (out / "weights.bin").write_text("x")
        return {"loss": 1.0}, 1, []

    st = Stages(tmp_path, log=lambda m: None)
    st.run("s", "k1", fn)
    st.run("s", "k1", fn)
    assert calls == ["s"] and st.reused == ["s"]
    (tmp_path / "s" / "stale.bin").write_text("old")
    st.run("s", "k2", fn)  # new settings: recomputed from an empty folder
    assert calls == ["s", "s"] and not (tmp_path / "s" / "stale.bin").exists()
    rec = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert rec["key"] == "k2" and rec["metrics"]["loss"]["value"] == 1.0


def test_paper_dry_run_names_each_missing_checkpoint_once(tmp_path, monkeypatch):
    from reproductions.catlip import paper_profile as PP
    from suite.papers import missing_message

    ck = tmp_path / "ckpts"
    (ck / "pretrained_models").mkdir(parents=True)
    (ck / "pretrained_models" / "vit_base.pt").write_bytes(b"")  # present: its mapping step is not missing
    monkeypatch.setenv("REPRO_CATLIP_CHECKPOINTS", str(ck))
    ctx = PrepareContext("paper", tmp_path, tmp_path / "art")
    steps = PAPER.planned("paper", ctx)
    mapping = {s.what.rsplit("-> ", 1)[-1]: s for s in steps if s.what.startswith("map corenet")}
    assert len(mapping) == len(PP.releases()) and not mapping["catlip-enc-b16"].missing
    assert mapping["catlip-in1k-ft-b16"].missing[0].thing == "checkpoint image-classification/imagenet-1k/vit_base.pt"
    msg = missing_message(steps)
    assert msg.count("checkpoint image-classification/imagenet-1k/vit_base.pt") == 1
    assert "pretrained_models/vit_base.pt (" not in msg
    runs = [s for s in steps if s.kind == "run" and s.checkpoint == "catlip-in1k-ft-b16"]
    assert runs and runs[0].gpu_hours is not None and runs[0].missing


def test_corenet_vocab_pickle_is_read_without_running_code(tmp_path):
    import pickle

    from reproductions.catlip.paper_profile import read_corenet_vocab

    (tmp_path / "v.pkl").write_bytes(pickle.dumps({"n5928118": 10, "n4960277": 5, "n2084071": 1}))
    assert read_corenet_vocab(tmp_path / "v.pkl", size=2) == [5928118, 4960277]

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    (tmp_path / "e.pkl").write_bytes(pickle.dumps({"n1": Evil()}))
    with pytest.raises(ValueError, match="not a plain vocabulary pickle"):
        read_corenet_vocab(tmp_path / "e.pkl")
