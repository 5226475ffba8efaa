"""Render table results into Markdown, a standalone HTML page, LaTeX, and every cell as CSV/Parquet.

Input is only ``TableResult`` objects (filled from stored run records) plus the
figures a paper draws from the same records, so a report can never show a
number that no run produced. Each regenerated table is a pandas DataFrame, written
by pandas (Markdown through tabulate, LaTeX through the Styler); ``cells.csv`` and
``cells.parquet`` hold one row per cell with the raw numbers, for analysis outside the suite.
"""
from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from suite.compare import Cell, TableResult
from suite.gate import PAIRED, column_gates
from suite.pinning import DIRTY_WARNING
from suite.provenance import git_state, hardware, package_versions
from suite.tables import TableSpec

FLAGS = {"matches": "✓", "deviates": "⚠", "not run": "∅", "no paper value": "", "not compared": "·"}


def _fmt(fmt: str, v: float | None) -> str:
    if v is None:
        return "—"
    if fmt == "pct":
        return f"{100 * v:.1f}%"
    try:
        return fmt.format(v)
    except (ValueError, IndexError):
        return f"{v:.4g}"


def _delta(fmt: str, d: float | None) -> str:
    if d is None:
        return ""
    if fmt == "pct":
        return f"{100 * d:+.1f}pp"
    return f"{d:+.3g}"


def cell_text(cell: Cell | None, fmt: str) -> str:
    if cell is None:
        return ""
    ours = _fmt(fmt, cell.ours)
    marks = " ".join(getattr(cell, "marks", ()))  # the paper's contradictions about this cell, see the notes
    if cell.paper is None:
        return f"{ours} {marks}".rstrip()
    paper = _fmt(fmt, cell.paper)
    flag = FLAGS.get(cell.verdict, "")
    if cell.ours is None:
        return f"— (paper {paper}) {flag} {marks}".rstrip()
    return f"{ours} (paper {paper}, Δ {_delta(fmt, cell.delta)}) {flag} {marks}".rstrip()


