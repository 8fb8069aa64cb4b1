"""The report dict as one self-contained HTML page: inline CSS, inline SVG, a few lines of inline JS.

Nothing is fetched when the page is viewed: no fonts, scripts, styles or images from anywhere, and a
Content-Security-Policy (``default-src 'none'``) makes the browser refuse any fetch a future edit
might add. Every string that came from telemetry (service, span and attribute names, values, trace
ids) goes through :func:`e` (``html.escape``) on its way into the page, in SVG text and tooltips too,
so a span named ``<script>`` is shown, never run. The page works without JS; the script only makes
tables sortable and records errors (``window.onerror``, ``console.error``, CSP violations) into the
``data-errors`` attribute of ``<html>`` so a headless browser's ``--dump-dom`` shows them.
"""

from __future__ import annotations

import html
import math
import zlib
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

__all__ = ["e", "fmt_ms", "render"]

_TITLES = {"summary": "Summary", "heatmap": "Latency heatmap (p95)", "slowest": "Slowest operations",
           "waterfalls": "Trace waterfalls", "dependencies": "Dependencies",
           "correlations": "Error and slowness correlations", "anomalies": "Anomalies",
           "regressions": "Regressions", "flows": "Flow conformance", "coverage": "Coverage",
           "mutations": "State mutations", "laps": "Laps"}
#: ColorBrewer YlOrRd: light = fast, dark red = slow.
_HEAT = ("#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c", "#b10026")
#: ColorBrewer RdBu reversed: blue = faster than usual, white = usual, red = slower.
_DIVERGING = ("#2166ac", "#67a9cf", "#d1e5f0", "#f7f7f7", "#fddbc7", "#ef8a62", "#b2182b")
_SERVICE_COLOURS = ("#4e79a7", "#59a14f", "#9c755f", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
                    "#bab0ac", "#86bcb6", "#8cd17d", "#a0cbe8", "#f1ce63")
_MAX_LABEL = 48
_MAX_DEVIATIONS = 100

_CSS = """
:root{--fg:#1d2330;--muted:#5b6475;--line:#d9dde5;--bg:#f6f7f9;--card:#fff;--accent:#c0392b}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:var(--fg);background:var(--bg)}
header{background:#1d2330;color:#fff;padding:16px 28px}
header h1{margin:0 0 4px;font-size:20px}
header p{margin:0;color:#c5cad6}
nav{padding:8px 28px;background:#fff;border-bottom:1px solid var(--line);position:sticky;top:0;z-index:2;
display:flex;flex-wrap:wrap;gap:4px 16px}
nav a{color:#2c5ea8;text-decoration:none;white-space:nowrap}
main{padding:8px 28px 40px;max-width:1400px}
section{scroll-margin-top:72px;background:var(--card);border:1px solid var(--line);border-radius:6px;
margin:16px 0;padding:12px 18px}
section h2{margin:4px 0 10px;font-size:17px}
section h3{margin:16px 0 6px;font-size:14px}
.note{color:var(--muted)}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:140px}
.card b{display:block;font-size:18px}
.card span{color:var(--muted);font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#eef0f4;cursor:pointer;user-select:none;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.id{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
td.name{word-break:break-word}
tr.bad td{background:#fdecea}
.err{color:var(--accent);font-weight:600}
.ok{color:#2e7d32}
.scroll{overflow-x:auto}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;fill:#1d2330}
svg .lbl{font-size:12px}
svg .muted{fill:#5b6475}
.legend{display:flex;gap:16px;align-items:center;color:var(--muted);font-size:12px;margin:6px 0}
.toggle input{margin:0 4px 0 0}.toggle label{margin-right:18px;color:var(--muted);cursor:pointer}
.hm-abs{display:none}#hm-abs:checked~.hm-abs{display:block}#hm-abs:checked~.hm-rel{display:none}
.sw{display:inline-block;width:14px;height:10px;border-radius:2px;vertical-align:middle;margin-right:4px}
"""

# Recorded before anything else runs, so the headless test sees any error of the page (data-errors).
_HOOK = """(function(){var d=document.documentElement,errs=[];
function rec(m){errs.push(String(m));d.setAttribute('data-errors',JSON.stringify(errs));}
d.setAttribute('data-errors','[]');
window.onerror=function(msg,src,line){rec('error: '+msg+' at '+src+':'+line);};
window.addEventListener('error',function(ev){if(ev.target&&ev.target!==window){
rec('resource error: '+(ev.target.src||ev.target.href||ev.target.tagName));}},true);
window.addEventListener('unhandledrejection',function(ev){rec('unhandled rejection: '+ev.reason);});
document.addEventListener('securitypolicyviolation',function(ev){
rec('blocked by CSP: '+ev.violatedDirective+' '+ev.blockedURI);});
var ce=console.error;console.error=function(){
rec('console.error: '+Array.prototype.join.call(arguments,' '));return ce.apply(console,arguments);};
})();"""

