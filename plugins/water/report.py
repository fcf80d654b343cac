"""The run report: one self-contained HTML page per run (no scripts, no external assets).

Shows the run's outcome, rows per stage, the sizing decision, the drift verdict and the
model's accuracy, and a chart of the predicted class mix (with drift PSI) over the last
days. The same figures are embedded as JSON (`<script type="application/json"
id="water-run">`) so tools and tests read exactly what the page shows.
"""

from __future__ import annotations

import html
import json
from typing import Any

from water.drift import not_assessed
from water.spec import Roles

PALETTE = ("#2f6db5", "#e0892b", "#5aa469", "#b5452f", "#7d5ab5", "#8c8c8c")
FAILED_STATES = ("failed", "upstream_failed")


def outcome(tasks: list[dict[str, Any]], roles: Roles | None = None) -> str:
    """failed when a task failed or could not run, and when the day neither got published nor
    ended on purpose before the publish step (the quarantine, no_predictions): a run someone
    marked failed or stopped skips the rest, and Airflow calls a run of skipped tasks a success."""
    if any(t["state"] in FAILED_STATES for t in tasks):
        return "failed"
    roles = roles or Roles()
    publish = roles.get("publish")
    if not publish:
        return "success"
    ended = roles.get("nothing_published")
    endings = ended["endings"] if ended else []
    return "success" if any(step_done(tasks, name) for name in (publish, *endings)) else "failed"


