"""A pipeline's source data for the local target, as its spec says (`sources`, `local_data`).

- A source with a `fixture` (CSV or Parquet under include/) is loaded as it is: a warehouse
  table (`schema.table`) to `<warehouse>/<schema>/<table>/part-00000.parquet`; a lake
  source, split by its `ds` column, to `<lake>/<pipeline>/<name>/ds=…/part-00000.parquet`.
- `local_data.seed` (an entrypoint under include/) writes whatever else the pipeline
  reads, for the days asked, with `--users`, `--seed` and a per-day class `--mix`.

Both are idempotent: what is there and current is kept, so `water run` can call this
before every run. One process seeds a warehouse at a time (a lock file in it): two runs of
different days read-modify-write the same seed manifest.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from water import paths
from water.spec import PipelineSpec, is_table
from water.targets.local.engines.partitions import local_path
from water.targets.local.engines.process import die_with_parent

if TYPE_CHECKING:
    import pyarrow as pa


class SeedError(RuntimeError):
    """Seeding failed or was asked for something the pipeline's local data cannot do."""


def lake_pipeline_dir(pipeline: str) -> Path:
    return local_path(f"{paths.lake_uri().rstrip('/')}/{pipeline}")


def parse_mix(text: str, classes: list[str]) -> dict[str, float]:
    """'80/15/5' (shares in the spec's class order) or 'cook=80,browse=15,dormant=5' -> shares summing to 1."""
    text = text.strip()
    if "=" in text or ":" in text:
        shares = {}
        for part in text.split(","):
            name, _, value = part.replace(":", "=").partition("=")
            shares[name.strip()] = float(value)
        unknown = sorted(set(shares) - set(classes))
        if unknown:
            raise ValueError(f"class mix {text!r} names {unknown}, not among the classes {', '.join(classes)}")
        values = [shares.get(c, 0.0) for c in classes]
    else:
        values = [float(p) for p in text.replace("/", ",").split(",") if p.strip()]
        if len(values) != len(classes):
            raise ValueError(f"class mix {text!r} needs {len(classes)} shares, in the order {'/'.join(classes)}")
    if any(v < 0 for v in values) or sum(values) <= 0:
        raise ValueError(f"class mix {text!r} needs non-negative shares with a positive sum")
    total = sum(values)
    return {c: v / total for c, v in zip(classes, values, strict=True)}


def day_range(end: date, days: int) -> list[date]:
    return [end - timedelta(days=i) for i in reversed(range(days))]


def _read_fixture(path: Path) -> pa.Table:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        return pq.read_table(path)
    # Every column as read; dates (YYYY-MM-DD) become DATE columns, as in the warehouse.
    return pacsv.read_csv(path)


def _write_if_changed(table: pa.Table, target: Path) -> bool:
    import pyarrow.parquet as pq

    if target.exists() and pq.read_table(target).equals(table):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    pq.write_table(table, tmp, compression="snappy")
    tmp.replace(target)
    return True


def load_fixtures(spec: PipelineSpec, warehouse: Path, lake_dir: Path) -> list[str]:
    """Loads every source fixture; returns what was (re)written, for the terminal."""
    import pyarrow.compute as pc

    written = []
    for name, source in spec.sources.items():
        if not source.fixture:
            continue
        table = _read_fixture(paths.include_dir() / source.fixture)
        if is_table(name):
            schema, table_name = name.split(".")
            if _write_if_changed(table, warehouse / schema / table_name / "part-00000.parquet"):
                written.append(f"{name}: {table.num_rows:,} rows")
            continue
        if "ds" not in table.column_names:
            raise SeedError(f"sources.{name}.fixture: include/{source.fixture} needs a ds column (the lake partitions)")
        days = table.column("ds").cast("string")
        for ds in sorted(set(days.to_pylist())):
            part = table.filter(pc.equal(days, ds)).drop_columns(["ds"])
            if _write_if_changed(part, lake_dir / name / f"ds={ds}" / "part-00000.parquet"):
                written.append(f"{name}/ds={ds}: {part.num_rows:,} rows")
    return written


def check_seed_arguments(
    spec: PipelineSpec,
    *,
    users: int | None = None,
    mixes: dict[date, dict[str, float]] | None = None,
    seed_value: int | None = None,
) -> None:
    """SeedError for what the pipeline's local data cannot do (before anything is written)."""
    if spec.local_data.seed is None and (mixes or users or seed_value is not None):
        asked = ", ".join(f for f, v in (("--mix", mixes), ("--users", users), ("--seed", seed_value is not None)) if v)
        raise SeedError(
            f"{spec.name}'s local data are fixtures (sources.*.fixture); {asked} need a seed entrypoint "
            "(local_data.seed in its spec)"
        )


@contextmanager
def seeding_lock(warehouse: Path, progress: Callable[[str], None]) -> Iterator[None]:
    """Hold the warehouse for seeding (waiting for another process that is)."""
    warehouse.mkdir(parents=True, exist_ok=True)
    fd = os.open(warehouse / ".seed.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another process seeding {paths.shown(warehouse)} …")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def seed_pipeline(
    spec: PipelineSpec,
    days: Iterable[date],
    *,
    users: int | None = None,
    mixes: dict[date, dict[str, float]] | None = None,
    seed_value: int | None = None,
    progress: Callable[[str], None] = lambda text: None,
) -> None:
    """The pipeline's local source data for these days: its fixtures, then its seed entrypoint."""
    mixes = mixes or {}
    check_seed_arguments(spec, users=users, mixes=mixes, seed_value=seed_value)
    warehouse = paths.warehouse_dir()
    with seeding_lock(warehouse, progress):
        _seed_locked(spec, days, warehouse, users, mixes, seed_value, progress)


def _seed_locked(
    spec: PipelineSpec,
    days: Iterable[date],
    warehouse: Path,
    users: int | None,
    mixes: dict[date, dict[str, float]],
    seed_value: int | None,
    progress: Callable[[str], None],
) -> None:
    lake_dir = lake_pipeline_dir(spec.name)
    for line in load_fixtures(spec, warehouse, lake_dir):
        progress(f"fixture {line}")
    if spec.local_data.seed is None:
        return
    argv = [
        sys.executable,
        str(paths.include_dir() / spec.local_data.seed),
        "--warehouse",
        str(warehouse),
        "--lake",
        str(lake_dir),
        "--days",
        ",".join(d.isoformat() for d in sorted(days)),
    ]
    if users:
        argv += ["--users", str(users)]
    if seed_value is not None:
        argv += ["--seed", str(seed_value)]
    for day, shares in sorted(mixes.items()):
        argv += ["--mix", f"{day.isoformat()}=" + ",".join(f"{c}:{s!r}" for c, s in shares.items())]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=die_with_parent(),  # noqa: PLW1509 - PR_SET_PDEATHSIG has no Popen argument; only prctl runs in the child
    )
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        progress(line.rstrip())
        tail = [*tail[-20:], line.rstrip()]
    if process.wait() != 0:
        raise SeedError(f"seed entrypoint include/{spec.local_data.seed} failed (exit {process.returncode}):\n" + "\n".join(tail))
