"""The auth manager the deployed Airflow runs, and the user command docs/deploy.md gives, come
from a provider requirements.txt pins (the images install requirements.txt:
tests/contract/test_dockerfile.py), not from Airflow core.

The chart configures `[core] auth_manager` (FabAuthManager by default); `airflow users create`
exists only when that auth manager contributes the `users` commands to Airflow's CLI.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.contract.helm import CHART, ENVIRONMENTS, ROOT, coalesce, user_values


def pinned(path: Path) -> dict[str, str]:
    """{normalized distribution name: version} of a compiled requirements file."""
    return {normalized(n): v for n, v in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", path.read_text(), re.M)}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def deployed_auth_manager(env: str) -> str:
    """[core] auth_manager as the chart renders it for ENV: helm-values over the chart's defaults."""
    chart_defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    value = coalesce(chart_defaults, user_values(env))["config"]["core"]["auth_manager"]
    assert "{{" not in value, f"[core] auth_manager is templated in the chart ({value}): resolve it here first"
    return value


def owning_distribution(module) -> importlib.metadata.Distribution:
    """The installed distribution whose files include MODULE's source file."""
    source = Path(module.__file__).resolve()
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            if file.name == source.name and Path(dist.locate_file(file)).resolve() == source:
                return dist
    pytest.fail(f"no installed distribution owns {source}")


def auth_manager_class(dotted: str):
    module_name, _, class_name = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def users_create_parser(auth_manager) -> argparse.ArgumentParser:
    """`airflow users create`'s arguments, from the auth manager's own CLI definition."""
    commands = {c.name: c for c in auth_manager.get_cli_commands()}
    assert "users" in commands, f"{auth_manager.__name__} has no `airflow users` commands: {sorted(commands)}"
    (create,) = [c for c in commands["users"].subcommands if c.name == "create"]
    parser = argparse.ArgumentParser(exit_on_error=False)
    for arg in create.args:
        arg.add_to_parser(parser)
    return parser


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_auth_manager_comes_from_a_pinned_requirement(env):
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager

    dotted = deployed_auth_manager(env)
    module_name = dotted.rpartition(".")[0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        pytest.fail(f"[core] auth_manager {dotted} does not import ({error}): its provider is not installed")
    dist = owning_distribution(module)
    name = normalized(dist.metadata["Name"])
    assert not name.startswith("apache-airflow-core"), "an auth manager in core needs no pin: drop this test"
    pins = pinned(ROOT / "requirements.txt")
    assert name in pins, f"{dotted} comes from {name}, which requirements.txt does not pin (add it to requirements.in)"
    assert normalized(dist.version) == normalized(pins[name]), (
        f"{name} {dist.version} is installed, requirements.txt pins {pins[name]}: reinstall the requirements"
    )
    assert name in {normalized(n) for n in re.findall(r"^([A-Za-z0-9_.\-]+)==", (ROOT / "requirements.in").read_text(), re.M)}, (
        f"{name} is pinned only as a dependency of something else: name it in requirements.in"
    )
    assert issubclass(auth_manager_class(dotted), BaseAuthManager)


def docs_user_create_words() -> list[str]:
    """The `airflow users create` command docs/deploy.md tells the platform engineer to run."""
    text = (ROOT / "docs/deploy.md").read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if "airflow users create" in line]
    words = shlex.split(line)
    start = words.index("airflow")
    return words[start + 3 :]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_docs_user_command_is_one_the_auth_manager_provides(env):
    """Airflow 3's CLI has `users` only from the auth manager (get_cli_commands); the arguments
    docs/deploy.md passes parse with that command's own definition."""
    args = users_create_parser(auth_manager_class(deployed_auth_manager(env))).parse_args(docs_user_create_words())
    assert args.role == "Admin" and args.username and args.email and args.firstname and args.lastname
    assert args.password.startswith("$(read -rsp"), "the password is read from the terminal, not written in the docs"


def test_a_misspelt_flag_fails_the_parse():
    from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager

    with pytest.raises(SystemExit):
        users_create_parser(FabAuthManager).parse_args(["--role", "Admin", "--user-name", "x"])
