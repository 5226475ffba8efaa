"""`repro reproduce layerskip --profile paper --dry-run`: with no checkpoints it lists every missing one and exits 1;
with tiny random Llama stand-ins where the real checkpoints go (HF cache layout, env-var directories) and stand-in
data sets, nothing is missing and it exits 0. And the lm-eval rows run through the prepare step, resumably."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from suite.cli import main
from suite.papers import PrepareContext

RELEASED = ["meta-llama/Llama-2-7b-hf", "facebook/layerskip-llama2-7B", "meta-llama/Llama-2-13b-hf",
            "facebook/layerskip-llama2-13B", "meta-llama/Meta-Llama-3-8B", "facebook/layerskip-llama3-8B",
            "meta-llama/Llama-3.2-1B", "facebook/layerskip-llama3.2-1B"]


def _byte_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<s>": 0, "</s>": 1, **{c: i + 2 for i, c in enumerate(alphabet)}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, ls):
    """A tiny random Llama saved as a real HF checkpoint (config.json + model.safetensors + tokenizer)."""
    d = tmp_path_factory.mktemp("tiny-llama")
    model = ls.hf_model(ls.LLAMA2, vocab_size=260, hidden_size=32, intermediate_size=64, max_position_embeddings=128,
                        bos_token_id=0, eos_token_id=1)
    model.save_pretrained(d, safe_serialization=True)
    _byte_tokenizer().save_pretrained(d)
    assert (d / "model.safetensors").is_file()
    return d


@pytest.fixture()
def offline_env(tmp_path, monkeypatch):
    """Empty HF caches and no user checkpoints: only what a test puts there."""
    from reproductions.layerskip.plan import USER_CHECKPOINTS

    names = ["HF_DATASETS_CACHE", "REPRO_XSUM_JSONL", "REPRO_CNNDM_JSONL"] + [u.env for u in USER_CHECKPOINTS.values()]
    for var in names:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def _dry_run(tmp_path, capsys, data_root: str | None) -> tuple[int, str]:
    args = ["reproduce", "layerskip", "--profile", "paper", "--dry-run", "--runs-dir", str(tmp_path / "runs"),
            "--device", "cpu"]
    if data_root:
        args += ["--data-root", data_root]
    rc = main(args)
    return rc, capsys.readouterr().out


def test_dry_run_without_checkpoints_lists_each_missing_one_once(offline_env, capsys):
    from reproductions.layerskip.plan import USER_CHECKPOINTS

    rc, out = _dry_run(offline_env, capsys, os.environ.get("REPRO_DATA_DIR"))
    assert rc == 1
    message = out[out.index("missing "):]
    for repo in RELEASED:
        assert message.count(f"- checkpoint {repo} (") == 1, repo
        assert f"huggingface-cli download {repo}" in message
    for alias, spec in USER_CHECKPOINTS.items():
        assert f"- checkpoint {alias} (" in message and spec.env in message
    assert "- data set cais/mmlu (lm-eval)" in message
    assert "lm-eval boolq -> artifact lmeval-llama2-7b-base-l32" in out  # the lm-eval rows are plan steps
    assert "GPU-hours in all" in out


def _place_released(ckpt: Path, hub: Path) -> None:
    """The HF hub cache layout: models--<org>--<name>/snapshots/<rev>/ plus refs/main."""
    for repo in RELEASED:
        base = hub / ("models--" + repo.replace("/", "--"))
        shutil.copytree(ckpt, base / "snapshots" / "0123abcd")
        (base / "refs").mkdir()
        (base / "refs" / "main").write_text("0123abcd")


def _place_datasets(hub: Path, monkeypatch) -> None:
    """Stand-ins for the lm-eval data sets (presence is all the plan checks) and a user XSUM test JSONL."""
    from reproductions.layerskip.plan import LM_EVAL_TASKS

    for info in LM_EVAL_TASKS.values():
        snap = hub / f"datasets--{info.dataset.replace('/', '--')}" / "snapshots" / "0"
        snap.mkdir(parents=True, exist_ok=True)
        (snap / "README.md").write_text("stand-in")
    xsum = hub.parent / "xsum_test.jsonl"
    xsum.write_text("".join(json.dumps({"id": str(i), "document": f"Doc {i}. More.", "summary": f"Doc {i}."}) + "\n"
                            for i in range(3)))
    monkeypatch.setenv("REPRO_XSUM_JSONL", str(xsum))


def test_dry_run_with_stand_ins_where_the_real_checkpoints_go(offline_env, tiny_ckpt, capsys, monkeypatch):
    from reproductions.layerskip.plan import USER_CHECKPOINTS

    droot = os.environ.get("REPRO_DATA_DIR")
    if not droot or not (Path(droot) / "topv2" / "TOPv2_Dataset" / "weather_test.tsv").is_file():
        pytest.skip("needs the real TOPv2 and FRANK CNN/DM files under REPRO_DATA_DIR (TOPv2 is checksum-verified, "
                    "so it cannot be stood in for)")
    hub = offline_env / "hf" / "hub"
    _place_released(tiny_ckpt, hub)
    _place_datasets(hub, monkeypatch)
    for alias, spec in USER_CHECKPOINTS.items():  # never-released models: directories named by env vars
        target = offline_env / "user" / alias
        shutil.copytree(tiny_ckpt, target)
        monkeypatch.setenv(spec.env, str(target))
    rc, out = _dry_run(offline_env, capsys, droot)
    assert "MISSING" not in out, out[out.find("MISSING") - 300: out.find("MISSING") + 300]
    assert rc == 0 and "nothing is missing" in out
    # one alias moved out of the env var and into the artifacts folder is still found
    monkeypatch.delenv(USER_CHECKPOINTS["code-7b-layerskip"].env)
    shutil.copytree(tiny_ckpt, offline_env / "runs" / "paper" / "artifacts" / "code-7b-layerskip")
    rc, out = _dry_run(offline_env, capsys, droot)
    assert rc == 0


def test_plan_marks_every_run_it_blocks(offline_env):
    from reproductions.layerskip.paper import PAPER
    from suite.papers import blocked_runs

    ctx = PrepareContext("paper", None, offline_env / "runs" / "paper" / "artifacts")
    steps = PAPER.planned("paper", ctx)
    runs = {r.hash for t in PAPER.tables("paper") for r in t.runs()}
    assert {s.run_hash for s in steps if s.kind == "run"} == runs
    assert blocked_runs(steps) == runs  # nothing can run without checkpoints and data
    t4 = [s for s in steps if "layerskip-table4" in s.tables]
    assert t4 and all(any(m.thing.startswith("checkpoint scratch-") for m in s.missing) for s in t4)


LM_TASK = """task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: label
doc_to_choice: "{{{{choices}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""

