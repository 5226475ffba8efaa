"""Behaviour the smoke gate cannot see, pinned by tests (``benchmarks/mutation_check.py`` plants a bug in each and
expects one of these to fail): ROUGE-L vs ROUGE-Lsum values, TOPv2 evaluation values, that the LayerSkip trainer
really applies layer dropout and the early-exit loss, CatLIP image/target alignment in a batch, and the CatLIP
POS-filter branch (with a stub tagger: NLTK's tagger is not installable offline)."""
from __future__ import annotations

import json

import pytest

from suite.interfaces import Example, Generation

torch = pytest.importorskip("torch")


# ----------------------------------------------------------------------------- ROUGE-L


def test_rouge_l_and_lsum_values_on_a_known_pair():
    """Two sentences in swapped order: the sentence-level LCS covers one sentence (3 of 6 tokens: F = 0.5), the
    summary-level union LCS covers both (F = 1.0). A task that reports one under the other's name fails here."""
    from suite.metrics import rouge_lsum_f, rouge_n_f
    from suite.tasks.summarization import CnnDmTask

    ref, pred = "The cat sat. The dog ran.", "The dog ran. The cat sat."
    assert rouge_n_f(pred.lower(), ref.lower(), "L") == pytest.approx(0.5)
    assert rouge_lsum_f(pred, ref) == pytest.approx(1.0)
    ex = Example("x", {"reference": " " + ref, "summary": ref, "article": "", "prompt": ""})
    s = CnnDmTask(shots=0).score(ex, Generation(pred))
    assert s["rougeL"] == pytest.approx(0.5) and s["rougeLsum"] == pytest.approx(1.0)
    # ROUGE-1/2 by hand: all 6 unigrams shared; bigrams of the prediction: the-dog dog-ran ran-the the-cat cat-sat,
    # of the reference: the-cat cat-sat sat-the the-dog dog-ran; 4 of 5 shared
    assert s["rouge1"] == pytest.approx(1.0) and s["rouge2"] == pytest.approx(0.8)


# ----------------------------------------------------------------------------- TOPv2 evaluation


def test_topv2_evaluation_values(monkeypatch):
    """``topv2.evaluate``: EM after whitespace normalisation over exactly the given rows, and per-layer
    teacher-forced accuracy equal to a by-hand argmax count."""
    from reproductions.layerskip import topv2
    from reproductions.layerskip.model import Llama, LlamaConfig

    rows = [topv2.Row(f"weather_test:{i}", "weather", f"rain in city {i}",
                      f"[IN:GET_WEATHER [SL:LOCATION city {i} ] ]") for i in range(4)]
    tok = topv2.build_tokenizer(rows)
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=len(tok), dim=32, n_layers=3, n_heads=2, n_kv_heads=2, intermediate_size=64,
                              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id, max_seq_len=64)).eval()
    preds = {None: [rows[0].parse, rows[1].parse, "[IN:WRONG ]", ""],  # 2 of 4 right
             2: [rows[0].parse, "x", "y", "z"]}  # 1 of 4
    monkeypatch.setattr(topv2, "greedy_parse_batch", lambda m, t, utts, n, E: preds[E][: len(utts)])
    res = topv2.evaluate(model, tok, rows, exit_layers=[2])
    assert res["exact_match"] == 0.5 and res["exact_match_E2"] == 0.25 and res["n"] == 4

    correct, total = [0] * 3, 0
    with torch.no_grad():
        for r in rows:
            ids, labels = topv2.encode_example(tok, r.utterance, r.parse)
            hiddens = model.forward_train(torch.tensor([ids]))
            for layer, h in enumerate(hiddens):
                pred = model.head(h)[0, :-1].argmax(-1)
                target = torch.tensor(labels[1:])
                keep = target != -100
                correct[layer] += int((pred[keep] == target[keep]).sum())
            total += int((torch.tensor(labels[1:]) != -100).sum())
    assert res["next_token_acc_per_layer"] == pytest.approx([c / total for c in correct])


# ----------------------------------------------------------------------------- LayerSkip training


class _Data:
    def batch(self, step, rank=0, world=1):
        ids = torch.randint(4, 37, (4, 9), generator=torch.Generator().manual_seed(100 + step))
        labels = ids.clone()
        labels[:, :2] = -100
        return {"input_ids": ids, "labels": labels}


class _Tok:
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __len__(self):
        return 37


