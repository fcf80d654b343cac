"""Inference handlers for the scikit-learn container (SageMaker batch transform, Vertex AI batch job).

The job sends lines of the inference channel (`user_id,feature,...`, no header) as text/csv;
the answer has one line per input line: `user_id,segment,confidence`. The model is the
folder train.py wrote: its files (model.joblib, features.json; Vertex), or a model.tar.gz
holding them (SageMaker's artifact, when it is not unpacked first).
"""

import io
import json
import os
import tarfile

import joblib
import numpy as np
import pandas as pd


def model_files(model_dir, names):
    """The named files' bytes, from the folder or from the model.tar.gz in it."""
    if all(os.path.isfile(os.path.join(model_dir, n)) for n in names):
        found = {}
        for name in names:
            with open(os.path.join(model_dir, name), "rb") as f:
                found[name] = f.read()
        return found
    archive = os.path.join(model_dir, "model.tar.gz")
    if not os.path.isfile(archive):
        raise FileNotFoundError(f"{model_dir} holds neither {' and '.join(names)} nor model.tar.gz")
    with tarfile.open(archive) as tar:
        members = {os.path.normpath(m.name): m for m in tar.getmembers() if m.isfile()}
        missing = [n for n in names if n not in members]
        if missing:
            raise FileNotFoundError(f"{archive} lacks {', '.join(missing)}")
        return {n: tar.extractfile(members[n]).read() for n in names}


def model_fn(model_dir):
    files = model_files(model_dir, ["model.joblib", "features.json"])
    schema = json.loads(files["features.json"])
    return {"model": joblib.load(io.BytesIO(files["model.joblib"])), "features": schema["features"]}


def input_fn(request_body, request_content_type):
    if request_content_type != "text/csv":
        raise ValueError(f"unsupported content type {request_content_type}; send text/csv")
    if isinstance(request_body, bytes):
        request_body = request_body.decode("utf-8")
    return pd.read_csv(io.StringIO(request_body), header=None)


def predict_fn(input_data, model):
    features = model["features"]
    if input_data.shape[1] != len(features) + 1:
        raise ValueError(f"expected user_id and {len(features)} features, got {input_data.shape[1]} columns")
    x = input_data.iloc[:, 1:].astype("float64")
    x.columns = features
    estimator = model["model"]
    probabilities = estimator.predict_proba(x)
    best = probabilities.argmax(axis=1)
    return pd.DataFrame(
        {
            "user_id": input_data.iloc[:, 0].astype("int64").to_numpy(),
            "segment": np.asarray(estimator.classes_)[best],
            "confidence": probabilities[np.arange(len(best)), best].round(6),
        }
    )


def output_fn(prediction, accept):
    if accept not in ("text/csv", "*/*"):
        raise ValueError(f"unsupported accept type {accept}; ask for text/csv")
    # no newline after the last line: the transform's AssembleWith=Line adds one to each answer
    return prediction.to_csv(header=False, index=False, lineterminator="\n").rstrip("\n")
