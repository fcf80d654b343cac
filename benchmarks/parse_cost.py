"""Parse cost of the cloud DAG files (part of `make bench`): CPU seconds of a cold process.

    python benchmarks/parse_cost.py [--repeats 3] [--bytecode both|cached|none]

For each shipped DAG file (dags/*.py) with WATER_TARGET=cloud and the contract tests' cloud
settings (tests/contract/cloud.py), each in its own fresh process, interleaved and repeated
(median of --repeats):
- parse: DagBag of the file, as the DAG processor and every task's process parse it (and, of
  it, the file itself: what parsing costs once Airflow's DagBag is imported, as it is in the
  DAG processor);
- floor: importing just the provider operator modules the file's DAG runs (for an operator
  water extends, the provider module it extends), found by building the DAG here;
- airflow.sdk: importing the Task SDK alone, what any DAG file costs.
CPU = user + system time of the whole process (getrusage), interpreter start included.

Twice, unless --bytecode says otherwise: `cached`, with compiled bytecode (as an image
installed by pip has it; a private PYTHONPYCACHEPREFIX warmed by one untimed run), and `none`,
every module compiled from source at import (as a venv without .pyc files runs under
PYTHONDONTWRITEBYTECODE=1). Target: parse <= 1.5 x floor (exit status 1 if not) and
<= 5 s. Writes benchmarks/results/parse-cost.json. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console()
RATIO_TARGET, SECONDS_TARGET = 1.5, 5.0

CHILD = """
import importlib, resource, sys

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

mode, *args = sys.argv[1:]
if mode == "parse":
    from airflow.dag_processing.dagbag import DagBag

    before = cpu()
    bag = DagBag(dag_folder=args[0])
    if bag.import_errors or not bag.dags:
        raise SystemExit(f"{args[0]}: {bag.import_errors or 'no DAG'}")
    print(cpu(), cpu() - before)  # the whole process; the file itself (Airflow's DagBag already imported)
else:
    for name in args:
        importlib.import_module(name)
    print(cpu(), 0.0)
"""


def operator_class_of(task) -> type:
    """The class a task runs: a provider operator's stand-in builds its operator where it runs."""
    from water.targets.cloud.lazy import LazyOperator, load_operator

    mapped = hasattr(task, "partial_kwargs")
    cls = task.operator_class if mapped else type(task)
    if issubclass(cls, LazyOperator):
        return load_operator(task.partial_kwargs["operator_path"] if mapped else task.operator_path)
    return cls


def floor_modules(dag_file: Path) -> list[str]:
    """The provider operator modules the file's DAG runs: for each task, the module of the
    first provider class in its operator's MRO."""
    from airflow.sdk import DAG

    dags = [v for v in runpy.run_path(str(dag_file)).values() if isinstance(v, DAG)]
    modules = set()
    for dag in dags:
        for task in dag.tasks:
            provider = next((c for c in operator_class_of(task).__mro__ if c.__module__.startswith("airflow.providers.")), None)
            if provider is not None:
                modules.add(provider.__module__)
    return sorted(modules)


def cpu_seconds(env: dict[str, str], *args: str) -> tuple[float, float]:
    """(CPU s of the whole process, of the DAG file itself) of one fresh process."""
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)[:200]} failed:\n{proc.stderr[-3000:]}")
    whole, own = proc.stdout.strip().splitlines()[-1].split()
    return float(whole), float(own)


