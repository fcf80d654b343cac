"""The customer_value example's SQL and pod entrypoints on its shipped fixtures, one day.

The fixtures (include/data/customer_value/*.csv) are loaded as the local target loads them:
a warehouse table as one Parquet file under <warehouse>/shop/<table>/, the lake source
split by `ds` into <lake>/value_labels/ds=…/. The three SQL files run on DuckDB through
water's translator, then prepare, train, score and postprocess run as plain CLI
subprocesses on file:// URIs, in pipeline order.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from water.targets.local.engines.sql import date_literal, folder_table, run_to_parquet, string_literal

ROOT = Path(__file__).resolve().parents[2]
INCLUDE = ROOT / "include"
DATA = INCLUDE / "data" / "customer_value"
SQL = INCLUDE / "sql" / "customer_value"
JOBS = INCLUDE / "jobs" / "customer_value"
DS = "2026-11-03"
CLASSES = ("vip", "loyal", "occasional", "lapsed")
OFFERS = "vip=concierge,loyal=early_access,occasional=voucher_10,lapsed=winback_20"


def run_job(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(JOBS / script), *args], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def read_csv_lines(folder: Path) -> list[list[str]]:
    rows = []
    for file in sorted(folder.glob("*.csv")):
        with file.open(newline="") as f:
            rows.extend(csv.reader(f))
    return rows


def outputs_table(folder: Path) -> pa.Table:
    return ds.dataset(folder, format="parquet", partitioning="hive").to_table()


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """Every stage for DS, once; the tests check what each wrote."""
    root = tmp_path_factory.mktemp("customer_value")
    warehouse, lake = root / "warehouse", root / "lake"
    for table in ("customers", "orders"):
        folder = warehouse / "shop" / table
        folder.mkdir(parents=True)
        pq.write_table(pacsv.read_csv(DATA / f"{table}.csv"), folder / "part-00000.parquet")
    labels = pacsv.read_csv(DATA / "value_labels.csv", convert_options=pacsv.ConvertOptions(column_types={"ds": pa.string()}))
    for value in pc.unique(labels.column("ds")).to_pylist():
        folder = lake / "value_labels" / f"ds={value}"
        folder.mkdir(parents=True)
        rows = labels.filter(pc.equal(labels.column("ds"), value)).drop_columns(["ds"])
        pq.write_table(rows, folder / "part-00000.parquet")

    def resolve(schema, name):
        if schema:
            return folder_table(warehouse / schema / name, f"{schema}.{name}")
        return folder_table(lake / name, name, {"ds": "VARCHAR"})

    def partition(dataset: str) -> Path:
        return lake / dataset / f"ds={DS}"

    rows = {}
    rows["orders_daily"] = run_to_parquet(
        (SQL / "daily_orders.sql").read_text(),
        "bigquery",
        partition("orders_daily") / "part-00000.parquet",
        resolve,
        named={"ds": date_literal(DS)},
    )
    for sql, dataset in (("customer_features", "features"), ("training_set", "training")):
        rows[dataset] = run_to_parquet(
            (SQL / f"{sql}.sql").read_text(),
            "trino",
            partition(dataset) / "part-00000.parquet",
            resolve,
            positional=[string_literal(DS)],
        )

    uri = {
        name: partition(name).as_uri()
        for name in (
            "training",
            "channels/train",
            "channels/validation",
            "channels/inference",
            "model",
            "predictions",
            "outputs",
        )
    }
    logs = {
        "prepare": run_job(
            "prepare.py",
            "--input",
            uri["training"],
            "--train-output",
            uri["channels/train"],
            "--validation-output",
            uri["channels/validation"],
            "--inference-output",
            uri["channels/inference"],
            "--inference-shard-rows",
            "700",  # more than one inference file, as on a big day
        ),
        "train": run_job(
            "train.py",
            "--train",
            uri["channels/train"],
            "--validation",
            uri["channels/validation"],
            "--model-output",
            uri["model"],
            "--max-depth",
            "8",
            "--n-estimators",
            "150",
        ),
        "score": run_job(
            "score.py", "--model", uri["model"], "--input", uri["channels/inference"], "--output", uri["predictions"]
        ),
        "postprocess": run_job("postprocess.py", "--input", uri["predictions"], "--output", uri["outputs"], "--offers", OFFERS),
    }
    with (DATA / "customers.csv").open(newline="") as f:
        customers = [row["customer_key"] for row in csv.DictReader(f)]
    return {"root": root, "partition": partition, "uri": uri, "rows": rows, "logs": logs, "customers": customers}


def test_sql_steps_keep_every_customer(day):
    assert day["rows"] == {
        "orders_daily": len(day["customers"]),
        "features": len(day["customers"]),
        "training": len(day["customers"]),
    }
    training = pq.read_table(day["partition"]("training") / "part-00000.parquet")
    assert training.column("customer_key").type == pa.string()
    split = training.column("split").to_pylist()
    labelled = [s for s in split if s != "unlabelled"]
    assert 0.25 < len(labelled) / len(split) < 0.35  # ~30% of customers labelled per day
    assert 0.12 < labelled.count("validation") / len(labelled) < 0.28  # ~20% held out
    for key, s in zip(training.column("customer_key").to_pylist(), split, strict=True):
        if s != "unlabelled":
            assert (s == "validation") == (int(key[2:]) % 5 == 0)  # the same rule in every engine
    assert set(training.column("label").drop_null().to_pylist()) == set(CLASSES)
    features = pq.read_table(day["partition"]("features") / "part-00000.parquet")
    assert pc.min(features.column("orders_28d")).as_py() == 0  # customers without orders are kept


def test_prepare_writes_header_channels_and_headerless_inference(day):
    train = read_csv_lines(day["partition"]("channels/train"))
    assert train[0][:2] == ["customer_key", "label"] and len(train[0]) > 2
    inference = read_csv_lines(day["partition"]("channels/inference"))
    assert len(list(day["partition"]("channels/inference").glob("*.csv"))) == 3
    assert len(inference) == len(day["customers"])
    assert all(re.fullmatch(r"C-\d{6}", row[0]) for row in inference)
    assert len(inference[0]) == len(train[0]) - 1


def test_training_learns_the_classes(day):
    logs = day["logs"]["train"]
    accuracy = float(re.search(r"validation:accuracy=([0-9.]+)", logs).group(1))
    assert re.search(r"train:accuracy=([0-9.]+)", logs)
    assert accuracy >= 0.6, logs
    model = day["partition"]("model")
    assert {"model.joblib", "metrics.json", "features.json"} <= {p.name for p in model.iterdir()}


def test_every_customer_scored_exactly_once(day):
    predictions = read_csv_lines(day["partition"]("predictions"))
    assert all(len(row) == 3 for row in predictions)
    keys = [row[0] for row in predictions]
    assert sorted(keys) == sorted(day["customers"]) and len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"C-\d{6}", key) for key in keys)  # string ids, as written
    assert {row[1] for row in predictions} <= set(CLASSES)
    assert all(0.0 < float(row[2]) <= 1.0 for row in predictions)


def test_postprocess_keeps_every_prediction(day):
    outputs = outputs_table(day["partition"]("outputs"))
    assert outputs.num_rows == len(read_csv_lines(day["partition"]("predictions")))
    assert set(outputs.column("offer").to_pylist()) <= {pair.split("=")[1] for pair in OFFERS.split(",")}
    vip = outputs.filter(pc.equal(outputs.column("value_class"), "vip")).sort_by("rank")
    assert vip.column("rank").to_pylist() == list(range(1, vip.num_rows + 1))


def test_sharded_postprocess_gives_the_same_rows(day, tmp_path):
    total = len(read_csv_lines(day["partition"]("predictions")))
    cut = total // 2 + 17
    for index, (start, end) in enumerate(((0, cut), (cut, total))):
        run_job(
            "postprocess.py",
            "--input",
            day["uri"]["predictions"],
            "--output",
            (tmp_path / f"shard={index:04d}").as_uri(),
            "--offers",
            OFFERS,
            "--row-start",
            str(start),
            "--row-end",
            str(end),
        )
    columns = ["customer_key", "value_class", "confidence", "offer"]

    def rows(table):
        return sorted(zip(*(table.column(c).to_pylist() for c in columns), strict=True))

    sharded = pa.concat_tables(outputs_table(tmp_path / f"shard={i:04d}").select(columns) for i in range(2))
    assert rows(sharded) == rows(outputs_table(day["partition"]("outputs")))
    assert (tmp_path / "shard=0001" / "value_class=vip" / f"part-{cut:012d}.parquet").exists()
