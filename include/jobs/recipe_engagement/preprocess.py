"""Pod entrypoint: turn the day's training set into SageMaker channels.

    preprocess.py --input URI --train-output URI --validation-output URI
                  --inference-output URI [--inference-shard-rows N]

URIs are anything pyarrow opens (s3://, file://, a local path). Streams record batches, so
memory stays flat whatever the day's size:
- train/validation: CSV with a header, `label` first, then the model features;
- inference: CSV without a header (SageMaker batch transform splits it by line), `user_id`
  first, then the same features, in files of at most --inference-shard-rows rows.
Each output partition is emptied first, so a re-run overwrites instead of appending.
"""

import argparse
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from water.job_output import output_folder

PLATFORMS = ("ios", "android", "web")
COUNT_COLUMNS = (
    "tenure_days",
    "n_events",
    "n_sessions",
    "n_views",
    "n_saves",
    "n_cooks",
    "n_searches",
    "n_shares",
    "n_recipes",
    "total_duration_s",
    "cook_rate",
    "save_rate",
)
FEATURES = tuple(f"is_{p}" for p in PLATFORMS) + COUNT_COLUMNS


def model_features(batch: pa.RecordBatch) -> list[pa.Array]:
    platform = batch.column("platform")
    columns = [pc.cast(pc.equal(platform, p), pa.int8()) for p in PLATFORMS]
    for name in COUNT_COLUMNS:
        columns.append(pc.fill_null(pc.cast(batch.column(name), pa.float64()), 0.0))
    return columns


class PartitionWriter:
    """CSV files in one output partition, rotated every `shard_rows` rows."""

    def __init__(self, uri, header, shard_rows=None):
        self.fs, self.root = output_folder(uri)
        self.header, self.shard_rows = header, shard_rows
        self.writer = self.stream = None
        self.shard, self.rows_in_shard, self.rows = 0, 0, 0

    def _open(self, schema):
        name = f"part-{self.shard:05d}.csv"
        self.stream = self.fs.open_output_stream(f"{self.root}/{name}")
        options = pacsv.WriteOptions(include_header=self.header, quoting_style="none", quoting_header="none")
        self.writer = pacsv.CSVWriter(self.stream, schema, write_options=options)
        self.shard += 1
        self.rows_in_shard = 0

    def write(self, table: pa.Table):
        while table.num_rows:
            if self.writer is None:
                self._open(table.schema)
            room = (self.shard_rows - self.rows_in_shard) if self.shard_rows else table.num_rows
            chunk, table = table.slice(0, room), table.slice(room)
            self.writer.write_table(chunk)
            self.rows_in_shard += chunk.num_rows
            self.rows += chunk.num_rows
            if self.shard_rows and self.rows_in_shard >= self.shard_rows:
                self.close()

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.stream.close()
            self.writer = self.stream = None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--train-output", required=True)
    parser.add_argument("--validation-output", required=True)
    parser.add_argument("--inference-output", required=True)
    parser.add_argument("--inference-shard-rows", type=int, default=250_000)
    args = parser.parse_args(argv)

    source = ds.dataset(args.input, format="parquet")
    outputs = {
        "train": PartitionWriter(args.train_output, header=True),
        "validation": PartitionWriter(args.validation_output, header=True),
        "inference": PartitionWriter(args.inference_output, header=False, shard_rows=args.inference_shard_rows),
    }
    rows_in = 0
    for batch in source.to_batches(columns=["user_id", "platform", *COUNT_COLUMNS, "label", "split"]):
        rows_in += batch.num_rows
        features = model_features(batch)
        outputs["inference"].write(pa.table([batch.column("user_id"), *features], names=["user_id", *FEATURES]))
        labelled = pa.table([batch.column("label"), *features], names=["label", *FEATURES])
        split = batch.column("split")
        for name in ("train", "validation"):
            outputs[name].write(labelled.filter(pc.equal(split, name)))
    for writer in outputs.values():
        writer.close()
    counts = " ".join(f"{name}={w.rows}" for name, w in outputs.items())
    print(f"preprocess rows_in={rows_in} {counts} inference_files={outputs['inference'].shard}")
    if outputs["train"].rows == 0:
        sys.exit("no labelled rows for training: check the labels that landed for this day")


if __name__ == "__main__":
    main()
