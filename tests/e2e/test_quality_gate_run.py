"""End to end: a day whose source did not land fails a named data-quality gate and publishes nothing.

`customer_value` (the smaller example) with the shop's orders of the 28 days up to the run's
day removed from its fixture: every customer is still there, with no order. Before the gates
that ran green on a chance-level model and published every customer; now the first step's
`checks` stop it, naming the step, the check and the figures, and nothing downstream runs.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta

import pytest

from tests.conftest import ROOT
from tests.e2e.runs import RUN_LIMIT, water
from tests.helpers import table_rows
from water.spec import load_pipeline
from water.targets.local.engines.warehouse import DATABASE

pytestmark = pytest.mark.e2e

DS = "2026-11-03"
SPEC = load_pipeline("customer_value")


def test_a_day_without_its_orders_fails_the_named_check_and_publishes_nothing(tmp_path):
    for folder in ("include", "dags"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    orders = tmp_path / "include/data/customer_value/orders.csv"
    first = (date.fromisoformat(DS) - timedelta(days=27)).isoformat()
    lines = orders.read_text().splitlines()
    kept = [lines[0], *(line for line in lines[1:] if not first <= line.split(",")[2] <= DS)]
    assert len(kept) < len(lines) - 1000  # the window held orders: they are gone now
    orders.write_text("\n".join(kept) + "\n")

    state = tmp_path / ".water"
    result = water("run", "customer_value", "--date", DS, project=tmp_path, state=state, limit=RUN_LIMIT)
    assert result.returncode == 1, result.stderr[-3000:]
    summary = json.loads(next((state / "runs/customer_value").glob(f"ds={DS}.json")).read_text())
    states = {t["task_id"]: t["state"] for t in summary["tasks"]}
    reader = next(n for n, s in SPEC.steps.items() if "shop.orders" in s.inputs())
    assert [t for t, s in states.items() if s == "failed"] == [reader]
    publish = next(iter(SPEC.steps_of("publish")))
    assert states[publish] == "upstream_failed"
    log = " ".join(result.stderr.split())
    assert f"{reader}: check max_null_share failed: days_since_last_order is 100.0% null" in log
    assert not (state / "lake/customer_value" / SPEC.steps[reader].writes / f"ds={DS}").exists()  # never swapped in
    assert summary["rows_published"] is None
    table = SPEC.steps[publish].table
    warehouse = state / "warehouse"
    assert not (warehouse / DATABASE).exists() or table_rows(warehouse, table, DS) == 0