def regime_env(base: dict[str, str], bytecode: str, state: Path) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    if bytecode == "cached":
        env["PYTHONPYCACHEPREFIX"] = str(state / "pycache")
    else:  # an empty prefix: no compiled module is found, none is written
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="no-pyc-")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bytecode", choices=("both", "cached", "none"), default="both")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".water" / "bench")
    args = parser.parse_args()
    os.environ["WATER_STATE_DIR"] = str(args.state_dir)

    from water.cli import local_airflow

    local_airflow.use_in_this_process()  # before anything imports Airflow
    local_airflow.write_config()
    from tests.contract.cloud import CLOUD_ENV

    os.environ.update(CLOUD_ENV)
    dag_files = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
    floors = {path.name: floor_modules(path) for path in dag_files}
    base = dict(os.environ)

    results, verdicts, worst = [], [], 0.0
    for bytecode in ("cached", "none") if args.bytecode == "both" else (args.bytecode,):
        env = regime_env(base, bytecode, args.state_dir)
        runs = {f"parse:{p.name}": ("parse", str(p)) for p in dag_files}
        runs |= {f"floor:{name}": ("import", *modules) for name, modules in floors.items()}
        runs["sdk"] = ("import", "airflow.sdk")
        if bytecode == "cached":
            for run in runs.values():  # compile once, untimed
                cpu_seconds(env, *run)
        seconds: dict[str, list[float]] = {key: [] for key in runs}
        own: dict[str, list[float]] = {key: [] for key in runs}
        for i in range(args.repeats):
            console.print(f"[{bytecode} bytecode] round {i + 1}/{args.repeats} …")
            for key, run in runs.items():  # interleaved: a load that comes and goes hits every row alike
                whole, file_only = cpu_seconds(env, *run)
                seconds[key].append(whole)
                own[key].append(file_only)
        median = {key: statistics.median(values) for key, values in seconds.items()}
        for path in dag_files:
            parse, floor = median[f"parse:{path.name}"], median[f"floor:{path.name}"]
            worst = max(worst, parse / floor)
            results.append({
                "bytecode": bytecode, "dag_file": f"dags/{path.name}", "parse_cpu_s": round(parse, 2),
                "file_cpu_s": round(statistics.median(own[f"parse:{path.name}"]), 2),
                "floor_cpu_s": round(floor, 2), "ratio": round(parse / floor, 3), "sdk_cpu_s": round(median["sdk"], 2),
                "parse_runs": [round(s, 2) for s in seconds[f"parse:{path.name}"]],
                "floor_runs": [round(s, 2) for s in seconds[f"floor:{path.name}"]],
                "floor_modules": floors[path.name],
            })  # fmt: skip
        mine = [r for r in results if r["bytecode"] == bytecode]
        ratio, slowest = max(r["ratio"] for r in mine), max(r["parse_cpu_s"] for r in mine)
        verdicts.append(
            f"{bytecode} bytecode: parse/floor at most {ratio:.2f} (target ≤ {RATIO_TARGET}: "
            f"{'met' if ratio <= RATIO_TARGET else 'NOT met'}); slowest parse {slowest:.2f} s (target ≤ {SECONDS_TARGET:.0f} s: "
            f"{'met' if slowest <= SECONDS_TARGET else 'NOT met'}; airflow.sdk alone {median['sdk']:.2f} s)"
        )

    table = Table(title=f"cloud DAG parse, CPU s of a cold process (median of {args.repeats})", title_justify="left")
    columns = ("bytecode", "DAG file", "parse", "of it the file", "floor", "parse/floor", "airflow.sdk alone", "parse runs")
    for column in columns:
        table.add_column(column, justify="left" if column in ("bytecode", "DAG file", "parse runs") else "right")
    for r in results:
        table.add_row(
            r["bytecode"],
            r["dag_file"],
            f"{r['parse_cpu_s']:.2f}",
            f"{r['file_cpu_s']:.2f}",
            f"{r['floor_cpu_s']:.2f}",
            f"{r['ratio']:.2f}",
            f"{r['sdk_cpu_s']:.2f}",
            " ".join(f"{s:.2f}" for s in r["parse_runs"]),
        )
    console.print(table)
    for name, modules in floors.items():
        console.print(f"floor of {name}: {', '.join(modules)}", markup=False)
    for verdict in verdicts:
        console.print(verdict, markup=False)
    ratio_met = worst <= RATIO_TARGET
    out = ROOT / "benchmarks" / "results" / "parse-cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"repeats": args.repeats, "ratio_target": RATIO_TARGET, "results": results}, indent=2))
    console.print(f"written {out.relative_to(ROOT)}")
    if not ratio_met:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
