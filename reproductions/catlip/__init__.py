"""CatLIP (arXiv 2404.15653) reproduction: classification-style pre-training on
image-text data, against a CLIP baseline on the same image encoder.

Layout (each module's docstring says why it is built the way it is):
``wordnet`` (find/prepare WordNet 3.0), ``labels`` (captions -> synsets, as
corenet), ``vocab`` (Vτ-thresholded synset vocabulary), ``data`` (resumable
image-text streams), ``models`` / ``losses`` / ``train`` (CatLIP and CLIP
pre-training), ``transfer_init`` (classifier rows for downstream labels),
``cost`` (Fig. 1c cost comparison and its extrapolation), ``pipeline``
(``run_mini(out_dir, profile)`` for the suite).

Setup without internet (Debian): ``apt-get install -y wordnet-base
wordnet-sense-index``; the first use copies /usr/share/wordnet into
``$XDG_CACHE_HOME/repro/nltk_data`` (default ~/.cache) and writes ``lexnames``.
With internet, ``nltk.download('wordnet')`` works as well.
"""
