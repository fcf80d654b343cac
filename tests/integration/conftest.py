"""Fixtures of the integration tests (the helpers they use, a queue per test and a trigger on it, are
in tests/integration/broker.py)."""

from __future__ import annotations

import pytest

from tests.integration.broker import CONN_ID, require_rabbitmq


@pytest.fixture
def rabbitmq(monkeypatch):
    """The local RabbitMQ (a failure, saying how to start it, when it does not answer), and the Airflow
    connection `water_test_amqp` to it."""
    require_rabbitmq()
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", "amqp://guest:guest@127.0.0.1:5672/%2F")
