"""Blank lines in the batch transform's output are not predictions.

SageMaker's batch transform with AssembleWith=Line writes each answer of the inference
handler followed by a newline. An answer that ends with a newline itself (or an empty one,
for an empty mini-batch) leaves a blank line. Athena reads a blank line of the predictions
table (delimited text) as a row with an empty id and no class: counted as it is, it would be
a class named None, and the stats and sizing tasks would fail on it. Checked here:

- the shipped inference handler's answers leave no blank line once assembled;
- the count query (water.targets.cloud.operators.class_counts_query) run on DuckDB over the
  rows Athena's text reader makes of such an output, and the counter reading its result,
  ignore the blank lines and only them;
- the pod entrypoints that read predictions (include/jobs/**) skip them.
"""

from __future__ import annotations

import importlib.util
import sys
from unittest import mock

import pandas as pd
import pytest

from tests.contract.cloud import DS, spec_of, steps
from water import paths


def assemble_with_line(answers: list[str]) -> str:
    """A transform output file as SageMaker writes it with AssembleWith=Line."""
    return "".join(f"{answer}\n" for answer in answers)


def load_script(relative: str):
    path = paths.include_dir() / relative
    module_spec = importlib.util.spec_from_file_location(f"blank_lines_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    with mock.patch.object(sys, "path", [str(path.parent), *sys.path]):  # its helpers import as in the pod
        module_spec.loader.exec_module(module)
    return module


def test_the_inference_handlers_answers_assemble_without_blank_lines():
    handler = load_script("training/recipe_engagement/inference.py")
    batches = [
        pd.DataFrame({"user_id": [1, 2], "segment": ["a", "b"], "confidence": [0.9, 0.8]}),
        pd.DataFrame({"user_id": [3], "segment": ["a"], "confidence": [0.7]}),
    ]
    output = assemble_with_line([handler.output_fn(batch, "text/csv") for batch in batches])
    assert output.splitlines() == ["1,a,0.9", "2,b,0.8", "3,a,0.7"]


# --- the count, as Athena runs it --------------------------------------------------------------


def athena_rows(text: str) -> list[tuple]:
    """The rows Athena's delimited-text reader (LazySimpleSerDe, FIELDS TERMINATED BY ',')
    makes of the file: one per line; missing trailing fields are NULL, an empty string field
    stays '', an empty or unparsable double is NULL."""
    rows = []
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        fields = line.split(",") + [None] * 3
        key, label, confidence = fields[:3]
        try:
            score = float(confidence) if confidence not in (None, "") else None
        except ValueError:
            score = None
        rows.append((key, label, score))
    return rows


def run_count(counter, text: str) -> dict[str, int]:
    """The counter's query on DuckDB over those rows, its result paged back as Athena pages it."""
    import duckdb
    import sqlglot
    from airflow.providers.amazon.aws.hooks.athena import AthenaHook

    from water.targets.cloud.operators import PREDICTION_COLUMNS

    _, count = counter.requests(DS)
    db = duckdb.connect()
    columns = ", ".join(f'"{name}" {"DOUBLE" if kind == "double" else "VARCHAR"}' for name, kind in PREDICTION_COLUMNS)
    db.execute(f'CREATE TABLE "{counter.table}" ({columns}, ds VARCHAR)')
    db.executemany(f'INSERT INTO "{counter.table}" VALUES (?, ?, ?, ?)', [(*row, DS) for row in athena_rows(text)])
    db.execute(f'INSERT INTO "{counter.table}" VALUES (?, ?, ?, ?)', ("9", "other_day", 1.0, "2026-10-31"))
    result = db.execute(sqlglot.transpile(count["QueryString"], read="trino", write="duckdb")[0]).fetchall()

    def cell(value):
        return {} if value is None else {"VarCharValue": str(value)}

    page = {"ResultSet": {"Rows": [{"Data": [cell("class"), cell("n")]}, *({"Data": [cell(c), cell(n)]} for c, n in result)]}}
    with (
        mock.patch.object(AthenaHook, "run_query", return_value="q-1"),
        mock.patch.object(AthenaHook, "poll_query_status", return_value="SUCCEEDED"),
        mock.patch.object(AthenaHook, "get_query_results_paginator", return_value=[page]),
    ):
        return counter(DS)


@pytest.mark.parametrize(("pipeline", "name"), steps("inference_stats"))
def test_the_count_ignores_blank_lines(cloud_dags, pipeline, name):
    counter = cloud_dags(pipeline).get_task(name).counter
    first, second = spec_of(pipeline).classes[:2]
    answers = [f"1,{first},0.9\n2,{second},0.8\n", f"3,{first},0.7", "", f"4,{second},0.6\n"]  # HEAD's handler ended each with \n
    text = assemble_with_line(answers) + "  \n"  # and a line of blanks
    assert "\n\n" in text
    assert run_count(counter, text) == {first: 2, second: 2}


@pytest.mark.parametrize(("pipeline", "name"), steps("inference_stats"))
def test_a_line_with_an_id_and_no_class_is_refused(cloud_dags, pipeline, name):
    counter = cloud_dags(pipeline).get_task(name).counter
    first = spec_of(pipeline).classes[0]
    with pytest.raises(ValueError, match=r"1 prediction line.* no class"):
        run_count(counter, assemble_with_line([f"1,{first},0.9", "2"]))


# --- the entrypoints that read predictions ---------------------------------------------------


def test_the_route_entrypoints_skip_blank_lines(tmp_path):
    route_lists = load_script("jobs/recipe_engagement/route_lists.py")
    classes = spec_of("recipe_engagement").classes
    (tmp_path / "part-0.csv.out").write_text(
        assemble_with_line([f"1,{classes[0]},0.9\n2,{classes[1]},0.8\n", "", f"3,{classes[0]},0.7\n"])
    )
    rows = route_lists.read_route_predictions(str(tmp_path), classes)
    assert rows.column("user_id").to_pylist() == [1, 2, 3]
    shard = route_lists.read_route_predictions(str(tmp_path), classes, row_start=1, row_end=3)
    assert shard.column("user_id").to_pylist() == [2, 3]  # row numbers count predictions, not lines


def test_the_customer_value_postprocess_skips_blank_lines(tmp_path):
    postprocess = load_script("jobs/customer_value/postprocess.py")
    classes = spec_of("customer_value").classes
    (tmp_path / "part-00000.csv").write_text(assemble_with_line([f"c1,{classes[0]},0.9\n", f"c2,{classes[1]},0.8\n", ""]))
    rows = postprocess.read_predictions(str(tmp_path))
    assert rows.column("customer_key").to_pylist() == ["c1", "c2"]
    assert postprocess.read_predictions(str(tmp_path), 1, 2).column("customer_key").to_pylist() == ["c2"]
