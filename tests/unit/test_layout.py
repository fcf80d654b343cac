"""The import rule in pyproject.toml [tool.importlinter]: the runtime never imports water.cli.

`make test` runs lint-imports before pytest; this runs it too, and shows that the contract
can break (a config that adds a rule the code breaks must fail), so a pass means something.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_runtime_never_imports_the_cli():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The runtime never imports water.cli KEPT" in result.stdout
    assert "0 broken" in result.stdout


def test_a_broken_contract_fails(tmp_path):
    """The same config plus a rule the code breaks: the command line reads water.paths."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    lines = ["[importlinter]", f"root_package = {config['root_package']}"]
    contracts = [
        *config["contracts"],
        {
            "id": "broken-on-purpose",
            "name": "The CLI never imports water.paths",
            "type": "forbidden",
            "source_modules": ["water.cli"],
            "forbidden_modules": ["water.paths"],
        },
    ]
    for contract in contracts:
        lines += ["", f"[importlinter:contract:{contract['id']}]"]
        for key, value in contract.items():
            if key == "id":
                continue
            if isinstance(value, list):
                lines += [f"{key} =", *(f"    {v}" for v in value)]
            else:
                lines.append(f"{key} = {value}")
    ini = tmp_path / ".importlinter"
    ini.write_text("\n".join(lines) + "\n")

    result = lint_imports(str(ini))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "The runtime never imports water.cli KEPT" in result.stdout
    assert "The CLI never imports water.paths BROKEN" in result.stdout
    assert "water.cli is not allowed to import water.paths" in result.stdout
    assert "1 kept, 1 broken" in result.stdout


def test_the_command_line_imports_no_airflow_before_it_points_airflow_at_its_home():
    """Airflow reads its config when first imported: `water run` must set AIRFLOW_HOME (and
    the database) before that, so what it imports up front must not import Airflow."""
    code = (
        "import sys\n"
        "import water.cli, water.cli.runner, water.cli.seeding, water.cli.summary, water.cli.scaffold\n"
        "import water.targets.local.engines.partitions, water.targets.local.engines.sql, water.spec\n"
        "leaked = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "assert not leaked, leaked[:5]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
