"""Sizing benchmarks (part of `make bench`): what counting costs, and what adaptive sizing saves.

    python benchmarks/sizing.py [--sizes 1000000,10000000,50000000] [--days 365]

1. Counting: prediction files (transform output lines `id,class,confidence`, 1M rows a file)
   at each size; rows per class counted by the DuckDB aggregate inference_stats runs
   (water.targets.local.engines.stats.count_predictions) against loading them with pandas and counting.
   Each in its own process, time and peak RSS measured by the local pod runner. The sizing
   decision itself reuses inference_stats' counts (an XCom pull), so it never counts again.
2. Calibration: the real post-processing entrypoint at several row counts (rows picked with
   --row-start/--row-end), peak RSS and seconds fitted to a line: memory and time per row.
3. Cost simulation: a year of daily output sizes (lognormal, plus swing days) replayed
   through the spec's sizing policy and through static-small and static-large pods:
   CPU-hours and memory-GB-hours (requests x run time) and OOM kills (calibrated peak
   memory above the pod's limit). Target: adaptive has 0 OOMs and costs <= 60% of static-large.

Writes benchmarks/results/sizing.json. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from water.targets.local.engines.process import run_limited  # noqa: E402
from water.sizing import CapacityError, decide  # noqa: E402
from water.spec import load_pipeline, parse_quantity  # noqa: E402

console = Console()
ROWS_PER_FILE = 1_000_000
CLASSES = np.array(["cook", "browse", "dormant"])
BIG = {"memory_bytes": 20 * 2**30, "cpu": 2}


def write_predictions(folder: Path, rows: int, seed: int = 3) -> None:
    """Transform-style output files; reuses files already there."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(math.ceil(rows / ROWS_PER_FILE)):
        path = folder / f"part-{index:05d}.csv.out"
        n = min(ROWS_PER_FILE, rows - index * ROWS_PER_FILE)
        if path.exists():
            continue
        table = pa.table({
            "id": np.arange(index * ROWS_PER_FILE, index * ROWS_PER_FILE + n, dtype=np.int64),
            "class": CLASSES[rng.choice(3, n, p=[0.4, 0.35, 0.25])],
            "confidence": rng.random(n).round(6),
        })
        options = pacsv.WriteOptions(include_header=False, quoting_style="none")
        pacsv.write_csv(table, path, write_options=options)


def measured(code: str) -> tuple[float, float, str]:
    """(seconds, peak RSS MiB, last output line) of `python -c code` in its own process."""
    result = run_limited([sys.executable, "-c", code], name="bench", log=lambda _: None, **BIG)
    return result.seconds, result.peak_rss_bytes / 2**20, result.output[-1] if result.output else ""


def counting(sizes: list[int], scratch: Path) -> list[dict]:
    rows_out = []
    for rows in sizes:
        folder = scratch / f"predictions-{rows}"
        console.print(f"writing {rows:,} predictions …")
        write_predictions(folder, rows)
        duck = (
            f"import sys; sys.path.insert(0, {str(ROOT / 'plugins')!r}); from pathlib import Path; "
            f"from water.targets.local.engines.stats import count_predictions; print(count_predictions(Path({str(folder)!r})))"
        )
        pandas = (
            "import glob, pandas as pd; "
            f"files = sorted(glob.glob({str(folder / '*.out')!r})); "
            "df = pd.concat((pd.read_csv(f, header=None, names=['id', 'class', 'confidence']) for f in files), ignore_index=True); "
            "print(df['class'].value_counts().sort_index().to_dict())"
        )
        d_s, d_mb, d_out = measured(duck)
        p_s, p_mb, p_out = measured(pandas)
        same = eval(d_out) == eval(p_out)  # noqa: S307 - our own dict literal
        rows_out.append({"rows": rows, "count_seconds": round(d_s, 2), "count_peak_mb": round(d_mb), "pandas_seconds": round(p_s, 2),
                         "pandas_peak_mb": round(p_mb), "speedup": round(p_s / d_s, 1), "same_counts": same})
        console.print(rows_out[-1])
    return rows_out


def calibrate(scratch: Path, points: list[int]) -> dict:
    """Peak RSS and seconds of the real post-processing entrypoint against rows."""
    folder = scratch / f"predictions-{max(points)}"
    write_predictions(folder, max(points))
    postprocess = load_pipeline("recipe_engagement").step_of("sized_postprocess")[1]
    campaigns = str(postprocess.args["campaigns"])
    samples = []
    for rows in points:
        out = scratch / f"post-{rows}"
        argv = [sys.executable, str(ROOT / "include" / postprocess.entrypoint), "--input", f"file://{folder}",
                "--output", f"file://{out}", "--campaigns", campaigns, "--row-start", "0", "--row-end", str(rows)]
        result = run_limited(argv, name="postprocess", log=lambda _: None, **BIG)
        samples.append({"rows": rows, "peak_mb": round(result.peak_rss_bytes / 2**20, 1), "seconds": round(result.seconds, 2)})
        console.print(samples[-1])
    x = np.array([s["rows"] for s in samples], dtype=float)
    mem = np.polyfit(x, [s["peak_mb"] for s in samples], 1)
    sec = np.polyfit(x, [s["seconds"] for s in samples], 1)
    return {"samples": samples, "mb_per_row": mem[0], "base_mb": mem[1], "seconds_per_row": sec[0], "base_seconds": sec[1]}


