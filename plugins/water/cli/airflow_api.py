"""A small client for Airflow 3's REST API (/api/v2), as the web UI uses it.

It signs in once with the stack's user (POST /auth/token, SimpleAuthManager) and sends the
token as a bearer header. Errors carry the HTTP status and Airflow's own `detail` text.
"""

from __future__ import annotations

import json
from typing import Any

import httpx


class ApiError(RuntimeError):
    def __init__(self, status: int, detail: str, method: str, path: str):
        super().__init__(f"{method} {path}: HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class AirflowAPI:
    def __init__(self, url: str, username: str, password: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout)
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None

    def _sign_in(self) -> str:
        reply = self._client.post("/auth/token", json=self._credentials)
        if reply.status_code not in (200, 201):
            raise ApiError(reply.status_code, _detail(reply), "POST", "/auth/token")
        token: str = reply.json()["access_token"]
        return token

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call under /api/v2; the JSON reply (None when empty)."""
        if self._token is None:
            self._token = self._sign_in()
        full = f"/api/v2/{path.lstrip('/')}"
        reply = self._client.request(method, full, headers={"Authorization": f"Bearer {self._token}"}, **kwargs)
        if reply.status_code >= 400:
            raise ApiError(reply.status_code, _detail(reply), method, full)
        return reply.json() if reply.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, json=body)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("PATCH", path, json=body)

    # The calls water makes.

    # The replies are JSON (Any); each call below says the shape Airflow's API documents.

    def dag(self, dag_id: str) -> dict[str, Any]:
        dag: dict[str, Any] = self.get(f"dags/{dag_id}")
        return dag

    def unpause(self, dag_id: str) -> None:
        self.patch(f"dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, logical_date: str | None, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        run: dict[str, Any] = self.post(f"dags/{dag_id}/dagRuns", {"logical_date": logical_date, "conf": conf or {}})
        return run

    def dag_runs(self, dag_id: str, limit: int = 5) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.get(f"dags/{dag_id}/dagRuns", order_by="-run_after", limit=limit)["dag_runs"]
        return runs

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.get(f"dags/{dag_id}/dagRuns/{run_id}")
        return run

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """The XCom value, or None when the task pushed none (not run yet, skipped, no such task)."""
        try:
            entry = self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        value = entry.get("value")
        if isinstance(value, str):  # stored serialized; a plain JSON document for dicts and lists
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def dags(self, tags: list[str] | None = None) -> list[dict[str, Any]]:
        dags: list[dict[str, Any]] = self.get("dags", tags=tags or [], limit=100, order_by="dag_id")["dags"]
        return dags

    def backfill(self, body: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        backfill: dict[str, Any] = self.post("backfills/dry_run" if dry_run else "backfills", body)
        return backfill

    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = self.get("monitor/health")
        return health


def _detail(reply: httpx.Response) -> str:
    try:
        detail = reply.json().get("detail", reply.text)
    except ValueError:
        return reply.text[:500]
    if isinstance(detail, list):  # a request validation error: one entry per bad field
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail)
    return detail if isinstance(detail, str) else json.dumps(detail)
