"""`water new NAME [--from EXAMPLE]`: a new pipeline, started from a shipped example.

What it writes follows from the example's spec, whatever its shape: every file a step runs
(SQL, Glue script, pod entrypoints, training and inference scripts) is copied with the
example's name changed to the new one, in the same place of the layout
(`sql/EXAMPLE/x.sql` -> `sql/NAME/x.sql`, `glue/EXAMPLE_features.py` -> `glue/NAME_features.py`),
and so is every other .py module of a folder those scripts leave for the new pipeline's (a
helper module the scripts import, a training script's inference handlers); the spec is the
example's, pointing at those copies, with its own name, start date and published tables
(`ml.NAME…`); its sources (fixtures, the seed entrypoint) stay the example's, so the new
pipeline runs on the same local data before anyone edits it. The DAG file comes from
water/templates/pipeline/dag.py.
"""

from __future__ import annotations

import keyword
import re
import sys
from datetime import date
from importlib.util import find_spec
from pathlib import Path

from water import paths
from water.spec import IDENTIFIER, PipelineSpec, SpecError, load_spec

TEMPLATES = Path(__file__).parents[1] / "templates" / "pipeline"  # water/templates, package data
REFERENCE = "recipe_engagement"  # the example a new pipeline starts from unless --from says otherwise
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
MAX_NAME_LENGTH = 64  # the name goes into file, folder, DAG, task and table names


class ScaffoldError(ValueError):
    """A name that cannot become a pipeline, an unknown example, or files that are already there."""


