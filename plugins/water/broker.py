"""The AMQP broker (RabbitMQ; Amazon MQ for RabbitMQ): where it is, read from an Airflow connection, and
how to connect. Shared by the trigger that consumes (water.triggers.amqp) and the publishers
(water.amqp_publish).

The connection: host, port, login, password, schema = the virtual host (default ``/``). TLS when the
connection type is ``amqps`` (the URI ``amqps://…``, Amazon MQ: port 5671) or extra ``{"tls": true}``;
extra ``cafile`` (CA bundle, default the system's), ``certfile``/``keyfile`` (client certificate).
With TLS the broker's certificate and host name are always verified: extra ``verify: false`` is
refused (:class:`BrokerSettingError`; a broker with a private CA gets its bundle as ``cafile``), and
so is a ``tls``/``verify`` value that is neither true nor false. No repr, log line or error text
water writes carries the password.

aio-pika is imported where a connection is opened, never at import: DAG files import this module.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    import ssl

    from aio_pika.abc import AbstractConnection
    from airflow.sdk import Connection

CONNECT_TIMEOUT = 10.0
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class BrokerSettingError(ValueError):
    """A broker connection water will not use; str() names the connection and the field to change
    (never the password)."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where and how to connect, read from the Airflow connection (the password is not in its repr)."""

    host: str
    port: int
    login: str
    virtual_host: str
    tls: bool
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    password: str = field(default="", repr=False)

    @classmethod
    def from_connection(cls, conn: Connection) -> BrokerAddress:
        """The address of ``conn``; BrokerSettingError for a connection that would not verify the broker."""
        extra = conn.extra_dejson or {}
        tls = (conn.conn_type or "").lower() == "amqps" or _flag(conn, "tls", default=False)
        if tls and not _flag(conn, "verify", default=True):
            raise BrokerSettingError(
                f"connection {conn.conn_id!r}: extra verify={extra['verify']!r} would turn off checking the "
                "broker's TLS certificate; water does not connect to a broker it cannot verify. Remove it "
                "(Amazon MQ's certificate is signed by a public CA), or give a private CA's bundle as extra cafile"
            )
        return cls(
            host=conn.host or "localhost",
            port=int(conn.port or (5671 if tls else 5672)),
            login=conn.login or "guest",
            password=conn.password or "",
            virtual_host=conn.schema or "/",
            tls=tls,
            cafile=extra.get("cafile"),
            certfile=extra.get("certfile"),
            keyfile=extra.get("keyfile"),
        )

    def describe(self) -> str:
        """The broker as logs name it: scheme, host, port, virtual host; no credentials."""
        return f"{'amqps' if self.tls else 'amqp'}://{self.host}:{self.port}/{quote(self.virtual_host, safe='')}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (None without TLS): the certificate verified against the system's CAs (or
        ``cafile``), and its host name checked."""
        if not self.tls:
            return None
        import ssl

        context = ssl.create_default_context(cafile=self.cafile)
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context


def _flag(conn: Connection, name: str, default: bool) -> bool:
    """The connection's extra ``name`` as a boolean; a value that is neither true nor false is refused
    (a misspelt ``verify: flase`` must not pass as false)."""
    value = (conn.extra_dejson or {}).get(name, default)
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE | _FALSE:
        return word in _TRUE
    raise BrokerSettingError(f"connection {conn.conn_id!r}: extra {name}={value!r} is neither true nor false")


def connection_from_uri(uri: str, conn_id: str) -> Connection:
    """An Airflow connection from its URI (``amqp://user:password@host:5672/%2F``), as AIRFLOW_CONN_* spells it."""
    from airflow.sdk import Connection

    return Connection.from_uri(uri, conn_id=conn_id)


async def open_connection(address: BrokerAddress, name: str, timeout: float = CONNECT_TIMEOUT) -> AbstractConnection:
    """A connection to the broker, named ``name`` in its management UI."""
    import aio_pika

    ssl_context = await asyncio.to_thread(address.ssl_context)  # reads CA files: off the event loop
    return await aio_pika.connect(
        host=address.host,
        port=address.port,
        login=address.login,
        password=address.password,
        virtualhost=address.virtual_host,
        ssl=address.tls,
        ssl_context=ssl_context,
        timeout=timeout,
        client_properties={"connection_name": name},
    )
