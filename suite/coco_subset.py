"""Build the COCO-mini subset from the official COCO 2017 release: filtered annotations, its images, caption pairs.

Why not ship or download the subset itself: COCO's publisher offers the annotations only as one
archive, and the images one by one. So the subset is rebuilt the way it was made (keep the images
chosen, every annotation of those images, the official key order, ``json.dump`` defaults); that makes
every derived file byte-identical to the pinned sums in ``suite/coco_mini_sums.py``, which is the check
that the archive was the official one. Only the images the subset uses are downloaded.
"""
from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from suite import fetch
from suite.progress import Progress
from suite.provenance import sha256_file

BASE = "coco/coco_mini"
PAIRS_DIR = "image_text_coco_mini"
_ANN = re.compile(rf"^{BASE}/annotations/(\w+?)_(train2017|val2017)\.json$")
_IMG = re.compile(rf"^{BASE}/(train2017|val2017)/(\d+)\.jpg$")


def _selection(files: dict[str, str | None]) -> dict[str, set[int]]:
    """Image ids per split, read from the image paths the manifest pins."""
    out: dict[str, set[int]] = {}
    for rel in files:
        m = _IMG.match(rel)
        if m:
            out.setdefault(m.group(1), set()).add(int(m.group(2)))
    return out


def filter_annotations(doc: dict[str, Any], image_ids: set[int]) -> dict[str, Any]:
    """The same document with only these images and every annotation of them, order kept."""
    out = dict(doc)
    out["images"] = [im for im in doc["images"] if im["id"] in image_ids]
    out["annotations"] = [a for a in doc["annotations"] if a["image_id"] in image_ids]
    return out


def pair_rows(captions: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per image (train then val, by image id) with its captions, stripped, in annotation order."""
    rows = []
    for split in ("train2017", "val2017"):
        doc = captions.get(split)
        if doc is None:
            continue
        caps: dict[int, list[str]] = {}
        for a in doc["annotations"]:
            caps.setdefault(a["image_id"], []).append(a["caption"].strip())
        for im in sorted(doc["images"], key=lambda i: i["id"]):
            rows.append({"image_path": f"../{BASE}/{split}/{im['file_name']}", "image_id": im["id"], "split": split,
                         "width": im["width"], "height": im["height"], "captions": caps.get(im["id"], [])})
    return rows


def pairs_jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")


def pairs_tsv(rows: list[dict[str, Any]]) -> bytes:
    lines = ["image_path\timage_id\tsplit\tcaption"]
    for r in rows:
        for c in r["captions"]:
            clean = c.replace("\t", " ").replace("\n", " ")
            lines.append(f"{r['image_path']}\t{r['image_id']}\t{r['split']}\t{clean}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _ok(path: Path, sha: str | None) -> bool:
    return path.is_file() and (sha is None or sha256_file(path) == sha)


def build_coco_mini(ds: Any, root: Path, log: Callable[[str], None] = print) -> None:
    """Fetch and derive every file ``ds.files`` lists that is not already present with its checksum."""
    files: dict[str, str | None] = dict(ds.files)
    ann = [rel for rel in files if _ANN.match(rel)]
    stale = [rel for rel in ann if not _ok(root / rel, files[rel])]
    docs = _annotations_from_zip(ds, root, stale, _selection(files), log) if stale else {}
    for rel in ann:  # the others are already correct on disk (small filtered files)
        key = _ANN.match(rel).groups()
        if key not in docs:
            docs[key] = json.loads((root / rel).read_text(encoding="utf-8"))
    _images(ds, root, files, docs, log)
    rows = pair_rows({split: doc for (kind, split), doc in docs.items() if kind == "captions"})
    for name, render in (("pairs.jsonl", pairs_jsonl), ("pairs.tsv", pairs_tsv)):
        rel = f"{PAIRS_DIR}/{name}"
        if rel in files and not _ok(root / rel, files[rel]):
            fetch.write_verified(root / rel, render(rows), files[rel], ds.name)


def _annotations_from_zip(ds: Any, root: Path, rels: list[str], selection: dict[str, set[int]],
                          log: Callable[[str], None]) -> dict[tuple[str, str], dict[str, Any]]:
    src = ds.sources[0]
    archive = root / ".downloads" / src.mirror_path
    url = fetch.source_url(src.url, src.mirror_path)
    log(f"data: {ds.name}: downloading the COCO 2017 annotation archive {url} (kept only until filtered)")
    fetch.download(url, archive, sha256=src.sha256, label=PurePosixPath(src.mirror_path).name)
    docs = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            for rel in rels:
                kind, split = _ANN.match(rel).groups()
                member = f"annotations/{kind}_{split}.json"
                try:
                    with zf.open(member) as fh:
                        doc = filter_annotations(json.load(fh), selection.get(split, set()))
                except KeyError:
                    raise fetch.FetchError(f"{archive.name}: has no member {member}; is this the official "
                                           f"annotations_trainval2017.zip?") from None
                fetch.write_verified(root / rel, json.dumps(doc).encode("utf-8"), ds.files[rel], ds.name)
                docs[(kind, split)] = doc
    except zipfile.BadZipFile as e:
        archive.unlink()
        raise fetch.FetchError(f"{archive.name}: not a valid zip ({e}); it was deleted, fetch again") from e
    archive.unlink()  # 241 MB that nothing reads again
    return docs


def _images(ds: Any, root: Path, files: dict[str, str | None], docs: dict[tuple[str, str], dict[str, Any]],
            log: Callable[[str], None]) -> None:
    todo = [rel for rel in files if _IMG.match(rel) and not _ok(root / rel, files[rel])]
    if not todo:
        return
    urls: dict[str, str] = {}
    for (_, split), doc in docs.items():
        for im in doc["images"]:
            urls[f"{BASE}/{split}/{im['file_name']}"] = im["coco_url"]
    bar = Progress(f"{ds.name} images", len(todo), unit="img")
    try:
        for rel in todo:
            split, name = rel.split("/")[-2], rel.split("/")[-1]
            url = urls.get(rel, f"http://images.cocodataset.org/{split}/{name}")
            fetch.download(fetch.source_url(url, f"coco/{split}/{name}"), root / rel, sha256=files[rel],
                           label=name, stream=_Quiet())
            bar.update()
    finally:
        bar.close()
    log(f"data: {ds.name}: {len(todo)} images downloaded")


class _Quiet:
    """Per-image byte bars would drown the per-image count; this stream swallows them."""

    def write(self, _: str) -> int:
        return 0

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
