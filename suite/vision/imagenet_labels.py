"""ImageNet-1k label files in the forms they are distributed in, all mapped to the 0..999 index.

The 0..999 index is the order of ``imagenet_class_index.json`` (Keras/torchvision), i.e. the WordNet ids
sorted, so index 0 = n01440764 (tench). Three validation label files are understood:

* caffe style ``val.txt``: ``<file> <label 0-999>`` per line (also ``./data/<file>, <label>``); the labels
  are already in the sorted-wnid index;
* a TSV with a header holding ``file`` and ``label_idx`` (optionally ``wnid``, cross-checked);
* the devkit's ``ILSVRC2012_validation_ground_truth.txt``: line i holds the label of
  ``ILSVRC2012_val_{i:08d}.JPEG`` as a 1-based ILSVRC2012_ID. Those ids follow the devkit's own synset order
  (``data/meta.mat``, where ILSVRC2012_ID 1 is n02119789, kit fox), not the sorted order, so each id goes
  through meta.mat to its wnid and then through the class index to 0..999.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

NUM_CLASSES = 1000
WNID = re.compile(r"^n\d{8}$")
DEVKIT_GT_NAME = "ILSVRC2012_validation_ground_truth.txt"
_CAFFE_LINE = re.compile(r"^(?P<file>.+?)[\s,]+(?P<label>-?\d+)$")


class LabelFileError(ValueError):
    """A label file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class ValLabels:
    """File name -> 0..999 label, plus where each came from (for error messages)."""

    path: Path
    labels: dict[str, int]
    lines: dict[str, int]
    style: str
    """caffe | tsv | devkit"""


@lru_cache(maxsize=8)
def load_class_index(path: Path) -> tuple[str, ...]:
    """The 1,000 wnids in index order from ``imagenet_class_index.json`` (``{"0": ["n01440764", "tench"], ...}``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: ImageNet class index not found (imagenet_class_index.json; pass "
                                f"class_index=PATH)") from e
    except json.JSONDecodeError as e:
        raise LabelFileError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    if not isinstance(data, dict) or sorted(data, key=lambda k: int(k) if k.isdigit() else -1) != [
            str(i) for i in range(NUM_CLASSES)]:
        raise LabelFileError(f"{path}: expected keys \"0\"..\"999\" (the ImageNet-1k class index)")
    wnids = []
    for i in range(NUM_CLASSES):
        entry = data[str(i)]
        if not (isinstance(entry, list) and entry and isinstance(entry[0], str) and WNID.match(entry[0])):
            raise LabelFileError(f"{path}: entry \"{i}\": expected [wnid, name], got {str(entry)[:60]}")
        wnids.append(entry[0])
    return tuple(wnids)


def detect_style(path: Path) -> str:
    if path.name == DEVKIT_GT_NAME:
        return "devkit"
    first = next((ln.strip() for ln in _read_lines(path) if ln.strip()), "")
    if re.fullmatch(r"\d+", first):
        return "devkit"
    if "\t" in first and "file" in first.split("\t"):
        return "tsv"
    return "caffe"


def _read_lines(path: Path) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: label file not found") from e


def _check_label(path: Path, lineno: int, label: int, num_classes: int = NUM_CLASSES) -> int:
    if not 0 <= label < num_classes:
        raise LabelFileError(f"{path}:{lineno}: label {label} is outside 0..{num_classes - 1}")
    return label


def _add(out: ValLabels, name: str, label: int, lineno: int) -> None:
    if name in out.labels:
        raise LabelFileError(f"{out.path}:{lineno}: {name} is labelled twice (first on line {out.lines[name]})")
    out.labels[name] = label
    out.lines[name] = lineno


def read_caffe(path: Path, num_classes: int = NUM_CLASSES) -> ValLabels:
    out = ValLabels(Path(path), {}, {}, "caffe")
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        m = _CAFFE_LINE.match(line.strip())
        if not m:
            raise LabelFileError(f"{path}:{lineno}: expected '<file> <label 0-999>', got {line.strip()[:60]!r}")
        _add(out, Path(m["file"].strip()).name, _check_label(path, lineno, int(m["label"]), num_classes), lineno)
    return out


def read_tsv(path: Path, wnids: tuple[str, ...] | None, num_classes: int = NUM_CLASSES) -> ValLabels:
    lines = _read_lines(path)
    header = lines[0].split("\t") if lines else []
    if "file" not in header or "label_idx" not in header:
        raise LabelFileError(f"{path}:1: TSV header must name the columns 'file' and 'label_idx'")
    fi, li, wi = header.index("file"), header.index("label_idx"), header.index("wnid") if "wnid" in header else None
    out = ValLabels(Path(path), {}, {}, "tsv")
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        cols = line.split("\t")
        try:
            label = _check_label(path, lineno, int(cols[li]), num_classes)
        except (IndexError, ValueError) as e:
            raise LabelFileError(f"{path}:{lineno}: column label_idx: {e}") from e
        if wi is not None and wnids is not None and cols[wi] != wnids[label]:
            raise LabelFileError(f"{path}:{lineno}: wnid {cols[wi]} does not match label {label} "
                                 f"({wnids[label]} in the class index)")
        _add(out, Path(cols[fi]).name, label, lineno)
    return out


def devkit_id_to_wnid(meta_mat: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid for the 1,000 leaf synsets of the devkit's ``data/meta.mat``."""
    from scipy.io import loadmat  # MATLAB data only: no code runs on load

    try:
        synsets = loadmat(str(meta_mat), squeeze_me=True)["synsets"]
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{meta_mat}: devkit meta.mat not found (the devkit ground truth needs it; "
                                f"pass meta=PATH)") from e
    except (KeyError, ValueError) as e:
        raise LabelFileError(f"{meta_mat}: not the devkit meta.mat (no 'synsets' struct: {e})") from e
    try:
        leaves = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    except (ValueError, IndexError) as e:
        raise LabelFileError(f"{meta_mat}: synsets lack ILSVRC2012_ID/WNID/num_children ({e})") from e
    if sorted(leaves) != list(range(1, NUM_CLASSES + 1)):
        raise LabelFileError(f"{meta_mat}: expected leaf synsets with ILSVRC2012_ID 1..1000, got {len(leaves)}")
    return leaves


def read_devkit(path: Path, meta_mat: Path, wnids: tuple[str, ...]) -> ValLabels:
    to_wnid = devkit_id_to_wnid(meta_mat)
    index = {w: i for i, w in enumerate(wnids)}
    out = ValLabels(Path(path), {}, {}, "devkit")
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        try:
            ilsvrc_id = int(line.strip())
        except ValueError as e:
            raise LabelFileError(f"{path}:{lineno}: expected one ILSVRC2012_ID (1..1000), got {line.strip()[:40]!r}") \
                from e
        if ilsvrc_id not in to_wnid:
            raise LabelFileError(f"{path}:{lineno}: ILSVRC2012_ID {ilsvrc_id} is outside 1..1000")
        wnid = to_wnid[ilsvrc_id]
        if wnid not in index:
            raise LabelFileError(f"{meta_mat}: wnid {wnid} (ILSVRC2012_ID {ilsvrc_id}) is not in the class index")
        _add(out, f"ILSVRC2012_val_{lineno:08d}.JPEG", index[wnid], lineno)
    return out
