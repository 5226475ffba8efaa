import pytest
import torch

from reproductions.catlip import transfer_init as T


def test_imagenet_coverage_on_synthetic_vocab(data_dir, wordnet):
    labs = T.imagenet_labels(data_dir / "imagenet" / "meta")
    assert len(labs) == 1000 and labs[0] == "n01440764"
    idx = wordnet.noun_index()
    vocab = [1440764, idx.first_sense("dog"), idx.first_sense("car"), idx.first_sense("bird")]
    cov = T.match_labels(labs, vocab, alpha=0.5)
    s = cov.summary()
    assert s["exact"] == 1  # tench is an ImageNet class; dog/car/bird are not
    assert s["exact"] + s["similar"] + s["unmatched"] == 1000
    assert s["at_threshold"]["1.0"] == 1 and s["at_threshold"]["0.1"] >= s["at_threshold"]["0.5"]
    # a car class (sports car n04285008 -> car: one hypernym edge) matches at alpha 0.5
    m = cov.matches[labs.index("n04285008")]
    assert m.kind == "similar" and m.rows == [2] and m.similarity == pytest.approx(0.5)
    # the same numbers as NLTK's path_similarity for a few labels
    wn = wordnet.nltk_wordnet()
    vs = [wn.synset_from_pos_and_offset("n", o) for o in vocab]
    for lab in labs[::97]:
        t = wn.synset_from_pos_and_offset("n", int(lab[1:]))
        ref = max(t.path_similarity(v) for v in vs)
        assert cov.matches[labs.index(lab)].similarity == pytest.approx(ref)


def test_transfer_init_rows(wordnet):
    idx = wordnet.noun_index()
    vocab = [idx.first_sense(w) for w in ("restaurant", "kitchen", "dog", "airfield")]
    labels = ["/r/restaurant_kitchen", "/a/airfield", "/a/archaeological_excavation", "n02084071"]
    cov = T.match_labels(labels, vocab, alpha=0.5)
    kinds = [m.kind for m in cov.matches]
    assert kinds == ["exact", "exact", "unmatched", "exact"]
    torch.manual_seed(0)
    pre = torch.nn.Linear(16, 4)
    new = T.transfer_init(pre, cov)
    assert new.weight.shape == (4, 16)
    assert torch.allclose(new.weight[0], pre.weight[:2].mean(0))
    assert torch.allclose(new.weight[1], pre.weight[3]) and torch.allclose(new.bias[3], pre.bias[2])
    assert not any(torch.allclose(new.weight[2], pre.weight[i]) for i in range(4))


def test_cost_model_and_params():
    from reproductions.catlip import cost as C
    from reproductions.catlip.models import build_image_encoder, count_params
    assert C.count_params_vit("vit_b_16") == count_params(build_image_encoder("vit_b_16"))
    m = C.cost_model()
    assert 34 < m["image_fwd_gflops"] < 36  # ViT-B/16 @ 224 ~ 17.5 GMACs
    assert 1.0 < m["flop_ratio_clip_over_catlip"] < m["modelled_ratio_clip_over_catlip"]
    assert len(C.cost_model_sweep()) == 4


def test_measure_tiny_runs():
    from reproductions.catlip import cost as C
    r = C.measure("tiny", 32, 2, 100, k=1)
    for m in ("catlip", "clip"):
        assert r[m]["step_s"] > 0 and r[m]["peak_mem_mb"] > 0
    assert r["clip"]["text_tower_s"] > 0 and r["catlip"]["text_tower_s"] == 0
    assert "CLIP/CatLIP step time" in C.format_table(r)


def test_tiny_text_tower_proportional_to_clip_b16():
    from reproductions.catlip import cost as C
    from reproductions.catlip.models import TEXT_CONFIGS, VIT_CONFIGS

    def ratio(name):
        s, p, l, _, w, m = VIT_CONFIGS[name]
        ctx, tl, _, tw, _ = TEXT_CONFIGS[name]
        return C.text_fwd_flops(ctx, tl, tw) / C.vit_fwd_flops(s, p, l, w, m)
    assert abs(ratio("tiny") - ratio("vit_b_16")) < 0.05