# Click a column header to sort its table (numbers by their data-v value).
_SORT = """(function(){document.querySelectorAll('table.sortable').forEach(function(t){
t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows),asc=th.getAttribute('data-asc')!=='1';
t.querySelectorAll('th').forEach(function(h){h.removeAttribute('data-asc');});
if(asc)th.setAttribute('data-asc','1');
function key(r){var c=r.cells[i];if(!c)return '';var v=c.getAttribute('data-v');
return v!==null?parseFloat(v):(c.className==='n'?-Infinity:c.textContent);}
rows.sort(function(a,b){var x=key(a),y=key(b);var r=(x<y)?-1:(x>y)?1:0;return asc?r:-r;});
rows.forEach(function(r){body.appendChild(r);});});});});
document.documentElement.setAttribute('data-rendered','1');})();"""

_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'")


def e(value: Any) -> str:
    """Any value as HTML text (quotes escaped too, so it is safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt_ms(value: float | None) -> str:
    """A duration with its unit, as many digits as a person reads."""
    if value is None:
        return "–"
    if value >= 60_000:
        return f"{value / 60_000:.1f} min"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _num(value: int | float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def _rate(per_s: float | None) -> str:
    """A rate in the unit that gives a readable number (2.5/min rather than 0.0417/s)."""
    if per_s is None:
        return "–"
    for unit, factor in (("s", 1), ("min", 60), ("h", 3600)):
        if per_s * factor >= 1:
            return f"{per_s * factor:.3g}/{unit}"
    return f"{per_s * 86400:.3g}/day"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 1e-300" if value == 0 else f"{value:.2g}"


def _short(text: str, limit: int = _MAX_LABEL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(iso_text: str | None) -> str:
    return "–" if not iso_text else iso_text.replace("T", " ").replace("Z", " UTC")


# -- tables -------------------------------------------------------------------------------------------

class _Col:
    """A table column: header, how to read a row's cell, and whether it is a number."""

    def __init__(self, title: str, get: Any, kind: str = "text", fmt: Any = None) -> None:
        self.title, self.get, self.kind, self.fmt = title, get, kind, fmt

    def cell(self, row: Mapping[str, Any]) -> str:
        value = self.get(row) if callable(self.get) else row.get(self.get)
        shown = self.fmt(value) if self.fmt is not None else ("–" if value is None else str(value))
        if self.kind == "n":
            sort = "" if not isinstance(value, (int, float)) else f' data-v="{float(value):.6g}"'
            return f'<td class="n"{sort}>{e(shown)}</td>'
        return f'<td class="{self.kind}">{e(shown)}</td>'


