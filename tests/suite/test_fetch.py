"""The whole fetch path against a local HTTP server on 127.0.0.1 serving archives generated here.

The server supports Range requests and can drop a connection halfway, so resuming is tested for real.
Only loopback addresses are used; an "official" URL that must never be contacted points at a closed
port on 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from suite import data_manifest, fetch, provision
from suite.cli import main
from suite.coco_subset import filter_annotations, pair_rows, pairs_jsonl
from suite.data import DataMissing
from suite.data_manifest import Dataset, Source

NEVER = "http://127.0.0.1:9"
"""A closed port: the publisher's URL in tests where only the mirror may be contacted."""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """Files by URL path; ``drop`` paths send half their body on the first request, then hang up."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop: set[str] = set()
        self.ignore_range = False
        self.log: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):  # noqa: N802 (http.server's naming)
                rng = self.headers.get("Range")
                server.log.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if self.path in server.drop:
                    server.drop.discard(self.path)
                    self.wfile.write(body[start:start + (len(body) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def server():
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("REPRO_OFFLINE", "HF_HUB_OFFLINE", "REPRO_DATA_MIRROR", "REPRO_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "user-cache"))
    monkeypatch.setenv("REPRO_PROGRESS_INTERVAL", "0")


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


TSV = {f"{d}_{s}.tsv": f"domain\tutterance\tsemantic_parse\n{d}\t{s} row\t[IN:X {s} ]\n".encode()
       for d in ("alarm", "weather") for s in ("train", "test")}


def topv2_like(url: str, *, mirror_path: str = "topv2/TOPv2_Dataset.zip", needed_by=None) -> Dataset:
    return Dataset(name="topv2_fixture", title="TOPv2-shaped fixture", licence="test", homepage="",
                   files={f"topv2/TOPv2_Dataset/{n}": sha(b) for n, b in TSV.items()},
                   sources=(Source(url=url, mirror_path=mirror_path, dest="topv2/TOPv2_Dataset",
                                   strip="TOPv2_Dataset"),),
                   needed_by=needed_by or {"demo": ("mini",)})


def leftovers(root: Path) -> list[str]:
    """Anything a failed or finished fetch must not leave: partial downloads, staging folders, archives."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith(".part") or ".unpack-" in p.name or ".old-" in p.name
                  or p.suffix in (".zip", ".tgz"))


# -- downloads ----------------------------------------------------------------------------------------------------

def test_good_download_unpacks_and_verifies_every_member(server, tmp_path):
    server.files["/TOPv2_Dataset.zip"] = make_zip({f"TOPv2_Dataset/{n}": b for n, b in TSV.items()}
                                                   | {"TOPv2_Dataset/README": b"readme"})
    root = tmp_path / "data"
    st = provision.fetch_dataset(topv2_like(server.url("/TOPv2_Dataset.zip")), root, log=lambda m: None)
    assert st.state == "present"
    for name, body in TSV.items():
        assert (root / "topv2/TOPv2_Dataset" / name).read_bytes() == body
    assert (root / "topv2/TOPv2_Dataset/README").read_bytes() == b"readme"
    assert leftovers(root) == []
    record = json.loads((root / provision.FETCH_LOG_DIR / "topv2_fixture.json").read_text())
    assert record["sources"][0]["sha256"] == sha(server.files["/TOPv2_Dataset.zip"])


def test_single_file_checksum_mismatch_is_one_line_and_leaves_nothing(server, tmp_path):
    server.files["/HumanEval.jsonl.gz"] = b"not the official file"
    dest = tmp_path / "data" / "humaneval" / "HumanEval.jsonl.gz"
    with pytest.raises(fetch.FetchError) as e:
        fetch.download(server.url("/HumanEval.jsonl.gz"), dest, sha256="0" * 64)
    msg = str(e.value)
    assert "\n" not in msg and "sha256" in msg and "0" * 64 in msg and server.url("/HumanEval.jsonl.gz") in msg
    assert not dest.exists() and leftovers(tmp_path / "data") == []


def test_archive_member_mismatch_installs_nothing_and_keeps_the_old_folder(server, tmp_path):
    bad = dict(TSV, **{"weather_test.tsv": b"domain\tutterance\tsemantic_parse\ntampered\n"})
    server.files["/TOPv2_Dataset.zip"] = make_zip({f"TOPv2_Dataset/{n}": b for n, b in bad.items()})
    root = tmp_path / "data"
    old = root / "topv2/TOPv2_Dataset/alarm_test.tsv"
    old.parent.mkdir(parents=True)
    old.write_bytes(TSV["alarm_test.tsv"])  # a partial earlier copy: must survive a failed fetch
    with pytest.raises(fetch.FetchError) as e:
        provision.fetch_dataset(topv2_like(server.url("/TOPv2_Dataset.zip")), root, log=lambda m: None)
    msg = str(e.value)
    assert "\n" not in msg and "weather_test.tsv" in msg and "expected" in msg
    assert sorted(p.name for p in old.parent.iterdir()) == ["alarm_test.tsv"]
    assert leftovers(root) == []


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    body = os.urandom(300_000)
    server.files["/big.bin"] = body
    server.drop.add("/big.bin")
    dest = tmp_path / "big.bin"
    with pytest.raises(fetch.FetchError, match="rerun the same command to resume"):
        fetch.download(server.url("/big.bin"), dest, sha256=sha(body), retries=0)
    part = dest.with_name("big.bin.part")
    assert not dest.exists() and part.stat().st_size == len(body) // 2
    got = fetch.download(server.url("/big.bin"), dest, sha256=sha(body), retries=0)
    assert dest.read_bytes() == body and got.resumed_from == len(body) // 2
    assert server.log == [("/big.bin", None), ("/big.bin", f"bytes={len(body) // 2}-")]
    assert not part.exists()


def test_dropped_connection_is_retried_in_the_same_call(server, tmp_path):
    body = os.urandom(100_001)
    server.files["/x.bin"] = body
    server.drop.add("/x.bin")
    fetch.download(server.url("/x.bin"), tmp_path / "x.bin", sha256=sha(body), retries=2, backoff_s=0)
    assert (tmp_path / "x.bin").read_bytes() == body
    assert [r for _, r in server.log] == [None, f"bytes={len(body) // 2}-"]


def test_server_that_ignores_range_restarts_from_zero(server, tmp_path):
    body = os.urandom(50_000)
    server.files["/x.bin"] = body
    server.ignore_range = True
    (tmp_path / "x.bin.part").write_bytes(b"stale bytes from another file")
    fetch.download(server.url("/x.bin"), tmp_path / "x.bin", sha256=sha(body))
    assert (tmp_path / "x.bin").read_bytes() == body


def test_not_found_fails_at_once_with_the_url(server, tmp_path):
    with pytest.raises(fetch.FetchError, match=r"HTTP 404.*") as e:
        fetch.download(server.url("/missing.zip"), tmp_path / "m.zip", retries=3, backoff_s=0)
    assert server.url("/missing.zip") in str(e.value) and len(server.log) == 1


def test_unsafe_archive_member_is_refused(server, tmp_path):
    server.files["/evil.zip"] = make_zip({"TOPv2_Dataset/../../escape.txt": b"x"})
    archive = tmp_path / "evil.zip"
    fetch.download(server.url("/evil.zip"), archive)
    with pytest.raises(fetch.FetchError, match="unsafe member"):
        fetch.unpack_verified(archive, tmp_path / "out", strip="TOPv2_Dataset")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out").exists()


def test_json_source_is_checked_by_content_not_formatting(server, tmp_path):
    index = {"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"]}
    canonical = sha(json.dumps(index, sort_keys=True, separators=(",", ":")).encode())
    ds = Dataset(name="class_index", title="", licence="", homepage="",
                 files={"imagenet/meta/imagenet_class_index.json": None},
                 sources=(Source(url=server.url("/index.json"), mirror_path="imagenet/index.json",
                                 dest="imagenet/meta/imagenet_class_index.json", json_sha256=canonical),))
    server.files["/index.json"] = json.dumps(index, indent="\t").encode()
    provision.fetch_dataset(ds, tmp_path / "a", log=lambda m: None)
    assert json.loads((tmp_path / "a/imagenet/meta/imagenet_class_index.json").read_text()) == index
    server.files["/index.json"] = json.dumps({**index, "1": ["n01443537", "goldfish!"]}).encode()
    with pytest.raises(fetch.FetchError, match="JSON content differs"):
        provision.fetch_dataset(ds, tmp_path / "b", log=lambda m: None)
    assert not (tmp_path / "b/imagenet/meta/imagenet_class_index.json").exists()


# -- mirror, offline, ensure_data ---------------------------------------------------------------------------------

def test_mirror_gets_every_download_with_the_same_relative_layout(server, tmp_path, monkeypatch):
    server.files["/mirror/topv2/TOPv2_Dataset.zip"] = make_zip({f"TOPv2_Dataset/{n}": b for n, b in TSV.items()})
    monkeypatch.setenv("REPRO_DATA_MIRROR", server.url("/mirror/"))
    st = provision.fetch_dataset(topv2_like(NEVER + "/TOPv2Dataset"), tmp_path / "data", log=lambda m: None)
    assert st.ok and server.log == [("/mirror/topv2/TOPv2_Dataset.zip", None)]


def test_mirror_can_be_a_plain_folder(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    (mirror / "topv2").mkdir(parents=True)
    (mirror / "topv2/TOPv2_Dataset.zip").write_bytes(make_zip({f"TOPv2_Dataset/{n}": b for n, b in TSV.items()}))
    monkeypatch.setenv("REPRO_DATA_MIRROR", str(mirror))
    assert provision.fetch_dataset(topv2_like(NEVER + "/TOPv2Dataset"), tmp_path / "data", log=lambda m: None).ok


def _fixture_manifest(monkeypatch, server) -> tuple[Dataset, Dataset]:
    zip_ds = topv2_like(server.url("/TOPv2_Dataset.zip"))
    body = b"print('hello')\n"
    server.files["/HumanEval.jsonl.gz"] = body
    file_ds = Dataset(name="one_file", title="", licence="", homepage="", files={"one/file.gz": sha(body)},
                      sources=(Source(url=server.url("/HumanEval.jsonl.gz"), mirror_path="one/file.gz",
                                      dest="one/file.gz", sha256=sha(body)),),
                      needed_by={"demo": ("mini", "smoke")})
    gated = Dataset(name="gated_weights", title="", licence="", homepage="", files={"w/model.bin": None},
                    needed_by={"demo": ("mini",)}, gated="licence-gated: ask the publisher")
    monkeypatch.setattr(data_manifest, "DATASETS", (zip_ds, file_ds, gated))
    server.files["/TOPv2_Dataset.zip"] = make_zip({f"TOPv2_Dataset/{n}": b for n, b in TSV.items()})
    return zip_ds, file_ds


@pytest.mark.parametrize("switch", ["REPRO_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_refuses_and_lists_everything_missing_in_one_message(server, tmp_path, monkeypatch, switch):
    _fixture_manifest(monkeypatch, server)
    monkeypatch.setenv(switch, "1")
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(DataMissing) as e:
        provision.ensure_data("demo", "mini", root)
    msg = str(e.value)
    assert msg.startswith(f"offline ({switch}=1): 3 data set(s) needed by demo/mini missing under the data root {root}")
    assert f"unpack {server.url('/TOPv2_Dataset.zip')} (its folder TOPv2_Dataset/) into {root}/topv2/TOPv2_Dataset/" \
        in msg
    assert f"download {server.url('/HumanEval.jsonl.gz')} to {root}/one/file.gz" in msg
    assert "[mirror path: topv2/TOPv2_Dataset.zip]" in msg and "gated_weights: licence-gated: ask the publisher" in msg
    assert server.log == [] and list(root.iterdir()) == []


def test_ensure_data_fetches_what_is_missing_once(server, tmp_path, monkeypatch):
    _fixture_manifest(monkeypatch, server)
    root = tmp_path / "data"
    root.mkdir()
    said: list[str] = []
    provision.ensure_data("demo", "mini", root, log=said.append)
    assert (root / "one/file.gz").is_file() and (root / "topv2/TOPv2_Dataset/weather_test.tsv").is_file()
    assert any("not fetched, gated_weights: licence-gated" in m for m in said)
    n = len(server.log)
    provision.ensure_data("demo", "mini", root, log=said.append)  # everything present: no request
    assert len(server.log) == n == 2


def test_real_manifest_offline_message_for_layerskip_mini(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_OFFLINE", "1")
    with pytest.raises(DataMissing) as e:
        provision.ensure_data("layerskip", "mini", tmp_path)
    msg = str(e.value)
    assert "topv2: 24 of 24 file(s) missing" in msg and "dl.fbaipublicfiles.com/topv2/TOPv2_Dataset.zip" in msg
    assert f"{tmp_path}/topv2/TOPv2_Dataset/" in msg and "[mirror path: topv2/TOPv2_Dataset.zip]" in msg
    assert "coco_mini" not in msg  # CatLIP's data is not LayerSkip's


def test_default_data_root_is_the_user_cache(monkeypatch, tmp_path):
    from suite.data import data_root

    monkeypatch.delenv("REPRO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root() == (tmp_path / "xdg/repro-suite/data").resolve()
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(DataMissing, match="REPRO_DATA_DIR=.*nope: not a directory"):
        data_root()


# -- COCO subset builder ------------------------------------------------------------------------------------------

def _coco_doc(split: str, ids: list[int]) -> dict:
    return {"info": {"year": 2017}, "licenses": [{"id": 1, "name": "x"}],
            "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 10 + i, "height": 20,
                        "coco_url": f"{NEVER}/{split}/{i:012d}.jpg"} for i in ids],
            "annotations": [{"id": 100 * i + k, "image_id": i, "caption": f" cap {k} of {i} "} for i in ids
                            for k in range(2)]}


def test_coco_subset_keeps_the_chosen_images_and_matches_pinned_sums(server, tmp_path, monkeypatch):
    docs = {"train2017": _coco_doc("train2017", [3, 5, 7]), "val2017": _coco_doc("val2017", [11, 13])}
    keep = {"train2017": [5], "val2017": [13]}
    server.files["/m/coco/annotations_trainval2017.zip"] = make_zip(
        {f"annotations/captions_{s}.json": json.dumps(d).encode() for s, d in docs.items()})
    jpgs = {s: {i: os.urandom(64) for i in ids} for s, ids in keep.items()}
    for s, imgs in jpgs.items():
        for i, b in imgs.items():
            server.files[f"/m/coco/{s}/{i:012d}.jpg"] = b
    monkeypatch.setenv("REPRO_DATA_MIRROR", server.url("/m"))
    # expected derived files, written out by hand: the chosen image and its two captions, nothing else
    filtered = {s: {**docs[s], "images": [im for im in docs[s]["images"] if im["id"] in keep[s]],
                    "annotations": [a for a in docs[s]["annotations"] if a["image_id"] in keep[s]]} for s in docs}
    pairs = (json.dumps({"image_path": "../coco/coco_mini/train2017/000000000005.jpg", "image_id": 5,
                         "split": "train2017", "width": 15, "height": 20, "captions": ["cap 0 of 5", "cap 1 of 5"]})
             + "\n" + json.dumps({"image_path": "../coco/coco_mini/val2017/000000000013.jpg", "image_id": 13,
                                  "split": "val2017", "width": 23, "height": 20,
                                  "captions": ["cap 0 of 13", "cap 1 of 13"]}) + "\n").encode()
    files = {f"coco/coco_mini/annotations/captions_{s}.json": sha(json.dumps(filtered[s]).encode()) for s in docs}
    files |= {f"coco/coco_mini/{s}/{i:012d}.jpg": sha(b) for s, imgs in jpgs.items() for i, b in imgs.items()}
    files["image_text_coco_mini/pairs.jsonl"] = sha(pairs)
    ds = Dataset(name="coco_fixture", title="", licence="", homepage="", files=files,
                 sources=(Source(url=NEVER + "/annotations_trainval2017.zip",
                                 mirror_path="coco/annotations_trainval2017.zip"),),
                 builder="suite.coco_subset:build_coco_mini")
    root = tmp_path / "data"
    assert provision.fetch_dataset(ds, root, log=lambda m: None).state == "present"
    assert (root / "image_text_coco_mini/pairs.jsonl").read_bytes() == pairs
    assert leftovers(root) == []  # the 241 MB archive is deleted once filtered
    assert not any(p.startswith("/m/coco/train2017/000000000003") for p, _ in server.log)  # only chosen images


def test_coco_subset_wrong_archive_is_rejected(server, tmp_path, monkeypatch):
    doc = _coco_doc("train2017", [5])
    server.files["/m/coco/annotations_trainval2017.zip"] = make_zip(
        {"annotations/captions_train2017.json": json.dumps(doc).encode()})
    monkeypatch.setenv("REPRO_DATA_MIRROR", server.url("/m"))
    ds = Dataset(name="coco_fixture", title="", licence="", homepage="",
                 files={"coco/coco_mini/annotations/captions_train2017.json": "f" * 64,
                        "coco/coco_mini/train2017/000000000005.jpg": None},
                 sources=(Source(url=NEVER, mirror_path="coco/annotations_trainval2017.zip"),),
                 builder="suite.coco_subset:build_coco_mini")
    with pytest.raises(fetch.FetchError, match="derived captions_train2017.json has sha256 .* expected f{64}"):
        provision.fetch_dataset(ds, tmp_path / "data", log=lambda m: None)
    assert not (tmp_path / "data/coco/coco_mini/annotations/captions_train2017.json").exists()


REAL = os.environ.get("REPRO_DATA_DIR")


@pytest.mark.skipif(not REAL or not (Path(REAL) / "coco/coco_mini/annotations").is_dir(),
                    reason="needs a data root with the COCO-mini subset (REPRO_DATA_DIR with coco/coco_mini/)")
def test_pinned_coco_sums_are_what_the_builder_derives():
    """Filtering the subset by its own images must give it back byte for byte, or the pins could never match."""
    from suite.coco_mini_sums import ANNOTATIONS, PAIRS

    root = Path(REAL)
    captions = {}
    for rel, want in ANNOTATIONS.items():
        doc = json.loads((root / rel).read_bytes())
        again = filter_annotations(doc, {im["id"] for im in doc["images"]})
        assert sha(json.dumps(again).encode()) == want, rel
        if "/captions_" in rel:
            captions[rel.rsplit("_", 1)[1].removesuffix(".json")] = doc
    assert sha(pairs_jsonl(pair_rows(captions))) == PAIRS["image_text_coco_mini/pairs.jsonl"]


# -- CLI ----------------------------------------------------------------------------------------------------------

def test_cli_status_and_fetch(server, tmp_path, monkeypatch, capsys):
    _fixture_manifest(monkeypatch, server)
    root = tmp_path / "data"
    root.mkdir()
    assert main(["data", "status", "--profile", "mini", "--data-root", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"data root: {root}" in out and "topv2_fixture" in out and "missing" in out
    assert main(["data", "fetch", "--data-root", str(root)]) == 2  # nothing named, no profile
    assert "name data sets" in capsys.readouterr().err
    assert main(["data", "fetch", "one_file", "--data-root", str(root)]) == 0
    assert main(["data", "status", "one_file", "--data-root", str(root), "--verify"]) == 0
    assert "present" in capsys.readouterr().out
    assert main(["data", "fetch", "no_such_set", "--data-root", str(root)]) == 2
    assert "unknown data set 'no_such_set'" in capsys.readouterr().err
