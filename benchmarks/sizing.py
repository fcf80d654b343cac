"""Sizing benchmarks (part of `make bench`): what counting costs, what each route costs per row,
and what per-route adaptive sizing saves.

    python benchmarks/sizing.py [--sizes 1000000,10000000,50000000] [--days 365] [--repeats 2]
                                [--seed-days-users 1000000] [--skip-counting] [--skip-seed-days]

1. Counting: prediction files (transform output lines `id,class,confidence`, 1M rows a file)
   at each size; rows per class counted by the DuckDB aggregate inference_stats runs
   (water.targets.local.engines.stats.count_predictions) against loading them with pandas and
   counting. Each in its own process, time and peak RSS measured by the local pod runner. The
   sizing decision itself reuses inference_stats' counts (an XCom pull), so it never counts again.

2. Calibration, per route of the demo's sized step (include/pipelines/recipe_engagement.yaml):
   the route's real entrypoint, with its spec args and reads, at several row counts of its own
   classes (the tiers' max_rows among them), each run by the local pod runner (run_limited,
   a cgroup where it can) with a generous limit and 1 CPU: peak RSS and seconds, fitted to a
   line per route (memory and time per row over a fixed base). The day it runs on is made by
   the demo's seed (include/seeds/recipe_engagement.py) at a cook-heavy mix (80/15/5), so the
   cooks' own events are real: its events are the `raw` partition (written as extract.sql's
   columns the routes read), and the predictions give each route's rows interleaved with as
   many rows of other classes (the route filters them out while reading, as on a real day).
   Each tier's limit is then checked against the peak measured at its max_rows: 2-4x.

3. A year replay (--days, lognormal users per day around 1M, normal days' class mix drawn
   around 40/35/25, plus swing days: ten 33/33/33 days each followed by an 80/15/5 day, and five
   dormant-heavy 15/25/60 days). Rows per class = users x share. Every strategy is costed with
   the calibration: a pod over R rows of a route needs base_mb + mb_per_row x R of memory and
   runs base_s + s_per_row x R seconds; it costs its *requests* x that time (CPU-hours,
   memory-GB-hours), and it is OOM-killed when that need is above its memory limit. A kill is
   retried once with water.sizing.escalate's resources (the machinery's rule); the killed try
   costs its requests for the share of the run it got through (limit / need), and a second
   kill fails the shard. Strategies:
   - per-route adaptive: water.sizing.decide_routes with the spec's routes (each route's tier
     from its own rows; sharded past its largest tier);
   - per-route static-large: every route always on its largest tier (sharded past it);
   - total-rows: the policy before routes, one job for all rows sized by the total (tiers by
     total rows, sharded past the largest), the job doing every class's route work, so a pod's
     need is max(base_mb) + sum over classes of rows x that class's route mb_per_row (and its
     time likewise, one process after the other). Its ladder: today's single form's max_rows
     (1M / 4M / 8M rows, shards of 8M), each limit 3x and request 1.25x the need at max_rows
     (the routes' rule) *at the mix it is calibrated on* (the seed's default 40/35/25: the
     total-rows policy is mix-blind), requests.cpu one CPU per 4Gi requested (the routes' rule);
   - total-rows (today's tiers): the same job on the tiers the spec had before routes
     (768Mi / 1.5Gi / 3Gi limits for 1M / 4M / 8M rows), which were calibrated on the old
     uniform job.
   Target: per-route adaptive with 0 OOM kills, <= 50% of static-large, cheaper than total-rows
   on swing days.

4. The seed's two days at --seed-days-users (default 1,000,000): a whole `water run` of
   2026-11-01 at 34/33/33 and then of 2026-11-02 at 80/15/5 (accept_drift), in a scratch
   WATER_STATE_DIR; per route from the run summary: rows, tier, shards, peak RSS against the
   limit, wall time.

Writes benchmarks/results/sizing.json. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from water.sizing import NO_PREDICTIONS, CapacityError, decide, decide_routes, escalate  # noqa: E402
from water.spec import SizingPolicy, load_pipeline, parse_quantity  # noqa: E402
from water.targets.local.engines.process import run_limited  # noqa: E402

console = Console(width=170)
ROWS_PER_FILE = 1_000_000
CLASSES = np.array(["cook", "browse", "dormant"])
BIG = {"memory_bytes": 20 * 2**30, "cpu": 2}
CALIBRATION_LIMITS = {"memory_bytes": 16 * 2**30, "cpu": 1}  # generous: measure, never kill
CALIBRATION_MIX = (0.80, 0.15, 0.05)  # the calibration day: cook-heavy, so the cooks' events are real
DEFAULT_MIX = (0.40, 0.35, 0.25)  # the seed's default day: what a mix-blind policy is calibrated on
PIPELINE = "recipe_engagement"
GiB = 2**30

# The spec's single sizing before routes (the total-rows policy as it shipped).
TODAY_TIERS = SizingPolicy.model_validate(
    {
        "tiers": [
            {
                "name": "small",
                "max_rows": 1_000_000,
                "resources": {"requests": {"cpu": "250m", "memory": "384Mi"}, "limits": {"cpu": "1", "memory": "768Mi"}},
            },
            {
                "name": "medium",
                "max_rows": 4_000_000,
                "resources": {"requests": {"cpu": "500m", "memory": "768Mi"}, "limits": {"cpu": "1", "memory": "1536Mi"}},
            },
            {
                "name": "large",
                "max_rows": 8_000_000,
                "resources": {"requests": {"cpu": "1", "memory": "1536Mi"}, "limits": {"cpu": "2", "memory": "3Gi"}},
            },
        ],
        "scale_out": {"rows_per_shard": 8_000_000, "max_shards": 16},
    }
)


def demo_routes():
    spec = load_pipeline(PIPELINE)
    name, step = spec.step_of("sized_postprocess")
    return step.all_routes(spec.classes, name)


# --- 1. counting ---------------------------------------------------------------------------


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
        table = pa.table(
            {
                "id": np.arange(index * ROWS_PER_FILE, index * ROWS_PER_FILE + n, dtype=np.int64),
                "class": CLASSES[rng.choice(3, n, p=[0.4, 0.35, 0.25])],
                "confidence": rng.random(n).round(6),
            }
        )
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
        same = eval(d_out) == eval(p_out)
        rows_out.append(
            {
                "rows": rows,
                "count_seconds": round(d_s, 2),
                "count_peak_mb": round(d_mb),
                "pandas_seconds": round(p_s, 2),
                "pandas_peak_mb": round(p_mb),
                "speedup": round(p_s / d_s, 1),
                "same_counts": same,
            }
        )
        console.print(rows_out[-1])
    return rows_out


# --- 2. calibration per route --------------------------------------------------------------


def seed_module():
    path = ROOT / "include" / "seeds" / f"{PIPELINE}.py"
    spec = importlib.util.spec_from_file_location("demo_seed", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_seed"] = module
    spec.loader.exec_module(module)
    return module


def calibration_day(folder: Path, routes: dict, points: dict[str, list[int]], seed: int = 5) -> dict[str, Path]:
    """The day the routes are calibrated on (reused when there): `raw` events of enough users
    that the largest cook point has real cooks, and per route a predictions folder with its
    rows interleaved 1:1 with rows of other classes. Returns {'raw': …, route: predictions}."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    done = folder / "_done.json"
    wanted = {"points": points, "mix": CALIBRATION_MIX, "seed": seed}
    out = {"raw": folder / "raw", **{name: folder / f"predictions-{name}" for name in routes}}
    if done.exists() and json.loads(done.read_text()) == json.loads(json.dumps(wanted)):
        return out
    demo = seed_module()
    cook_rows = max([max(points[n]) for n, r in routes.items() if "cook" in r.classes] or [100_000])
    users_n = math.ceil(cook_rows / CALIBRATION_MIX[0] * 1.02)
    console.print(f"calibration day: {users_n:,} users at {'/'.join(f'{m:.0%}' for m in CALIBRATION_MIX)} …")
    users = demo._users(seed, users_n)
    events, _ = demo._day_tables(seed, users, date(2026, 11, 1), CALIBRATION_MIX)
    segment = CLASSES[demo.segments_for(users["position"], CALIBRATION_MIX)]
    raw = events.select(["user_id", "session_id", "event_type", "recipe_id", "duration_s", "event_ts"])
    raw = raw.set_column(2, "event_type", raw.column("event_type").cast(pa.string()))
    out["raw"].mkdir(parents=True, exist_ok=True)
    pq.write_table(raw, out["raw"] / "part-00000.parquet", row_group_size=122_880)  # DuckDB's row groups
    rng = np.random.default_rng(seed)
    for name, route in routes.items():
        rows = max(points[name])
        own = route.classes[0]
        other = next(c for c in CLASSES if c not in route.classes)
        real = users["user_id"][segment == own]
        ids = rng.permutation(real)[:rows] if len(real) >= rows else np.arange(1, rows + 1, dtype=np.int64)
        mine = rng.permutation(np.arange(2 * rows) < rows)  # the route's rows among as many others, in file order
        order = np.empty(2 * rows, np.int64)
        classes = np.where(mine, own, other)
        order[mine] = ids
        order[~mine] = np.arange(10**9, 10**9 + rows)
        target = out[name]
        target.mkdir(parents=True, exist_ok=True)
        for old in target.glob("*"):
            old.unlink()
        for index in range(math.ceil(len(order) / ROWS_PER_FILE)):
            part = slice(index * ROWS_PER_FILE, (index + 1) * ROWS_PER_FILE)
            table = pa.table({"id": order[part], "class": classes[part], "confidence": rng.random(len(order[part])).round(6)})
            pacsv.write_csv(
                table,
                target / f"part-{index:05d}.csv.out",
                write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"),
            )
    done.write_text(json.dumps(wanted))
    return out


