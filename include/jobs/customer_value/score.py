"""Pod entrypoint: score every customer with the trained model.

    score.py --model URI --input URI --output URI

Reads model.joblib and features.json from the model folder and the inference CSV files
(no header: `customer_key`, then the features); writes one predictions file per input file
into the output folder (emptied first), CSV lines without a header in water's predictions
contract `id,class,confidence`: here `customer_key,value_class,confidence`.
"""

import argparse
import io
import json

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from water.job_output import output_folder

ID = "customer_key"


def load_model(uri):
    fs, root = pafs.FileSystem.from_uri(uri)
    with fs.open_input_file(f"{root}/features.json") as f:
        schema = json.loads(f.read())
    with fs.open_input_file(f"{root}/model.joblib") as f:
        model = joblib.load(io.BytesIO(f.read()))
    return model, schema["features"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)

    model, features = load_model(args.model)
    csv_format = ds.CsvFileFormat(
        read_options=pacsv.ReadOptions(column_names=[ID, *features]),
        convert_options=pacsv.ConvertOptions(column_types={ID: pa.string(), **{name: pa.float64() for name in features}}),
    )
    source = ds.dataset(args.input, format=csv_format)
    out_fs, out_root = output_folder(args.output)
    classes = np.asarray(model.classes_).astype(str)
    rows, counts = 0, {}
    for index, fragment in enumerate(sorted(source.get_fragments(), key=lambda f: f.path)):
        frame = fragment.to_table(schema=source.schema).to_pandas()
        if frame.empty:
            continue
        probabilities = model.predict_proba(frame[features].fillna(0.0))
        best = probabilities.argmax(axis=1)
        predictions = pa.table(
            {
                ID: pa.array(frame[ID].astype(str), pa.string()),
                "class": pa.array(classes[best], pa.string()),
                "confidence": pa.array(probabilities[np.arange(len(best)), best].round(6), pa.float64()),
            }
        )
        options = pacsv.WriteOptions(include_header=False, quoting_style="none")
        with out_fs.open_output_stream(f"{out_root}/part-{index:05d}.csv") as out:
            pacsv.write_csv(predictions, out, write_options=options)
        rows += predictions.num_rows
        for name, n in zip(*np.unique(classes[best], return_counts=True), strict=True):
            counts[str(name)] = counts.get(str(name), 0) + int(n)
    print(f"score rows={rows} " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