def simulate(days: int, calibration: dict, seed: int = 11) -> dict:
    policy = load_pipeline("recipe_engagement").step_of("sized_postprocess")[1].sizing
    rng = np.random.default_rng(seed)
    sizes = rng.lognormal(np.log(900_000), 0.8, days)
    swing = rng.choice(days, 12, replace=False)  # swing days: a class-mix swing re-targets many more users
    sizes[swing] *= rng.uniform(3, 6, len(swing))
    sizes = sizes.astype(int)

    def need_mb(rows):
        return calibration["base_mb"] + calibration["mb_per_row"] * rows

    def hours(rows):
        return max(calibration["base_seconds"] + calibration["seconds_per_row"] * rows, 1.0) / 3600

    def cost(resources, rows):
        h = hours(rows)
        cpu = float(parse_quantity(resources["requests"]["cpu"]))
        mem_gb = float(parse_quantity(resources["requests"]["memory"])) / 2**30
        oom = need_mb(rows) > float(parse_quantity(resources["limits"]["memory"])) / 2**20
        return cpu * h, mem_gb * h, oom

    strategies = {"adaptive": [], "static-small": [], "static-large": []}
    over_capacity = 0
    small, large = policy.tiers[0].resources.as_k8s_dict(), policy.tiers[-1].resources.as_k8s_dict()
    for rows in sizes:
        try:
            decision = decide(policy, int(rows))
            for shard in decision.shards:
                strategies["adaptive"].append(cost(decision.resources, shard["row_end"] - shard["row_start"]))
        except CapacityError:
            over_capacity += 1
        strategies["static-small"].append(cost(small, rows))
        strategies["static-large"].append(cost(large, rows))
    summary = {
        name: {"cpu_hours": round(sum(c[0] for c in runs), 2), "memory_gb_hours": round(sum(c[1] for c in runs), 2),
               "ooms": sum(c[2] for c in runs)}
        for name, runs in strategies.items()
    }
    base = summary["static-large"]
    for figures in summary.values():
        figures["cpu_vs_static_large"] = round(figures["cpu_hours"] / base["cpu_hours"], 3)
        figures["memory_vs_static_large"] = round(figures["memory_gb_hours"] / base["memory_gb_hours"], 3)
    return {"days": days, "median_rows": int(np.median(sizes)), "max_rows": int(sizes.max()),
            "swing_days": len(swing), "over_capacity_days": over_capacity, "strategies": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000,50000000")
    parser.add_argument("--calibration", default="100000,500000,1000000,2000000,4000000")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--scratch", type=Path, default=ROOT / ".water" / "bench-sizing")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    counts = counting([int(s) for s in args.sizes.split(",")], args.scratch)  # files stay for the next run
    calibration = calibrate(args.scratch, [int(s) for s in args.calibration.split(",")])
    simulation = simulate(args.days, calibration)

    table = Table(title="counting predictions: DuckDB aggregate vs pandas load", title_justify="left")
    for column in ("rows", "count s", "count MiB", "pandas s", "pandas MiB", "speed-up", "same counts"):
        table.add_column(column, justify="right")
    for c in counts:
        table.add_row(f"{c['rows']:,}", f"{c['count_seconds']:.2f}", f"{c['count_peak_mb']}", f"{c['pandas_seconds']:.1f}",
                      f"{c['pandas_peak_mb']}", f"{c['speedup']}x", str(c["same_counts"]))
    console.print(table)
    console.print(f"post-processing calibration: {calibration['mb_per_row'] * 1e6:.0f} MiB per million rows over "
                  f"{calibration['base_mb']:.0f} MiB; {calibration['seconds_per_row'] * 1e6:.1f} s per million rows")
    table = Table(title=f"a year of post-processing ({simulation['days']} days, median {simulation['median_rows']:,} rows, "
                        f"max {simulation['max_rows']:,})", title_justify="left")
    for column in ("strategy", "CPU-hours", "memory GB-hours", "OOM kills", "CPU vs static-large", "memory vs static-large"):
        table.add_column(column, justify="right")
    for name, s in simulation["strategies"].items():
        table.add_row(name, f"{s['cpu_hours']}", f"{s['memory_gb_hours']}", str(s["ooms"]),
                      f"{s['cpu_vs_static_large']:.0%}", f"{s['memory_vs_static_large']:.0%}")
    console.print(table)
    out = ROOT / "benchmarks" / "results" / "sizing.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"counting": counts, "calibration": calibration, "simulation": simulation}, indent=2, default=float))
    console.print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
