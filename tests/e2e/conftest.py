"""Fixtures of the end-to-end tests (the demo's days), and their order and time limits.

`make test` runs the suite on pytest-xdist workers with `--dist loadscope`: a module's tests run
on one worker, so its module fixtures are made once. A session fixture is made once per worker
that runs a test using it: keep the tests that read one in one module (the demo's days:
test_demo_run.py). (`--dist loadgroup` would group modules by a mark, but with pytest 9.2 and
pytest-xdist 3.8 it silently groups nothing: pytest-xdist issue #1386.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.e2e.runs import TIME_SCALE, water_run
from tests.helpers import table_rows
from tests.listeners import SlackStandIn, StatsdListener
from water import lake
from water.spec import load_pipeline
from water.targets.local.engines.partitions import data_files

E2E = Path(__file__).parent
DEMO = "recipe_engagement"
DS, DRIFT_DS = "2026-11-01", "2026-11-02"
DRIFT_MIX = "80/15/5"
# The smallest day that shows everything the tests read: every route on its first tier, a model
# past the training gate on the normal day and on the swung one, a PSI past the block threshold.
DEMO_USERS = 5_000

# Longest first: pytest-xdist (--no-loadscope-reorder) gives a worker the next module as it runs
# out of tests, so the longest modules start at once and the short ones (then the other folders'
# tests) fill in at the end (README: "How long the tests take").
LONGEST_FIRST = (
    "tests/e2e/test_demo_run.py",  # 5 runs in a row
    "tests/e2e/test_sizing_run.py",  # 5 runs
    "tests/e2e/test_stack.py",  # water up, a run through the scheduler, the web UI
    "tests/e2e/test_new_pipeline.py",  # 2 runs and the project's contract tests
    "tests/e2e/test_routes_run.py",  # 2 runs
)
# An e2e test's own time limit (pytest-timeout) is a net under the limits of each run and wait
# (tests/e2e/runs.py), which scale with the machine's load; a test's setup may run 5 pipelines.
TEST_LIMIT = 7200


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """(Called with every test of the session.) The e2e tests first, longest first; each e2e test
    under its own time limit."""

    def rank(item: pytest.Item) -> int:
        if not item.path.is_relative_to(E2E):
            return len(LONGEST_FIRST) + 1
        module = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: within a group, and among the rest, the order stays
    for item in items:
        if item.path.is_relative_to(E2E) and item.get_closest_marker("e2e") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(TEST_LIMIT * TIME_SCALE))


def partitions_fingerprint(lake_dir: Path, ds: str) -> dict[str, str]:
    """Every file of every partition of ds: its bytes, or for Spark's Parquet its decoded content.

    parquet-mr lists a column chunk's encodings from a hash set whose order changes from one
    JVM to the next, so Spark-written footers may differ while data, schema and metadata don't.
    """
    prints = {}
    for folder in sorted(lake_dir.glob(f"**/ds={ds}")):
        if folder.parent.name == lake.REPORTS:
            continue  # a report is about the run (its id, its duration), not data
        for path in data_files(folder):
            name = str(path.relative_to(lake_dir))
            if path.name.startswith("part-") and path.name.endswith("-c000.snappy.parquet"):
                table = pq.read_table(path)
                payload = table.schema.serialize().to_pybytes() + b"".join(
                    c.to_pylist().__repr__().encode() for c in table.columns
                )
                name = name.split("-")[0] + "-<spark job>.parquet"
            else:
                payload = path.read_bytes()
            prints[name] = hashlib.sha256(payload).hexdigest()
    return prints


@pytest.fixture(scope="session")
def demo_days(tmp_path_factory) -> dict:
    """The demo's days on one lake, DEMO_USERS users, run once (tests/e2e/test_demo_run.py reads them):

        first     DS, a normal day: no baseline
        second    DS again: every partition rewritten, nothing published twice
        drift     DRIFT_DS, class mix 80/15/5: blocked, quarantined, nothing published
        accepted  DRIFT_DS again with {"accept_drift": true}: released and published
        rerun     DRIFT_DS again, not accepted: quarantined, and what `accepted` published retracted

    The first four post to a Slack stand-in and a StatsD listener (what they heard: `slack`,
    `metrics`); the rerun to neither (its notices go to the outbox). What a later run changes is
    kept as the run that made it left it: DS's partitions after the first and the second run,
    `held_back` after the drift run, `after_accepted` after the accepted one.
    """
    spec = load_pipeline(DEMO)
    guard = spec.step_of("drift_guard")[1]
    table = spec.step_of("publish")[1].table
    state = tmp_path_factory.mktemp("demo-days")
    lake_dir, warehouse = state / "lake" / DEMO, state / "warehouse"

    def run(ds: str, *extra: str, env: dict[str, str] | None = None) -> dict:
        return water_run(DEMO, ds, "--users", str(DEMO_USERS), *extra, state=state, env=env, migrated=False)

    with SlackStandIn() as slack, StatsdListener() as statsd:
        env = {**slack.connection_env("slack_water"), "WATER_STATSD_PORT": str(statsd.port)}
        first = run(DS, env=env)
        first_prints = partitions_fingerprint(lake_dir, DS)
        second = run(DS, env=env)
        second_prints = partitions_fingerprint(lake_dir, DS)
        drift = run(DRIFT_DS, "--mix", f"{DRIFT_DS}={DRIFT_MIX}", env=env)
        held_back = {
            "predictions": (lake_dir / guard.guards / f"ds={DRIFT_DS}").exists(),
            "quarantine": sorted(p.name for p in (lake_dir / guard.writes / f"ds={DRIFT_DS}").glob("*.out")),
            "report": (lake_dir / lake.REPORTS / f"ds={DRIFT_DS}" / "report.html").read_text(),
        }
        accepted = run(DRIFT_DS, "--conf", '{"accept_drift": true}', env=env)
        after_accepted = {
            "quarantined": (lake_dir / guard.writes / f"ds={DRIFT_DS}").exists(),
            "report": (lake_dir / lake.REPORTS / f"ds={DRIFT_DS}" / "report.html").read_text(),
            "rows_published": {ds: table_rows(warehouse, table, ds) for ds in (DS, DRIFT_DS)},
        }
    rerun = run(DRIFT_DS)
    return {
        "state": state,
        "lake": lake_dir,
        "first": first,
        "second": second,
        "drift": drift,
        "accepted": accepted,
        "rerun": rerun,
        "held_back": held_back,
        "after_accepted": after_accepted,
        "first_prints": first_prints,
        "second_prints": second_prints,
        "slack": slack.received,
        "slack_connection": env[next(k for k in env if k.startswith("AIRFLOW_CONN_"))],  # a secret
        "metrics": statsd.metrics(),
    }
