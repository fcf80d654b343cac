"""What every route of the demo reads and writes (weekly_menu.py, first_cook_nudge.py, win_back.py).

Reads: the predictions partition, the contract the transform job writes (CSV lines
`user_id,segment,confidence`, no header). The class filter is pushed into the read (only the
route's rows are decoded and kept), and --row-start/--row-end slice the route's rows
[start, end) counted in file order AFTER that filter: a shard of the route.

Writes: OUTPUT/segment=<class>/part-<row_start>.parquet, the schema common to every route
(the segment comes from the Hive folder): user_id int64, confidence double, rank int64 (by
confidence within the segment and shard), campaign string, recipe_ids list<int64>, message
string.

A helper module beside its scripts: they run as `python <script>.py`, which puts this folder
on sys.path, and import it as `from route_lists import ...`.
"""

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from water.job_output import folder, output_folder

PREDICTION_SCHEMA = pa.schema([("user_id", pa.int64()), ("segment", pa.string()), ("confidence", pa.float64())])
OUTPUT_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("confidence", pa.float64()),
        ("rank", pa.int64()),
        ("campaign", pa.string()),
        ("recipe_ids", pa.list_(pa.int64())),
        ("message", pa.string()),
    ]
)


def route_parser(doc: str, events: bool = False) -> argparse.ArgumentParser:
    """The arguments a route's entrypoint takes first: --input, --output, --classes (and --events)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--classes", required=True, help="the route's classes, comma separated")
    if events:
        parser.add_argument("--events", required=True, help="the day's raw events partition")
    return parser


def parse_route_args(parser: argparse.ArgumentParser, campaign: str, argv=None):
    """(args, the route's classes): the route's own arguments, then --campaign, --row-start, --row-end."""
    parser.add_argument("--campaign", default=campaign)
    parser.add_argument("--row-start", type=int)
    parser.add_argument("--row-end", type=int)
    args = parser.parse_args(argv)
    return args, args.classes.split(",")


def data_files(uri):
    """(filesystem, the partition's data files in path order): '.' and '_' files are not data."""
    fs, root = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    names = [i.path for i in infos if i.type == pafs.FileType.File]
    keep = [p for p in names if not any(part.startswith((".", "_")) for part in p[len(root) :].split("/"))]
    return fs, sorted(keep)


def read_route_predictions(uri, classes, row_start=None, row_end=None) -> pa.Table:
    """The route's rows (class in `classes`), or only its rows [row_start, row_end), in file order."""
    fs, files = data_files(uri)
    csv_format = ds.CsvFileFormat(
        read_options=pacsv.ReadOptions(column_names=PREDICTION_SCHEMA.names),
        convert_options=pacsv.ConvertOptions(column_types=PREDICTION_SCHEMA),
    )
    source = ds.dataset(files, filesystem=fs, format=csv_format, schema=PREDICTION_SCHEMA)
    start = row_start or 0
    end = row_end if row_end is not None else float("inf")
    kept, seen = [], 0
    batches = source.to_batches(  # in file order, a batch or two in flight: memory follows the shard
        filter=pc.field("segment").isin(classes), use_threads=False, batch_readahead=1, fragment_readahead=1
    )
    for batch in batches:
        first, seen = seen, seen + batch.num_rows
        if seen <= start:
            continue
        if first >= end:
            break
        lo, hi = max(start - first, 0), min(end - first, batch.num_rows)
        kept.append(batch.slice(lo, hi - lo))
    return pa.Table.from_batches(kept, schema=PREDICTION_SCHEMA)


def ranked(rows: pa.Table) -> pa.Table:
    """Rows sorted by segment, then confidence (best first), then user_id."""
    return rows.sort_by([("segment", "ascending"), ("confidence", "descending"), ("user_id", "ascending")])


def write_lists(output, rows: pa.Table, classes, shard_start, campaign, recipe_ids: pa.Array, message: pa.Array):
    """One Parquet file per class under OUTPUT/segment=<class>/ (rows as ranked() ordered them)."""
    fs, root = output_folder(output)  # this task's output folder: a re-run replaces it
    segments = rows.column("segment")
    written = {}
    for segment in classes:
        mask = pc.equal(segments, segment)
        n = int(pc.sum(mask).as_py() or 0)
        table = pa.table(
            {
                "user_id": rows.column("user_id").filter(mask),
                "confidence": rows.column("confidence").filter(mask),
                "rank": pa.array(np.arange(1, n + 1, dtype=np.int64)),
                "campaign": pa.repeat(pa.scalar(campaign, pa.string()), n),
                "recipe_ids": recipe_ids.filter(mask),
                "message": message.filter(mask),
            },
            schema=OUTPUT_SCHEMA,
        )
        out = folder(fs, f"{root}/segment={segment}")
        pq.write_table(table, f"{out}/part-{shard_start:012d}.parquet", filesystem=fs)
        written[segment] = n
    return written
