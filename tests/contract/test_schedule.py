"""What day a scheduled run processes: the spec's `schedule:` through the timetable the
scheduler runs (the DAG serialized and read back, as the scheduler keeps it).

Every step filters its sources by `ds` (extract: `event_date = @ds`), so a run must start
after its `ds` is over: the 06:00 run on 2026-11-02 processes ds=2026-11-01. Airflow's
default for a plain cron string (`[scheduler] create_cron_data_intervals = False`) would
give that run ds=2026-11-02, six hours of a day; the DAG must not depend on that setting.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from tests.contract.cloud import PIPELINES, spec_of

SCHEDULED = [p for p in PIPELINES if spec_of(p).schedule]


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


@pytest.fixture(params=["False", "True"], ids=["trigger-default", "data-intervals"])
def scheduled_dag(request, monkeypatch, cloud_target):
    """dag_of(pipeline) -> the pipeline's cloud DAG as the scheduler holds it (serialized and
    read back), built under either value of [scheduler] create_cron_data_intervals."""
    from airflow.serialization.serialized_objects import DagSerialization

    from water.factory import build_dag

    monkeypatch.setenv("AIRFLOW__SCHEDULER__CREATE_CRON_DATA_INTERVALS", request.param)

    def dag_of(pipeline: str):
        return DagSerialization.from_dict(DagSerialization.to_dict(build_dag(spec_of(pipeline), cloud_target)))

    return dag_of


def next_fire(cron: str, after: datetime) -> datetime:
    from croniter import croniter

    return croniter(cron, after - timedelta(seconds=1)).get_next(datetime)


@pytest.mark.parametrize("pipeline", SCHEDULED)
def test_each_scheduled_run_processes_the_finished_day_before_it(scheduled_dag, pipeline):
    from airflow.timetables.base import TimeRestriction

    spec = spec_of(pipeline)
    timetable = scheduled_dag(pipeline).timetable
    restriction = TimeRestriction(earliest=midnight(spec.start_date), latest=None, catchup=True)
    info = None
    for n in range(3):  # the first run, then each after the one before
        last = info.data_interval if info else None
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        ds = info.logical_date.date()
        assert ds == spec.start_date + timedelta(days=n), "start_date is the first day processed, then each day once"
        day_over = midnight(ds + timedelta(days=1))
        assert info.run_after == next_fire(spec.schedule, day_over), (
            f"the run for ds={ds} starts at {info.run_after}, not at the schedule's first time after the day is over"
        )
        # the data interval is the day's: it starts on ds and ends when the run starts
        assert info.data_interval.start.date() == ds and info.data_interval.end == info.run_after


def test_the_demos_0600_run_processes_yesterday(scheduled_dag):
    from airflow.timetables.base import TimeRestriction

    assert spec_of("recipe_engagement").schedule == "0 6 * * *"
    timetable = scheduled_dag("recipe_engagement").timetable
    restriction = TimeRestriction(earliest=midnight(date(2026, 11, 1)), latest=None, catchup=True)
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    assert info.run_after == datetime(2026, 11, 2, 6, tzinfo=UTC)
    assert info.logical_date.strftime("%Y-%m-%d") == "2026-11-01"  # {{ ds }}
    assert info.data_interval.start == datetime(2026, 11, 1, 6, tzinfo=UTC)
    assert info.data_interval.end == datetime(2026, 11, 2, 6, tzinfo=UTC)


@pytest.mark.parametrize("pipeline", SCHEDULED)
def test_a_backfill_of_days_runs_exactly_those_days(scheduled_dag, pipeline):
    """`water backfill --start S --end E` asks Airflow for the runs from S 00:00 to E 23:59:59
    (water.cli.stack.backfill): the days S to E, each once."""
    end = datetime(2026, 11, 7, 23, 59, 59, tzinfo=UTC)
    infos = scheduled_dag(pipeline).iter_dagrun_infos_between(midnight(date(2026, 11, 3)), end)
    assert [i.logical_date.date() for i in infos] == [date(2026, 11, d) for d in range(3, 8)]
