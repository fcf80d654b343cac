"""Pod entrypoint of the `first_cook_nudge` route: a ranked list of browsers, each with one easy recipe.

    first_cook_nudge.py --input URI --output URI --classes browse --events URI
                        [--choices 20] [--popular 200] [--campaign first_cook_nudge]
                        [--row-start N --row-end N]

--input is the predictions partition (CSV lines `user_id,segment,confidence`, no header);
only rows whose class is in --classes are read, and --row-start/--row-end pick the route's
rows [start, end) counted in file order AFTER that filter. --events is the day's `raw`
partition (Parquet; extract.sql).

A light job: the day's cook events are streamed once into fixed-size counts per recipe (how
often cooked, total cooking time); among the --popular most cooked recipes, the --choices
quickest to cook are the easy ones. Every user gets one of them (by user_id, so a user keeps
it whichever shard they land in) and a message saying how long it takes. Nothing per user
is read from the events: memory is the shard's rows plus a constant.

Writes OUTPUT/segment=<class>/part-<row_start>.parquet, the schema every route of the demo
writes (the segment comes from the Hive folder): user_id int64, confidence double, rank int64
(by confidence within the segment and shard), campaign string, recipe_ids list<int64> (one
recipe), message string.
"""

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

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


def data_files(uri):
    """(filesystem, the partition's data files in path order): '.' and '_' files are not data."""
    fs, root = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    names = [i.path for i in infos if i.type == pafs.FileType.File]
    keep = [p for p in names if not any(part.startswith((".", "_")) for part in p[len(root):].split("/"))]
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
    fs, root = pafs.FileSystem.from_uri(output)
    fs.create_dir(root, recursive=True)
    fs.delete_dir_contents(root, missing_dir_ok=True)  # this task's output folder: a re-run replaces it
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
        fs.create_dir(f"{root}/segment={segment}", recursive=True)
        pq.write_table(table, f"{root}/segment={segment}/part-{shard_start:012d}.parquet", filesystem=fs)
        written[segment] = n
    return written


def easy_recipes(uri, popular: int, choices: int):
    """(recipe ids, mean minutes to cook them): the quickest of the day's most cooked recipes."""
    fs, files = data_files(uri)
    source = ds.dataset(files, filesystem=fs, format="parquet")
    cooked = (pc.field("event_type") == "cook") & pc.field("recipe_id").is_valid()
    times, seconds = np.zeros(0), np.zeros(0)
    for batch in source.to_batches(
        columns=["recipe_id", "duration_s"], filter=cooked, use_threads=False, batch_readahead=1, fragment_readahead=1
    ):
        recipe = batch.column("recipe_id").to_numpy()
        duration = pc.fill_null(batch.column("duration_s"), 0.0).to_numpy()
        counted, spent = np.bincount(recipe), np.bincount(recipe, weights=duration)
        if len(counted) > len(times):
            times, seconds = np.pad(times, (0, len(counted) - len(times))), np.pad(seconds, (0, len(counted) - len(seconds)))
        times[: len(counted)] += counted
        seconds[: len(counted)] += spent
    most_cooked = np.lexsort((np.arange(len(times)), -times))[:popular]
    most_cooked = most_cooked[times[most_cooked] > 0]
    if not len(most_cooked):
        raise SystemExit(f"no cook events in {uri}: no recipe to suggest")
    minutes = seconds[most_cooked] / times[most_cooked] / 60
    quickest = np.lexsort((most_cooked, minutes))[:choices]
    return most_cooked[quickest], minutes[quickest]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--classes", required=True, help="the route's classes, comma separated")
    parser.add_argument("--events", required=True, help="the day's raw events partition")
    parser.add_argument("--choices", type=int, default=20, help="easy recipes to hand out")
    parser.add_argument("--popular", type=int, default=200, help="among this many most cooked recipes")
    parser.add_argument("--campaign", default="first_cook_nudge")
    parser.add_argument("--row-start", type=int)
    parser.add_argument("--row-end", type=int)
    args = parser.parse_args(argv)
    classes = args.classes.split(",")

    rows = ranked(read_route_predictions(args.input, classes, args.row_start, args.row_end))
    recipes, minutes = easy_recipes(args.events, args.popular, args.choices)
    pick = rows.column("user_id").to_numpy() % len(recipes)  # by user: the same recipe in any shard
    offsets = pa.array(np.arange(rows.num_rows + 1, dtype=np.int32))
    recipe_ids = pa.ListArray.from_arrays(offsets, pa.array(recipes[pick], pa.int64()))
    texts = [f"Cook your first recipe today: recipe {r}, about {max(1, round(m))} minutes" for r, m in zip(recipes, minutes)]
    message = pa.array(texts).take(pa.array(pick))
    written = write_lists(args.output, rows, classes, args.row_start or 0, args.campaign, recipe_ids, message)
    counts = " ".join(f"{k}={v}" for k, v in written.items())
    print(f"first_cook_nudge rows_in={rows.num_rows} easy_recipes={len(recipes)} {counts}")


if __name__ == "__main__":
    main()
