"""The monitoring report as one self-contained HTML page: drift at a glance, no scripts.

Inline SVG: reference vs current histograms for each drifted feature of the newest windows, and
trend lines per version across windows (drifted features, score mean, AUC, parity gaps).
"""

from __future__ import annotations

from html import escape

from contracts.monitoring.api import Histogram, MonitoringReport, WindowReport

STYLE = """
body{font:14px system-ui,sans-serif;margin:2rem;color:#222;max-width:1100px}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}h3{font-size:1rem;margin:.8rem 0 .2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.alert{color:#b00020;font-weight:600}.ok{color:#1b7f3b}.muted{color:#777}
.charts{display:flex;flex-wrap:wrap;gap:1rem}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
"""
REF, CUR = "#8aa9d6", "#e07b39"


def render(report: MonitoringReport) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>modelgov monitoring: "
             f"{escape(report.model)}</title><style>{STYLE}</style></head><body>",
             f"<h1>Monitoring report: {escape(report.model)}</h1>",
             f"<p class='muted'>versions {', '.join(map(str, report.versions)) or '—'}; "
             f"window: {report.policy.window_size} decisions or {report.policy.window_seconds:g} s; "
             f"open windows: {_open(report)}</p>"]
    parts.append(_summary(report.windows))
    parts.append(_trends(report.windows))
    for window in report.windows[:3]:
        parts.append(_drift_charts(window))
    parts.append(_triggers(report))
    parts.append("</body></html>")
    return "\n".join(parts)


def _open(report: MonitoringReport) -> str:
    return ", ".join(f"v{v}: {n}" for v, n in report.open_windows.items()) or "none"


def _summary(windows: list[WindowReport]) -> str:
    if not windows:
        return "<p>No window has closed yet: figures appear once one holds enough decisions.</p>"
    rows = ["<h2>Windows (newest first)</h2><table><tr><th>version</th><th>window</th><th>end</th>"
            "<th>decisions</th><th>labelled</th><th>drifted features</th><th>AUC</th>"
            "<th>p99 ms</th><th>error rate</th><th>alerts</th></tr>"]
    for w in windows:
        drifted = ", ".join(w.drift.drifted_features) if w.drift else "n/a (too few decisions)"
        auc = f"{w.performance.auc:.3f}" if w.performance and w.performance.auc is not None else "—"
        p99 = f"{w.latency.p99_ms:.1f}" if w.latency.p99_ms is not None else "—"
        errors = f"{w.error_rate:.2%} ({w.refused})" if w.error_rate is not None else "—"
        alerts = ", ".join(a.split(".")[2] for a in w.alerts)
        rows.append(f"<tr><td>v{w.version}</td><td>{w.index}</td><td>{w.end:%Y-%m-%d %H:%M:%S}</td>"
                    f"<td>{w.decisions}</td><td>{w.labelled}</td><td>{escape(drifted) or '—'}</td>"
                    f"<td>{auc}</td><td>{p99}</td><td>{errors}</td>"
                    f"<td class='{'alert' if alerts else 'ok'}'>{escape(alerts) or 'none'}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _drift_charts(window: WindowReport) -> str:
    if not window.histograms:
        return ""
    charts = "".join(_bars(name, h) for name, h in window.histograms.items())
    return (f"<h2>v{window.version}, window {window.index}: reference vs current</h2>"
            f"<p class='legend'><span style='background:{REF}'></span>reference"
            f"<span style='background:{CUR}'></span>current</p><div class='charts'>{charts}</div>")


def _bars(name: str, h: Histogram, width: int = 320, height: int = 150) -> str:
    n = max(len(h.bins), 1)
    top = max([*h.reference, *h.current, 1e-9])
    slot = width / n
    bars = []
    for i, (r, c) in enumerate(zip(h.reference, h.current, strict=True)):
        for j, (value, colour) in enumerate(((r, REF), (c, CUR))):
            bar = value / top * (height - 20)
            bars.append(f"<rect x='{i * slot + 2 + j * (slot - 4) / 2:.1f}' y='{height - bar:.1f}' "
                        f"width='{(slot - 4) / 2:.1f}' height='{bar:.1f}' fill='{colour}'>"
                        f"<title>{escape(h.bins[i])}: {value:.3f}</title></rect>")
    return (f"<figure><h3>{escape(name)}</h3><svg width='{width}' height='{height}' "
            f"role='img' aria-label='{escape(name)} histogram'>{''.join(bars)}</svg></figure>")


def _trends(windows: list[WindowReport]) -> str:
    """One small line chart per figure, oldest window left, a line per version."""
    if len(windows) < 2:
        return ""
    series = {
        "drifted features": lambda w: len(w.drift.drifted_features) if w.drift else None,
        "score mean": lambda w: w.score_mean,
        "AUC": lambda w: w.performance.auc if w.performance else None,
        "demographic parity difference (max)": lambda w: max(
            (f.demographic_parity_difference for f in w.fairness
             if f.demographic_parity_difference is not None), default=None),
    }
    charts = "".join(_line(name, windows, get) for name, get in series.items())
    return f"<h2>Trends</h2><div class='charts'>{charts}</div>"


def _line(name: str, windows: list[WindowReport], get, width: int = 320, height: int = 120) -> str:
    points = [(w.version, w.index, get(w)) for w in reversed(windows)]
    values = [v for _, _, v in points if v is not None]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / max(len(points) - 1, 1)
    lines = []
    for k, version in enumerate(sorted({p[0] for p in points})):
        xy = [(i * step, height - 10 - (v - low) / span * (height - 20))
              for i, (ver, _, v) in enumerate(points) if ver == version and v is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        lines.append(f"<polyline points='{path}' fill='none' stroke='{(CUR, REF, '#555')[k % 3]}' "
                     f"stroke-width='2'><title>v{version}</title></polyline>")
    return (f"<figure><h3>{escape(name)}</h3><svg width='{width}' height='{height}'>{''.join(lines)}"
            f"</svg><figcaption class='muted'>{low:.3g} – {high:.3g}</figcaption></figure>")


def _triggers(report: MonitoringReport) -> str:
    if not report.triggers:
        return "<h2>Retrain triggers</h2><p>None.</p>"
    rows = "".join(f"<tr><td>{escape(t.workflow_id)}</td><td>{t.status}</td><td>{escape(t.reason)}</td>"
                   f"<td>{escape(t.detail or '')}</td></tr>" for t in report.triggers)
    return ("<h2>Retrain triggers</h2><table><tr><th>workflow id</th><th>status</th><th>reason</th>"
            f"<th>detail</th></tr>{rows}</table>")
