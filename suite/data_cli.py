"""``repro data status`` and ``repro data fetch``: what each profile needs, what is there, and getting the rest."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from suite import fetch
from suite.data import data_root
from suite.data_manifest import DATASETS, PROFILES, Dataset, get, needed
from suite.provision import DataStatus, fetch_dataset, how_to_place, status

DATA_EPILOG = """examples:
  repro data status --profile mini           what the mini profile needs, and what is missing
  repro data fetch --profile smoke           download it (resumable, checksummed)
"""

STATUS_EPILOG = """examples:
  repro data status                          every data set the suite knows, and where it is
  repro data status --profile smoke          what the smoke profile needs (exit 1 if something is missing)
  repro data status --profile mini --paper layerskip --verify   also check every pinned sha256
"""

FETCH_EPILOG = """examples:
  repro data fetch --profile smoke           everything the smoke profile needs (what CI does)
  repro data fetch topv2 humaneval           named data sets
  repro data fetch --profile smoke --verify  also re-fetch files whose sha256 no longer matches
  REPRO_DATA_MIRROR=http://mirror.local/data repro data fetch --profile mini   from a mirror with the same layout

Downloads resume where they stopped; every file is checked against its pinned sha256 before it is
moved into place. Licence-gated data (ImageNet, Llama checkpoints) is never downloaded: the command
says how to obtain it.
"""


def _needed_by(ds: Dataset) -> str:
    return "; ".join(f"{p}: {','.join(pr)}" for p, pr in ds.needed_by.items()) or "on request"


def _header(root: Path, explicit: str | None) -> list[str]:
    source = ("--data-root" if explicit else "REPRO_DATA_DIR" if os.environ.get("REPRO_DATA_DIR") else
              "the default user cache; set REPRO_DATA_DIR to use another folder")
    lines = [f"data root: {root} ({source})"]
    if fetch.mirror_base():
        lines.append(f"mirror:    {fetch.mirror_base()} (REPRO_DATA_MIRROR)")
    if fetch.offline():
        lines.append("offline:   yes (REPRO_OFFLINE / HF_HUB_OFFLINE): nothing will be downloaded")
    return lines


def status_lines(rows: list[DataStatus], root: Path, explicit: str | None = None) -> list[str]:
    """A fixed-width table; missing rows are followed by where their files go."""
    w = max([len(r.dataset.name) for r in rows] + [4])
    lines = _header(root, explicit) + ["", f"{'name':<{w}}  {'state':<8}  {'needed by':<44}  where"]
    for r in rows:
        lines.append(f"{r.dataset.name:<{w}}  {r.state:<8}  {_needed_by(r.dataset):<44}  {r.where}")
        if not r.ok:
            lines.append(f"{'':<{w}}  -> {how_to_place(r, root)}")
    return lines


def _selection(a: argparse.Namespace) -> list[Dataset]:
    if getattr(a, "names", None):
        return [get(n) for n in a.names]
    if a.profile or a.paper:
        return needed(a.paper, a.profile)
    return list(DATASETS)


def cmd_status(a: argparse.Namespace) -> int:
    root = data_root(a.data_root)
    rows = [status(ds, root, verify=a.verify) for ds in _selection(a)]
    print("\n".join(status_lines(rows, root, a.data_root)))
    scoped = bool(a.profile or a.paper)
    return 1 if scoped and any(not r.ok and not r.dataset.gated for r in rows) else 0


def cmd_fetch(a: argparse.Namespace) -> int:
    if not a.names and not a.profile and not a.paper:
        raise ValueError("repro data fetch: name data sets (see `repro data status`) or pass --profile/--paper")
    root = data_root(a.data_root)
    print("\n".join(_header(root, a.data_root)), flush=True)
    gated_named = False
    for ds in _selection(a):
        st = status(ds, root, verify=a.verify)
        if st.ok and not a.force:
            print(f"data: {ds.name}: {st.state} ({st.where})", flush=True)
            continue
        if ds.gated:
            print(f"data: not fetched, {how_to_place(st, root)}", flush=True)
            gated_named = gated_named or bool(a.names)
            continue
        fetch_dataset(ds, root, log=lambda m: print(m, flush=True))
    return 1 if gated_named else 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILES, default=None, help="only what this profile needs")
    p.add_argument("--paper", default=None, help="only what this paper needs (with --profile: at that profile)")
    p.add_argument("--data-root", default=None,
                   help="data directory (default: $REPRO_DATA_DIR, else ~/.cache/repro-suite/data)")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``repro data ...`` on the top-level parser's subcommands."""
    p = subparsers.add_parser("data", help="show and fetch the data each profile needs",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=DATA_EPILOG)
    sub = p.add_subparsers(dest="data_cmd", required=True)
    s = sub.add_parser("status", help="what each profile needs, what is present, and where",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=STATUS_EPILOG)
    s.add_argument("names", nargs="*", metavar="NAME", help="data sets to show (default: all, or --profile's)")
    _common(s)
    s.add_argument("--verify", action="store_true", help="also check the sha256 of every pinned file")
    s.set_defaults(fn=cmd_status)
    f = sub.add_parser("fetch", help="download what is missing (resumable, checksummed)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=FETCH_EPILOG)
    f.add_argument("names", nargs="*", metavar="NAME", help="data sets to fetch (see `repro data status`)")
    _common(f)
    f.add_argument("--force", action="store_true", help="fetch again even when present")
    f.add_argument("--verify", action="store_true",
                   help="check the sha256 of files already present and fetch again what does not match")
    f.set_defaults(fn=cmd_fetch)
    return p
