"""Pod entrypoint: train the customer value classifier (scikit-learn random forest).

    train.py --train URI --validation URI --model-output URI
             [--n-estimators N] [--max-depth N] [--min-samples-leaf N] [--random-state N]

Reads the train and validation CSV files (header; `customer_key`, `label`, then the
features), fits a RandomForestClassifier (deterministic: fixed random_state, one job), and
writes model.joblib, features.json and metrics.json into the model output folder (emptied
first). Prints `train:accuracy=0.9123` and `validation:accuracy=0.8731` lines.
"""

import argparse
import io
import json

import joblib
import numpy as np
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, confusion_matrix

from water.job_output import output_folder

ID, LABEL = "customer_key", "label"


def read_split(uri):
    """The features (a DataFrame, file order) and labels of one CSV partition."""
    csv_format = ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(column_types={ID: "string", LABEL: "string"}))
    frame = ds.dataset(uri, format=csv_format).to_table().to_pandas()
    if frame.empty:
        raise SystemExit(f"no rows in {uri}")
    return frame.drop(columns=[ID, LABEL]).astype("float64"), frame[LABEL].astype(str)


def write_bytes(fs, path, data: bytes):
    with fs.open_output_stream(path) as out:
        out.write(data)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--validation", required=True)
    parser.add_argument("--model-output", required=True)
    parser.add_argument("--n-estimators", type=int, default=200)
    parser.add_argument("--max-depth", type=int, default=8)
    parser.add_argument("--min-samples-leaf", type=int, default=2)
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)

    x_train, y_train = read_split(args.train)
    x_valid, y_valid = read_split(args.validation)
    model = RandomForestClassifier(
        n_estimators=args.n_estimators,
        max_depth=args.max_depth,
        min_samples_leaf=args.min_samples_leaf,
        random_state=args.random_state,
        n_jobs=1,
    )
    model.fit(x_train, y_train)

    train_accuracy = accuracy_score(y_train, model.predict(x_train))
    predicted = model.predict(x_valid)
    accuracy = accuracy_score(y_valid, predicted)
    classes = [str(c) for c in model.classes_]
    majority = float(y_valid.value_counts(normalize=True).max())
    print(f"train:accuracy={train_accuracy:.4f};")
    print(f"validation:accuracy={accuracy:.4f};")
    print(f"validation majority-class accuracy={majority:.4f}; rows train={len(y_train)} validation={len(y_valid)}")

    fs, root = output_folder(args.model_output)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    write_bytes(fs, f"{root}/model.joblib", buffer.getvalue())
    schema = {"features": list(x_train.columns), "classes": classes}
    write_bytes(fs, f"{root}/features.json", json.dumps(schema, indent=2).encode())
    metrics = {
        "train_accuracy": round(float(train_accuracy), 6),
        "validation_accuracy": round(float(accuracy), 6),
        "validation_majority_accuracy": round(majority, 6),
        "train_rows": len(y_train),
        "validation_rows": len(y_valid),
        "classes": classes,
        "confusion_matrix": np.asarray(confusion_matrix(y_valid, predicted, labels=classes)).tolist(),
    }
    write_bytes(fs, f"{root}/metrics.json", json.dumps(metrics, indent=2, sort_keys=True).encode())


if __name__ == "__main__":
    main()
