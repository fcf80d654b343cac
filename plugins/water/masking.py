"""Connection secrets kept out of every log and record water writes.

Airflow masks a connection's password when a task fetches it, but only where its log pipeline
runs the masker: `water run` runs tasks in its own process (`DAG.test()`), whose logging has no
masking step, so a client library's line such as slack_sdk's `Sending a request - url:
https://hooks.slack.com/services/T…/B…/<token>` (or, on a retry, `Going to retry the same
request: POST <url>`) reached the run log as it was. And a secret may sit in a connection's
host or extra too (a webhook URL), which Airflow does not mask.

`protect(conn)` registers every secret part of a connection with Airflow's masker (which also
tells the supervisor of a task process, so the task log is masked) and puts the masker into
this process's logging: structlog's processors and every stdlib log record. `redact(value)`
takes the registered secrets out of what water records itself (the outbox, warnings, messages).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import parse_qsl, quote, unquote, urlsplit

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from structlog.typing import EventDict, WrappedLogger

_TOKEN_MIN_LENGTH = 8  # a URL path segment this long with a digit in it is treated as a token


def secret_parts(conn: Connection) -> list[str]:
    """What of a connection must never be shown: its password, every URL in its fields (whole,
    its path, its token-like path segments, query values, user info), sensitive extra values."""
    from airflow.sdk._shared.secrets_masker import should_hide_value_for_key

    parts: list[str] = []
    password = (conn.password or "").strip()
    if password:
        parts += [password, quote(password, safe=""), quote(password)]
    fields = [password, conn.host or "", conn.schema or ""]  # a webhook URL in any of them
    for key, value in _flat(conn.extra_dejson or {}):
        if isinstance(value, str):
            if should_hide_value_for_key(key):
                parts.append(value)
            fields.append(value)
    for value in fields:
        parts += _url_parts(value)
    return list(dict.fromkeys(p for p in parts if p))


def _flat(extra: object, key: str = "") -> list[tuple[str, object]]:
    if isinstance(extra, dict):
        return [pair for k, v in extra.items() for pair in _flat(v, str(k))]
    if isinstance(extra, list):
        return [pair for v in extra for pair in _flat(v, key)]
    return [(key, extra)]


def _url_parts(value: str) -> list[str]:
    """A URL's secrets: its token-like path segments (and the path from the first of them on:
    Slack's `T…/B…/<token>`), query values and user info; and the whole URL when it has any."""
    if "/" not in value:
        return []
    url = urlsplit(value if "://" in value else f"//{value}")
    path = url.path.strip("/")
    tokens = [s for s in path.split("/") if len(s) >= _TOKEN_MIN_LENGTH and any(c.isdigit() for c in s)]
    parts = [path[path.index(tokens[0]) :], *tokens] if tokens else []
    parts += [v for _, v in parse_qsl(url.query)]
    if url.password:
        parts.append(unquote(url.password))
    if parts:
        parts.append(value)
    return parts + [quote(p) for p in parts]


# keys of an OpenLineage transport whose every value is a credential (custom_headers: an API
# gateway's key header, whatever its name)
_SECRET_SECTIONS = ("auth", "custom_headers", "headers")


def transport_secret_parts(config: object, key: str = "", section: str = "") -> list[str]:
    """What of an OpenLineage transport's config (the provider's `[openlineage] transport`, a
    transform or composite one with its inner transports) must never be shown: values under
    sensitive keys (apiKey, token, password…), every value of its auth (but its type) and custom
    headers, and the secret parts of every URL in it."""
    from airflow.sdk._shared.secrets_masker import should_hide_value_for_key

    if isinstance(config, dict):
        inner = section or (key if key in _SECRET_SECTIONS else "")
        return [part for k, value in config.items() for part in transport_secret_parts(value, str(k), inner)]
    if isinstance(config, list):
        return [part for value in config for part in transport_secret_parts(value, key, section)]
    if not isinstance(config, str) or not config.strip():
        return []
    hidden = (section and key != "type") or should_hide_value_for_key(key)
    return [*([config] if hidden else []), *_url_parts(config)]


def protect_lineage_transport(*, logs: bool = True) -> None:
    """Mask the secrets of this process's OpenLineage transport (its config is an Airflow option,
    which Airflow does not count as sensitive, and the HTTP transport logs its config at DEBUG);
    with `logs`, in this process's own logging too (mask_process_logs)."""
    from airflow.sdk.log import mask_secret

    try:
        from airflow.providers.openlineage import conf as lineage_conf

        config = lineage_conf.transport()
    except (ImportError, ValueError):  # no provider; a transport that is not a JSON object
        return
    for part in dict.fromkeys(transport_secret_parts(config)):
        mask_secret(part)
    if logs:
        mask_process_logs()


def protect(conn: Connection) -> None:
    """Mask the connection's secrets in every log of this process (and its task supervisor)."""
    from airflow.sdk.log import mask_secret

    for part in secret_parts(conn):
        mask_secret(part)
    mask_process_logs()


Redactable = TypeVar("Redactable", str, dict[str, Any])


def redact(value: Redactable) -> Redactable:
    """The value (a text, or a JSON-like structure) with every registered secret as ***."""
    from airflow.sdk._shared.secrets_masker import redact as airflow_redact

    # Airflow's redact gives back what it was given (a str for a str, a dict for a dict);
    # its annotation is the union of every kind it takes.
    return cast("Redactable", airflow_redact(value))


# --- this process's logging --------------------------------------------------------------


def mask_process_logs() -> None:
    """Run Airflow's masker over everything this process logs: a structlog processor before the
    renderer, and every stdlib record as it is made (whatever logger or handler it takes).
    Idempotent; call it again after logging is reconfigured."""
    import structlog

    processors = structlog.get_config()["processors"]  # what loggers hold, cached ones too
    if _mask_event not in processors:
        if isinstance(processors, list):  # changed in place, so loggers made already mask too
            processors.insert(max(len(processors) - 1, 0), _mask_event)
        else:
            processors = list(processors)
            structlog.configure(processors=[*processors[:-1], _mask_event, *processors[-1:]])
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "masks_secrets", False):
        logging.setLogRecordFactory(_masking_record_factory(factory))


def _mask_event(logger: WrappedLogger, method: str, event: EventDict) -> dict[str, Any]:
    if event.get("exc_info"):  # rendered here, so the traceback's texts are masked too
        import structlog

        event = structlog.processors.format_exc_info(logger, method, event)
    return redact(dict(event))


def _redact_arg(arg: object) -> object:
    """A log argument with the registered secrets out: a text redacted; any other object (a
    config, an exception) as its redacted text when its text holds one, else as it was."""
    if isinstance(arg, str):
        return redact(arg)
    if arg is None or isinstance(arg, int | float):
        return arg
    text = str(arg)
    masked = redact(text)
    return arg if masked == text else masked


def _masking_record_factory(make_record: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.msg = redact(record.msg) if isinstance(record.msg, str) else record.msg
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(a) for k, a in record.args.items()}
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            with contextlib.suppress(AttributeError, TypeError):  # an exception type with read-only args
                exc.args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
        return record

    factory.masks_secrets = True  # type: ignore[attr-defined]
    return factory
