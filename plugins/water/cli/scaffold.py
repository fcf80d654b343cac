"""`water new NAME`: a new pipeline, started from the project's reference pipeline.

Its SQL, Glue script, pod entrypoints and SageMaker scripts are the reference pipeline's
(`recipe_engagement`, over the app data `water seed` writes) with the name changed, so a new
pipeline validates and runs on the local target before anyone edits it, and there is one
copy of that code to keep working. Its spec and DAG file come from the two templates in
water/templates/pipeline/, where `{{key}}` is replaced by the pipeline's values (name,
today, publish_table).
"""

from __future__ import annotations

import keyword
import re
import sys
from datetime import date
from importlib.util import find_spec
from pathlib import Path

from water import paths
from water.spec import IDENTIFIER

TEMPLATES = Path(__file__).parents[1] / "templates" / "pipeline"  # water/templates, package data
REFERENCE = "recipe_engagement"  # the pipeline a new one starts from
# source -> where it lands in the project, in the layout every pipeline follows. A source that
# is a template file is rendered; any other is the reference pipeline's own file at that place.
LAYOUT = {
    "spec.yaml": "include/pipelines/{name}.yaml",
    "extract.sql": "include/sql/{name}/extract.sql",
    "training_set.sql": "include/sql/{name}/training_set.sql",
    "features.py": "include/glue/{name}_features.py",
    "preprocess.py": "include/jobs/{name}/preprocess.py",
    "postprocess.py": "include/jobs/{name}/postprocess.py",
    "train.py": "include/training/{name}/train.py",
    "inference.py": "include/training/{name}/inference.py",
    "dag.py": "dags/{name}.py",
}
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class ScaffoldError(ValueError):
    """A name that cannot become a pipeline, or files that are already there."""


def check_name(name: str, root: Path | None = None) -> None:
    """Refuse a name that is not snake_case, is a Python keyword, would shadow a module, or is taken."""
    root = root or paths.project_root()
    if not re.match(IDENTIFIER, name):
        raise ScaffoldError(
            f"{name!r} is not a pipeline name: use snake_case (lower-case letters, digits and _, "
            "starting with a letter), e.g. churn or weekly_churn"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ScaffoldError(f"{name!r} is a Python keyword; dags/{name}.py could not be imported by name")
    # Airflow puts dags/ on sys.path: dags/json.py would replace the json module for every DAG.
    if name in sys.stdlib_module_names or find_spec(name) is not None:
        raise ScaffoldError(f"{name!r} is the name of a Python module; dags/{name}.py would shadow it")
    taken = [relative for relative in destinations(name) if (root / relative).exists()]
    if taken:
        raise ScaffoldError(f"pipeline {name!r} already exists (nothing was written): " + ", ".join(taken))


def destinations(name: str) -> list[str]:
    return [target.format(name=name) for target in LAYOUT.values()]


def render(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return values[key]

    return _PLACEHOLDER.sub(value, text)


def source_text(source: str, target: str, name: str, values: dict[str, str], root: Path) -> str:
    template = TEMPLATES / source
    if template.is_file():
        return render(template.read_text(), values)
    reference = root / target.format(name=REFERENCE)
    if not reference.is_file():
        raise ScaffoldError(f"{reference.relative_to(root)} is missing: `water new` starts from the {REFERENCE} pipeline's files")
    return reference.read_text().replace(REFERENCE, name)


def scaffold(name: str, root: Path | None = None, today: date | None = None) -> list[Path]:
    """Write the new pipeline's files; returns them. Never overwrites: all or nothing."""
    root = root or paths.project_root()
    check_name(name, root)
    values = {"name": name, "today": (today or date.today()).isoformat(), "publish_table": f"ml.{name}"}
    rendered = {root / target.format(name=name): source_text(source, target, name, values, root) for source, target in LAYOUT.items()}
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
