import json
from collections import Counter

import pytest

from reproductions.catlip import vocab as V


def test_threshold_ge_vs_gt_and_order():
    c = Counter({5: 3, 7: 3, 2: 10, 9: 2})
    assert V.select(c, 3, "ge") == [(2, 10), (5, 3), (7, 3)]
    assert V.select(c, 3, "gt") == [(2, 10)]
    assert V.select(c, 2, "ge", top_k=2) == [(2, 10), (5, 3)]
    assert V.select(c, 11) == []


def test_counts_once_per_caption():
    assert V.count_synsets([[1, 1, 2], [1]]) == Counter({1: 2, 2: 1})


def test_build_real_vocab_deterministic_and_roundtrip(pairs, extractor, tmp_path):
    caps = [p.caption for p in pairs]
    a = V.build_vocab(caps, v_tau=10, extractor=extractor)
    b = V.build_vocab(list(caps), v_tau=10, extractor=extractor)
    pa, pb = a.save(tmp_path / "a.json"), b.save(tmp_path / "b.json")
    assert pa.read_bytes() == pb.read_bytes()
    assert all(c >= 10 for c in a.counts) and len(a) > 20
    assert len(V.build_vocab(caps, v_tau=50, extractor=extractor)) < len(a)
    assert V.build_vocab(caps, v_tau=10, comparison="gt", extractor=extractor).counts[-1] > 10
    loaded = V.load_vocab(pa)
    assert loaded.offsets == a.offsets and loaded.counts == a.counts and loaded.v_tau == 10
    assert loaded.source_sha256 == V.captions_sha256(caps)
    d = json.loads(pa.read_text())
    assert d["wordnet_version"] == "3.0" and d["synsets"][0]["wnid"].startswith("n")
    man = V.load_vocab(pa).index_of(10287213)
    assert man is not None and loaded.multi_hot([10287213])[man] == 1


@pytest.mark.parametrize("mutate,fieldname", [
    (lambda d: d.update(format="x"), "format"),
    (lambda d: d.update(v_tau=-1), "v_tau"),
    (lambda d: d.update(size=99), "size"),
    (lambda d: d["synsets"][0].update(wnid="dog"), "synsets[0].wnid"),
    (lambda d: d["synsets"][1].update(count=10**9), "synsets[1]"),
    (lambda d: d.update(wordnet_version="3.1"), "wordnet_version"),
])
def test_load_errors_name_file_and_field(tmp_path, wordnet, mutate, fieldname):
    v = V.Vocab(offsets=[2084071, 10287213], counts=[5, 3], v_tau=3, source_sha256="x", n_captions=2)
    d = v.to_json()
    mutate(d)
    p = tmp_path / "v.json"
    p.write_text(json.dumps(d))
    with pytest.raises(V.VocabError) as e:
        V.load_vocab(p)
    msg = str(e.value)
    assert str(p) in msg and f"'{fieldname}'" in msg and "\n" not in msg


def test_load_bad_json(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{")
    with pytest.raises(V.VocabError, match="not valid JSON"):
        V.load_vocab(p)
