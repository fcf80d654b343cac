"""SageMaker script-mode training script (scikit-learn framework container).

SageMaker runs `python train.py --max_iter 150 --learning_rate 0.1 ...` with the
hyperparameters as command-line arguments and the SM_* environment: SM_CHANNEL_TRAIN and
SM_CHANNEL_VALIDATION hold the channels' CSV files (header; `label` first), the model goes
to SM_MODEL_DIR (SageMaker tars it into model.tar.gz) and extra output to SM_OUTPUT_DATA_DIR.
Metrics are printed as `validation:accuracy=0.8731` for the job's metric definitions.
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


def read_channel(path):
    files = sorted(glob.glob(os.path.join(path, "*.csv")))
    if not files:
        raise SystemExit(f"no CSV files in channel {path}")
    frame = pd.concat((pd.read_csv(f) for f in files), ignore_index=True)
    return frame.drop(columns=["label"]), frame["label"].astype(str)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max_iter", type=int, default=150)
    parser.add_argument("--learning_rate", type=float, default=0.1)
    parser.add_argument("--max_leaf_nodes", type=int, default=31)
    parser.add_argument("--random_state", type=int, default=0)
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--validation", default=os.environ.get("SM_CHANNEL_VALIDATION"))
    parser.add_argument("--output-data-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR"))
    args, _ = parser.parse_known_args()  # SageMaker may add arguments of its own

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

    os.makedirs(args.model_dir, exist_ok=True)
    joblib.dump(model, os.path.join(args.model_dir, "model.joblib"))
    with open(os.path.join(args.model_dir, "features.json"), "w") as f:
        json.dump({"features": list(x_train.columns), "classes": classes}, f, indent=2)

    os.makedirs(args.output_data_dir, exist_ok=True)
    metrics = {
        "train_accuracy": round(float(train_accuracy), 6),
        "validation_accuracy": round(float(accuracy), 6),
        "validation_majority_accuracy": round(majority, 6),
        "train_rows": len(y_train),
        "validation_rows": len(y_valid),
        "classes": classes,
        "confusion_matrix": np.asarray(confusion_matrix(y_valid, predicted, labels=classes)).tolist(),
    }
    with open(os.path.join(args.output_data_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
