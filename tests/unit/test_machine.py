"""What the machine lacks skips the tests that need it, saying how to get it (tests/machine.py)."""

from __future__ import annotations

import sys

import pytest

from tests import machine


def test_a_missing_chromium_skips_saying_how_to_get_it(tmp_path):
    with pytest.raises(pytest.skip.Exception) as skipped:
        machine.chromium(str(tmp_path / "chromium"))
    assert "make setup" in skipped.value.msg and "apt-get install -y chromium" in skipped.value.msg


def test_an_installed_chromium_is_used():
    assert machine.chromium(sys.executable) == sys.executable  # any executable stands in


class Item:
    def __init__(self, *marks: str) -> None:
        self.keywords = dict.fromkeys(marks, True)
        self.markers: list[pytest.MarkDecorator] = []

    def add_marker(self, marker: pytest.MarkDecorator) -> None:
        self.markers.append(marker)


def test_without_java_the_spark_tests_skip_saying_how_to_get_it():
    spark, plain = Item("spark", "e2e"), Item("e2e")
    machine.skip_spark_without_java([spark, plain], found=None)
    (skip,) = spark.markers
    assert skip.name == "skip" and "apt-get install -y openjdk-17-jre-headless" in skip.kwargs["reason"]
    assert plain.markers == []


def test_with_java_the_spark_tests_run():
    spark = Item("spark")
    machine.skip_spark_without_java([spark], found="/usr/bin/java")
    assert spark.markers == []


def test_java_home_comes_first(tmp_path, monkeypatch):
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    assert machine.java() == str(java)
