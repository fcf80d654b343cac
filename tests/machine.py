"""What the tests need from the machine beyond pip: Java (local Spark) and Debian's chromium
(the web-UI test). `make setup` installs them with apt-get when it runs as root; elsewhere
the tests that need a missing one skip, saying how to get it (never fail for it)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"  # Debian's, never a browser Playwright downloads


def how_to_get(package: str) -> str:
    return f"`make setup` installs it when run as root; otherwise `sudo apt-get install -y {package}`"


def java() -> str | None:
    """The java PySpark starts: $JAVA_HOME/bin/java, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home, "bin", "java"), os.X_OK):
        return str(Path(home, "bin", "java"))
    return shutil.which("java")


def skip_spark_without_java(items: Iterable[pytest.Item], found: str | None) -> None:
    """Tests marked spark skip, saying how to get Java, when the machine has none."""
    if found is not None:
        return
    skip = pytest.mark.skip(reason=f"Java is not installed (local Spark needs it): {how_to_get('openjdk-17-jre-headless')}")
    for item in items:
        if "spark" in item.keywords:
            item.add_marker(skip)


def chromium(path: str = CHROMIUM) -> str:
    """The chromium executable; skips the calling test when the machine has none."""
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} is not installed (the web-UI test drives it): {how_to_get('chromium')}")
    return path
