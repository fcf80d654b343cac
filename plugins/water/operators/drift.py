"""The drift guard: today's predicted class mix against a baseline decides whether the run goes on.

Target-agnostic; reads and writes the lake through water.store (file:// or s3://).

- Baseline `previous_run`: the newest strictly earlier day that passed the guard with rows
  (each run stores `stats/ds=…/inference_stats.json` and the guard's `drift.json` beside it),
  so a quarantined day, a zero-row day and a day not judged yet never become the yardstick.
  Days are judged in order when the DAG runs one at a time (`max_active_runs: 1`, the
  default). `training_labels`: the label mix of the day's training set.
- ok → the guarded steps; warn → the guarded steps and an alert; block → quarantine (the
  guarded partition, the predictions, moves to the quarantine dataset; everything that
  reads it is skipped) and an alert with the class shares side by side. DAG run conf `accept_drift: true` lets a
  blocked day through ("accepted"). No baseline yet, or no rows today → goes on, noted.
The assessment is in XCom under `drift` (a branch that skips ends before its return value
is pushed) and in `stats/ds=…/drift.json`.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseBranchOperator, BaseOperator, Context

from water import drift, lineage, notify
from water.spec import DriftGuardStep
from water.store import LakeStore

DRIFT_FILE = "drift.json"
STATS_FILE = "inference_stats.json"
LOOK_BACK = 60  # days of stats partitions searched for a baseline


def usable_baseline(verdict: dict[str, Any] | None, stats: dict[str, Any] | None) -> bool:
    """Whether a day can be the baseline: the guard passed it (its drift.json) and it had rows.
    A day the guard has not judged yet, a quarantined day and a zero-row day never are."""
    counts = (stats or {}).get("class_counts") or {}
    return (verdict or {}).get("verdict") in drift.PASSING and sum(int(n) for n in counts.values()) > 0


class DriftGuardOperator(BaseBranchOperator):
    ui_color = "#fde2c8"
    figure_keys = ("drift",)  # XCom keys beyond the return value that carry figures (metrics)

    def __init__(
        self,
        *,
        pipeline: str,
        classes: list[str],
        policy: DriftGuardStep,
        lake_root: str,
        storage_conn_id: str | None,
        stats_task_id: str,
        quarantine_task_id: str,
        slack_conn_id: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline, self.classes, self.policy = pipeline, list(classes), policy
        self.lake_root, self.storage_conn_id = lake_root, storage_conn_id
        self.stats_task_id, self.quarantine_task_id, self.slack_conn_id = stats_task_id, quarantine_task_id, slack_conn_id
        # The first tasks of the steps the guard lets through; the factory sets them once
        # those steps exist.
        self.continue_task_ids: list[str] = []

    @property
    def store(self) -> LakeStore:
        return LakeStore(self.lake_root, self.pipeline, self.storage_conn_id)

    def baseline(self, ds: str) -> tuple[dict[str, int] | None, str | None]:
        stats_dataset = self.policy.reads
        if self.policy.baseline == "training_labels" and self.policy.baseline_labels:
            labels = self.policy.baseline_labels
            counts = self.store.column_counts(labels.dataset, ds, labels.column)
            return (counts or None), f"training labels ds={ds}"
        for day in reversed([d for d in self.store.days(stats_dataset) if d < ds][-LOOK_BACK:]):
            stats = self.store.read_json(stats_dataset, day, STATS_FILE)
            if stats is not None and usable_baseline(self.store.read_json(stats_dataset, day, DRIFT_FILE), stats):
                return stats["class_counts"], f"previous run ds={day}"
        return None, None

    def choose_branch(self, context: Context) -> str | list[str]:
        ds = context["ds"]
        stats = context["ti"].xcom_pull(task_ids=self.stats_task_id) or {}
        counts = stats.get("class_counts")
        if not isinstance(counts, dict):
            raise ValueError(f"{self.stats_task_id} returned no class_counts for ds={ds}: {stats}")
        baseline_counts, baseline = self.baseline(ds)
        accept = bool((context.get("params") or {}).get("accept_drift"))
        assessment = drift.assess(
            counts,
            baseline_counts,
            self.classes,
            warn=self.policy.warn,
            block=self.policy.block,
            metric=self.policy.metric,
            baseline=baseline,
            accept=accept,
        )
        record = {"ds": ds, **assessment.as_dict()}
        self.store.write_json(self.policy.reads, ds, DRIFT_FILE, record)
        self.lineage_run: tuple[str, dict[str, Any]] = (ds, {"rows": sum(int(n) for n in counts.values()), "released": False})
        context["ti"].xcom_push(key="drift", value=record)
        self.log.info("drift: %s; %s", assessment.headline(), assessment.mix_text())
        self.alert(context, assessment)
        if not assessment.passes:
            return self.quarantine_task_id
        if self.store.remove_partition(self.policy.writes, ds):  # an accepted day is no longer held back
            self.lineage_run[1]["released"] = True
            self.log.info("released %s/ds=%s: the day passed the guard (%s)", self.policy.writes, ds, assessment.verdict)
        return self.continue_task_ids

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the step's datasets (water.lineage.step_datasets): the guard reads the day's
        stats (and the training labels it compares with); it writes the quarantine only when it
        releases a held-back day (deletes that partition). Its drift.json beside the stats is a
        record of the verdict, not a dataset of the graph."""
        ds, figures = lineage.ran(self)
        partition = lineage.partition_of(ds)

        def seen(dataset: str, **facts: Any) -> lineage.Seen:
            return lineage.Seen(lineage.lake_dataset(self.lake_root, self.pipeline, dataset), partition, **facts)

        inputs = [seen(self.policy.reads, rows=figures.get("rows"))]
        inputs += [seen(d) for d in self.policy.inputs()[1:]]  # the training labels of its baseline
        outputs = [seen(self.policy.writes, deleted=True)] if figures.get("released") else []
        return lineage.operator_lineage(inputs, outputs)

    def alert(self, context: Context, assessment: drift.Assessment) -> None:
        if assessment.verdict in (drift.OK, drift.NO_BASELINE, drift.NO_ROWS):
            return
        kind, title = {
            drift.WARN: ("drift", f"{self.pipeline} ds={context['ds']}: class mix drifted (warn), publishing"),
            drift.BLOCK: ("quarantine", f"{self.pipeline} ds={context['ds']}: class mix swung, predictions quarantined"),
            drift.ACCEPTED: ("drift", f"{self.pipeline} ds={context['ds']}: drift accepted, publishing"),
        }[assessment.verdict]
        lines = [f"{'class':<12}{'baseline':>10}{'today':>10}"] + [
            f"{cls:<12}{(f'{base:.1%}' if base is not None else '-'):>10}{today:>10.1%}"
            for cls, base, today in assessment.side_by_side()
        ]
        if assessment.verdict == drift.BLOCK:
            lines.append('accept this day: re-run it with conf {"accept_drift": true}')
        notice = notify.notice_for(
            context,
            kind,
            title,
            facts={
                "verdict": assessment.verdict,
                "PSI": f"{assessment.psi:.3f}",
                "JS distance": f"{assessment.js:.3f}",
                "baseline": assessment.baseline or "-",
                "rows": f"{assessment.rows:,}",
            },
            lines=lines,
        )
        notify.send(notice, self.slack_conn_id)


