"""Script-mode training script: the same file under SageMaker's contract and Vertex AI's.

SageMaker (scikit-learn framework container) runs `python train.py --max_iter 150 ...` with the
hyperparameters as command-line arguments and the SM_* environment: SM_CHANNEL_TRAIN and
SM_CHANNEL_VALIDATION hold the channels' CSV files (header; `label` first), the model goes
to SM_MODEL_DIR (SageMaker tars it into model.tar.gz) and extra output to SM_OUTPUT_DATA_DIR.

Vertex AI (a CustomJob's Python package on the prebuilt scikit-learn image) passes the same
arguments and AIP_TRAINING_DATA_URI / AIP_VALIDATION_DATA_URI / AIP_TEST_DATA_URI
(AIP_DATA_FORMAT=csv): a gs:// URI, read through the Cloud Storage FUSE mount at
/gcs/<bucket>/..., of a folder or of CSV files by wildcard (gs://b/p/*.csv). The model's
files go to AIP_MODEL_DIR (gs:// too: written through /gcs), metrics.json beside them, as
Vertex has no output-data folder.

Metrics are printed as `validation:accuracy=0.8731` for the job's metric definitions, and
kept in metrics.json under "metrics" by the same names.
"""

import argparse
import glob
import json
import os

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, confusion_matrix

GCS_MOUNT = "/gcs"  # where Vertex mounts Cloud Storage buckets (Cloud Storage FUSE)


def local_path(uri):
    """A path or gs:// URI as a path here: gs://bucket/x is /gcs/bucket/x on Vertex."""
    if uri.startswith("gs://"):
        return os.path.join(GCS_MOUNT, uri[len("gs://") :])
    return uri


def channel_files(uri):
    """The CSV files of a channel: a folder's, or those a wildcard (gs://b/p/*.csv) matches."""
    path = local_path(uri)
    if glob.has_magic(path):
        return sorted(f for f in glob.glob(path) if os.path.isfile(f))
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(path, "*.csv")))
    return [path] if os.path.isfile(path) else []


def read_channel(uri):
    files = channel_files(uri)
    if not files:
        raise SystemExit(f"no CSV files in channel {uri}")
    frame = pd.concat((pd.read_csv(f) for f in files), ignore_index=True)
    return frame.drop(columns=["label"]), frame["label"].astype(str)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max_iter", type=int, default=150)
    parser.add_argument("--learning_rate", type=float, default=0.1)
    parser.add_argument("--max_leaf_nodes", type=int, default=31)
    parser.add_argument("--random_state", type=int, default=0)
    env = os.environ.get  # SageMaker's variables, else Vertex's
    parser.add_argument("--model-dir", default=env("SM_MODEL_DIR") or env("AIP_MODEL_DIR"))
    parser.add_argument("--train", default=env("SM_CHANNEL_TRAIN") or env("AIP_TRAINING_DATA_URI"))
    parser.add_argument("--validation", default=env("SM_CHANNEL_VALIDATION") or env("AIP_VALIDATION_DATA_URI"))
    parser.add_argument("--output-data-dir", default=env("SM_OUTPUT_DATA_DIR"))
    args, _ = parser.parse_known_args()  # SageMaker may add arguments of its own
    if not (args.model_dir and args.train and args.validation):
        raise SystemExit("no model folder or channels: run under SageMaker's (SM_*) or Vertex's (AIP_*) environment")
    if env("AIP_DATA_FORMAT", "csv") != "csv":
        raise SystemExit(f"AIP_DATA_FORMAT={env('AIP_DATA_FORMAT')}: this script reads csv")
    model_dir = local_path(args.model_dir)
    output_data_dir = local_path(args.output_data_dir) if args.output_data_dir else model_dir  # Vertex: beside the model

    x_train, y_train = read_channel(args.train)
    x_valid, y_valid = read_channel(args.validation)
    model = HistGradientBoostingClassifier(
        max_iter=args.max_iter,
        learning_rate=args.learning_rate,
        max_leaf_nodes=args.max_leaf_nodes,
        early_stopping=False,
        random_state=args.random_state,
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

    os.makedirs(model_dir, exist_ok=True)
    joblib.dump(model, os.path.join(model_dir, "model.joblib"))
    with open(os.path.join(model_dir, "features.json"), "w") as f:
        json.dump({"features": list(x_train.columns), "classes": classes}, f, indent=2)

    os.makedirs(output_data_dir, exist_ok=True)
    metrics = {
        # the printed figures by their names (the metric definitions'): what a gate reads without the log
        "metrics": {"train:accuracy": float(f"{train_accuracy:.4f}"), "validation:accuracy": float(f"{accuracy:.4f}")},
        "train_accuracy": round(float(train_accuracy), 6),
        "validation_accuracy": round(float(accuracy), 6),
        "validation_majority_accuracy": round(majority, 6),
        "train_rows": len(y_train),
        "validation_rows": len(y_valid),
        "classes": classes,
        "confusion_matrix": np.asarray(confusion_matrix(y_valid, predicted, labels=classes)).tolist(),
    }
    with open(os.path.join(output_data_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
