"""Examples shown under ``repro <command> --help``: the commands as a new user would type them."""
from __future__ import annotations

import argparse

EPILOGS = {
    None: """examples:
  repro data fetch --profile smoke && repro reproduce all --profile smoke && repro gate all --profile smoke
  repro reproduce layerskip --profile mini      train, run, report (fetches missing public data first)
  repro <command> --help                        options and examples of one command

environment: REPRO_DATA_DIR (data root, default ~/.cache/repro-suite/data), REPRO_RUNS_DIR (run records,
default ./runs), REPRO_DATA_MIRROR (download mirror), REPRO_OFFLINE=1 (never download)
""",
    "list": """examples:
  repro list                 tasks, systems, profiles, papers and their tables
  repro list tables          papers and their tables only
""",
    "run": """examples:
  repro run --task humaneval --system oracle --profile smoke
  repro run --task topv2 --system wrong --limit 20 --task-arg domains=weather
  repro run --task topv2 --system layerskip-ar --param model=layerskip --profile mini --force

A finished run with the same spec is reused; an interrupted one resumes at the next example.
""",
    "reproduce": """examples:
  repro reproduce layerskip --profile mini      fetch data, train (about 30 min on 2 CPU cores), run, report
  repro reproduce all --profile smoke --gate    what CI runs (minutes on a CPU)
  repro reproduce layerskip --profile paper --dry-run   the plan and every missing input
""",
    "report": """examples:
  repro report layerskip --profile mini         reports/layerskip/mini/report.{md,html}, tables.tex, cells.csv
  repro report all --profile smoke --out /tmp/reports
""",
    "gate": """examples:
  repro gate all --profile smoke                exit 1 naming every regressed cell
  repro gate layerskip --profile mini --update-baselines   re-pin deliberately, then commit reports/baselines/
""",
}


def add_epilogs(parser: argparse.ArgumentParser) -> None:
    """Attach the examples to the top-level parser and to each of its commands that has some."""
    _attach(parser, EPILOGS[None])
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        for name, sub in getattr(action, "choices", {}).items():
            if name in EPILOGS and not sub.epilog:
                _attach(sub, EPILOGS[name])


def _attach(parser: argparse.ArgumentParser, text: str) -> None:
    parser.epilog = text
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
