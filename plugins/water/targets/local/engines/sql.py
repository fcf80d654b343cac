"""Run BigQuery or Trino (Athena) SQL on DuckDB, the same file production runs.

The SQL is parsed in its own dialect, its query parameters are bound as typed literals
(BigQuery `@ds` DATE, Athena's positional `?`), and sqlglot writes it out for DuckDB.
Every table it names becomes a DuckDB view over Parquet files found by `resolve_table`.
The result goes to one Parquet file in a stable order, so a re-run writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

# (schema, table) -> (Parquet glob, Hive partition column types)
TableResolver = Callable[[str | None, str], tuple[list[str], dict[str, str]]]


class MissingTable(LookupError):
    pass


def bind_parameters(tree: exp.Expr, named: Mapping[str, exp.Expr], positional: Sequence[exp.Expr]) -> exp.Expr:
    remaining = list(positional)

    def replace(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Parameter):
            name = node.name
            if name not in named:
                raise KeyError(f"query parameter @{name} has no value")
            return named[name].copy()
        if isinstance(node, exp.Placeholder) and not node.args.get("this"):  # a bare ?
            if not remaining:
                raise KeyError("more ? placeholders than parameters")
            return remaining.pop(0).copy()
        return node

    bound = tree.transform(replace)
    if remaining:
        raise KeyError(f"{len(remaining)} parameter(s) left over: the SQL has fewer ? placeholders")
    return bound


def translate(
    sql: str, dialect: str, named: Mapping[str, exp.Expr] | None = None, positional: Sequence[exp.Expr] | None = None
) -> tuple[str, list[tuple[str | None, str]]]:
    """DuckDB SQL for one statement, and the (schema, table) pairs it reads."""
    statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    if len(statements) != 1:
        raise ValueError(f"expected one SQL statement, found {len(statements)}")
    tree = bind_parameters(statements[0], named or {}, positional or [])
    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
    tables = sorted(
        {(t.db or None, t.name) for t in tree.find_all(exp.Table) if t.name not in ctes},
        key=lambda pair: (pair[0] or "", pair[1]),
    )
    return tree.sql(dialect="duckdb"), tables


def run_to_parquet(
    sql: str,
    dialect: str,
    output_file: Path,
    resolve_table: TableResolver,
    named: dict[str, exp.Expression] | None = None,
    positional: list[exp.Expression] | None = None,
    threads: int | None = None,
) -> int:
    """Run the query and write its result to output_file; returns the row count."""
    import duckdb

    query, tables = translate(sql, dialect, named, positional)
    con = duckdb.connect(":memory:")
    try:
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        for schema, name in tables:
            files, hive_types = resolve_table(schema, name)
            source = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
            qualified = f'"{schema}"."{name}"' if schema else f'"{name}"'
            if schema:
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            types = ", ".join(f"'{k}': {v}" for k, v in hive_types.items())
            con.execute(
                f"CREATE VIEW {qualified} AS SELECT * FROM read_parquet({source}, "
                f"hive_partitioning = true, union_by_name = true" + (f", hive_types = {{{types}}}" if types else "") + ")"
            )
        output_file.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY (SELECT * FROM ({query}) ORDER BY ALL) TO '{output_file}' (FORMAT parquet, COMPRESSION snappy)")
        row = con.execute(f"SELECT count(*) FROM read_parquet('{output_file}')").fetchone()
        assert row is not None  # count(*) is one row
        return int(row[0])
    finally:
        con.close()


def folder_table(folder: Path, label: str, hive_types: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The committed Parquet files of a table under `folder` (Hive-style partitions allowed).

    Folders and files whose names start with "." or "_" are not the table's: another run's
    stage may be writing its `.staging-ds=…` folder right now.
    """
    files = [
        str(p)
        for p in sorted(folder.rglob("*.parquet"))
        if not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)
    ]
    if not files:
        raise MissingTable(f"table {label} has no Parquet files under {folder}")
    broken = [f for f in files if Path(f).stat().st_size == 0]
    if broken:  # a table with no rows is a Parquet file with none; zero bytes is a broken write
        raise MissingTable(f"table {label}: {broken[0]} is zero bytes, not a Parquet file")
    return files, hive_types or {}


def date_literal(value: str) -> exp.Expression:
    return exp.cast(exp.Literal.string(value), exp.DataType.build("DATE"))


def string_literal(value: str) -> exp.Expression:
    return exp.Literal.string(value)


def distinct_values(files: list[str], hive_types: dict[str, str], column: str, ds: str | None) -> list[Any]:
    """The distinct values of one column of a table (of one ds partition when it has one)."""
    import duckdb

    source = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    types = ", ".join(f"'{k}': {v}" for k, v in hive_types.items())
    where = " WHERE ds = $ds" if ds is not None and "ds" in hive_types else ""
    con = duckdb.connect(":memory:")
    try:
        return [
            row[0]
            for row in con.execute(
                f'SELECT DISTINCT "{column}" FROM read_parquet({source}, hive_partitioning = true, '
                f"union_by_name = true" + (f", hive_types = {{{types}}}" if types else "") + f"){where}",
                {"ds": ds} if where else {},
            ).fetchall()
        ]
    finally:
        con.close()
