"""Data-independent versions of the data and training checks (generated images)."""
import itertools
import math

from reproductions.catlip import data as D


def _keys(stream, n):
    return [p.key for p in itertools.islice(iter(stream), n)]


def test_manifest_stream_resume(synthetic_manifest):
    pairs = D.read_manifest(synthetic_manifest)
    assert len(pairs) == 24
    full = _keys(D.PairStream(pairs, seed=7), 60)
    s = D.PairStream(pairs, seed=7)
    head = _keys(s, 29)
    assert s.state_dict() == {"epoch": 1, "position": 5, "seed": 7}
    s2 = D.PairStream(pairs, seed=7)
    s2.load_state_dict(s.state_dict())
    assert head + _keys(s2, 31) == full


def test_tar_stream_resume(synthetic_manifest, tmp_path):
    shards = D.write_tar_shards(D.read_manifest(synthetic_manifest), tmp_path, per_shard=5)
    assert len(shards) == 5
    full = _keys(D.PairStream(shards, seed=2), 30)
    s = D.PairStream(shards, seed=2)
    head = _keys(s, 11)
    s2 = D.PairStream(shards, seed=2)
    s2.load_state_dict(s.state_dict())
    assert head + _keys(s2, 19) == full
    b = D.Batcher(D.PairStream(shards, seed=2), 3, 32).next_batch()
    assert b["images"].shape == (3, 3, 32, 32)


def test_train_each_method_synthetic(synthetic_manifest, tmp_path, wordnet):
    from reproductions.catlip.labels import LabelExtractor
    from reproductions.catlip.train import TrainConfig, train
    from reproductions.catlip.vocab import build_vocab
    ex = LabelExtractor()
    vocab = build_vocab([p.caption for p in D.read_manifest(synthetic_manifest)], v_tau=2, extractor=ex)
    assert "dog.n.01" in [s["name"] for s in vocab.to_json()["synsets"]]
    vpath = vocab.save(tmp_path / "vocab.json")
    for m in ("catlip", "clip"):
        rec = train(TrainConfig(method=m, manifest=str(synthetic_manifest), vocab_path=str(vpath),
                                out_dir=str(tmp_path / m), resolution=32, batch_size=4, steps=3,
                                warmup_steps=1, resume=False), quiet=True)
        assert rec["steps_done"] == 3 and all(math.isfinite(x) for x in rec["losses"])
