"""A class-routed pipeline in a temporary project, for the tests of routed post-processing
(tests/unit/test_sizing.py, test_spec.py, test_routes_local.py, tests/contract/test_cloud_pods.py).

Nothing here reads the shipped specs or their jobs: `write_project(root, spec)` writes
`root/include/pipelines/<name>.yaml` and the one tiny job every route runs
(`include/jobs/routed/route_job.py`, JOB below), so a test stands whatever the demo looks like.

The job follows water's contract for a sized step's pod: it reads the predictions (CSV lines
`id,class,confidence`, no header, every file of the --input folder in name order), keeps the
--classes rows, slices [--row-start, --row-end) over those kept rows, and writes Parquet to
--output as `class=C/part-<row start>.parquet` (names no other route's or shard's file takes).
`--ballast-mb N` holds N MiB before any work: a pod too small for it is killed for memory.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

NAME = "routed"
JOB_PATH = "jobs/routed/route_job.py"

JOB = '''"""A routed post-processing job for the tests (see tests/routes.py)."""

import argparse
import time
from pathlib import Path
from urllib.parse import unquote, urlparse


def local(uri):
    return Path(unquote(urlparse(uri).path))


def main(argv=None):
    parser = argparse.ArgumentParser(description="routed test job")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--classes")
    parser.add_argument("--campaign", default="none")
    parser.add_argument("--ballast-mb", type=int, default=0)
    parser.add_argument("--menus", help="an extra read a route may declare (reads: {menus: ...})")
    parser.add_argument("--row-start", type=int)
    parser.add_argument("--row-end", type=int)
    args = parser.parse_args(argv)
    ballast = [bytearray(8 * 2**20) for _ in range(args.ballast_mb // 8)]
    if ballast:
        time.sleep(0.5)  # long enough for the watchdog's samples

    import pyarrow as pa
    import pyarrow.parquet as pq

    wanted = set(args.classes.split(",")) if args.classes else None
    kept = []
    for path in sorted(p for p in local(args.input).iterdir() if p.is_file() and not p.name.startswith((".", "_"))):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            ident, cls, confidence = line.split(",")
            if wanted is None or cls in wanted:
                kept.append((ident, cls, float(confidence)))
    start = args.row_start or 0
    end = args.row_end if args.row_end is not None else len(kept)
    rows = kept[start:end]
    out = local(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for cls in sorted({r[1] for r in rows}):
        mine = [r for r in rows if r[1] == cls]
        table = pa.table(
            {
                "id": pa.array([r[0] for r in mine], pa.string()),
                "class": pa.array([cls] * len(mine), pa.string()),
                "confidence": pa.array([r[2] for r in mine], pa.float64()),
                "campaign": pa.array([args.campaign] * len(mine), pa.string()),
            }
        )
        (out / f"class={cls}").mkdir(exist_ok=True)
        pq.write_table(table, out / f"class={cls}" / f"part-{start:012d}.parquet")
    print(f"route_job kept={len(kept)} wrote={len(rows)}")


if __name__ == "__main__":
    main()
'''


def tier(name: str, max_rows: int, memory: str = "256Mi", cpu: str = "1") -> dict[str, Any]:
    return {
        "name": name,
        "max_rows": max_rows,
        "resources": {"requests": {"cpu": "250m", "memory": memory}, "limits": {"cpu": cpu, "memory": memory}},
    }


def sizing(tiers: list[dict[str, Any]], rows_per_shard: int, max_shards: int) -> dict[str, Any]:
    return {"tiers": tiers, "scale_out": {"rows_per_shard": rows_per_shard, "max_shards": max_shards}}


def route(classes: list[str], policy: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"classes": classes, "entrypoint": JOB_PATH, "sizing": policy, **extra}


# Routes sized for unit tests of the decision (thousands of rows): each its own tiers.
ROUTES = {
    "weekly_menu": route(
        ["cook"],
        sizing([tier("small", 1_000), tier("medium", 4_000, "512Mi"), tier("large", 8_000, "1Gi")], 8_000, 4),
        args={"campaign": "weekly_menu"},
    ),
    "first_cook_nudge": route(
        ["browse"], sizing([tier("small", 1_000), tier("large", 4_000, "1Gi")], 4_000, 4), args={"campaign": "nudge"}
    ),
    "win_back": route(
        ["dormant"], sizing([tier("small", 1_000), tier("medium", 4_000, "512Mi")], 4_000, 2), args={"campaign": "win_back"}
    ),
}
CLASSES = ["cook", "browse", "dormant", "spam"]
DROP = ["spam"]


def spec_data(routes: dict[str, Any] | None = None, drop: list[str] | None = None, **postprocess: Any) -> dict[str, Any]:
    """A pipeline: predictions (a source) -> inference_stats -> a routed sized_postprocess -> publish."""
    step: dict[str, Any] = {
        "kind": "sized_postprocess",
        "reads": "predictions",
        "writes": "outputs",
        "timeout": "10m",
        "routes": copy.deepcopy(ROUTES if routes is None else routes),
        "drop": list(DROP if drop is None else drop),
        **postprocess,
    }
    return {
        "name": NAME,
        "description": "Routes each class of the day's predictions to its own job.",
        "owner": "ml-platform",
        "schedule": "@daily",
        "start_date": "2026-11-01",
        "classes": list(CLASSES),
        "sources": {"predictions": {"description": "the day's predictions, id,class,confidence"}},
        "steps": {
            "inference_stats": {"kind": "inference_stats", "reads": "predictions", "writes": "stats"},
            "postprocess": step,
            "publish": {"kind": "publish", "reads": "outputs", "table": "ml.routed_lists"},
        },
    }


def single_form(data: dict[str, Any]) -> dict[str, Any]:
    """The same pipeline with one job for every class (no routes): the first route's job and sizing."""
    data = copy.deepcopy(data)
    step = data["steps"]["postprocess"]
    first = next(iter(step.pop("routes").values()))
    step.pop("drop", None)
    step.update(entrypoint=first["entrypoint"], sizing=first["sizing"], args=first.get("args", {}))
    return data


def write_project(root: Path, data: dict[str, Any] | None = None) -> Path:
    """root/include with the spec and the job; returns the spec file."""
    data = spec_data() if data is None else data
    job = root / "include" / JOB_PATH
    job.parent.mkdir(parents=True, exist_ok=True)
    job.write_text(JOB)
    path = root / "include" / "pipelines" / f"{data['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load_project(root: Path, data: dict[str, Any] | None = None):
    """Write the project and load its spec (the include/ folder is the project's)."""
    from water.spec import load_spec

    path = write_project(root, data)
    return load_spec(path, include_dir=root / "include")
