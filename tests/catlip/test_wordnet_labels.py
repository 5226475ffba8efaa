import pytest

from reproductions.catlip import labels as L
from reproductions.catlip import wordnet as W


def test_lexnames_has_45_numbered_entries():
    lines = W.lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[5] == "05\tnoun.animal\t1" and lines[44] == "44\tadj.ppl\t3"


@pytest.mark.filterwarnings("ignore:The multilingual functions")
def test_build_nltk_dir_from_system_copy(tmp_path, wordnet, monkeypatch):
    from pathlib import Path

    import nltk
    # this NLTK only opens corpora under nltk.data.path
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)] + list(nltk.data.path))
    src = next((Path(d) for d in W.SYSTEM_WORDNET_DIRS if W._is_wordnet_dir(Path(d))), None)
    if src is None:
        pytest.skip("no system WordNet (apt-get install wordnet-base wordnet-sense-index)")
    root = W.build_nltk_wordnet(src, tmp_path)
    d = root / "corpora" / "wordnet"
    assert (d / "lexnames").is_file() and not (d / "data.noun").is_symlink()
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    wn = WordNetCorpusReader(str(d), None)
    assert wn.synset("dog.n.01").offset() == 2084071
    assert wn.synset("dog.n.01").lexname() == "noun.animal"


def test_missing_wordnet_message_is_one_line(monkeypatch, tmp_path):
    import nltk
    monkeypatch.setattr(W, "SYSTEM_WORDNET_DIRS", (str(tmp_path / "none"),))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("REPRO_WORDNET_DIR", raising=False)
    W.ensure_wordnet.cache_clear()
    try:
        with pytest.raises(W.WordNetMissing) as e:
            W.ensure_wordnet()
    finally:
        W.ensure_wordnet.cache_clear()
    msg = str(e.value)
    assert "\n" not in msg and "apt-get install" in msg and "nltk.download('wordnet')" in msg


def test_noun_index_matches_nltk(wordnet):
    wn = W.nltk_wordnet()
    idx = W.noun_index()
    for name in ("dog.n.01", "man.n.01", "tench.n.01", "skiing.n.01", "people.n.01"):
        s = wn.synset(name)
        assert idx.synset_name(s.offset()) == name
    a, b = wn.synset("dog.n.01"), wn.synset("cat.n.01")
    assert idx.path_similarity(a.offset(), b.offset()) == pytest.approx(a.path_similarity(b))


def test_clean_caption_like_corenet():
    assert L.clean_caption("  A%20man+and <b>his</b>\n dog  ") == "a man and his dog"


def test_hand_checked_examples(extractor):
    assert {"man.n.01", "dog.n.01"} <= set(extractor.names("A man and his dog cross country skiing."))
    # corenet's own unit-test caption: no POS filter, so the adjective "black" is labelled
    assert extractor.names("An image of black dog.") == ["image.n.01", "black.n.01", "dog.n.01"]
    # plural lemmatised; "lab" (first sense = laboratory, head lemma 'lab') kept as corenet would
    assert "dog.n.01" in extractor.names("Two dogs playing.")
    assert extractor("") == []


def test_alias_dropped_when_head_lemma_differs(extractor):
    # "people" -> people.n.01 exists; "persons" lemmatises to person -> person.n.01
    assert "person.n.01" in extractor.names("Four persons sitting")
    # a word whose first sense is named after another lemma is dropped (corenet's name check):
    # couch -> sofa.n.01, tv -> television.n.01, kid -> child.n.01
    assert extractor.names("A kid on the couch watching tv") == []
    assert extractor.names("A child on the sofa watching television") == ["child.n.01", "sofa.n.01", "television.n.01"]


def test_real_captions_match_naive_corenet_loop(pairs, extractor):
    caps = [p.caption for p in pairs[:150]]
    ours = [extractor(c) for c in caps]
    seen = sorted({o for lab in ours for o in lab})
    ids = [W.corenet_id(o) for o in seen]
    pos = {o: i for i, o in enumerate(seen)}
    for c, lab in zip(caps, ours):
        naive = L.naive_corenet_labels(c, ids)
        assert sorted(set(naive)) == sorted(pos[o] for o in lab), c
    assert sum(1 for lab in ours if lab) >= 0.95 * len(caps)


def test_paper_mode_needs_tagger(wordnet):
    if L.tagger_available():
        ex = L.LabelExtractor(mode="paper")
        assert "black.n.01" not in ex.names("An image of black dog.")
    else:
        with pytest.raises(RuntimeError, match="averaged_perceptron_tagger"):
            L.LabelExtractor(mode="paper")


def test_fast_tokenizer_path_equals_treebank(pairs, extractor):
    tb = L._treebank()
    texts = [L.clean_caption(p.caption) for p in pairs] + ["a dog, a cat .", "a man , a dog", "don't stop."]
    for t in texts:
        assert extractor.tokenize(t) == tb.tokenize(t), t
