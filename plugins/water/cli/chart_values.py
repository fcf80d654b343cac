"""The values water installs, against a chart's own contract: one check for `water deploy`
(the chart helm pulls, at its pinned version) and tests/contract/helm.py (the vendored chart).

`helm upgrade -f base.yaml -f ENV.yaml --set-string K=V` merges the files and the --set-string
values (maps merge, lists and scalars replace), coalesces the result over the chart's
values.yaml (a null deletes a default) and validates it with the chart's values.schema.json.
The schema leaves some levels open (the top level among them: `executr: X` passes it), so
every key is also checked against the keys the schema and values.yaml declare there.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CHART_NAME = "airflow"  # the official Apache Airflow chart, which helm-values/ is written for
FieldPath = tuple[str | int, ...]  # a field's place in the values: its keys and list indexes
# A values tree, a JSON schema or a Chart.yaml: YAML as helm reads it, any shape below the top
Values = dict[str, Any]


class _UniqueKeyLoader(yaml.SafeLoader):
    """Helm refuses a values file with a key twice; PyYAML would keep the last silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(path: Path) -> Any:
    """A values file as helm reads it (yaml.YAMLError for a duplicate key)."""
    return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)


def _overlay(under: Values, over: Values, null_removes: bool) -> Values:
    out = copy.deepcopy(under)
    for key, value in over.items():
        if value is None and null_removes:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _overlay(out[key], value, null_removes)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_files(base: Values, override: Values) -> Values:
    """Later -f files (and --set-string) over earlier ones: maps merge key by key, anything else replaces."""
    return _overlay(base, override, null_removes=False)


def coalesce(defaults: Values, user: Values) -> Values:
    """User values over the chart's values.yaml; a user null removes the default."""
    return _overlay(defaults, user, null_removes=True)