def _table(rows: Sequence[Mapping[str, Any]], cols: Sequence[_Col], empty: str,
           bad: Any = None) -> str:
    if not rows:
        return f'<p class="note">{e(empty)}</p>'
    head = "".join(f'<th class="{"n" if c.kind == "n" else ""}">{e(c.title)}</th>' for c in cols)
    body = []
    for row in rows:
        cls = ' class="bad"' if bad is not None and bad(row) else ""
        body.append(f"<tr{cls}>" + "".join(c.cell(row) for c in cols) + "</tr>")
    return (f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _note(section: Mapping[str, Any]) -> str | None:
    """The paragraph for a section that did not run (detector missing, input not given)."""
    if "unavailable" in section:
        return f'<p class="note">Unavailable: {e(section["unavailable"])}</p>'
    if "disabled" in section:
        return f'<p class="note">Not enabled: {e(section["disabled"])}.</p>'
    return None


# -- colour -------------------------------------------------------------------------------------------

def _mix(a: str, b: str, t: float) -> str:
    ra, ga, ba = (int(a[i:i + 2], 16) for i in (1, 3, 5))
    rb, gb, bb = (int(b[i:i + 2], 16) for i in (1, 3, 5))
    r, g, b_ = (round(p + (q - p) * t) for p, q in ((ra, rb), (ga, gb), (ba, bb)))
    return f"#{r:02x}{g:02x}{b_:02x}"


def _diverging(t: float) -> str:
    """0 (faster, blue) .. 0.5 (as usual, white) .. 1 (slower, red)."""
    t = min(max(t, 0.0), 1.0) * (len(_DIVERGING) - 1)
    i = min(int(t), len(_DIVERGING) - 2)
    return _mix(_DIVERGING[i], _DIVERGING[i + 1], t - i)


def _heat(t: float) -> str:
    t = min(max(t, 0.0), 1.0) * (len(_HEAT) - 1)
    i = min(int(t), len(_HEAT) - 2)
    return _mix(_HEAT[i], _HEAT[i + 1], t - i)


def _scale(lo: float, hi: float) -> Any:
    """value -> 0..1 on a log scale (latencies span orders of magnitude)."""
    a, b = math.log(max(lo, 1e-3)), math.log(max(hi, 1e-3))

    def t(value: float) -> float:
        return 0.5 if b <= a else (math.log(max(value, 1e-3)) - a) / (b - a)
    return t


#: service -> colour for the page being rendered: the busiest services get distinct colours.
_COLOURS: ContextVar[dict[str, str] | None] = ContextVar("chronograph_service_colours", default=None)


def _service_colour(service: str) -> str:
    assigned = _COLOURS.get()
    if assigned is not None and service in assigned:
        return assigned[service]
    return _SERVICE_COLOURS[zlib.crc32(service.encode("utf-8", "replace")) % len(_SERVICE_COLOURS)]


# -- sections -----------------------------------------------------------------------------------------

def _summary(s: Mapping[str, Any], generated: str | None) -> str:
    cards = [("Time range", f"{_when(s.get('from'))} → {_when(s.get('to'))}"),
             ("Spans", _num(s.get("spans"))), ("Traces", _num(s.get("traces"))),
             ("Services", _num(s.get("services"))), ("Operations", _num(s.get("operations"))),
             ("Span error rate", _pct(s.get("error_rate"))),
             ("Traces with an error", f"{_num(s.get('error_traces'))} ({_pct(s.get('trace_error_rate'))})")]
    body = "".join(f'<div class="card"><b>{e(v)}</b><span>{e(k)}</span></div>' for k, v in cards)
    gen = f'<p class="note">Generated {e(_when(generated))}; production spans only.</p>' if generated else ""
    return f'<div class="cards">{body}</div>{gen}'


def _bucket_label(iso_text: str, bucket_s: int) -> str:
    when = datetime.strptime(iso_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    if bucket_s >= 86400:
        return when.strftime("%Y-%m-%d")
    if bucket_s >= 60:
        return when.strftime("%m-%d %H:%M")
    return when.strftime("%H:%M:%S")


def _bucket_size(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _heatmap_svg(h: Mapping[str, Any], colour: Any, legend: Sequence[tuple[float, str]], legend_title: str,
                 legend_colour: Any) -> str:
    """One heatmap SVG: ``colour(row, value)`` fills a cell; the legend is a gradient of
    ``legend_colour(0..1)`` with ``legend`` ticks (fraction, text)."""
    rows, buckets = h["rows"], h["buckets"]
    bucket_s = int(h["bucket_s"])
    label_w, cell_h, top = 330, 18, 8
    cell_w = max(12.0, min(32.0, 840 / max(len(buckets), 1)))
    width = label_w + cell_w * len(buckets) + 20
    height = top + cell_h * len(rows) + 70
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height}" role="img" '
           f'aria-label="p95 latency per operation and time bucket">']
    for i, row in enumerate(rows):
        y = top + i * cell_h
        op = row["operation"]
        out.append(f'<text class="lbl" x="{label_w - 8}" y="{y + 13}" text-anchor="end">'
                   f'<title>{e(op)}: {e(_num(row["count"]))} spans, p95 {e(fmt_ms(row["p95_ms"]))}</title>'
                   f'{e(_short(op))}</text>')
        for j, value in enumerate(row["cells"]):
            x = label_w + j * cell_w
            if value is None:
                out.append(f'<rect x="{x:.1f}" y="{y}" width="{cell_w - 1:.1f}" height="{cell_h - 1}" '
                           f'fill="#f0f1f4"/>')
                continue
            errors = row["errors"][j]
            tip = (f"{op}\n{_when(buckets[j])} (+{_bucket_size(bucket_s)})\np95 {fmt_ms(value)} "
                   f"(operation: {fmt_ms(row['p95_ms'])}), {row['counts'][j]:,} spans"
                   + (f", {errors:,} errors" if errors else ""))
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{cell_w - 1:.1f}" height="{cell_h - 1}" '
                       f'fill="{colour(row, value)}"><title>{e(tip)}</title></rect>')
    axis_y = top + cell_h * len(rows) + 14
    every = max(1, math.ceil(len(buckets) / max(1, int((width - label_w) // 90))))
    for j in range(0, len(buckets), every):
        x = label_w + j * cell_w
        out.append(f'<text class="muted" x="{x:.1f}" y="{axis_y}">{e(_bucket_label(buckets[j], bucket_s))}'
                   f'</text>')
    ly, steps = axis_y + 18, 60
    out.append(f'<text class="muted" x="{label_w - 8}" y="{ly + 11}" text-anchor="end">'
               f'{e(legend_title)}</text>')
    for k in range(steps):
        out.append(f'<rect x="{label_w + k * 6}" y="{ly}" width="6" height="12" '
                   f'fill="{legend_colour(k / (steps - 1))}"/>')
    for frac, text in legend:
        anchor = "start" if frac == 0 else "end" if frac == 1 else "middle"
        out.append(f'<text class="muted" x="{label_w + frac * steps * 6:.0f}" y="{ly + 26}" '
                   f'text-anchor="{anchor}">{e(text)}</text>')
    out.append("</svg>")
    return "".join(out)


def _row_reference(row: Mapping[str, Any]) -> float:
    """An operation's typical bucket p95: the median over its buckets (the reference of its row)."""
    values: list[float] = sorted(float(v) for v in row["cells"] if v is not None)
    n = len(values)
    if not n:
        return 1.0
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def _heatmap(h: Mapping[str, Any]) -> str:
    rows = h.get("rows") or []
    if not rows:
        return '<p class="note">No spans in the window.</p>'
    refs = {r["operation"]: _row_reference(r) for r in rows}

    def relative(row: Mapping[str, Any], value: float) -> str:
        ref = refs[row["operation"]]
        ratio = value / ref if ref > 0 else 1.0
        return _diverging((max(-1.0, min(1.0, math.log2(max(ratio, 1e-9)))) + 1) / 2)

    scale = _scale(h["min_ms"], h["max_ms"])
    lo, hi = h["min_ms"], h["max_ms"]
    mid = math.sqrt(max(lo, 1e-3) * max(hi, 1e-3))
    rel = _heatmap_svg(h, relative,
                       ((0.0, "≤ ½×"), (0.5, "1× (its median column)"), (1.0, "≥ 2×")),
                       "p95 ÷ operation's median", _diverging)
    absolute = _heatmap_svg(h, lambda row, value: _heat(scale(value)),
                            ((0.0, fmt_ms(lo)), (0.5, fmt_ms(mid)), (1.0, fmt_ms(hi))), "p95 (log scale)",
                            _heat)
    note = (f'<p class="note">p95 per operation and column of {e(_bucket_size(int(h["bucket_s"])))} from '
            f'{e(_when(h.get("start")))}; {len(rows)} of {e(_num(h.get("operations")))} operations (those '
            f'with the most total time), slowest p95 first. Hover a cell for its figures; grey: no span.</p>')
    toggle = ('<div class="toggle"><input type="radio" name="hm" id="hm-rel" checked>'
              '<label for="hm-rel">colour: each operation against its own median</label>'
              '<input type="radio" name="hm" id="hm-abs"><label for="hm-abs">colour: absolute p95</label>'
              f'<div class="scroll hm-rel">{rel}</div><div class="scroll hm-abs">{absolute}</div></div>')
    return note + toggle


def _slowest(s: Mapping[str, Any]) -> str:
    cols = [_Col("Operation", "operation", "name"), _Col("Spans", "count", "n", _num),
            _Col("p50", "p50_ms", "n", fmt_ms), _Col("p95", "p95_ms", "n", fmt_ms),
            _Col("p99", "p99_ms", "n", fmt_ms), _Col("Max", "max_ms", "n", fmt_ms),
            _Col("Error rate", "error_rate", "n", _pct), _Col("Rate", "rate_per_s", "n", _rate)]
    items = s.get("items") or []
    note = (f'<p class="note">{len(items)} of {e(_num(s.get("operations")))} operations, highest p95 '
            f'first.</p>')
    return note + _table(items, cols, "No spans in the window.", bad=lambda r: r["error_rate"] > 0.05)


def _ticks(total_ms: float, count: int = 6) -> list[float]:
    if total_ms <= 0:
        return [0.0]
    raw = total_ms / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(total_ms // step) + 1)]


def _waterfall(w: Mapping[str, Any]) -> str:
    rows = w.get("rows") or []
    total = max(float(w.get("duration_ms") or 0.0), 1e-6)
    label_w, bar_w, row_h, top = 380, 760, 18, 22
    width, height = label_w + bar_w + 90, top + row_h * len(rows) + 10

    def x(ms: float) -> float:
        return label_w + bar_w * ms / total

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="waterfall of trace {e(w.get("trace_id"))}">']
    for t in _ticks(total):
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top - 6}" y2="{height}" stroke="#e3e6ec"/>'
                   f'<text class="muted" x="{x(t):.1f}" y="{top - 9}" text-anchor="middle">'
                   f'{e(fmt_ms(t))}</text>')
    index = {r["span_id"]: i for i, r in enumerate(rows)}
    for i, r in enumerate(rows):
        y = top + i * row_h
        label = f"{r['service']}: {r['name']}"
        indent = 6 + 12 * min(r["depth"], 20)
        weight = ' font-weight="600"' if r["critical"] else ""
        cls = ' class="lbl err"' if r["error"] else ' class="lbl"'
        fill = ' fill="#c0392b"' if r["error"] else ""
        out.append(f'<text{cls}{fill}{weight} x="{indent}" y="{y + 13}">'
                   f'{e(_short(label, max(12, _MAX_LABEL + 8 - min(r["depth"], 20) * 2)))}</text>')
        bx, bw = x(r["start_ms"]), max(bar_w * r["duration_ms"] / total, 1.5)
        colour = _service_colour(r["service"])
        stroke = ' stroke="#c0392b" stroke-width="2"' if r["error"] else ""
        flags = [f"{fmt_ms(r['duration_ms'])} at +{fmt_ms(r['start_ms'])}"]
        if r["critical"]:
            flags.append("on the critical path")
        if r["error"]:
            flags.append("error")
        if r["overruns_parent"]:
            flags.append("overruns its parent (clipped for the critical path)")
        tip = f"{label}\nspan {r['span_id']} ({r['kind']})\n" + ", ".join(flags)
        opacity = "1" if r["critical"] else "0.55"
        out.append(f'<rect x="{bx:.1f}" y="{y + 3}" width="{bw:.1f}" height="{row_h - 6}" rx="2" '
                   f'fill="{colour}" fill-opacity="{opacity}"{stroke}><title>{e(tip)}</title></rect>')
        out.append(f'<text class="muted" x="{min(bx + bw + 4, width - 80):.1f}" y="{y + 13}">'
                   f'{e(fmt_ms(r["duration_ms"]))}</text>')
    for seg in w.get("critical_segments") or []:
        at = index.get(seg["span_id"])
        if at is None:
            continue
        y = top + at * row_h
        sx, sw = x(seg["start_ms"]), max(bar_w * (seg["end_ms"] - seg["start_ms"]) / total, 1.0)
        out.append(f'<rect x="{sx:.1f}" y="{y + 7}" width="{sw:.1f}" height="{row_h - 14}" fill="#1d2330">'
                   f'<title>critical: {e(fmt_ms(seg["end_ms"] - seg["start_ms"]))} of this span\'s own '
                   f'work</title></rect>')
    out.append("</svg>")
    return "".join(out)


def _waterfalls(section: Mapping[str, Any]) -> str:
    items = section.get("items") or []
    if not items:
        return '<p class="note">No trace to draw.</p>'
    parts = ['<div class="legend"><span><span class="sw" style="background:#4e79a7"></span>span (colour: '
             'service; faded: off the critical path)</span><span><span class="sw" style="background:#1d2330">'
             '</span>critical path (the work the end of the trace waited on)</span><span>'
             '<span class="sw" style="border:2px solid #c0392b"></span>error</span></div>']
    for w in items:
        shown = "" if w["shown"] == w["spans"] else f"; first {w['shown']} of {w['spans']} spans drawn"
        parts.append(f'<h3>Trace <code>{e(w["trace_id"])}</code> — {e(w.get("root") or "?")}, '
                     f'{e(fmt_ms(w["duration_ms"]))}, {e(_num(w["spans"]))} spans</h3>'
                     f'<p class="note">{e(w["reason"])}; critical path {len(w["critical_path"])} spans, '
                     f'{e(fmt_ms(w.get("critical_ms")))} of own work{e(shown)}.</p>'
                     f'<div class="scroll">{_waterfall(w)}</div>'
                     + '<div class="legend">' + "".join(
                         f'<span><span class="sw" style="background:{_service_colour(svc)}"></span>{e(svc)}'
                         '</span>' for svc in dict.fromkeys(r["service"] for r in w["rows"])) + "</div>")
    return "".join(parts)


def _layers(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Column of each node: longest path from a source, back edges of cycles ignored (DFS order)."""
    out_edges: dict[str, list[str]] = {n: [] for n in nodes}
    indeg = {n: 0 for n in nodes}
    for a, b in edges:
        if a in out_edges and b in out_edges and a != b:
            out_edges[a].append(b)
            indeg[b] += 1
    state: dict[str, int] = {}
    order: list[str] = []
    forward: list[tuple[str, str]] = []
    for start in sorted(nodes, key=lambda n: (indeg[n] > 0, nodes.index(n))):
        if start in state:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        state[start] = 1
        while stack:
            node, i = stack.pop()
            if i < len(out_edges[node]):
                stack.append((node, i + 1))
                nxt = out_edges[node][i]
                if state.get(nxt) == 1:
                    continue  # back edge
                forward.append((node, nxt))
                if nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                order.append(node)
    layer = {n: 0 for n in nodes}
    for node in reversed(order):  # reverse post-order: a topological order of the forward edges
        for a, b in forward:
            if a == node:
                layer[b] = max(layer[b], layer[a] + 1)
    return layer


def _dependencies(d: Mapping[str, Any]) -> str:
    services = (d.get("services") or [])[:40]
    edges = d.get("edges") or []
    names = [s["service"] for s in services]
    shown = set(names)
    edges = [x for x in edges if x["from"] in shown and x["to"] in shown]
    layer = _layers(names, [(x["from"], x["to"]) for x in edges])
    columns: dict[int, list[str]] = {}
    for n in names:
        columns.setdefault(layer[n], []).append(n)
    box_w, box_h, gap_x, gap_y, pad = 190, 46, 120, 40, 20
    pos = {n: (pad + layer[n] * (box_w + gap_x), pad + 20 + i * (box_h + gap_y))
           for col in columns.values() for i, n in enumerate(col)}
    width = pad * 2 + (max(columns, default=0) + 1) * (box_w + gap_x)
    loops = any(layer[x["to"]] <= layer[x["from"]] for x in edges)
    height = (pad * 2 + 20 + max((len(c) for c in columns.values()), default=0) * (box_h + gap_y)
              + (90 if loops else 0))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="service dependency graph"><defs>'
           + "".join(f'<marker id="{mid}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="10" '
                     f'markerHeight="10" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
                     f'<path d="M0,0L10,5L0,10z" fill="{fill}"/></marker>'
                     for mid, fill in (("arrow", "#5b6475"), ("arrow-err", "#c0392b")))
           + "</defs>"]
    top_calls = max((x["calls"] for x in edges), default=1)
    for x in edges:
        (ax, ay), (bx, by) = pos[x["from"]], pos[x["to"]]
        p0: tuple[float, float]
        p1: tuple[float, float]
        p2: tuple[float, float]
        p3: tuple[float, float]
        if layer[x["to"]] > layer[x["from"]]:
            p0, p3 = (ax + box_w, ay + box_h / 2), (bx, by + box_h / 2)
            p1, p2 = ((p0[0] + p3[0]) / 2, p0[1]), ((p0[0] + p3[0]) / 2, p3[1])
        else:  # same column or backwards: loop below the boxes
            p0, p3 = (ax + box_w / 2, ay + box_h), (bx + box_w / 2 + 12, by + box_h)
            dip = 50 + abs(ay - by) / 4
            p1, p2 = (p0[0] + 40, max(ay, by) + box_h + dip), (p3[0] + 40, max(ay, by) + box_h + dip)
        mx = (p0[0] + 3 * p1[0] + 3 * p2[0] + p3[0]) / 8
        my = (p0[1] + 3 * p1[1] + 3 * p2[1] + p3[1]) / 8
        bad = x["errors"] > 0
        colour, marker = ("#c0392b", "arrow-err") if bad else ("#8a93a5", "arrow")
        stroke = 1.2 + 3 * math.log1p(x["calls"]) / math.log1p(top_calls)
        label = f"{x['calls']:,} calls" + (f", {x['errors']:,} errors" if bad else "")
        tip = f"{x['from']} → {x['to']}: {label}"
        out.append(f'<path d="M{p0[0]:.1f},{p0[1]:.1f} C{p1[0]:.1f},{p1[1]:.1f} {p2[0]:.1f},{p2[1]:.1f} '
                   f'{p3[0]:.1f},{p3[1]:.1f}" fill="none" stroke="{colour}" stroke-width="{stroke:.1f}" '
                   f'marker-end="url(#{marker})"><title>{e(tip)}</title></path>')
        fill = ' fill="#c0392b"' if bad else ""
        out.append(f'<text x="{mx:.1f}" y="{my - 4:.1f}" text-anchor="middle"{fill}>{e(label)}</text>')
    for s in services:
        nx, ny = pos[s["service"]]
        bad = s["errors"] > 0
        tip = f"{s['service']}: {s['spans']:,} spans, {s['errors']:,} errors"
        out.append(f'<g><title>{e(tip)}</title><rect x="{nx}" y="{ny}" width="{box_w}" height="{box_h}" '
                   f'rx="6" fill="#fff" stroke="{_service_colour(s["service"])}" stroke-width="2.5"/>'
                   f'<text class="lbl" x="{nx + 10}" y="{ny + 18}" font-weight="600">'
                   f'{e(_short(s["service"], 26))}</text>'
                   f'<text class="muted" x="{nx + 10}" y="{ny + 35}">{e(_num(s["spans"]))} spans'
                   + (f', <tspan fill="#c0392b">{e(_num(s["errors"]))} errors</tspan>' if bad else "")
                   + "</text></g>")
    out.append("</svg>")
    if not services:
        return '<p class="note">No spans in the window.</p>'
    graph = ('<p class="note">Services (boxes) and the calls between them: a span whose parent span '
             'belongs to another service. Edge labels: calls, and errors of the called spans.</p>'
             f'<div class="scroll">{"".join(out)}</div>')
    cols = [_Col("Caller operation", "from", "name"), _Col("Called operation", "to", "name"),
            _Col("Calls", "calls", "n", _num), _Col("Errors", "errors", "n", _num),
            _Col("Error rate", lambda r: r["errors"] / r["calls"] if r["calls"] else 0.0, "n", _pct)]
    return graph + "<h3>Calls between operations (most first)</h3>" + _table(
        d.get("operation_edges") or [], cols, "No span calls another service.", bad=lambda r: r["errors"] > 0)


def _items_note(section: Mapping[str, Any], what: str) -> str:
    total, shown = section.get("total", 0), len(section.get("items") or [])
    more = f" (the first {shown} shown)" if total > shown else ""
    return f'<p class="note">{e(_num(total))} {e(what)}{e(more)}.</p>'


def _correlations(c: Mapping[str, Any]) -> str:
    def attrs(r: Mapping[str, Any]) -> str:
        return "; ".join(f"{k} = {v}" for k, v in (r.get("attributes") or {}).items())

    cols = [_Col("In", lambda r: "failing traces" if r["target"] == "error" else "slow traces"),
            _Col("Attribute values", attrs, "name"), _Col("Traces with it", "traces", "n", _num),
            _Col("Share of selected", "share_selected", "n", _pct),
            _Col("Share of the rest", "share_rest", "n", _pct),
            _Col("Lift", "lift", "n", lambda v: "–" if v is None else "∞" if v == math.inf else f"{v:.2f}×"),
            _Col("G", "g", "n", lambda v: f"{v:.1f}"), _Col("q-value", "q_value", "n", _p)]
    return (_items_note(c, "over-represented attribute values (Benjamini-Hochberg q-value below the "
                           "threshold), strongest first")
            + _table(c.get("items") or [], cols, "No attribute value is over-represented."))


def _anomalies(a: Mapping[str, Any]) -> str:
    cols = [_Col("Score", "score", "n", lambda v: f"{v:.1f}"), _Col("Operation", "operation", "name"),
            _Col("Took", "duration_ms", "n", fmt_ms), _Col("Baseline", "baseline_ms", "n", fmt_ms),
            _Col("Ratio", lambda r: r["duration_ms"] / r["baseline_ms"] if r["baseline_ms"] else None, "n",
                 lambda v: "–" if v is None else f"{v:.1f}×"),
            _Col("Started", "start", "text", _when), _Col("Trace", "trace_id", "id"),
            _Col("Span", "span_id", "id")]
    return (_items_note(a, "anomalously slow spans, highest score first")
            + _table(a.get("items") or [], cols, "No anomalous span."))


def _regressions(r: Mapping[str, Any]) -> str:
    def change(row: Mapping[str, Any]) -> float | None:
        return row["after_ms"] / row["before_ms"] - 1 if row.get("before_ms") else None

    cols = [_Col("Operation", "operation", "name"), _Col("Changed at", "change_at", "text", _when),
            _Col("Before", "before_ms", "n", fmt_ms), _Col("After", "after_ms", "n", fmt_ms),
            _Col("Change", change, "n", lambda v: "–" if v is None else f"{v * 100:+.0f} %"),
            _Col("p-value", "p_value", "n", _p)]
    items = sorted(r.get("items") or [], key=lambda x: -(change(x) or 0.0))
    return _items_note(r, "latency changes, largest first") + _table(items, cols, "No regression.")


def _flows(f: Mapping[str, Any]) -> str:
    items = sorted(f.get("items") or [], key=lambda x: (x["conforming"] - x["traces"], x["operation"]))
    cols = [_Col("Operation", "operation", "name"), _Col("Traces", "traces", "n", _num),
            _Col("Conforming", "conforming", "n", _num),
            _Col("Deviating", lambda x: x["traces"] - x["conforming"], "n", _num),
            _Col("Conformance", lambda x: x["conforming"] / x["traces"] if x["traces"] else None, "n", _pct)]
    # the listed deviations grouped: one row per (operation, kind, detail), most traces first
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for x in items:
        for d in x["deviations"]:
            g = groups.setdefault((x["operation"], d["kind"], d["detail"]),
                                  {"operation": x["operation"], "kind": d["kind"], "detail": d["detail"],
                                   "traces": 0, "example": d["trace_id"]})
            g["traces"] += 1
    devs = sorted(groups.values(), key=lambda g: (-g["traces"], g["operation"], g["kind"], g["detail"]))
    listed = sum(len(x["deviations"]) for x in items)
    dcols = [_Col("Operation", "operation", "name"), _Col("Kind", "kind"), _Col("Detail", "detail", "name"),
             _Col("Traces listed", "traces", "n", _num), _Col("Example trace", "example", "id")]
    return (_table(items, cols, "The spec names no operation.", bad=lambda x: x["traces"] > x["conforming"])
            + "<h3>Deviations</h3>"
            + (f'<p class="note">{e(_num(listed))} listed deviations (the detector lists at most '
               f'{e(_num(100))} per operation), grouped.</p>' if devs else "")
            + _table(devs[:_MAX_DEVIATIONS], dcols, "Every trace conforms."))


def _coverage(c: Mapping[str, Any]) -> str:
    tested = c.get("executed_in_tests")
    line = (f'{e(_num(c.get("declared")))} declared handlers: {e(_num(c.get("executed_in_production")))} '
            f'executed in production, ' + ("no test run given" if tested is None
                                           else f"{e(_num(tested))} executed in tests") + ".")
    rows = sorted(c.get("handlers") or [], key=lambda h: (h["production"] > 0, (h["tests"] or 0) > 0,
                                                          h["operation"]))
    cols = [_Col("Handler", "operation", "name"), _Col("Production spans", "production", "n", _num),
            _Col("Test spans", "tests", "n", _num)]
    out = (f'<p>{line} Never executed first.</p>'
           + _table(rows, cols, "No handler declared.", bad=lambda h: not h["production"]))
    undeclared = c.get("undeclared") or []
    if undeclared:
        out += ("<h3>Handlers seen in production but not declared</h3>"
                + _table(undeclared, [_Col("Operation", "operation", "name"),
                                      _Col("Production spans", "production", "n", _num)], ""))
    return out


def _mutations(m: Mapping[str, Any]) -> str:
    parts = []
    for item in m.get("items") or []:
        parts.append(f"<h3>Key <code>{e(item['key'])}</code></h3>")
        parts.append(_table(item["operations"], [_Col("Writing operation", "operation", "name"),
                                                 _Col("Writes", "writes", "n", _num),
                                                 _Col("Traces", "traces", "n", _num)], "Never written."))
        if item["sequences"]:
            parts.append(_table(item["sequences"], [_Col("Write order within a trace",
                                                         lambda s: " → ".join(s["order"]), "name"),
                                                    _Col("Traces", "traces", "n", _num)], ""))
    return "".join(parts) or '<p class="note">No key given.</p>'


def _laps(lp: Mapping[str, Any]) -> str:
    cols = [_Col("Command", "command", "name"), _Col("Operation", "operation", "name"),
            _Col("Laps", "count", "n", _num), _Col("Green", "green", "n", _num),
            _Col("Yellow", "yellow", "n", _num), _Col("Red", "red", "n", _num),
            _Col("Errors", "errors", "n", _num), _Col("p50", "p50_ms", "n", fmt_ms),
            _Col("p95", "p95_ms", "n", fmt_ms)]
    return _table(lp.get("items") or [], cols, "No lap.", bad=lambda r: r["red"] > 0)


_RENDER = {"heatmap": _heatmap, "slowest": _slowest, "waterfalls": _waterfalls, "dependencies": _dependencies,
           "correlations": _correlations, "anomalies": _anomalies, "regressions": _regressions,
           "flows": _flows, "coverage": _coverage, "mutations": _mutations, "laps": _laps}


def render(report: Mapping[str, Any]) -> str:
    """The whole page for a ``build_report`` dict."""
    services = [x["service"] for x in (report.get("dependencies") or {}).get("services") or []]
    services += [r["service"] for w in (report.get("waterfalls") or {}).get("items") or [] for r in w["rows"]]
    token = _COLOURS.set({svc: _SERVICE_COLOURS[i % len(_SERVICE_COLOURS)]
                          for i, svc in enumerate(dict.fromkeys(services))})
    try:
        return _page(report)
    finally:
        _COLOURS.reset(token)


def _page(report: Mapping[str, Any]) -> str:
    sections = [("summary", _summary(report["summary"], report.get("generated")))]
    for name, fn in _RENDER.items():
        section = report.get(name)
        if section is None or (name == "laps" and not section.get("items")):
            continue
        sections.append((name, _note(section) or fn(section)))
    nav = "".join(f'<a href="#{name}">{e(_TITLES[name])}</a>' for name, _ in sections)
    body = "".join(f'<section id="{name}"><h2>{e(_TITLES[name])}</h2>{content}</section>'
                   for name, content in sections)
    s = report["summary"]
    span = f"{_when(s.get('from'))} → {_when(s.get('to'))}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>Chronograph insights: {e(span)}</title><script>{_HOOK}</script><style>{_CSS}</style>"
            f"</head><body><header><h1>Chronograph insights</h1>"
            f"<p>{e(span)} · {e(_num(s.get('spans')))} spans "
            f"· {e(_num(s.get('traces')))} traces · {e(_num(s.get('services')))} services</p></header>"
            f"<nav>{nav}</nav><main>{body}</main><script>{_SORT}</script></body></html>\n")
