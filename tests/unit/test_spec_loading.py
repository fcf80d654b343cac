"""Reading a spec file is bounded and every way it can fail is a SpecError naming the file (and
the field where there is one): an alias bomb, a huge file, bytes that are not UTF-8, a date
that does not exist, nesting past Python's recursion limit. A DAG file over such a spec is an
import error of its own, naming file and field, and breaks no other DAG."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from tests.conftest import ROOT, import_errors_beside_the_demo
from water.spec import MAX_SPEC_BYTES, SpecError, load_spec

DEMO = ROOT / "include" / "pipelines" / "recipe_engagement.yaml"


def alias_bomb(name: str, levels: int = 9) -> str:
    """A 'billion laughs' in a step's args (under 1 KB): each level a list of nine aliases of the
    level before, 9**9 strings once expanded."""
    lines = [f"name: {name}", "steps:", "  s:", "    kind: pod", "    args:"]
    lines.append('      l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]')
    lines += [f"      l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def load_within(path: Path, seconds: float = 10) -> SpecError:
    """load_spec(path) in a thread: the SpecError it raises, failing if it is not done in `seconds`
    (a generous bound: the refusal takes milliseconds; the unbounded validator took minutes)."""
    outcome: dict = {}

    def load() -> None:
        try:
            load_spec(path)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"loading {path.name} still runs after {seconds}s"
    assert isinstance(outcome.get("error"), SpecError), outcome
    return outcome["error"]


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb("bomb"))
    error = load_within(path)
    assert error.path.endswith("bomb.yaml")
    assert re.search(r"its aliases expand to \d{3},\d{3},\d{3} values; a spec may have at most 100,000", str(error))


def test_a_spec_sharing_a_block_by_alias_still_loads(tmp_path):
    text = DEMO.read_text()
    first = "      requests: {cpu: 500m, memory: 512Mi}"
    assert first in text
    text = text.replace(first, "      requests: &small {cpu: 500m, memory: 512Mi}", 1)
    text = text.replace("                requests: {cpu: 200m, memory: 640Mi}", "                requests: *small", 1)
    path = tmp_path / "recipe_engagement.yaml"
    path.write_text(text)
    spec = load_spec(path)
    assert "*small" in text and spec.name == "recipe_engagement"


def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path):
    path = tmp_path / "recipe_engagement.yaml"
    path.write_bytes(DEMO.read_bytes().replace(b"description:", b"description: caf\xe9 ", 1))
    error = load_within(path)
    assert error.path.endswith("recipe_engagement.yaml")
    assert "not UTF-8 text: byte 0xe9 at line" in str(error)


def test_a_date_that_does_not_exist_names_the_field(tmp_path):
    path = tmp_path / "recipe_engagement.yaml"
    text = DEMO.read_text()
    start = next(line for line in text.splitlines() if line.startswith("start_date:"))
    path.write_text(text.replace(start, "start_date: 2026-02-30"))
    error = load_within(path)
    assert error.fields == ["start_date"]
    assert "'2026-02-30' is not a valid timestamp (day is out of range for month)" in str(error)
    assert error.path.endswith("recipe_engagement.yaml")


def test_a_file_over_the_size_limit_is_not_read(tmp_path):
    path = tmp_path / "recipe_engagement.yaml"
    path.write_text(DEMO.read_text() + "# " + "x" * MAX_SPEC_BYTES + "\n")
    error = load_within(path)
    assert error.path.endswith("recipe_engagement.yaml")
    assert f"larger than the {MAX_SPEC_BYTES:,} bytes (1 MiB) a spec may have ({path.stat().st_size:,} bytes)" in str(error)


def test_nesting_deeper_than_any_spec_is_refused_at_once(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply to be a spec (more than 64 levels)" in str(load_within(path))


def test_a_recursive_alias_is_a_spec_error(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("name: loop\nsteps:\n  s:\n    kind: pod\n    args: &a\n      x: *a\n")
    assert load_within(path).path.endswith("loop.yaml")


def test_such_specs_are_import_errors_of_their_own_dag_files(tmp_path, monkeypatch):
    demo = DEMO.read_text()
    start = next(line for line in demo.splitlines() if line.startswith("start_date:"))
    broken = {
        "bad_date": (
            demo.replace("recipe_engagement", "bad_date").replace(start, "start_date: 2026-02-30").encode(),
            "start_date",
        ),
        "not_utf8": (
            demo.replace("recipe_engagement", "not_utf8").encode().replace(b"description:", b"description: \xff", 1),
            "not UTF-8",
        ),
        "bomb": (alias_bomb("bomb").encode(), "aliases expand"),
    }
    errors = import_errors_beside_the_demo(tmp_path, monkeypatch, {name: data for name, (data, _) in broken.items()})
    assert set(errors) == set(broken)
    for name, (_, words) in broken.items():
        assert f"include/pipelines/{name}.yaml" in errors[name] and words in errors[name], errors[name]
