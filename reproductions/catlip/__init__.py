"""CatLIP (arXiv 2404.15653) reproduction: classification-style pre-training on
image-text data, against a CLIP baseline on the same image encoder, and its transfer.

Layout (each module's docstring says why it is built the way it is):

* labels and vocabulary: ``wordnet`` (find/prepare WordNet 3.0), ``labels`` (captions -> synsets, as
  corenet), ``vocab`` (Vτ-thresholded synset vocabulary), ``vocab_stats`` (Figures 2-3, 6);
* pre-training: ``data`` (resumable image-text streams), ``models`` (our ViT backbone, encoder
  checkpoints: ``load_encoder``), ``losses``, ``train`` (CatLIP and CLIP, data parallel under torchrun),
  ``cost`` (Figure 1(c) measurement and cost model);
* classification transfer: ``transfer_data`` (ImageFolder, Places365 lists, data fractions),
  ``transfer_init`` (classifier rows for downstream labels), ``transfer`` (linear probe, fine-tuning);
* dense transfer: ``dense`` and ``dense_*`` (multi-label, Mask R-CNN, DeepLabv3);
* suite plug-in: ``systems`` (the ``catlip-*`` systems), ``paper`` (tables, prepare, figures, plan),
  ``pipeline`` (smoke/mini prepare stages), ``paper_profile`` + ``corenet`` (released checkpoints mapped
  onto our ViT), ``plan`` (dry run), ``figures``.

Setup without internet (Debian): ``apt-get install -y wordnet-base
wordnet-sense-index``; the first use copies /usr/share/wordnet into
``$XDG_CACHE_HOME/repro/nltk_data`` (default ~/.cache) and writes ``lexnames``.
With internet, ``nltk.download('wordnet')`` works as well.
"""
