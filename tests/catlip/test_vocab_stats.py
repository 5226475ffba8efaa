"""Vocabulary statistics (Figures 2-3, 6) from per-caption synset labels."""
from reproductions.catlip import vocab_stats as VS


def test_counts_thresholds_and_long_tail_without_wordnet():
    labels = [[1, 2], [1], [1, 3], [1, 2, 2], [4]] * 2  # synset 1 in 8 captions, 2 in 4, 3 in 2, 4 in 2
    s = VS.compute(labels, v_tau=3, vtaus=(1, 3, 5, 9))
    assert s.n_captions == 10 and s.unique_synsets == 4
    assert s.size_at_vtau == {1: 4, 3: 2, 5: 1, 9: 0} and s.vocab_size == 2
    assert s.sorted_counts == [8, 4, 2, 2]
    m = s.metrics()
    assert m["top1pct_synsets_share"] == 0.5 and m["singleton_synsets"] == 0 and m["vocab_size_vtau5"] == 1


def test_imagenet_coverage_by_threshold(wordnet):
    idx = wordnet.noun_index()
    dog, car = idx.first_sense("dog"), idx.first_sense("car")
    wnids = ["n02084071", "n04285008", "n01440764"]  # dog (exact), sports car (one edge below car), tench
    s = VS.compute([[dog], [dog], [car], [car]], v_tau=2, imagenet_wnids=wnids)
    assert s.in1k_matched_at[1.0] == 1 and s.in1k_matched_at[0.5] == 2
    assert s.in1k_counts == [2, 0, 0]
    assert s.metrics()["in1k_exact_frac"] == 1 / 3
