"""`make bench`: the demo pipeline at scale, end to end on the local target.

    python benchmarks/run.py [--users 1000000] [--date 2026-11-01]

Seeds the day (timed apart), then times one whole `water run` as a user starts it and reads
each stage's own work time from the run summary. Reports:
- wall time per stage and the stage's own work (inside the operator),
- peak resident memory of every pod/job stage against its limit,
- orchestration overhead ratio = wall time of the whole `water run` / sum of the stages' work
  (the baseline is measured in the same run). Target: <= 1.15.
Writes benchmarks/results/bench-<users>.json. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--date", default="2026-11-01")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".water" / "bench")
    args = parser.parse_args()
    os.environ["WATER_STATE_DIR"] = str(args.state_dir)

    from water.cli import local_airflow
    from water.cli.seeding import seed_pipeline
    from water.spec import load_pipeline

    local_airflow.write_config()
    local_airflow.migrate(log=console.print)
    started = time.monotonic()
    seed_pipeline(
        load_pipeline("recipe_engagement"),
        [date.fromisoformat(args.date)],
        users=args.users,
        progress=lambda text: console.print(text, markup=False),
    )
    seed_seconds = time.monotonic() - started

    water = str(Path(sys.executable).parent / "water")
    console.print(f"water run at {args.users:,} users …")
    started = time.monotonic()
    proc = subprocess.run(
        [water, "run", "recipe_engagement", "--date", args.date, "--users", str(args.users), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ,
        check=False,  # a failed run is reported below with its stderr
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        console.print(proc.stderr[-4000:], markup=False)
        raise SystemExit("the benchmark run failed")
    summary = json.loads(proc.stdout)

    table = Table(title=f"recipe_engagement at {args.users:,} users", title_justify="left")
    for column in ("stage", "task s", "work s", "rows out", "peak RSS MiB", "limit MiB", "RSS/limit"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    stages, work_total = [], 0.0
    for task in summary["tasks"]:
        f = task["figures"]
        work = f.get("work_seconds", 0.0)
        work_total += work
        peak, limit = f.get("peak_rss_mb"), f.get("memory_limit_mb")
        stages.append(
            {
                "stage": task["task_id"],
                "task_seconds": task["seconds"],
                "work_seconds": work,
                "rows_out": f.get("rows_out"),
                "peak_rss_mb": peak,
                "memory_limit_mb": limit,
            }
        )
        table.add_row(
            task["task_id"],
            f"{task['seconds']:.1f}",
            f"{work:.1f}",
            f"{f['rows_out']:,}" if isinstance(f.get("rows_out"), int) else "",
            f"{peak:.0f}" if peak else "",
            f"{limit:.0f}" if limit else "",
            f"{peak / limit:.2f}" if peak and limit else "",
        )
    console.print(table)
    ratio = wall / work_total
    pods_within = all(s["peak_rss_mb"] < s["memory_limit_mb"] for s in stages if s["memory_limit_mb"])
    console.print(f"seeding (not in the run): {seed_seconds:.1f}s")
    console.print(
        f"whole `water run`: {wall:.1f}s; stage work: {work_total:.1f}s; "
        f"overhead ratio {ratio:.3f} (target ≤ 1.15: {'met' if ratio <= 1.15 else 'NOT met'})"
    )
    console.print(f"every pod below its memory limit: {pods_within}")
    console.print(f"validation accuracy {summary['validation_accuracy']}, predicted {summary['predicted_class_counts']}")
    out = ROOT / "benchmarks" / "results" / f"bench-{args.users}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "users": args.users,
                "ds": args.date,
                "seed_seconds": round(seed_seconds, 1),
                "wall_seconds": round(wall, 1),
                "work_seconds": round(work_total, 1),
                "overhead_ratio": round(ratio, 3),
                "pods_within_limits": pods_within,
                "validation_accuracy": summary["validation_accuracy"],
                "stages": stages,
            },
            indent=2,
        )
    )
    console.print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