def check_name(name: str, root: Path | None = None) -> None:
    """Refuse a name that is not snake_case, is a Python keyword or would shadow a module (a DAG file
    of this project, or of ROOT's, does not count: a name taken there "already exists").
    The whole name must match (re.match's `$` would let a trailing newline through)."""
    if not re.fullmatch(IDENTIFIER, name):
        raise ScaffoldError(
            f"{name!r} is not a pipeline name: use snake_case (lower-case letters, digits and _, "
            "starting with a letter), e.g. churn or weekly_churn"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ScaffoldError(f"{name[:20]!r}… is {len(name)} characters long; a pipeline name may have at most {MAX_NAME_LENGTH}")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ScaffoldError(f"{name!r} is a Python keyword; dags/{name}.py could not be imported by name")
    # Airflow puts dags/ on sys.path: dags/json.py would replace the json module for every DAG.
    found = find_spec(name)
    dag_files = {str(project / "dags" / f"{name}.py") for project in (root, paths.project_root()) if project is not None}
    own_dag = found is not None and found.origin in dag_files  # found because a DAG parse put dags/ on sys.path
    if name in sys.stdlib_module_names or (found is not None and not own_dag):
        raise ScaffoldError(f"{name!r} is the name of a Python module; dags/{name}.py would shadow it")


def example_spec(example: str, root: Path) -> PipelineSpec:
    spec_file = root / "include" / "pipelines" / f"{example}.yaml"
    if not spec_file.is_file():
        known = sorted(p.stem for p in (root / "include" / "pipelines").glob("*.yaml"))
        raise ScaffoldError(f"no pipeline {example!r} to start from; the project has {', '.join(known)}")
    try:
        return load_spec(spec_file, include_dir=root / "include")
    except SpecError as exc:
        raise ScaffoldError(f"the example {example!r} does not validate itself:\n{exc}") from None


def renamed(path: str, example: str, name: str) -> str:
    """Where a file of the example goes for the new pipeline."""
    if example in path:
        return path.replace(example, name)
    folder, _, file = path.rpartition("/")
    return f"{folder}/{name}_{file}" if folder else f"{name}_{file}"


def artifacts(spec: PipelineSpec) -> list[str]:
    """The include/ files the example's steps run (a routed step's: each route's), each once, in step order."""
    found: list[str] = []
    for step in spec.steps.values():
        if artifact := step.artifact():
            found.append(artifact)
        found += [route.entrypoint for route in (getattr(step, "routes", None) or {}).values()]
    return list(dict.fromkeys(found))


def helpers(files: dict[str, str], include: Path) -> list[str]:
    """The .py modules no step names beside the example's scripts, where those move to a folder
    of their own (`jobs/EXAMPLE/` -> `jobs/NAME/`): a helper travels with the scripts that import
    it. Scripts that stay in a folder shared with other pipelines (`glue/`) stay beside their
    helpers, so none is copied there."""
    moved = [Path(old).parent for old, new in files.items() if old.endswith(".py") and Path(new).parent != Path(old).parent]
    found = []
    for folder in dict.fromkeys(moved):
        for path in sorted((include / folder).iterdir()):
            old = str(folder / path.name)
            if path.is_file() and path.suffix == ".py" and old not in files:
                found.append(old)
    return found


def render(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return values[key]

    return _PLACEHOLDER.sub(value, text)


def new_spec_text(spec: PipelineSpec, text: str, name: str, files: dict[str, str], today: date) -> str:
    """The example's spec text (comments kept) with the new name, files, start date and tables."""
    for old, new in files.items():
        text = re.sub(rf"(?m)(:\s*){re.escape(old)}(\s*(#.*)?)$", rf"\g<1>{new}\g<2>", text)
    text = re.sub(r"(?m)^name:\s*\S+", f"name: {name}", text, count=1)
    # A seeded example makes data for any day: start today. Fixtures cover fixed days: keep
    # the example's start, or the new pipeline could run none of them.
    start = today if spec.local_data.seed else spec.start_date
    text = re.sub(r"(?m)^start_date:\s*\S+", f"start_date: {start.isoformat()}", text, count=1)
    tables = [s.table for s in spec.steps_of("publish").values()]
    for i, table in enumerate(tables):
        new_table = f"ml.{name}" if len(tables) == 1 else f"ml.{name}_{i + 1}"
        text = re.sub(rf"(?m)(table:\s*){re.escape(table)}\b", rf"\g<1>{new_table}", text)
    if spec.catalog_database:
        text = re.sub(r"(?m)^catalog_database:.*$", "", text)
    header = (
        f"# The {name} pipeline, scaffolded by `water new {name} --from {spec.name}` on {today.isoformat()}.\n"
        f"# It runs as it is on the local target, over {spec.name}'s local data. Make it yours step by\n"
        "# step: `water validate` checks this file, `water run` runs it; docs/pipelines.md lists the kinds.\n"
    )
    return header + text


def plan(name: str, example: str, root: Path, today: date) -> dict[Path, str]:
    """Every file the new pipeline gets, and its text."""
    check_name(name, root)
    spec = example_spec(example, root)
    include = root / "include"
    files = {old: renamed(old, example, name) for old in artifacts(spec)}
    out: dict[Path, str] = {
        include / "pipelines" / f"{name}.yaml": new_spec_text(
            spec, (include / "pipelines" / f"{example}.yaml").read_text(), name, files, today
        )
    }
    for old in [*files, *helpers(files, include)]:
        out[include / renamed(old, example, name)] = (include / old).read_text().replace(example, name)
    out[root / "dags" / f"{name}.py"] = render((TEMPLATES / "dag.py").read_text(), {"name": name})
    taken = [str(path.relative_to(root)) for path in out if path.exists()]
    if taken:
        raise ScaffoldError(f"pipeline {name!r} already exists (nothing was written): " + ", ".join(taken))
    return out


def scaffold(name: str, root: Path | None = None, today: date | None = None, example: str = REFERENCE) -> list[Path]:
    """Write the new pipeline's files; returns them. Never overwrites: all or nothing."""
    root = root or paths.project_root()
    rendered = plan(name, example, root, today or date.today())
    written: list[Path] = []
    try:
        for path, text in rendered.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x") as out:  # "x": fails rather than overwrite a file made meanwhile
                out.write(text)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written
