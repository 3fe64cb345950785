"""Reports of study runs: ``report.md`` and ``report.html`` per study, ``index.html`` over all of them.

A report opens with the study's question, its answer in a short paragraph and the headline figure (the theory
drawn on it); the checks follow grouped by part, failures first, each group folded unless it holds a failure;
skipped checks are shown as skipped with their reason. Everything is rendered from ``results.json`` alone, so
``diffsim report`` can rewrite the pages of old runs.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from .._io import read_json, write_atomic


__all__ = ["report_html", "report_markdown", "write_index", "write_reports"]

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;
line-height:1.45}
h1 code{font-size:95%}
.question{font-size:120%;font-weight:600;margin:.4em 0}
.answer{background:#f4f7fb;border-left:4px solid #4a7bd0;padding:.6em 1em;margin:1em 0}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-weight:600;font-size:90%}
.badge.ok{background:#d9f2dd;color:#17602a}.badge.fail{background:#fbd9d9;color:#8a1c1c}
.badge.skip{background:#eee;color:#555}
table{border-collapse:collapse;width:100%;margin:.5em 0}
td,th{border:1px solid #ddd;padding:3px 6px;font-size:88%;vertical-align:top;text-align:left}
tr.fail{background:#fde8e8}tr.skip{color:#777;background:#f6f6f6}
details{margin:.6em 0;border:1px solid #e3e3e3;border-radius:6px;padding:.3em .8em}
summary{cursor:pointer;font-weight:600}
img{max-width:100%}figure{margin:1.2em 0}figcaption{font-size:90%;color:#444}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:1em}
.card{border:1px solid #ddd;border-radius:8px;padding:.8em;background:#fff}
.card img{max-height:180px;object-fit:contain;width:100%}
.card h2{font-size:110%;margin:.2em 0}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        if len(v) > 6:
            return "[" + ", ".join(_fmt(x) for x in v[:6]) + ", ...]"
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in list(v.items())[:6]) + "}"
    return str(v)


def _status(c: dict[str, Any]) -> str:
    if c.get("skipped"):
        return "skip"
    return "ok" if c["passed"] else "fail"


def _result_text(c: dict[str, Any]) -> str:
    status = _status(c)
    if status == "skip":
        return "skipped: " + html.escape(str(c.get("skipped")))
    return "passed" if status == "ok" else "FAILED"


def _groups(checks: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Checks grouped by part (in order of first appearance), failures first, skipped last in a group."""
    order: dict[str, list[dict[str, Any]]] = {}
    for c in checks:
        order.setdefault(c.get("part") or "checks", []).append(c)
    rank = {"fail": 0, "ok": 1, "skip": 2}
    return [(part, sorted(cs, key=lambda c: rank[_status(c)])) for part, cs in order.items()]


def _headline(data: dict[str, Any]) -> dict[str, str] | None:
    figs = data.get("figures") or []
    name = data.get("headline")
    for f in figs:
        if f["name"] == name:
            return f
    return figs[0] if figs else None


def _count_text(data: dict[str, Any]) -> str:
    text = f"{data['n_passed']} / {data['n_checks']} checks passed"
    if data.get("n_skipped"):
        text += f", {data['n_skipped']} skipped"
    return text


def report_markdown(data: dict[str, Any]) -> str:
    lines = [f"# Study `{data['study']}`", ""]
    if data.get("question"):
        lines += [f"**{data['question']}**", ""]
    if data.get("answer"):
        lines += [data["answer"], ""]
    head = _headline(data)
    if head:
        lines += [f"![{head['name']}]({head['path']})", "", f"*{head['caption']}*", ""]
    elapsed = f" in {data['elapsed_s']} s" if data.get("elapsed_s") is not None else ""
    lines += [f"{_count_text(data)}{elapsed}.", ""]
    lines += ["## Checks (theory prediction beside measurement)", ""]
    for part, checks in _groups(data["checks"]):
        n_ok = sum(c["passed"] for c in checks)
        n_counted = sum(not c.get("skipped") for c in checks)
        lines += [f"### {part} ({n_ok}/{n_counted})", ""]
        lines += ["| check | predicted | measured | tolerance | result | note |", "|---|---|---|---|---|---|"]
        for c in checks:
            status = {"ok": "passed", "fail": "**FAILED**", "skip": f"skipped: {c.get('skipped')}"}[
                _status(c)
            ]
            lines.append(
                f"| {c['name']} | {_fmt(c['predicted'])} | {_fmt(c['measured'])} | {_fmt(c['tolerance'])} | "
                f"{status} | {c.get('note', '')} |"
            )
        lines.append("")
    if data.get("notes"):
        lines += ["## Notes", ""] + [n + "\n" for n in data["notes"]]
    others = [f for f in data.get("figures", []) if f is not head]
    if others:
        lines += ["## Figures", ""]
        for f in others:
            lines += [f"![{f['name']}]({f['path']})", "", f"*{f['caption']}*", ""]
    lines += ["## Configuration", "", "```json", json.dumps(data["config"], indent=2), "```", ""]
    return "\n".join(lines)


