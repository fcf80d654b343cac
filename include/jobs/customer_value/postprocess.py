"""Pod entrypoint: per-class offer lists from the customer value predictions.

    postprocess.py --input URI --output URI --offers vip=a,loyal=b,...
                   [--row-start N --row-end N]

Reads the predictions (CSV lines `customer_key,value_class,confidence`, no header), ranks
each class's customers by confidence, and writes one Parquet file per class under
OUTPUT/value_class=NAME/ with columns customer_key, confidence, rank and offer.
--row-start/--row-end pick a shard (rows [start, end) in file order) when the sizing
operator fans the work out; ranks are then within the shard, and file names carry the
shard's first row (part-<row_start>.parquet) so shards can be merged.
"""

import argparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from water.job_output import folder, output_folder

PREDICTION_SCHEMA = pa.schema([("customer_key", pa.string()), ("value_class", pa.string()), ("confidence", pa.float64())])


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
    parser.add_argument("--offers", required=True, help="class=offer pairs, comma separated")
    parser.add_argument("--row-start", type=int)
    parser.add_argument("--row-end", type=int)
    args = parser.parse_args(argv)
    offers = dict(pair.split("=", 1) for pair in args.offers.split(","))

    predictions = read_predictions(args.input, args.row_start, args.row_end)
    unknown = set(pc.unique(predictions.column("value_class")).to_pylist()) - set(offers)
    if unknown:
        raise SystemExit(f"classes without an offer: {sorted(unknown)}; add them to --offers")

    fs, root = output_folder(args.output)  # this task's output folder: a re-run replaces it
    shard = f"{args.row_start or 0:012d}"
    written = {}
    for value_class, offer in sorted(offers.items()):
        rows = predictions.filter(pc.equal(predictions.column("value_class"), value_class))
        rows = rows.sort_by([("confidence", "descending"), ("customer_key", "ascending")])
        ranked = pa.table(
            {
                "customer_key": rows.column("customer_key"),
                "confidence": rows.column("confidence"),
                "rank": pa.array(range(1, rows.num_rows + 1), pa.int64()),
                "offer": pa.array([offer] * rows.num_rows, pa.string()),
            }
        )
        out = folder(fs, f"{root}/value_class={value_class}")
        pq.write_table(ranked, f"{out}/part-{shard}.parquet", filesystem=fs)
        written[value_class] = rows.num_rows
    print(f"postprocess rows_in={predictions.num_rows} " + " ".join(f"{k}={v}" for k, v in written.items()))


if __name__ == "__main__":
    main()
