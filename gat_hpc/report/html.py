"""One self-contained HTML page: inline CSS, figures as base64 PNG data URIs, no scripts, no links."""

from __future__ import annotations

import base64
import html
import time

from gat_hpc.report.common import fmt_num

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
header{background:#1f3b57;color:#fff;padding:18px 32px}
header h1{margin:0 0 6px 0;font-size:22px}
header .meta{font-size:12.5px;opacity:.9;line-height:1.55}
header code{background:rgba(255,255,255,.12);padding:1px 4px;border-radius:3px}
main{max-width:1100px;margin:0 auto;padding:16px 24px 40px}
section{background:#fff;border:1px solid #e1e4e8;border-radius:6px;margin:16px 0;padding:14px 18px}
h2{font-size:16px;margin:0 0 10px 0}
img{max-width:100%;height:auto;display:block;margin:0 auto}
p.caption{font-size:13px;color:#444;margin:8px 2px 0;line-height:1.45}
table{border-collapse:collapse;font-size:12.5px;width:100%}
th,td{border-bottom:1px solid #e6e8eb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv td:first-child{color:#555;width:38%}
.note{color:#8a5a00;background:#fff7e0;border:1px solid #f0d890;padding:6px 10px;border-radius:4px;font-size:13px}
nav{font-size:13px;margin:10px 0 0}
nav a{color:#1f3b57;margin-right:12px}
footer{font-size:12px;color:#666;text-align:center;padding:8px}
"""


def esc(v):
    return html.escape(str(v), quote=True)


def _value(v):
    if isinstance(v, dict):
        if set(v) >= {"mean", "ci95"}:
            ci = v.get("ci95") or [None, None]
            return f"{fmt_num(v.get('mean'))} (95% CI {fmt_num(ci[0])} – {fmt_num(ci[1])})"
        return ", ".join(f"{k} {_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        if len(v) > 12:
            return ", ".join(_value(x) for x in v[:12]) + f", ... ({len(v)} in all)"
        return ", ".join(_value(x) for x in v) if v else "–"
    if isinstance(v, str):
        return v
    return fmt_num(v)


def _is_num(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return True
    if isinstance(v, str):
        try:
            float(v.replace(",", ""))
            return True
        except ValueError:
            return False
    return False


def table_html(columns, rows):
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = "".join(f'<td class="num">{esc(_value(v))}</td>' if _is_num(v) else f"<td>{esc(_value(v))}</td>"
                        for v in r)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv_html(pairs):
    rows = "".join(f"<tr><td>{esc(str(k).replace('_', ' '))}</td><td>{esc(_value(v))}</td></tr>"
                   for k, v in pairs if v is not None)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def page(run, figures, pngs, tables, numbers, notes=()):
    """The report page. ``pngs``: {figure name: PNG bytes}."""
    m = run.manifest
    title = f"gat-hpc report: {run.title}"
    created = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(m["created"])) if m.get("created") else None
    meta = [f"run directory <code>{esc(run.path)}</code>"]
    if run.is_run:
        meta.append(f"study <code>{esc(run.study)}</code> &middot; run <code>{esc(m.get('run_id', '')[:12])}</code> "
                    f"&middot; gat-hpc {esc(m.get('gat_hpc_version', '?'))}"
                    + (f" &middot; created {esc(created)}" if created else ""))
        if m.get("command"):
            meta.append(f"command <code>{esc(' '.join(map(str, m['command'])))}</code>")
    nav = " ".join(f'<a href="#{esc(f.name)}">{esc(f.title)}</a>' for f in figures) + " " + \
        " ".join(f'<a href="#{esc(t.name)}">{esc(t.title)}</a>' for t in tables)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{esc(title)}</h1><div class=\"meta\">{'<br>'.join(meta)}</div></header><main>",
        f"<nav>{nav}</nav>",
    ]
    for n in notes:
        parts.append(f'<p class="note">{esc(n)}</p>')
    parts.append(f'<section id="numbers"><h2>Key numbers</h2>{kv_html(numbers.items())}</section>')
    for f in figures:
        b64 = base64.b64encode(pngs[f.name]).decode("ascii")
        parts.append(f'<section id="{esc(f.name)}"><h2>{esc(f.title)}</h2>'
                     f'<img alt="{esc(f.title)}" src="data:image/png;base64,{b64}">'
                     f'<p class="caption">{esc(f.caption)}</p></section>')
    for t in tables:
        body = table_html(t.columns, t.rows) if t.rows else ""
        parts.append(f'<section id="{esc(t.name)}"><h2>{esc(t.title)}</h2>{body}'
                     f'<p class="caption">{esc(t.caption)}</p></section>')
    parts.append("</main><footer>Made by <code>gat-hpc report</code> from the run directory's own files "
                 "(run.json, results/, reduce/); no case file or study code was read.</footer></body></html>")
    return "\n".join(parts) + "\n"
