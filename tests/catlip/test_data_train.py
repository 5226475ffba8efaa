import itertools
import math

import torch

from reproductions.catlip import data as D


def _take(stream, n):
    return [p.key for p in itertools.islice(iter(stream), n)]


def test_jsonl_and_tsv_agree(data_dir, pairs):
    tsv = D.read_manifest(data_dir / "image_text_coco_mini" / "pairs.tsv")
    assert len(pairs) == len(tsv) == 795
    from reproductions.catlip.labels import clean_caption
    assert [p.image for p in pairs] == [p.image for p in tsv]
    # the TSV had to flatten one caption's embedded newline; after corenet's cleaning they agree
    assert [clean_caption(p.caption) for p in pairs] == [clean_caption(p.caption) for p in tsv]


def test_resume_equals_uninterrupted_manifest(pairs):
    full = _take(D.PairStream(pairs, seed=3), 1000)  # crosses an epoch boundary (795)
    s = D.PairStream(pairs, seed=3)
    first = _take(s, 437)
    state = s.state_dict()
    s2 = D.PairStream(pairs, seed=3)
    s2.load_state_dict(state)
    assert first + _take(s2, 563) == full
    assert full[:795] != full[795:] + full[:0] and sorted(full[:795]) == sorted(p.key for p in pairs)
    assert _take(D.PairStream(pairs, seed=4), 20) != full[:20]


def test_resume_equals_uninterrupted_tar_shards(pairs, tmp_path):
    shards = D.write_tar_shards(pairs[:30], tmp_path / "shards", per_shard=8)
    full = _take(D.PairStream(shards, seed=1), 45)
    s = D.PairStream(shards, seed=1)
    first = _take(s, 13)
    s2 = D.PairStream(shards, seed=1)
    s2.load_state_dict(s.state_dict())
    assert first + _take(s2, 32) == full
    p = next(iter(D.PairStream(shards, seed=1)))
    assert isinstance(p.image, bytes) and p.caption


def test_batcher_resume_same_tensors(pairs):
    def mk():
        return D.Batcher(D.PairStream(pairs[:20], seed=0), 4, 32, seed=0)
    a = mk()
    b1, b2 = a.next_batch(), a.next_batch()
    b = mk()
    b.next_batch()
    st = b.state_dict()
    c = mk()
    c.load_state_dict(st)
    assert torch.equal(c.next_batch()["images"], b2["images"])
    assert b1["images"].shape == (4, 3, 32, 32)


def _cfg(method, data_dir, tmp_path, **kw):
    from reproductions.catlip.train import TrainConfig
    base = dict(method=method, manifest=str(data_dir / "image_text_coco_mini" / "pairs.jsonl"),
                out_dir=str(tmp_path / method), encoder="tiny", resolution=32, batch_size=8, steps=3,
                warmup_steps=1, resume=False, log_every=100, cache_images=100)
    base.update(kw)
    return TrainConfig(**base)


def _vocab(pairs, extractor):
    from reproductions.catlip.vocab import build_vocab
    return build_vocab([p.caption for p in pairs], v_tau=5, extractor=extractor)


def test_three_steps_each_method_finite(data_dir, pairs, extractor, tmp_path):
    from reproductions.catlip.train import train
    vocab = _vocab(pairs, extractor)
    for m in ("catlip", "clip"):
        rec = train(_cfg(m, data_dir, tmp_path), vocab=vocab, extractor=extractor, quiet=True)
        assert rec["steps_done"] == 3 and all(math.isfinite(x) for x in rec["losses"])
        assert (tmp_path / m / "checkpoint" / "model.safetensors").is_file()
        assert (tmp_path / m / "train_record.json").is_file()
    assert rec["data_state"] == {"epoch": 0, "position": 24, "seed": 0}


def test_checkpoint_resume_reproduces_losses(data_dir, pairs, extractor, tmp_path):
    from reproductions.catlip.train import train
    vocab = _vocab(pairs, extractor)
    full = train(_cfg("catlip", data_dir, tmp_path / "a"), vocab=vocab, extractor=extractor, quiet=True)
    train(_cfg("catlip", data_dir, tmp_path / "b", max_steps_this_run=1), vocab=vocab, extractor=extractor, quiet=True)
    rest = train(_cfg("catlip", data_dir, tmp_path / "b", resume=True), vocab=vocab, extractor=extractor, quiet=True)
    assert rest["resumed_from"] == 1
    assert rest["losses"] == full["losses"]