LM_TABLE = """id: tiny-produce
profiles: {{smoke: {{skip: "paper only"}}, mini: {{skip: "paper only"}}, paper: {{}}}}
defaults:
  produce: {{kind: lm-eval, tasks: [tiny_mc], num_fewshot: null, limit: {limit}, include_path: {tasks},
             model_args: {{dtype: float32, warmup: false}}}}
columns:
  - {{id: acc, label: "tiny acc", metric: "tiny_mc/acc"}}
rows:
  - {{id: mid, label: "middle layer", artifact: tiny-l2, produce: {{model_args: {{model: {model}, exit_layer: 2}}}},
     paper: {{acc: 0.5}}}}
tolerances:
  acc: {{abs: 1.0}}
"""


@pytest.mark.slow
def test_lm_eval_rows_run_in_the_prepare_step_and_resume(tiny_ckpt, tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    import datasets

    from reproductions.layerskip.paper import run_lm_eval
    from suite.compare import evaluate_table
    from suite.tables import load_table

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    data = tmp_path / "tiny_mc.jsonl"
    rows = (("Is the sky blue?", ["yes", "no"], 0), ("Two plus two?", ["four", "five"], 0),
            ("Fire is?", ["cold", "hot"], 1))
    data.write_text("".join(json.dumps({"question": q, "choices": c, "label": l}) + "\n" for q, c, l in rows))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny_mc.yaml").write_text(LM_TASK.format(data=data))
    spec_path = tmp_path / "table.yaml"
    ctx = PrepareContext("paper", None, tmp_path / "runs" / "paper" / "artifacts", device="cpu")

    def run(limit):
        spec_path.write_text(LM_TABLE.format(limit=limit, tasks=tasks, model=tiny_ckpt))
        spec = load_table(spec_path, "paper")
        return spec, run_lm_eval(ctx, [spec])

    spec, done = run("null")
    assert done == ["tiny-l2:tiny_mc"]
    cell = evaluate_table(spec, tmp_path / "runs").cells["mid.acc"]
    assert cell.ours in (0.0, 1 / 3, 2 / 3, 1.0) and cell.source == "paper/artifacts/tiny-l2"
    assert run("null")[1] == []  # current: resumed, nothing rerun
    spec, done = run(2)  # a changed declaration makes the stored score stale
    assert done == ["tiny-l2:tiny_mc"]
    rec = json.loads((ctx.artifacts_dir / "tiny-l2" / "metrics.json").read_text())
    assert rec["metrics"]["tiny_mc/acc"]["n"] == 2 and set(rec["task_keys"]) == {"tiny_mc"}


def test_generic_plan_of_a_paper_without_its_own_reports_missing_data(offline_env, capsys):
    """The sanity paper has no plan function: the default plan checks data through the tasks (XSUM is absent)."""
    rc = main(["reproduce", "sanity", "--profile", "paper", "--dry-run", "--runs-dir", str(offline_env / "runs"),
               "--device", "cpu", "--data-root", str(offline_env)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "xsum/test[:None] lead(k=1)" in out and "- data set xsum (needed by 1 step)" in out
    assert "humaneval/test[:None] oracle()" in out
