"""Render table results into Markdown, a standalone HTML page and LaTeX.

Input is only ``TableResult`` objects (filled from stored run records) plus the
figures a paper draws from the same records, so a report can never show a
number that no run produced.
"""
from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from suite.compare import Cell, TableResult
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
    if cell.paper is None:
        return ours
    paper = _fmt(fmt, cell.paper)
    flag = FLAGS.get(cell.verdict, "")
    if cell.ours is None:
        return f"— (paper {paper}) {flag}"
    return f"{ours} (paper {paper}, Δ {_delta(fmt, cell.delta)}) {flag}".rstrip()


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
    if notes:
        lines += [notes, ""]
    counts = _counts(results)
    lines += ["**Summary:** " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), ""]
    for spec, res in zip(specs, results):
        lines += [f"## {spec.title}", ""]
        if spec.caption:
            lines += [f"*{spec.caption}*", ""]
        header = ["", *[c.label for c in spec.columns]]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in spec.rows:
            cells = [cell_text(res.cells.get(f"{row.id}.{c.id}"), c.fmt) for c in spec.columns]
            lines.append("| " + " | ".join([row.label, *cells]) + " |")
        lines.append("")
        tol = ", ".join(f"{spec.column(k).label}: {t.describe()}" for k, t in spec.tolerances.items())
        if tol:
            lines += [f"Tolerances vs paper: {tol}.", ""]
        if res.claims:
            lines += ["Claims:", ""]
            for cl in res.claims:
                mark = {True: "**holds**", False: "**FAILS**", None: "not run"}[cl.holds]
                lines.append(f"- {mark}: {cl.text} ({cl.detail})")
            lines.append("")
        for n in spec.notes:
            lines.append(f"> {n}")
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
                parts.append(f"<td class='{cls}'{ci}>{e(_fmt(c.fmt, cell.ours))} {FLAGS.get(cell.verdict, '')}{paper}</td>")
            parts.append("</tr>")
        parts.append("</table>")
        if res.claims:
            parts.append("<ul>")
            for cl in res.claims:
                cls, word = {True: ("holds", "holds"), False: ("fails", "FAILS"), None: ("notrun", "not run")}[cl.holds]
                parts.append(f"<li><span class='{cls}'>{word}</span>: {e(cl.text)} <small>({e(cl.detail)})</small></li>")
            parts.append("</ul>")
        for n in spec.notes:
            parts.append(f"<p><small>{e(n)}</small></p>")
    for fig in figures:
        parts.append(f"<figure><img src='{e(fig.relative_to(out_dir).as_posix())}'><figcaption>{e(fig.stem)}"
                     f"</figcaption></figure>")
    parts.append("<h2>Provenance</h2><ul>" + "".join(f"<li>{e(l[2:])}</li>" for l in provenance_lines(results))
                 + "</ul></body></html>")
    return "\n".join(parts)


def latex(specs: list[TableSpec], results: list[TableResult]) -> str:
    def tex(s: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                     ("Δ", r"$\Delta$"), ("✓", r"\checkmark"), ("⚠", r"$\dagger$"), ("∅", "--"), ("·", ""),
                     ("×", r"$\times$"), ("—", "--"), ("→", r"$\to$")):
            s = s.replace(a, b)
        return s
    out = []
    for spec, res in zip(specs, results):
        out += [r"\begin{table}[t]", r"\centering", f"\\caption{{{tex(spec.title)}}}",
                r"\begin{tabular}{l" + "r" * len(spec.columns) + "}", r"\toprule",
                " & ".join(["", *[tex(c.label) for c in spec.columns]]) + r" \\", r"\midrule"]
        for row in spec.rows:
            cells = [tex(cell_text(res.cells.get(f"{row.id}.{c.id}"), c.fmt)) for c in spec.columns]
            out.append(" & ".join([tex(row.label), *cells]) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def write_report(out_dir: Path, title: str, profile: str, specs: list[TableSpec], results: list[TableResult],
                 figures: list[Path], notes: str = "") -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"md": out_dir / "report.md", "html": out_dir / "report.html", "tex": out_dir / "tables.tex",
             "json": out_dir / "results.json"}
    files["md"].write_text(markdown(title, profile, specs, results, figures, notes, out_dir), encoding="utf-8")
    files["html"].write_text(html_page(title, profile, specs, results, figures, notes, out_dir), encoding="utf-8")
    files["tex"].write_text(latex(specs, results), encoding="utf-8")
    files["json"].write_text(json.dumps([r.to_json() for r in results], indent=2, default=str), encoding="utf-8")
    return files