def route_argv(route, predictions: Path, raw: Path, output: Path, rows: int | None) -> list[str]:
    """The route pod's command line, as LocalPodOperator builds it."""
    argv = [sys.executable, str(ROOT / "include" / route.entrypoint)]
    for name, value in route.args.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    argv += ["--classes", ",".join(route.classes)]
    if rows is not None:
        argv += ["--row-start", "0", "--row-end", str(rows)]
    for flag in route.reads:  # the demo's routes read only the day's raw events
        argv += [f"--{flag}", f"file://{raw}"]
    return [*argv, "--input", f"file://{predictions}", "--output", f"file://{output}"]


def calibration_points(route) -> list[int]:
    """A quarter of the smallest tier, and every tier's max_rows."""
    return sorted({max(1000, route.sizing.tiers[0].max_rows // 4), *(t.max_rows for t in route.sizing.tiers)})


def calibrate(scratch: Path, repeats: int = 2) -> dict:
    """Per route: peak RSS and seconds of its real entrypoint against its rows (the best of
    `repeats` runs for time, the highest peak for memory), fitted to a line."""
    routes = demo_routes()
    points = {name: calibration_points(route) for name, route in routes.items()}
    day = calibration_day(scratch / "calibration-day", routes, points)
    out = {}
    for name, route in routes.items():
        samples = []
        for rows in points[name]:
            runs = []
            for _ in range(repeats):
                argv = route_argv(route, day[name], day["raw"], scratch / f"route-{name}", rows)
                runs.append(run_limited(argv, name=name, log=lambda _: None, **CALIBRATION_LIMITS))
            samples.append(
                {
                    "rows": rows,
                    "peak_mb": round(max(r.peak_rss_bytes for r in runs) / 2**20, 1),
                    "seconds": round(min(r.seconds for r in runs), 2),
                }
            )
            console.print(f"{name}: {samples[-1]}")
        x = np.array([s["rows"] for s in samples], dtype=float)
        mem = np.polyfit(x, [s["peak_mb"] for s in samples], 1)
        sec = np.polyfit(x, [s["seconds"] for s in samples], 1)
        peak_at = {s["rows"]: s["peak_mb"] for s in samples}
        tiers = []
        for tier in route.sizing.tiers:
            limit_mb = tier.resources.memory_limit_bytes / 2**20
            peak = peak_at.get(tier.max_rows, mem[1] + mem[0] * tier.max_rows)
            tiers.append(
                {
                    "tier": tier.name,
                    "max_rows": tier.max_rows,
                    "peak_mb": round(peak, 1),
                    "limit_mb": limit_mb,
                    "headroom": round(limit_mb / peak, 2),
                }
            )
        out[name] = {
            "classes": list(route.classes),
            "samples": samples,
            "tiers": tiers,
            "mb_per_row": float(mem[0]),
            "base_mb": float(max(mem[1], min(s["peak_mb"] for s in samples) * 0.5)),
            "seconds_per_row": float(sec[0]),
            "base_seconds": float(max(sec[1], 0.5)),
        }
    return out


# --- 3. a year replay ----------------------------------------------------------------------


def year(days: int, seed: int = 11) -> list[dict]:
    """Per day: users, the class mix and whether it is a swing day."""
    rng = np.random.default_rng(seed)
    users = np.clip(rng.lognormal(np.log(1_000_000), 0.35, days), 200_000, 4_000_000).astype(int)
    mixes = [tuple(rng.dirichlet(np.array(DEFAULT_MIX) * 200)) for _ in range(days)]
    kinds = ["normal"] * days
    weeks = rng.permutation(np.arange(days // 7))  # swings in weeks of their own: never on top of each other
    for week in weeks[:10]:  # a balanced day, then the cook surge
        d = int(week) * 7 + int(rng.integers(1, 6))
        mixes[d - 1], kinds[d - 1] = (1 / 3, 1 / 3, 1 / 3), "balanced"
        mixes[d], kinds[d] = (0.80, 0.15, 0.05), "cook surge"
    for week in weeks[10:15]:
        d = int(week) * 7 + int(rng.integers(1, 6))
        mixes[d], kinds[d] = (0.15, 0.25, 0.60), "dormant lull"
    return [
        {
            "day": d,
            "users": int(users[d]),
            "mix": mixes[d],
            "kind": kinds[d],
            "counts": {c: round(users[d] * share) for c, share in zip(CLASSES, mixes[d], strict=True)},
        }
        for d in range(days)
    ]


class Costing:
    """Requests x time per pod, OOM kills, and the one retry after a kill."""

    def __init__(self, calibration: dict):
        self.cal = calibration

    def need_mb(self, per_route_rows: dict[str, float]) -> float:
        """One process doing these routes' rows: the largest base and every row's own cost."""
        bases = [self.cal[r]["base_mb"] for r, n in per_route_rows.items() if n > 0]
        return max(bases or [0]) + sum(self.cal[r]["mb_per_row"] * n for r, n in per_route_rows.items())

    def seconds(self, per_route_rows: dict[str, float]) -> float:
        bases = [self.cal[r]["base_seconds"] for r, n in per_route_rows.items() if n > 0]
        return max(max(bases or [0]) + sum(self.cal[r]["seconds_per_row"] * n for r, n in per_route_rows.items()), 1.0)

    def pod(self, policy: SizingPolicy, resources: dict, per_route_rows: dict[str, float]) -> dict:
        """A pod's cost, the killed try and the retry included."""
        need, hours = self.need_mb(per_route_rows), self.seconds(per_route_rows) / 3600
        total = {"cpu_hours": 0.0, "memory_gb_hours": 0.0, "ooms": 0, "failed": 0}
        for attempt in range(2):
            limit = float(parse_quantity(resources["limits"]["memory"])) / 2**20
            killed = need > limit
            share = limit / need if killed else 1.0  # the part of the run it got through
            total["cpu_hours"] += float(parse_quantity(resources["requests"]["cpu"])) * hours * share
            total["memory_gb_hours"] += float(parse_quantity(resources["requests"]["memory"])) / GiB * hours * share
            if not killed:
                return total
            total["ooms"] += 1
            if attempt == 0:
                _, resources = escalate(policy, resources)
        total["failed"] = 1
        return total


def add(into: dict, cost: dict) -> None:
    for key, value in cost.items():
        into[key] = into.get(key, 0) + value


def tier_resources(policy: SizingPolicy, tier: str) -> dict:
    """What a tier's task runs with: the spec's resources (a decision names only the tier)."""
    return next(t for t in policy.tiers if t.name == tier).resources.as_k8s_dict()


def route_of(routes: dict) -> dict[str, str]:
    return {c: name for name, route in routes.items() for c in route.classes}


def per_route_day(costing: Costing, routes: dict, counts: dict[str, int], force: dict | None) -> dict:
    day: dict = {}
    decision = decide_routes(routes, counts, force_tier=force, spec_file="recipe_engagement.yaml")
    for name, d in decision["routes"].items():
        if d["tier"] == NO_PREDICTIONS:
            continue
        for shard in d["shards"]:
            policy = routes[name].sizing
            add(day, costing.pod(policy, tier_resources(policy, d["tier"]), {name: shard["row_end"] - shard["row_start"]}))
    return day


def total_rows_day(costing: Costing, policy: SizingPolicy, routes: dict, counts: dict[str, int]) -> dict:
    """One job over all rows, sized by the total; a shard holds the day's mix pro rata."""
    day: dict = {}
    total = sum(counts.values())
    decision = decide(policy, total, counts)
    owner = route_of(routes)
    for shard in decision.shards:
        part = (shard["row_end"] - shard["row_start"]) / total
        rows = {}
        for cls, n in counts.items():
            rows[owner[cls]] = rows.get(owner[cls], 0) + n * part
        add(day, costing.pod(policy, tier_resources(policy, decision.tier), rows))
    return day


def cpu_for(memory_mi: float) -> str:
    """The spec's rule for requests.cpu: one CPU per 4Gi of memory requested, at least 100m."""
    return f"{max(100, math.ceil(memory_mi / 4096 * 1000 / 50) * 50)}m"


def mix_blind_ladder(costing: Costing, routes: dict) -> SizingPolicy:
    """The total-rows ladder recalibrated by the routes' rule (limit 3x and request 1.25x the
    need at max_rows), but at one mix: the seed's default."""
    owner = route_of(routes)
    tiers = []
    for tier in TODAY_TIERS.tiers:
        rows = {}
        for cls, share in zip(CLASSES, DEFAULT_MIX, strict=True):
            rows[owner[cls]] = rows.get(owner[cls], 0) + tier.max_rows * share
        need = costing.need_mb(rows)
        limit_mi, request_mi = (math.ceil(factor * need / 64) * 64 for factor in (3, 1.25))
        tiers.append(
            {
                "name": tier.name,
                "max_rows": tier.max_rows,
                "resources": {
                    "requests": {"cpu": cpu_for(request_mi), "memory": f"{request_mi}Mi"},
                    "limits": {"cpu": tier.resources.limits.cpu, "memory": f"{limit_mi}Mi"},
                },
            }
        )
    return SizingPolicy.model_validate({"tiers": tiers, "scale_out": TODAY_TIERS.scale_out.model_dump()})


def simulate(days: int, calibration: dict, seed: int = 11) -> dict:
    routes = demo_routes()
    costing = Costing(calibration)
    largest = {name: route.sizing.tiers[-1].name for name, route in routes.items()}
    blind = mix_blind_ladder(costing, routes)
    strategies = {
        "per-route adaptive": lambda counts: per_route_day(costing, routes, counts, None),
        "per-route static-large": lambda counts: per_route_day(costing, routes, counts, largest),
        "total-rows": lambda counts: total_rows_day(costing, blind, routes, counts),
        "total-rows (today's tiers)": lambda counts: total_rows_day(costing, TODAY_TIERS, routes, counts),
    }
    replay = year(days, seed)
    totals = {name: {"year": {}, "swing": {}, "over_capacity_days": 0} for name in strategies}
    for day in replay:
        for name, run in strategies.items():
            try:
                cost = run(day["counts"])
            except CapacityError:
                totals[name]["over_capacity_days"] += 1
                continue
            add(totals[name]["year"], cost)
            if day["kind"] in ("cook surge", "dormant lull"):
                add(totals[name]["swing"], cost)
    base = totals["per-route static-large"]["year"]
    for figures in totals.values():
        for part in ("year", "swing"):
            figures[part] = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures[part].items()}
        figures["cpu_vs_static_large"] = round(figures["year"]["cpu_hours"] / base["cpu_hours"], 3)
        figures["memory_vs_static_large"] = round(figures["year"]["memory_gb_hours"] / base["memory_gb_hours"], 3)
    users = [d["users"] for d in replay]
    return {
        "days": days,
        "median_users": int(np.median(users)),
        "max_users": int(max(users)),
        "swing_days": sum(d["kind"] in ("cook surge", "dormant lull") for d in replay),
        "kinds": {k: sum(d["kind"] == k for d in replay) for k in ("normal", "balanced", "cook surge", "dormant lull")},
        "total_rows_ladder": [{"tier": t.name, "max_rows": t.max_rows, **t.resources.as_k8s_dict()} for t in blind.tiers],
        "strategies": totals,
    }


# --- 4. the seed's two days at 1M users ----------------------------------------------------

SEED_DAYS = [
    ("2026-11-01", "34/33/33", None),
    ("2026-11-02", "80/15/5", {"accept_drift": True}),
]


def seed_days(users: int, state_dir: Path) -> list[dict]:
    """Two whole `water run`s in a scratch state dir; per route what its pods did."""
    env = {**os.environ, "WATER_STATE_DIR": str(state_dir)}
    water = str(Path(sys.executable).parent / "water")
    out = []
    for ds, mix, conf in SEED_DAYS:
        argv = [water, "run", PIPELINE, "--date", ds, "--users", str(users), "--mix", f"{ds}={mix}", "--json"]
        if conf:
            argv += ["--conf", json.dumps(conf)]
        console.print(f"water run {ds} at {users:,} users, mix {mix} …")
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # judged by its summary
        try:
            summary = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise RuntimeError(f"water run {ds} printed no summary:\n{done.stderr[-3000:]}") from None
        if summary.get("state") != "success":
            raise RuntimeError(f"water run {ds} ended {summary.get('state')}: {summary.get('error')}\n{done.stderr[-3000:]}")
        tasks = {t["task_id"]: t for t in summary["tasks"]}
        spec = load_pipeline(PIPELINE)
        name, step = spec.step_of("sized_postprocess")
        decision = tasks[step.size_task_id(name)]["figures"]
        for route, d in decision["routes"].items():
            if d["tier"] == NO_PREDICTIONS:
                out.append({"ds": ds, "mix": mix, "route": route, "rows": 0, "tier": d["tier"]})
                continue
            task_id = step.tier_task_id(name, route, d["tier"])
            pods = [t for label, t in tasks.items() if label == task_id or label.startswith(f"{task_id}[")]
            figures = [p["figures"] for p in pods if p["state"] == "success"]
            out.append(
                {
                    "ds": ds,
                    "mix": mix,
                    "route": route,
                    "rows": d["rows"],
                    "tier": d["tier"],
                    "shards": len(d["shards"]),
                    "peak_rss_mb": max(f["peak_rss_mb"] for f in figures),
                    "memory_limit_mb": figures[0]["memory_limit_mb"],
                    "wall_seconds": max(p["seconds"] for p in pods),
                    "escalated": any("escalated" in f for f in figures),
                    "predicted": decision["class_counts"],
                }
            )
            console.print(out[-1])
    return out


# --- the report ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000,50000000")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeats", type=int, default=2, help="runs per calibration point")
    parser.add_argument("--seed-days-users", type=int, default=1_000_000)
    parser.add_argument("--skip-counting", action="store_true")
    parser.add_argument("--skip-seed-days", action="store_true")
    parser.add_argument("--scratch", type=Path, default=ROOT / ".water" / "bench-sizing")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    out = ROOT / "benchmarks" / "results" / "sizing.json"
    if out.exists():  # a part skipped keeps its last figures
        results = json.loads(out.read_text())

    if not args.skip_counting:
        results["counting"] = counting([int(s) for s in args.sizes.split(",")], args.scratch)  # files stay for the next run
    results["calibration"] = calibrate(args.scratch, args.repeats)
    results["simulation"] = simulate(args.days, results["calibration"])
    if not args.skip_seed_days:
        results["seed_days"] = seed_days(args.seed_days_users, args.scratch / "seed-days-state")

    if results.get("counting"):
        table = Table(title="counting predictions: DuckDB aggregate vs pandas load", title_justify="left")
        for column in ("rows", "count s", "count MiB", "pandas s", "pandas MiB", "speed-up", "same counts"):
            table.add_column(column, justify="right")
        for c in results["counting"]:
            table.add_row(
                f"{c['rows']:,}",
                f"{c['count_seconds']:.2f}",
                f"{c['count_peak_mb']}",
                f"{c['pandas_seconds']:.1f}",
                f"{c['pandas_peak_mb']}",
                f"{c['speedup']}x",
                str(c["same_counts"]),
            )
        console.print(table)

    table = Table(title="calibration per route (peak RSS at each tier's max_rows against its limit)", title_justify="left")
    for column in (
        "route",
        "MiB/1M rows",
        "base MiB",
        "s/1M rows",
        "base s",
        "tier",
        "max rows",
        "peak MiB",
        "limit MiB",
        "headroom",
    ):
        table.add_column(column, justify="right")
    for name, cal in results["calibration"].items():
        for i, t in enumerate(cal["tiers"]):
            head = (
                (
                    name,
                    f"{cal['mb_per_row'] * 1e6:.0f}",
                    f"{cal['base_mb']:.0f}",
                    f"{cal['seconds_per_row'] * 1e6:.1f}",
                    f"{cal['base_seconds']:.1f}",
                )
                if i == 0
                else ("",) * 5
            )
            table.add_row(
                *head, t["tier"], f"{t['max_rows']:,}", f"{t['peak_mb']:.0f}", f"{t['limit_mb']:.0f}", f"{t['headroom']:.1f}x"
            )
    console.print(table)

    sim = results["simulation"]
    table = Table(
        title=f"a year of post-processing ({sim['days']} days, median {sim['median_users']:,} users, max "
        f"{sim['max_users']:,}; {sim['swing_days']} swing days: {sim['kinds']['cook surge']} cook surges "
        f"80/15/5 after 33/33/33, {sim['kinds']['dormant lull']} dormant lulls 15/25/60)",
        title_justify="left",
    )
    for column in (
        "strategy",
        "CPU-h",
        "mem GB-h",
        "OOM kills",
        "failed",
        "CPU vs static-large",
        "mem vs static-large",
        "swing CPU-h",
        "swing mem GB-h",
        "swing OOMs",
    ):
        table.add_column(column, justify="right")
    for name, s in sim["strategies"].items():
        y, w = s["year"], s["swing"]
        table.add_row(
            name,
            f"{y['cpu_hours']:.2f}",
            f"{y['memory_gb_hours']:.2f}",
            str(y["ooms"]),
            str(y["failed"]),
            f"{s['cpu_vs_static_large']:.0%}",
            f"{s['memory_vs_static_large']:.0%}",
            f"{w['cpu_hours']:.3f}",
            f"{w['memory_gb_hours']:.3f}",
            str(w["ooms"]),
        )
    console.print(table)

    if results.get("seed_days"):
        table = Table(title=f"the seed's two days at {args.seed_days_users:,} users (whole `water run`s)", title_justify="left")
        for column in ("day", "seeded mix", "route", "rows", "tier", "shards", "peak MiB", "limit MiB", "peak/limit", "wall s"):
            table.add_column(column, justify="right")
        for r in results["seed_days"]:
            if r["tier"] == NO_PREDICTIONS:
                table.add_row(r["ds"], r["mix"], r["route"], "0", "no rows", "", "", "", "", "")
                continue
            table.add_row(
                r["ds"],
                r["mix"],
                r["route"],
                f"{r['rows']:,}",
                r["tier"],
                str(r["shards"]),
                f"{r['peak_rss_mb']:.0f}",
                f"{r['memory_limit_mb']:.0f}",
                f"{r['peak_rss_mb'] / r['memory_limit_mb']:.0%}",
                f"{r['wall_seconds']:.1f}",
            )
        console.print(table)

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float))
    console.print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