def _train(tmp_path, variant, monkeypatch):
    from reproductions.layerskip.training import trainer
    from reproductions.layerskip.training.early_exit_loss import early_exit_loss as real_loss
    from reproductions.layerskip.training.recipe import TrainConfig

    cfg = TrainConfig(dim=32, n_layers=4, n_heads=2, steps=12, warmup_steps=2, lr=3e-3, batch_size=4, variant=variant,
                      p_max=0.5, curriculum="none", checkpoint_every=0, seed=1, threads=1)
    model = trainer.build_model(cfg, _Tok())
    seen = {"masks": [], "weights": []}
    real_forward = model.forward_train

    def forward_train(ids, keep_masks=None):
        seen["masks"].append(keep_masks)
        return real_forward(ids, keep_masks)

    def loss(hiddens, head, labels, weights):
        seen["weights"].append(list(weights))
        return real_loss(hiddens, head, labels, weights)

    model.forward_train = forward_train
    monkeypatch.setattr(trainer, "early_exit_loss", loss)
    trainer.train(cfg, _Data(), tmp_path / variant, tokenizer=_Tok(), model=model, log=lambda m: None)
    return model, seen


def test_layerskip_trainer_applies_layer_dropout_and_early_exit_loss(tmp_path, monkeypatch):
    ls, seen_ls = _train(tmp_path, "ld+ee", monkeypatch)
    base, seen_base = _train(tmp_path, "baseline", monkeypatch)
    dropped = [int((~m.bool()).sum()) for masks in seen_ls["masks"] if masks for m in masks]
    assert sum(dropped) > 0, "LayerSkip training never dropped a layer"
    assert all(masks is None or all(bool(m.all()) for m in masks) for masks in seen_base["masks"])
    assert all(sum(w[:-1]) > 0 for w in seen_ls["weights"]), "no early-exit loss on the layers before the last"
    assert all(w[:-1] == [0.0] * 3 and w[-1] == 1.0 for w in seen_base["weights"])
    differs = [k for k, v in ls.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert differs, "the LayerSkip model equals the baseline model"


# ----------------------------------------------------------------------------- CatLIP


COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
WORDS = ["dog", "cat", "car", "bus", "man", "pizza"]


@pytest.fixture
def colored_pairs(tmp_path):
    from PIL import Image

    with open(tmp_path / "pairs.jsonl", "w") as f:
        for c, w in zip(COLORS, WORDS):
            Image.new("RGB", (48, 40), c).save(tmp_path / f"{w}.png")
            f.write(json.dumps({"image_path": f"{w}.png", "captions": [f"a {w}"]}) + "\n")
    return tmp_path / "pairs.jsonl"


def _color_of(image: "torch.Tensor") -> int:
    """Which of COLORS a normalised image tensor shows (the channel signs survive normalisation)."""
    means = image.mean(dim=(1, 2))
    bits = tuple(int(v > 0) for v in means)
    return [tuple(int(x > 0) for x in c) for c in COLORS].index(bits)


@pytest.mark.parametrize("world", [1, 2])
def test_catlip_batch_keeps_images_and_targets_aligned(colored_pairs, world):
    from reproductions.catlip import data as D

    def label_fn(caption):  # one class per word
        t = torch.zeros(len(WORDS))
        t[[i for i, w in enumerate(WORDS) if w in caption.split()]] = 1.0
        return t

    stream = D.PairStream([colored_pairs], seed=0)
    batcher = D.Batcher(stream, batch_size=4, resolution=32, label_fn=label_fn, seed=0)
    for _ in range(3):  # crosses an epoch boundary (6 pairs, batches of 4)
        state = batcher.state_dict()
        parts = []
        for rank in range(world):
            b2 = D.Batcher(D.PairStream([colored_pairs], seed=0), 4, 32, label_fn, seed=0)
            b2.load_state_dict(state)
            parts.append(b2.next_batch(rank, world))
        b = batcher.next_batch()
        for part in parts + [b]:
            for img, target, cap in zip(part["images"], part["targets"], part["captions"]):
                shown = _color_of(img)
                assert target.argmax().item() == shown and cap == f"a {WORDS[shown]}"


def test_pos_filter_keeps_nouns_only_with_a_stub_tagger(monkeypatch):
    from reproductions.catlip import labels as L
    from reproductions.catlip import wordnet as W

    try:
        W.ensure_wordnet()
    except W.WordNetMissing as e:
        pytest.skip(str(e))
    import nltk

    tags = {"a": "DT", "black": "JJ", "dog": "NN", "runs": "VBZ", "on": "IN", "the": "DT", "grass": "NN", ".": "."}
    monkeypatch.setattr(nltk, "pos_tag", lambda tokens: [(t, tags.get(t, "NN")) for t in tokens])
    monkeypatch.setattr(L, "tagger_available", lambda: True)
    caption = "A black dog runs on the grass."
    corenet = L.LabelExtractor(mode="corenet").names(caption)
    paper = L.LabelExtractor(mode="paper").names(caption)
    assert "black.n.01" in corenet and "run.n.01" in corenet  # corenet labels every token with a noun sense
    assert paper == ["dog.n.01", "grass.n.01"]
