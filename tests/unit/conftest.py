"""Fixtures of the unit tests (those every test suite shares are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests import guarded
from water.targets.local.engines.partitions import file_uri


@pytest.fixture
def guard(tmp_path):
    """A drift guard (tests/guarded.py's policy) over a lake in tmp_path/lake."""
    return guarded.make_guard(file_uri(tmp_path / "lake"))


@pytest.fixture
def quarantine(guard):
    """The guard's quarantine branch, on the same lake."""
    return guarded.make_quarantine(guard)
