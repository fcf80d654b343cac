"""What the scikit-learn serving container does in a batch transform job, as a process.

Loads the model with the script's model_fn, then for each input file (in name order) splits
it by line into mini-batches of at most --max-payload-mb, sends each through input_fn,
predict_fn and output_fn as text/csv, and joins the answers line by line into `<file>.out`.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType


def load_handlers(code_dir: Path, program: str) -> ModuleType:
    sys.path.insert(0, str(code_dir))
    spec = importlib.util.spec_from_file_location(Path(program).stem, code_dir / program)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{program} is not a Python file that can be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = [fn for fn in ("model_fn", "input_fn", "predict_fn", "output_fn") if not hasattr(module, fn)]
    if missing:
        raise SystemExit(f"{program} lacks {', '.join(missing)}")
    return module


def mini_batches(path: Path, max_bytes: int) -> Iterator[bytes]:
    """Whole lines, at most max_bytes per batch (SplitType=Line, BatchStrategy=MultiRecord)."""
    batch: list[bytes] = []
    size = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            if len(line) > max_bytes:
                raise SystemExit(f"a record in {path.name} is larger than MaxPayloadInMB")
            if size + len(line) > max_bytes and batch:
                yield b"".join(batch)
                batch, size = [], 0
            batch.append(line)
            size += len(line)
    if batch:
        yield b"".join(batch)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--code-dir", required=True, type=Path)
    parser.add_argument("--program", required=True)
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--max-payload-mb", type=int, default=6)
    args = parser.parse_args(argv)

    handlers = load_handlers(args.code_dir, args.program)
    model = handlers.model_fn(str(args.model_dir))
    args.output.mkdir(parents=True, exist_ok=True)
    inputs = sorted(p for p in args.input.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    if not inputs:
        raise SystemExit(f"no input files in {args.input}")
    for path in inputs:
        records = 0
        with open(args.output / f"{path.name}.out", "w") as out:
            for payload in mini_batches(path, args.max_payload_mb * 2**20):
                data = handlers.input_fn(payload, "text/csv")
                answer = handlers.output_fn(handlers.predict_fn(data, model), "text/csv")
                text = answer.decode() if isinstance(answer, bytes) else answer
                out.write(text if text.endswith("\n") else text + "\n")
                records += len(data)
        print(f"transformed {path.name}: {records} records", flush=True)


if __name__ == "__main__":
    main()
