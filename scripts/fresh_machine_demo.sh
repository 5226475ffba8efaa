#!/usr/bin/env bash
# A fresh machine in two commands, replayed locally, for a transcript:
#
#   1. builds a download mirror from local copies of the data ($REPRO_DATA_DIR), laid out like the official
#      files (the TOPv2 release zip with TOPv2_Dataset/{domain}_{split}.tsv, the COCO 2017 annotation zip and
#      images, the HumanEval file, the ImageNet class index);
#   2. serves it on 127.0.0.1 with python's http.server;
#   3. clones this repository into a temporary folder;
#   4. runs `tox -e reproduce-layerskip` there with REPRO_DATA_MIRROR pointing at the server and no
#      REPRO_DATA_DIR, so the data arrives through `repro data fetch` into an empty user cache.
#
# usage: REPRO_DATA_DIR=/path/to/data scripts/fresh_machine_demo.sh [full|fetch]
#   full  (default) the whole mini reproduction (about 30 minutes on 2 CPU cores, plus building the env once)
#   fetch           only the data step: `repro data fetch --profile mini`, then `repro data status --profile mini`
# environment:
#   DEMO_WORKTREE=1   copy the working tree (tracked and untracked, not ignored files) instead of cloning HEAD
#   DEMO_PYTHON=...   python with the suite's dependencies for `fetch` (default: python3)
#   DEMO_KEEP=1       keep the temporary folder
# CNN/DM is read through Hugging Face datasets, which a REPRO_DATA_MIRROR does not serve (HF_ENDPOINT does);
# when the data root has the FRANK CNN/DM subset, the demo hands it over with REPRO_CNNDM_JSONL instead.
set -euo pipefail

: "${REPRO_DATA_DIR:?set REPRO_DATA_DIR to a data root holding topv2/TOPv2_Dataset/ (the source of the mirror)}"
MODE="${1:-full}"
case "$MODE" in full|fetch) ;; *) echo "usage: $0 [full|fetch]" >&2; exit 2 ;; esac
SRC_REPO="$(cd "$(dirname "$0")/.." && pwd)"
SRC_DATA="$(cd "$REPRO_DATA_DIR" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/repro-fresh-XXXXXX")"
MIRROR="$WORK/mirror"
SERVER_PID=""

cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  if [ "${DEMO_KEEP:-0}" = "1" ]; then echo "demo: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

echo "demo: building a mirror from $SRC_DATA in $MIRROR"
python3 - "$SRC_DATA" "$MIRROR" <<'PY'
"""Lay local copies out like the publishers' files, under the mirror paths of suite/data_manifest.py."""
import shutil
import sys
import zipfile
from pathlib import Path

src, mirror = Path(sys.argv[1]), Path(sys.argv[2])
mirror.mkdir(parents=True)


def zip_folder(folder: Path, arcroot: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{arcroot}/{p.relative_to(folder).as_posix()}")
    print(f"  {dest.relative_to(mirror)}  ({dest.stat().st_size / 1e6:.1f} MB)")


zip_folder(src / "topv2" / "TOPv2_Dataset", "TOPv2_Dataset", mirror / "topv2" / "TOPv2_Dataset.zip")
coco = src / "coco" / "coco_mini"
if (coco / "annotations").is_dir():
    # the subset's own annotation files filtered again by its own images give the same bytes, so an archive of
    # them stands in for the official annotations_trainval2017.zip
    zip_folder(coco / "annotations", "annotations", mirror / "coco" / "annotations_trainval2017.zip")
    for split in ("train2017", "val2017"):
        shutil.copytree(coco / split, mirror / "coco" / split)
    print("  coco/{train2017,val2017}/*.jpg")
for rel, dest in (("humaneval/HumanEval.jsonl.gz", "humaneval/HumanEval.jsonl.gz"),
                  ("imagenet/meta/imagenet_class_index.json", "imagenet/imagenet_class_index.json")):
    if (src / rel).is_file():
        (mirror / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, mirror / dest)
        print(f"  {dest}")
PY

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$MIRROR" >"$WORK/http.log" 2>&1 &
SERVER_PID=$!
python3 - "$PORT" <<'PY'
import sys, time, urllib.request
for _ in range(50):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("demo: the mirror server did not start")
PY
echo "demo: mirror served at http://127.0.0.1:$PORT (pid $SERVER_PID)"

REPO="$WORK/repo"
if [ "${DEMO_WORKTREE:-0}" = "1" ]; then
  echo "demo: copying the working tree of $SRC_REPO"
  mkdir -p "$REPO"
  (cd "$SRC_REPO" && git ls-files -co --exclude-standard -z | xargs -0 -I{} cp --parents {} "$REPO/" 2>/dev/null || true)
else
  say git clone "$SRC_REPO" "$REPO"
  git clone --quiet "$SRC_REPO" "$REPO"
fi
cd "$REPO"

# A fresh user: empty caches, no data root, downloads allowed, every download through the mirror.
unset REPRO_DATA_DIR REPRO_OFFLINE HF_HUB_OFFLINE HF_DATASETS_OFFLINE
export XDG_CACHE_HOME="$WORK/home-cache" HF_HOME="$WORK/hf-home"
export REPRO_DATA_MIRROR="http://127.0.0.1:$PORT"
if [ -f "$SRC_DATA/cnn_dailymail/frank_cnndm_test_250.jsonl" ]; then
  export REPRO_CNNDM_JSONL="$SRC_DATA/cnn_dailymail/frank_cnndm_test_250.jsonl"
fi

if [ "$MODE" = "fetch" ]; then
  PY="${DEMO_PYTHON:-python3}"
  say REPRO_DATA_MIRROR="$REPRO_DATA_MIRROR" repro data fetch --profile mini
  "$PY" -m suite.cli data fetch --profile mini
  say repro data status --profile mini --verify
  "$PY" -m suite.cli data status --profile mini --verify
  say "repro data fetch --profile mini   # again: everything present, nothing downloaded"
  "$PY" -m suite.cli data fetch --profile mini
  echo
  echo "demo: requests the mirror served:"
  grep -c '"GET ' "$WORK/http.log" | sed 's/^/  GET requests: /'
  exit 0
fi

command -v tox >/dev/null || python3 -m pip install -q "tox>=4"
say pip install tox '&&' tox -e reproduce-layerskip
tox -e reproduce-layerskip