def step_tasks(tasks: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The tasks of step `name` in a run record: one task, its mapped instances or its task group's."""
    return [t for t in tasks if t["task_id"].split("[")[0] == name or t["task_id"].startswith(f"{name}.")]


def step_done(tasks: list[dict[str, Any]], name: str) -> bool:
    """Whether the step ran and all its tasks succeeded."""
    mine = step_tasks(tasks, name)
    return bool(mine) and all(t["state"] == "success" for t in mine)


def route_figures(decision: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """route -> its classes, rows, tier and shard count, from a sizing decision."""
    return {
        name: {"classes": d.get("classes"), "rows": d["rows"], "tier": d["tier"], "shards": len(d["shards"])}
        for name, d in ((decision or {}).get("routes") or {}).items()
    }


def route_lines(routes: dict[str, dict[str, Any]], previous: dict[str, dict[str, Any]]) -> list[str]:
    """'weekly_menu (cook): 15,932 rows → large × 2 (before: 6,800 rows, medium)' per route."""

    def tier(d: dict[str, Any]) -> str:
        return (
            "skipped, no rows" if d["tier"] == "no_predictions" else d["tier"] + (f" × {d['shards']}" if d["shards"] > 1 else "")
        )

    lines = []
    for name, d in routes.items():
        before = previous.get(name)
        was = f" (before: {before['rows']:,} rows, {tier(before)})" if before else ""
        lines.append(f"{name} ({', '.join(d.get('classes') or [])}): {d['rows']:,} rows → {tier(d)}{was}")
    return lines


def earlier_outputs(tasks: list[dict[str, Any]], roles: Roles) -> dict[str, Any] | None:
    """When the run ended the day before publishing (quarantine, no_predictions): what became
    of the day's earlier outputs, by the publish step's `when_nothing_published`:
    {"outcome": "retracted" | "kept" | "not retracted", "table", "dataset", "rows_retracted"}.
    None when the run published, or failed before it could tell."""
    setting = roles.get("nothing_published")
    if not setting:
        return None
    if not any(step_done(tasks, task_id) for task_id in setting["endings"]):
        return None
    found = {"table": setting["table"], "dataset": setting["dataset"], "rows_retracted": None}
    retract = setting.get("retract")
    if not retract:
        return {**found, "outcome": "kept"}
    if not step_done(tasks, retract):
        return {**found, "outcome": "not retracted"}  # the retraction failed: its task names why
    rows = [(t.get("figures") or {}).get("rows_retracted") for t in step_tasks(tasks, retract)]
    return {**found, "outcome": "retracted", "rows_retracted": next((n for n in rows if n is not None), None)}


def earlier_outputs_text(earlier: dict[str, Any]) -> str:
    """One line on the day's earlier outputs, for the summary, the report and Slack."""
    where = f"{earlier['table']} rows of the day and {earlier['dataset']}/ds=…"
    if earlier["outcome"] == "kept":
        return f"kept: {where} stay as an earlier run left them (when_nothing_published: keep)"
    if earlier["outcome"] == "retracted":
        rows = f" ({earlier['rows_retracted']:,} rows)" if earlier.get("rows_retracted") is not None else ""
        return f"retracted: {where} removed{rows}"
    return f"NOT retracted: the retraction failed, {where} are still there"


def headline(record: dict[str, Any]) -> dict[str, Any]:
    """rows, tier, drift verdict, accuracy, rows published: what messages and summaries show."""
    by_id = {t["task_id"]: t.get("figures") or {} for t in record["tasks"]}
    roles: Roles = record.get("roles") or Roles()

    def figures(role: str) -> dict[str, Any]:
        return by_id.get(roles.get(role) or "", {})

    stats = figures("stats")
    decision = record.get("decision") or {}
    drift = record.get("drift") or {}
    return {
        "rows": stats.get("rows"),
        "class_counts": stats.get("class_counts"),
        "tier": decision.get("tier"),  # a summary of every route's tier and shards
        "shards": decision.get("shards") if decision else None,
        "routes": route_figures(decision),
        "drift_verdict": drift.get("verdict"),
        "psi": drift.get("psi"),
        "js": drift.get("js"),
        "validation_accuracy": (figures("training").get("metrics") or {}).get(roles.get("objective_metric") or ""),
        "rows_published": figures("publish").get("rows_out"),
        "quarantined": figures("quarantine").get("quarantine"),
        "earlier_outputs": earlier_outputs(record["tasks"], roles),
    }


def dataset_uri(namespace: str, name: str) -> str:
    """An OpenLineage dataset identity (namespace, name) as one address: s3://bucket/key,
    file:///path, bigquery:project.dataset.table."""
    if namespace.startswith("file"):
        return "file:///" + name.lstrip("/")
    if "://" in namespace:
        return namespace.rstrip("/") + "/" + name.lstrip("/")
    return f"{namespace}:{name}"


def dataset_label(namespace: str, name: str, lake_root: str) -> str:
    """A dataset as people read it: its address, the lake root written `lake:`."""
    uri = dataset_uri(namespace, name)
    root = dataset_uri("file", lake_root.removeprefix("file://")) if lake_root.startswith("file:") else lake_root
    root = root.rstrip("/") + "/"
    return "lake:" + uri[len(root) :] if uri.startswith(root) else uri


def lineage_table(steps: list[dict[str, Any]]) -> str:
    """Step → the datasets it read → the datasets it wrote (record["lineage"], labels already shortened)."""
    if not steps:
        return ""

    def cell(datasets: list[dict[str, Any]]) -> str:
        return "<br>".join(_e(d["label"]) for d in datasets) or "-"

    rows = "".join(f"<tr><td>{_e(s['step'])}</td><td>{cell(s['inputs'])}</td><td>{cell(s['outputs'])}</td></tr>" for s in steps)
    return (
        "<h2>Lineage: what each step read and wrote</h2><table id='lineage'>"
        f"<tr><th>step</th><th>inputs</th><th>outputs</th></tr>{rows}</table>"
    )


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return _e(value if value is not None else "")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return _e(value)


def _seconds(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else ""


def _drift_text(drift: dict[str, Any]) -> str:
    if not drift:
        return "-"
    if drift.get("psi") is None:
        return not_assessed(drift.get("verdict"))
    return f"{drift['verdict']}: PSI {drift['psi']:.3f}, JS distance {drift['js']:.3f} against {drift.get('baseline')}"


def mix_chart(history: list[dict[str, Any]], classes: list[str], width: int = 640, height: int = 220) -> str:
    """Stacked bars of class shares per day, drift PSI written over each bar. Inline SVG."""
    if not history:
        return "<p>No class-mix history yet.</p>"
    pad_left, pad_bottom, pad_top = 40, 36, 18
    plot_w, plot_h = width - pad_left - 10, height - pad_bottom - pad_top
    step = plot_w / len(history)
    bar = min(48.0, max(4.0, step * 0.7))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 24}" role="img" aria-label="class mix by day">'
    ]
    for tick in (0, 0.5, 1):
        y = pad_top + plot_h * (1 - tick)
        parts.append(f'<line x1="{pad_left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{pad_left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{tick:.0%}</text>')
    for i, day in enumerate(history):
        x = pad_left + i * step + (step - bar) / 2
        y = pad_top + plot_h
        shares = day.get("shares") or {}
        for j, cls in enumerate(classes):
            h = plot_h * float(shares.get(cls, 0.0))
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{_e(day['ds'])} {_e(cls)} {float(shares.get(cls, 0.0)):.1%}</title></rect>"
            )
        label_y = pad_top + plot_h + 14
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{label_y}" font-size="9" text-anchor="middle">{_e(day["ds"][5:])}</text>')
        if day.get("psi") is not None:
            colour = {"block": "#b5452f", "warn": "#e0892b"}.get(day.get("verdict") or "", "#333")
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{pad_top - 5}" font-size="9" text-anchor="middle" fill="{colour}">{day["psi"]:.2f}</text>'
            )
    legend_x = pad_left
    for j, cls in enumerate(classes):
        parts.append(f'<rect x="{legend_x}" y="{height + 8}" width="10" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="{height + 17}" font-size="11">{_e(cls)}</text>')
        legend_x += 24 + 8 * len(cls)
    parts.append(f'<text x="{legend_x + 10}" y="{height + 17}" font-size="11" fill="#555">numbers above bars: drift PSI</text>')
    parts.append("</svg>")
    return "".join(parts)