class QuarantineOperator(BaseOperator):
    """Moves the day's guarded partition (the predictions) to the quarantine dataset; nothing
    that reads it runs for the day."""

    ui_color = "#ffd0d0"

    def __init__(
        self,
        *,
        pipeline: str,
        lake_root: str,
        storage_conn_id: str | None,
        guard_task_id: str,
        guarded: str,
        quarantine: str,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.pipeline, self.lake_root, self.storage_conn_id = pipeline, lake_root, storage_conn_id
        self.guard_task_id, self.guarded, self.quarantine = guard_task_id, guarded, quarantine

    def execute(self, context: Context) -> dict[str, Any]:
        ds = context["ds"]
        store = LakeStore(self.lake_root, self.pipeline, self.storage_conn_id)
        assessment = context["ti"].xcom_pull(task_ids=self.guard_task_id, key="drift") or {}
        moved = store.move_partition(self.guarded, self.quarantine, ds)
        store.write_json(self.quarantine, ds, "_" + DRIFT_FILE, {"ds": ds, **assessment})
        where = store.lake.uri(self.quarantine, ds)
        message = f"{self.guarded} of ds={ds} quarantined at {where}: {assessment.get('verdict')} PSI {assessment.get('psi')}"
        self.log.warning(message + ("" if moved else " (no predictions partition to move)"))
        self.lineage_run = (ds, {"rows": assessment.get("rows") if moved else None})
        return {"flag": "quarantined", "rows": assessment.get("rows"), "quarantine": where, "message": message}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the day's partition of the guarded dataset (the predictions), read when it was
        moved, and of the quarantine dataset, the drift guard step's output."""
        ds, figures = lineage.ran(self)
        partition = lineage.partition_of(ds)

        def seen(dataset: str) -> lineage.Seen:
            return lineage.Seen(lineage.lake_dataset(self.lake_root, self.pipeline, dataset), partition, rows=figures.get("rows"))

        moved = figures.get("rows") is not None
        return lineage.operator_lineage([seen(self.guarded)] if moved else [], [seen(self.quarantine)])
