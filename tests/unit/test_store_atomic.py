"""The lake's JSON state (stats, drift verdicts, run records) is written whole or not at all."""

from __future__ import annotations

import json
import os

import pytest

from water.store import LakeStore


def test_a_write_that_dies_midway_leaves_the_previous_file(tmp_path, monkeypatch):
    store = LakeStore(f"file://{tmp_path}", "p")
    store.write_json("stats", "2026-11-01", "drift.json", {"verdict": "ok"})

    def crash(_fd):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.write_json("stats", "2026-11-01", "drift.json", {"verdict": "block"})

    folder = tmp_path / "p" / "stats" / "ds=2026-11-01"
    assert json.loads((folder / "drift.json").read_text()) == {"verdict": "ok"}
    assert sorted(p.name for p in folder.iterdir()) == ["drift.json"]  # no temp file left