def _counts(results: list[TableResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        for c in r.cells.values():
            counts[c.verdict] = counts.get(c.verdict, 0) + 1
        for cl in r.claims:
            key = "claim holds" if cl.holds else ("claim fails" if cl.holds is False else "claim not run")
            counts[key] = counts.get(key, 0) + 1
    return counts


def markdown(title: str, profile: str, specs: list[TableSpec], results: list[TableResult], figures: list[Path],
             notes: str, out_dir: Path) -> str:
    lines = [f"# {title}", "", f"Profile **{profile}**. Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
             f"from stored run records. Each cell: ours (paper, Δ) flag — ✓ within tolerance or the paper's value "
             f"inside our 95% bootstrap CI, ⚠ deviates, ∅ not run, · not compared.", ""]
    if git_state().get("dirty"):
        lines += [f"**{DIRTY_WARNING}.**", ""]
    if notes:
        lines += [notes, ""]
    counts = _counts(results)
    lines += ["**Summary:** " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), ""]
    for spec, res in zip(specs, results):
        lines += [f"## {spec.title}", ""]
        if spec.caption:
            lines += [f"*{spec.caption}*", ""]
        frame = table_frame(spec, res)
        lines += [frame.to_markdown(colalign=["left"] * (len(spec.columns) + 1)), ""]
        tol = ", ".join(f"{spec.column(k).label}: {t.describe()}" for k, t in spec.tolerances.items())
        if tol:
            lines += [f"Tolerances vs paper: {tol}.", ""]
        gates = column_gates(spec, res)
        if gates:
            lines += ["Gate vs pinned baseline: " + ", ".join(f"{spec.column(k).label}: {v}" for k, v in gates.items())
                      + f" (paired = {PAIRED}).", ""]
        if res.claims:
            lines += ["Claims:", ""]
            for cl in res.claims:
                mark = {True: "**holds**", False: "**FAILS**", None: "not run"}[cl.holds]
                lines.append(f"- {mark}: {cl.text} ({cl.detail})")
            lines.append("")
        for i, n in enumerate(spec.notes):
            lines += [">"] * (i > 0) + [f"> {n}"]  # one paragraph per note
        if spec.notes:
            lines.append("")
        if spec.source:
            lines += [f"Paper values: {spec.source}. Spec: `{spec.path.name if spec.path else spec.id}`.", ""]
    for fig in figures:
        lines += [f"![{fig.stem}]({fig.relative_to(out_dir).as_posix()})", ""]
    lines += ["## Provenance", ""] + provenance_lines(results)
    return "\n".join(lines) + "\n"


def provenance_lines(results: list[TableResult]) -> list[str]:
    g = git_state()
    hw = hardware()
    pk = {k: v for k, v in package_versions().items() if v}
    lines = [f"- Report rendered at git {g['commit'] or '?'}{' (dirty)' if g['dirty'] else ''} on {hw.get('cpu')} "
             f"({hw.get('cpu_count')} cores), GPU: {hw.get('gpu') or 'none'}.",
             "- Packages: " + ", ".join(f"{k} {v}" for k, v in sorted(pk.items())) + "."]
    runs: dict[str, Any] = {}
    for r in results:
        runs.update(r.runs)
    for src, info in sorted(runs.items()):
        git = info.get("git") or {}
        lines.append(f"- `{src}`: {info.get('n_examples')} examples, finished {info.get('finished_at')}, "
                     f"git {str(git.get('commit'))[:10]}{' dirty' if git.get('dirty') else ''}")
    return lines


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.matches{background:#e8f6e8}.deviates{background:#fde8e0}
.notrun{color:#999}.paper{color:#666;font-size:85%}.holds{color:#1a7f1a}.fails{color:#b3261e;font-weight:bold}
caption{caption-side:top;text-align:left;font-style:italic;margin-bottom:.3em}img{max-width:100%}"""


def html_page(title: str, profile: str, specs: list[TableSpec], results: list[TableResult], figures: list[Path],
              notes: str, out_dir: Path) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_CSS}</style>"
             f"</head><body><h1>{e(title)}</h1><p>Profile <b>{e(profile)}</b>. Every value is read from a stored run "
             f"record. Green: within tolerance of the paper (or paper inside our 95% CI); red: deviates.</p>"]
    if git_state().get("dirty"):
        parts.append(f"<p class='fails'>{e(DIRTY_WARNING)}.</p>")
    if notes:
        parts.append(f"<p>{e(notes)}</p>")
    counts = _counts(results)
    parts.append("<p><b>Summary:</b> " + e(", ".join(f"{v} {k}" for k, v in sorted(counts.items()))) + "</p>")
    for spec, res in zip(specs, results):
        parts.append(f"<h2>{e(spec.title)}</h2><table><caption>{e(spec.caption)}</caption><tr><th></th>"
                     + "".join(f"<th>{e(c.label)}</th>" for c in spec.columns) + "</tr>")
        for row in spec.rows:
            parts.append(f"<tr><td>{e(row.label)}</td>")
            for c in spec.columns:
                cell = res.cells.get(f"{row.id}.{c.id}")
                if cell is None:
                    parts.append("<td></td>")
                    continue
                cls = cell.verdict.replace(" ", "")
                paper = "" if cell.paper is None else (
                    f"<br><span class='paper'>paper {e(_fmt(c.fmt, cell.paper))}"
                    f"{', Δ ' + e(_delta(c.fmt, cell.delta)) if cell.delta is not None else ''}</span>")
                ci = "" if not cell.ci95 else f" title='95% CI {_fmt(c.fmt, cell.ci95[0])}–{_fmt(c.fmt, cell.ci95[1])}'"
                marks = e(" ".join(getattr(cell, "marks", ())))
                parts.append(f"<td class='{cls}'{ci}>{e(_fmt(c.fmt, cell.ours))} {FLAGS.get(cell.verdict, '')}"
                             f"{' <b>' + marks + '</b>' if marks else ''}{paper}</td>")
            parts.append("</tr>")
        parts.append("</table>")
        if res.claims:
            parts.append("<ul>")
            for cl in res.claims:
                cls, word = {True: ("holds", "holds"), False: ("fails", "FAILS"), None: ("notrun", "not run")}[cl.holds]
                parts.append(f"<li><span class='{cls}'>{word}</span>: {e(cl.text)} "
                             f"<small>({e(cl.detail)})</small></li>")
            parts.append("</ul>")
        for n in spec.notes:
            parts.append(f"<p><small>{e(n)}</small></p>")
    for fig in figures:
        parts.append(f"<figure><img src='{e(fig.relative_to(out_dir).as_posix())}'><figcaption>{e(fig.stem)}"
                     f"</figcaption></figure>")
    parts.append("<h2>Provenance</h2><ul>" + "".join(f"<li>{e(line[2:])}</li>" for line in provenance_lines(results))
                 + "</ul></body></html>")
    return "\n".join(parts)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{",
        "}": r"\}", "Δ": r"$\Delta$", "✓": r"\checkmark", "⚠": r"$\dagger$", "∅": "--", "·": "", "×": r"$\times$",
        "—": "--", "→": r"$\to$"}


def tex(s: str) -> str:
    """LaTeX-safe text, including the report's own glyphs (flags, Δ), which pandas' escaping leaves alone."""
    return "".join(_TEX.get(ch, ch) for ch in s)


def table_frame(spec: TableSpec, res: TableResult) -> pd.DataFrame:
    """The regenerated table as shown in the report: row labels x column labels, ``ours (paper, Δ) flag``."""
    data = [[cell_text(res.cells.get(f"{row.id}.{c.id}"), c.fmt) for c in spec.columns] for row in spec.rows]
    return pd.DataFrame(data, index=pd.Index([r.label for r in spec.rows], name=""),
                        columns=[c.label for c in spec.columns])


CELL_COLUMNS = ("table", "row", "column", "ours", "paper", "delta", "ci_low", "ci_high", "verdict", "run")


def cells_frame(specs: list[TableSpec], results: list[TableResult]) -> pd.DataFrame:
    """Every cell of every table, one row each, numbers unformatted (missing = null), in table order."""
    rows = []
    for spec, res in zip(specs, results):
        for r in spec.rows:
            for c in spec.columns:
                cell = res.cells.get(f"{r.id}.{c.id}")
                if cell is None:
                    continue
                ci = cell.ci95 or (None, None)
                rows.append((spec.id, r.id, c.id, cell.ours, cell.paper, cell.delta, ci[0], ci[1], cell.verdict,
                             cell.source))
    frame = pd.DataFrame(rows, columns=list(CELL_COLUMNS))
    for col in ("ours", "paper", "delta", "ci_low", "ci_high"):
        frame[col] = frame[col].astype("Float64")
    for col in ("table", "row", "column", "verdict", "run"):
        frame[col] = frame[col].astype("string")
    return frame


def latex(specs: list[TableSpec], results: list[TableResult]) -> str:
    out = []
    for spec, res in zip(specs, results):
        frame = table_frame(spec, res)
        frame = frame.map(tex)
        frame.index = [tex(label) for label in frame.index]
        frame.columns = [tex(label) for label in frame.columns]
        out.append(frame.style.to_latex(caption=tex(spec.title), position="t", position_float="centering",
                                        hrules=True, column_format="l" + "r" * len(spec.columns)))
    return "\n".join(out)


def write_report(out_dir: Path, title: str, profile: str, specs: list[TableSpec], results: list[TableResult],
                 figures: list[Path], notes: str = "") -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"md": out_dir / "report.md", "html": out_dir / "report.html", "tex": out_dir / "tables.tex",
             "json": out_dir / "results.json", "csv": out_dir / "cells.csv", "parquet": out_dir / "cells.parquet"}
    files["md"].write_text(markdown(title, profile, specs, results, figures, notes, out_dir), encoding="utf-8")
    files["html"].write_text(html_page(title, profile, specs, results, figures, notes, out_dir), encoding="utf-8")
    files["tex"].write_text(latex(specs, results), encoding="utf-8")
    files["json"].write_text(json.dumps([r.to_json() for r in results], indent=2, default=str), encoding="utf-8")
    cells = cells_frame(specs, results)
    cells.to_csv(files["csv"], index=False)
    cells.to_parquet(files["parquet"], index=False)
    return files