def _figure_html(f: dict[str, str]) -> str:
    esc = html.escape
    return (
        f"<figure><img src='{esc(f['path'])}' alt='{esc(f['name'])}'>"
        f"<figcaption>{esc(f['caption'])}</figcaption></figure>"
    )


def report_html(data: dict[str, Any]) -> str:
    esc = html.escape
    head = _headline(data)
    badge = "ok" if data["passed"] else "fail"
    parts_html = []
    for part, checks in _groups(data["checks"]):
        n_ok = sum(c["passed"] for c in checks)
        n_counted = sum(not c.get("skipped") for c in checks)
        failed = any(_status(c) == "fail" for c in checks)
        rows = "\n".join(
            f"<tr class='{_status(c)}'><td>{esc(c['name'])}</td><td>{esc(_fmt(c['predicted']))}</td>"
            f"<td>{esc(_fmt(c['measured']))}</td><td>{esc(_fmt(c['tolerance']))}</td>"
            f"<td>{_result_text(c)}</td><td>{esc(c.get('note', ''))}</td></tr>"
            for c in checks
        )
        parts_html.append(
            f"<details{' open' if failed else ''}><summary>{esc(part)} "
            f"<span class='badge {'fail' if failed else 'ok'}'>{n_ok} / {n_counted}</span></summary>"
            "<table><tr><th>check</th><th>predicted</th><th>measured</th><th>tolerance</th><th>result</th>"
            f"<th>note</th></tr>{rows}</table></details>"
        )
    notes = "\n".join(f"<p>{esc(n)}</p>" for n in data.get("notes", []))
    others = "\n".join(_figure_html(f) for f in data.get("figures", []) if f is not head)
    question = f"<p class='question'>{esc(data['question'])}</p>" if data.get("question") else ""
    answer = f"<div class='answer'>{esc(data['answer'])}</div>" if data.get("answer") else ""
    elapsed = f" in {data.get('elapsed_s')} s" if data.get("elapsed_s") is not None else ""
    return f"""<!doctype html><html><head><meta charset='utf-8'><title>diffsim: {esc(data["study"])}</title>
<style>{_CSS}</style></head><body>
<p><a href='../index.html'>&larr; all studies</a></p>
<h1>Study <code>{esc(data["study"])}</code></h1>
{question}{answer}{_figure_html(head) if head else ""}
<p><span class='badge {badge}'>{esc(_count_text(data))}</span>{esc(elapsed)}</p>
<h2>Checks: theory prediction beside measurement</h2>
{"".join(parts_html)}
{"<h2>Notes</h2>" + notes if notes else ""}
{"<h2>Figures</h2>" + others if others else ""}
<h2>Configuration</h2><pre>{esc(json.dumps(data["config"], indent=2))}</pre></body></html>
"""


def write_reports(out_dir: str | Path) -> None:
    """(Re)write ``report.md`` and ``report.html`` of a run directory from its ``results.json``."""
    out = Path(out_dir)
    data = read_json(out / "results.json")
    data.setdefault("n_skipped", 0)
    write_atomic(out / "report.md", report_markdown(data))
    write_atomic(out / "report.html", report_html(data))


def write_index(runs_dir: str | Path, failures: dict[str, str] | None = None) -> Path:
    """Write ``<runs_dir>/index.html``: every study's question, headline figure and check count."""
    esc = html.escape
    runs = Path(runs_dir)
    cards = []
    for res_file in sorted(runs.glob("*/results.json")):
        try:
            data = read_json(res_file)
            data.setdefault("n_skipped", 0)
            name = res_file.parent.name
            head = _headline(data)
        except (OSError, ValueError, KeyError) as err:
            cards.append(
                f"<div class='card'><h2>{esc(res_file.parent.name)}</h2>"
                f"<p class='badge fail'>unreadable results.json: {esc(str(err))}</p></div>"
            )
            continue
        img = (
            f"<a href='{esc(name)}/report.html'><img src='{esc(name)}/{esc(head['path'])}' "
            f"alt='{esc(head['name'])}'></a>"
            if head
            else ""
        )
        cards.append(
            f"<div class='card'><h2><a href='{esc(name)}/report.html'>{esc(name)}</a></h2>"
            f"<p>{esc(data.get('question') or '')}</p>{img}"
            f"<p><span class='badge {'ok' if data['passed'] else 'fail'}'>{esc(_count_text(data))}</span> "
            f"{esc(str(data.get('elapsed_s')))} s</p></div>"
        )
    for name, err in (failures or {}).items():
        cards.append(
            f"<div class='card'><h2>{esc(name)}</h2><p class='badge fail'>crashed</p>"
            f"<pre>{esc(err)}</pre></div>"
        )
    page = f"""<!doctype html><html><head><meta charset='utf-8'><title>diffsim runs</title>
<style>{_CSS}</style></head><body><h1>diffsim runs</h1>
<p>Each study checks a paper's theory by numbers; open a card for its report.</p>
<div class='cards'>{"".join(cards)}</div></body></html>
"""
    return write_atomic(runs / "index.html", page)
