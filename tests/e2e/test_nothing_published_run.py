"""End to end: a quarantined re-run of a day retracts what an earlier run of it published.

`water run` on the demo, local target: a normal day (the baseline), then a swung day
(class mix 80/15/5) published by accepting its drift, then the swung day again without
accepting: the guard quarantines it, and the warehouse holds no rows of that day afterwards,
nor the lake its outputs partition, while the baseline day keeps everything (finding 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from water.spec import load_pipeline
from water.targets.local.engines.warehouse import table_rows

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

SPEC = load_pipeline("recipe_engagement")
PUBLISH_NAME, PUBLISH = next(iter(SPEC.steps_of("publish").items()))
RETRACT = PUBLISH.retract_task_id(PUBLISH_NAME)
DS, SWING_DS = "2026-11-01", "2026-11-02"
USERS = 5_000
WATER = str(Path(sys.executable).parent / "water")


def water_run(state: Path, ds: str, *extra: str) -> dict:
    proc = subprocess.run(
        [WATER, "run", "recipe_engagement", "--date", ds, "--users", str(USERS), "--json", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "WATER_STATE_DIR": str(state)},
    )
    assert proc.returncode == 0, f"water run failed:\n{proc.stderr[-5000:]}"
    return json.loads(proc.stdout)


def test_a_quarantined_rerun_retracts_the_days_published_rows_and_outputs(tmp_path):
    state = tmp_path / "state"
    warehouse, outputs = state / "warehouse", state / "lake" / SPEC.name / PUBLISH.reads

    baseline = water_run(state, DS)
    accepted = water_run(state, SWING_DS, "--mix", f"{SWING_DS}=80/15/5", "--conf", '{"accept_drift": true}')
    assert accepted["drift"]["verdict"] == "accepted" and accepted["earlier_outputs"] is None
    assert table_rows(warehouse, PUBLISH.table, SWING_DS) == accepted["rows_published"] > 0

    rerun = water_run(state, SWING_DS)  # the same swung day, not accepted this time
    states = {t["task_id"]: t["state"] for t in rerun["tasks"]}
    assert rerun["state"] == "success" and rerun["drift"]["verdict"] == "block"
    assert (states["quarantine"], states[PUBLISH_NAME], states[RETRACT]) == ("success", "skipped", "success")
    assert rerun["earlier_outputs"] == {
        "outcome": "retracted", "rows_retracted": accepted["rows_published"], "table": PUBLISH.table, "dataset": PUBLISH.reads,
    }
    assert table_rows(warehouse, PUBLISH.table, SWING_DS) == 0
    assert not (outputs / f"ds={SWING_DS}").exists()
    # the baseline day keeps what it published
    assert table_rows(warehouse, PUBLISH.table, DS) == baseline["rows_published"] > 0
    assert (outputs / f"ds={DS}").is_dir()
    assert {t["task_id"]: t["state"] for t in baseline["tasks"]}[RETRACT] == "skipped"  # a day that published never retracts