def set_string_values(pairs: Mapping[str, str]) -> Values:
    """--set-string a.b.c=V pairs as a values tree (water's keys are plain: no escapes, no lists)."""
    tree: Values = {}
    for key, value in pairs.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def dotted(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top>"


def _resolve(schema: Values, root: Values) -> Values:
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/definitions/"):
            raise ValueError(f"values.schema.json: unsupported $ref {ref!r}")
        schema = root["definitions"][ref.removeprefix("#/definitions/")]
    return schema


def _unknown(values: object, schema: Values, defaults: object, root: Values, path: FieldPath) -> list[FieldPath]:
    schema = _resolve(schema, root)
    found: list[FieldPath] = []
    if isinstance(values, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(values):
                found += _unknown(item, items, None, root, (*path, i))
        return found
    if not isinstance(values, dict):
        return found
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    defaults = defaults if isinstance(defaults, dict) else {}
    for key, value in values.items():
        where = (*path, key)
        if key in props:
            found += _unknown(value, props[key], defaults.get(key), root, where)
        elif isinstance(extra, dict):
            found += _unknown(value, extra, defaults.get(key), root, where)
        elif extra is None and props and key not in defaults:
            found.append(where)
        # extra is False: the schema itself rejects the key (jsonschema reports it)
    return found


def unknown_keys(values: object, schema: Values, defaults: object, root: Values) -> list[str]:
    """Keys the chart does not know, at levels where the schema does not forbid them.

    Where a level lists `properties` but sets no `additionalProperties`, a key must be one
    of them or one that the chart's values.yaml declares there (templates read values.yaml's
    names: `securityContexts.containers` is read, the schema's `container` is not). Where
    `additionalProperties` is a schema (free-form maps: config sections, annotations), any
    key goes and its value is walked with that schema.
    """
    return [dotted(p) for p in _unknown(values, schema, defaults, root, ())]


def _schema_errors(values: Values, schema: Values) -> list[tuple[FieldPath, str]]:
    """Draft 7 errors as (field path, message); a key `additionalProperties: false` refuses is
    named itself, not the map it is in."""
    found: list[tuple[FieldPath, str]] = []
    for error in jsonschema.Draft7Validator(schema).iter_errors(values):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and error.validator_value is False and isinstance(error.instance, dict):
            known = error.schema.get("properties", {})
            patterns = error.schema.get("patternProperties", {})
            extra = [k for k in error.instance if k not in known and not any(re.search(p, k) for p in patterns)]
            found += [((*path, key), "not a field the chart's schema allows here (check the spelling)") for key in extra]
        else:
            found.append((path, error.message))
    return sorted(found, key=lambda item: dotted(item[0]))


def schema_errors(values: Values, schema: Values) -> list[str]:
    """`field.path: message` for each way the values break the schema."""
    return [f"{dotted(path)}: {message}" for path, message in _schema_errors(values, schema)]


def _depth(tree: object, path: FieldPath) -> int:
    """How much of path the values tree sets."""
    depth = 0
    for part in path:
        if isinstance(tree, list) and isinstance(part, int):
            if part >= len(tree):
                break
            tree = tree[part]
        elif isinstance(tree, dict) and part in tree:
            tree = tree[part]
        else:
            break
        depth += 1
    return depth


def source_of(path: FieldPath, sources: Sequence[tuple[str, Values]]) -> str:
    """The source that set the field (the last of those that set most of its path), or all of
    them when none does (a field the chart's defaults alone hold)."""
    best, best_depth = None, 0
    for name, tree in sources:
        depth = _depth(tree, path)
        if depth and depth >= best_depth:
            best, best_depth = name, depth
    return best or " + ".join(name for name, _ in sources)


def values_problems(sources: Sequence[tuple[str, Values]], schema: Values, defaults: Values) -> list[str]:
    """What helm would refuse in the sources (values files, then --set-string values, in helm's
    order) and the keys the chart does not know; each problem as `SOURCE: field.path: message`."""
    user: Values = {}
    for _, tree in sources:
        user = merge_files(user, tree)
    problems = [
        f"{source_of(path, sources)}: {dotted(path)}: {message}"
        for path, message in _schema_errors(coalesce(defaults, user), schema)
    ]
    problems += [
        f"{source_of(path, sources)}: {dotted(path)}: not a key of the chart (neither its schema nor its values.yaml has it here; check the spelling)"
        for path in _unknown(user, schema, defaults, schema, ())
    ]
    return problems


def pinned_airflow(requirements: str) -> str | None:
    """The apache-airflow version a requirements file pins (`apache-airflow==X`), if any."""
    found = re.findall(r"^apache-airflow==(\S+)", requirements, re.M)
    return found[0] if len(found) == 1 else None


def _major(version: str) -> str:
    match = re.match(r"v?(\d+)", str(version))
    return match.group(1) if match else str(version)


def airflow_problems(
    chart: Mapping[str, Any], sources: Sequence[tuple[str, Values]], defaults: Values, shipped: str | None
) -> list[str]:
    """The chart is the official Airflow chart, for the Airflow major version the values deploy,
    and the values' airflowVersion is the one the image ships (requirements.txt), when known."""
    problems = []
    if chart.get("name") != CHART_NAME:
        problems.append(
            f"Chart.yaml: name is {chart.get('name')!r}, not {CHART_NAME!r} (the official Apache Airflow chart the values are written for)"
        )
    user: Values = {}
    for _, tree in sources:
        user = merge_files(user, tree)
    where = source_of(("airflowVersion",), sources)
    version = user.get("airflowVersion")
    if shipped is not None and version is None:
        problems.append(
            f"{where}: airflowVersion: not set, so the chart configures Airflow {defaults.get('airflowVersion')!r} (its default) "
            f'while the image runs {shipped} (requirements.txt): set airflowVersion: "{shipped}"'
        )
    elif shipped is not None and str(version) != shipped:
        problems.append(
            f"{where}: airflowVersion: {version!r}, but the image runs Airflow {shipped} (requirements.txt pins apache-airflow=={shipped})"
        )
    deployed = version or shipped
    app_version = chart.get("appVersion")
    if deployed and app_version and _major(deployed) != _major(app_version):
        problems.append(
            f"Chart.yaml: appVersion {app_version}: this chart version is for Airflow {_major(app_version)}, "
            f"the values deploy Airflow {deployed}: pin a chart version made for Airflow {_major(deployed)}"
        )
    return problems
