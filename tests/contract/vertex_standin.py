"""A local stand-in of Vertex AI's v1 REST API (JobService: CustomJobs and BatchPredictionJobs).

A threaded HTTP server on 127.0.0.1 (an ephemeral port, in the test's own process) that answers
what google-cloud-aiplatform's JobServiceClient sends with transport="rest" (the URIs and methods
of aiplatform_v1/services/job_service/transports/rest_base.py):

    POST /v1/projects/{p}/locations/{l}/customJobs             create: the job, JOB_STATE_PENDING
    GET  /v1/projects/{p}/locations/{l}/customJobs/{id}        get: RUNNING, then SUCCEEDED or FAILED
    POST /v1/projects/{p}/locations/{l}/customJobs/{id}:cancel cancel: {} (CANCELLING, then CANCELLED)

and the same for batchPredictionJobs. Bodies are JSON in the proto3 JSON mapping (camelCase field
names); a create's body is parsed strictly into the aiplatform_v1 message, so an unknown field
is a 400 INVALID_ARGUMENT as the API answers it. Enums are numbers when the client asks for them
(`$alt=json;enum-encoding=int`, as the REST transport does), names otherwise. Every request is
recorded (method, path, query, headers, body) for the test to read.

    with VertexStandIn() as vertex:
        client = vertex.job_service_client(credentials)
        ...
        vertex.requests_to("POST", "customJobs")[0].json
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# The collections the stand-in serves, by URI segment: the aiplatform_v1 message of each.
COLLECTIONS = {"customJobs": "CustomJob", "batchPredictionJobs": "BatchPredictionJob"}
# Fields the API requires on create (a 400 without them), in the JSON mapping's names.
REQUIRED = {
    "customJobs": ("displayName", "jobSpec.workerPoolSpecs"),
    "batchPredictionJobs": ("displayName", "inputConfig", "outputConfig"),
}
_PARENT = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/(?P<collection>customJobs|batchPredictionJobs)"
_CREATE = re.compile(_PARENT + r"$")
_GET = re.compile(_PARENT + r"/(?P<id>[^/:]+)$")
_CANCEL = re.compile(_PARENT + r"/(?P<id>[^/:]+):cancel$")


@dataclass(frozen=True)
class Request:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A header by name, in any case (HTTP's names are case-insensitive)."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def text(self) -> str:
        """Everything of the request, as one string (to look for what must not be in it)."""
        return f"{self.method} {self.path} {self.query} {self.headers} {self.body.decode(errors='replace')}"


@dataclass
class Job:
    collection: str
    body: dict[str, Any]  # as created, with name, state and times: the JSON mapping's names
    polls: int = 0
    cancelled: bool = False


@dataclass
class VertexStandIn:
    """Vertex AI's JobService over REST on 127.0.0.1. A job is created PENDING, answers
    RUNNING to its first `running_polls` gets, then SUCCEEDED, or FAILED with `fail_with` as
    its error message when that is set; once cancelled, CANCELLED."""

    running_polls: int = 2
    fail_with: str | None = None
    requests: list[Request] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)  # by resource name

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._next_id = 1000

    # --- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> VertexStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def do_DELETE(self) -> None:
                self._answer("DELETE")

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                request = Request(method, unquote(url.path), parse_qs(url.query), dict(self.headers), body)
                status, answer = standin.handle(request)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the requests are recorded; stderr stays quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="vertex-standin", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def endpoint(self) -> str:
        """The API endpoint to give a client (ClientOptions(api_endpoint=...))."""
        assert self._server is not None, "the stand-in is not started (use it in a with block)"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def job_service_client(self, credentials: Any = None):
        """google-cloud-aiplatform's own JobServiceClient, over REST, pointed at the stand-in."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.aiplatform_v1 import JobServiceClient

        return JobServiceClient(
            credentials=credentials or AnonymousCredentials(),
            transport="rest",
            client_options=ClientOptions(api_endpoint=self.endpoint),
        )

    # --- what the tests read ----------------------------------------------------------------

    def requests_to(self, method: str, collection: str, verb: str | None = None) -> list[Request]:
        """The requests of one method to one collection ("customJobs"), creates (path ends at
        the collection), gets (a job's name) or a verb's (":cancel")."""
        found = []
        for request in self.requests:
            if request.method != method or f"/{collection}" not in request.path:
                continue
            tail = request.path.rsplit(f"/{collection}", 1)[1]
            if verb is not None:
                if tail.endswith(f":{verb}"):
                    found.append(request)
            elif (method == "POST") == (tail == ""):
                found.append(request)
        return found

    # --- the API ----------------------------------------------------------------------------

    def handle(self, request: Request) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(request)
            numeric = "enum-encoding=int" in ";".join(request.query.get("$alt", []))
            if request.method == "POST" and (match := _CREATE.match(request.path)):
                return self._create(match, request, numeric)
            if request.method == "GET" and (match := _GET.match(request.path)):
                return self._get(request.path[len("/v1/") :], numeric)
            if request.method == "POST" and (match := _CANCEL.match(request.path)):
                return self._cancel(request.path[len("/v1/") : -len(":cancel")])
            return _error(404, "NOT_FOUND", f"The requested URL {request.path} was not found on this server.")

    def _create(self, match: re.Match[str], request: Request, numeric: bool) -> tuple[int, Any]:
        collection = match["collection"]
        try:
            body = json.loads(request.body)
            _parse(collection, body)  # the message's own parse: an unknown field fails it
        except Exception as error:  # any parse failure is the API's 400
            return _error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {error}")
        for path in REQUIRED[collection]:
            if not _field(body, path):
                return _error(400, "INVALID_ARGUMENT", f"{path} is required.")
        self._next_id += 1
        name = f"projects/{match['project']}/locations/{match['location']}/{collection}/{self._next_id}"
        now = _now()
        job = Job(collection, {**body, "name": name, "createTime": now, "updateTime": now})
        job.body["state"] = "JOB_STATE_PENDING"
        self.jobs[name] = job
        return 200, _render(job, numeric)

    def _get(self, name: str, numeric: bool) -> tuple[int, Any]:
        job = self.jobs.get(name)
        if job is None:
            return _error(404, "NOT_FOUND", f"The {COLLECTIONS[name.split('/')[4]]} does not exist.")
        job.polls += 1
        state, now = job.body["state"], _now()
        if job.cancelled:
            state = "JOB_STATE_CANCELLED"
            job.body["error"] = {"code": 1, "message": "CANCELED"}
        elif state in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING"):
            if job.polls <= self.running_polls:
                state = "JOB_STATE_RUNNING"
                job.body.setdefault("startTime", now)
            elif self.fail_with is not None:
                state = "JOB_STATE_FAILED"
                job.body["error"] = {"code": 3, "message": self.fail_with}
            else:
                state = "JOB_STATE_SUCCEEDED"
        if state != job.body["state"]:
            job.body.update(state=state, updateTime=now)
            if state in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
                job.body["endTime"] = now
        return 200, _render(job, numeric)

    def _cancel(self, name: str) -> tuple[int, Any]:
        job = self.jobs.get(name)
        if job is None:
            return _error(404, "NOT_FOUND", "The job does not exist.")
        if job.body["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
            return _error(400, "FAILED_PRECONDITION", f"Cannot cancel {name}: it is {job.body['state']}.")
        job.cancelled = True
        job.body.update(state="JOB_STATE_CANCELLING", updateTime=_now())
        return 200, {}  # google.protobuf.Empty


def _parse(collection: str, body: dict[str, Any]) -> Any:
    """The body parsed into its aiplatform_v1 message, strictly (unknown fields raise)."""
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format

    message = getattr(aiplatform_v1, COLLECTIONS[collection])
    return json_format.ParseDict(body, message.pb(message()))


def _render(job: Job, numeric: bool) -> dict[str, Any]:
    body = json.loads(json.dumps(job.body))
    if numeric:  # the transport asked for numbers: enums as the proto's values
        from google.cloud.aiplatform_v1 import JobState

        body["state"] = int(JobState[body["state"]])
    return body


def _field(body: dict[str, Any], path: str) -> Any:
    value: Any = body
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(status: int, reason: str, message: str) -> tuple[int, Any]:
    """The error body Google's REST APIs answer (google.rpc.Status in JSON)."""
    return status, {"error": {"code": status, "message": message, "status": reason}}
