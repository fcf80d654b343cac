"""Pod entrypoint: per-segment target lists from the batch-transform predictions.

    postprocess.py --input URI --output URI --campaigns cook=a,browse=b,...
                   [--row-start N --row-end N]

Reads the predictions (CSV lines `user_id,segment,confidence`, as the transform job wrote
them), ranks each segment's users by confidence, and writes one Parquet file per segment
under OUTPUT/segment=NAME/ with the campaign each list feeds. --row-start/--row-end pick a
shard (rows in file order) when the sizing operator fans the work out; ranks are then
within the shard, and file names carry the shard's first row so shards can be merged.
"""

import argparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

PREDICTION_SCHEMA = pa.schema([("user_id", pa.int64()), ("segment", pa.string()), ("confidence", pa.float64())])


def read_predictions(uri, row_start=None, row_end=None) -> pa.Table:
    """The predictions, or only rows [row_start, row_end) in file order: memory follows the shard."""
    csv_format = ds.CsvFileFormat(
        read_options=pacsv.ReadOptions(column_names=PREDICTION_SCHEMA.names),
        convert_options=pacsv.ConvertOptions(column_types=PREDICTION_SCHEMA),
    )
    source = ds.dataset(uri, format=csv_format, exclude_invalid_files=False)
    start = row_start or 0
    end = row_end if row_end is not None else float("inf")
    kept, seen = [], 0
    for batch in source.to_batches(use_threads=False):  # in file order
        first, seen = seen, seen + batch.num_rows
        if seen <= start:
            continue
        if first >= end:
            break
        lo, hi = max(start - first, 0), min(end - first, batch.num_rows)
        kept.append(batch.slice(lo, hi - lo))
    return pa.Table.from_batches(kept, schema=PREDICTION_SCHEMA)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--campaigns", required=True, help="segment=campaign pairs, comma separated")
    parser.add_argument("--row-start", type=int)
    parser.add_argument("--row-end", type=int)
    args = parser.parse_args(argv)
    campaigns = dict(pair.split("=", 1) for pair in args.campaigns.split(","))

    predictions = read_predictions(args.input, args.row_start, args.row_end)
    unknown = set(pc.unique(predictions.column("segment")).to_pylist()) - set(campaigns)
    if unknown:
        raise SystemExit(f"segments without a campaign: {sorted(unknown)}; add them to --campaigns")

    fs, root = pafs.FileSystem.from_uri(args.output)
    fs.create_dir(root, recursive=True)
    fs.delete_dir_contents(root, missing_dir_ok=True)  # this task's output folder: a re-run replaces it
    shard = f"{args.row_start or 0:012d}"
    written = {}
    for segment, campaign in sorted(campaigns.items()):
        rows = predictions.filter(pc.equal(predictions.column("segment"), segment))
        rows = rows.sort_by([("confidence", "descending"), ("user_id", "ascending")])
        ranked = pa.table(
            {
                "user_id": rows.column("user_id"),
                "confidence": rows.column("confidence"),
                "rank": pa.array(range(1, rows.num_rows + 1), pa.int64()),
                "campaign": pa.array([campaign] * rows.num_rows, pa.string()),
            }
        )
        fs.create_dir(f"{root}/segment={segment}", recursive=True)
        pq.write_table(ranked, f"{root}/segment={segment}/part-{shard}.parquet", filesystem=fs)
        written[segment] = rows.num_rows
    print(f"postprocess rows_in={predictions.num_rows} " + " ".join(f"{k}={v}" for k, v in written.items()))


if __name__ == "__main__":
    main()