def routes_table(routes: dict[str, dict[str, Any]], previous: dict[str, dict[str, Any]]) -> str:
    """Each route's rows, tier and shards today, next to the previous run's."""
    if not routes:
        return ""

    def tier(d: dict[str, Any] | None) -> str:
        if not d:
            return "-"
        return "no rows" if d["tier"] == "no_predictions" else d["tier"] + (f" × {d['shards']}" if d["shards"] > 1 else "")

    rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{_e(', '.join(d.get('classes') or []))}</td>"
        f"<td class='n'>{_num((previous.get(name) or {}).get('rows'))}</td><td class='n'>{_num(d['rows'])}</td>"
        f"<td>{_e(tier(previous.get(name)))}</td><td>{_e(tier(d))}</td></tr>"
        for name, d in routes.items()
    )
    return (
        "<h2>Post-processing per route: sized from its own classes' rows</h2><table id='routes'>"
        "<tr><th>route</th><th>classes</th><th class='n'>rows before</th><th class='n'>rows</th>"
        f"<th>tier before</th><th>tier</th></tr>{rows}</table>"
    )


def render(record: dict[str, Any], history: list[dict[str, Any]], classes: list[str]) -> str:
    head = headline(record)
    rows = []
    for t in record["tasks"]:
        f = t.get("figures") or {}
        rows.append(
            f"<tr class='{_e(t['state'])}'><td>{_e(t['task_id'])}</td><td>{_e(t['state'])}</td>"
            f"<td class='n'>{_seconds(t.get('seconds'))}</td><td class='n'>{_num(f.get('rows_in'))}</td>"
            f"<td class='n'>{_num(f.get('rows_out'))}</td></tr>"
        )
    decision = record.get("decision") or {}
    drift = record.get("drift") or {}
    drift_rows = (
        "".join(
            f"<tr><td>{_e(c)}</td><td class='n'>{(drift.get('baseline_shares') or {}).get(c, 0):.1%}</td>"
            f"<td class='n'>{(drift.get('shares') or {}).get(c, 0):.1%}</td></tr>"
            for c in classes
        )
        if drift.get("baseline_shares")
        else ""
    )
    counts = head.get("class_counts") or {}
    facts = [
        ("outcome", record["state"]),
        ("rows predicted", _num(head["rows"])),
        ("class counts", ", ".join(f"{k} {v:,}" for k, v in counts.items())),
        ("sizing", decision.get("tier") or "-"),
        ("drift", _drift_text(drift)),
        ("validation accuracy", _num(head["validation_accuracy"])),
        ("rows published", _num(head["rows_published"])),
        *([("earlier outputs of the day", earlier_outputs_text(head["earlier_outputs"]))] if head["earlier_outputs"] else []),
        ("duration", f"{record['duration_seconds']:.1f} s" if record.get("duration_seconds") is not None else "-"),
    ]
    data = json.dumps({**record, "headline": head, "history": history}, sort_keys=True, default=str).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{_e(record["dag_id"])} ds={_e(record["ds"])} — {_e(record["state"])}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:980px}}
h1{{font-size:20px}} h2{{font-size:16px;margin-top:28px}}
table{{border-collapse:collapse}} td,th{{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}}
td.n,th.n{{text-align:right;font-variant-numeric:tabular-nums}}
tr.failed td,tr.upstream_failed td{{color:#b5452f;font-weight:600}} tr.skipped td{{color:#999}}
.badge{{padding:2px 8px;border-radius:10px;color:#fff;background:{"#5aa469" if record["state"] == "success" else "#b5452f"}}}
</style></head><body>
<h1>{_e(record["dag_id"])} · ds={_e(record["ds"])} <span class="badge">{_e(record["state"])}</span></h1>
<p>run <code>{_e(record["run_id"])}</code> · target {_e(record.get("target"))}</p>
<table id="facts">{"".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)}</table>
{routes_table(head["routes"], record.get("previous_routes") or {})}
<h2>Predicted class mix, last {len(history)} day(s)</h2>
{mix_chart(history, classes)}
{f"<h2>Drift: class shares side by side</h2><table id='drift'><tr><th>class</th><th class='n'>baseline</th><th class='n'>today</th></tr>{drift_rows}</table>" if drift_rows else ""}
<h2>Rows per stage</h2>
<table id="stages"><tr><th>task</th><th>state</th><th class="n">seconds</th><th class="n">rows in</th><th class="n">rows out</th></tr>
{"".join(rows)}
</table>
{lineage_table(record.get("lineage") or [])}
<script type="application/json" id="water-run">{data}</script>
</body></html>
"""
