"""The broker address (water.broker) as an Amazon MQ connection gives it: ``amqps://`` is TLS on 5671 with
the broker's certificate and host name verified, against the system's CAs unless a ``cafile`` is given.
A connection that would turn verification off is refused, with the field to change, by every user of
it (the trigger, the publishers). The TLS handshakes here are against a local TLS server with a
certificate of its own; no broker is needed."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
from pathlib import Path

import pytest

from water import amqp_publish, events
from water.broker import BrokerAddress, BrokerSettingError, connection_from_uri, open_connection

PASSWORD = "s3cret-Pw"
AMAZON_MQ = f"amqps://water:{PASSWORD}@b-1234abcd.mq.eu-west-1.amazonaws.com:5671/%2F"


def address_of(uri: str) -> BrokerAddress:
    return BrokerAddress.from_connection(connection_from_uri(uri, events.AMQP_CONN_ID))


def test_an_amazon_mq_uri_is_tls_on_5671_with_the_certificate_and_host_name_verified():
    address = address_of(AMAZON_MQ)
    assert (address.tls, address.host, address.port, address.virtual_host) == (
        True,
        "b-1234abcd.mq.eu-west-1.amazonaws.com",
        5671,
        "/",
    )
    assert address.describe() == "amqps://b-1234abcd.mq.eu-west-1.amazonaws.com:5671/%2F"
    context = address.ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True
    assert PASSWORD not in repr(address) and PASSWORD not in address.describe()
    # without a port, amqps means Amazon MQ's 5671
    assert address_of(f"amqps://water:{PASSWORD}@b-1234abcd.mq.eu-west-1.amazonaws.com/%2F").port == 5671


def test_a_plain_amqp_uri_is_not_tls():
    address = address_of("amqp://guest:guest@127.0.0.1/%2F")
    assert (address.tls, address.port, address.ssl_context()) == (False, 5672, None)


@pytest.mark.parametrize("verify", ["false", "False", "0", "no", "off"])
def test_turning_certificate_verification_off_is_refused_naming_the_field(verify):
    with pytest.raises(BrokerSettingError) as refused:
        address_of(f"{AMAZON_MQ}?verify={verify}")
    said = str(refused.value)
    assert f"connection 'amqp_default': extra verify='{verify}' would turn off checking the broker's TLS certificate" in said
    assert "cafile" in said and PASSWORD not in said


def test_a_misspelt_flag_is_refused_rather_than_read_as_false():
    with pytest.raises(BrokerSettingError, match=r"extra verify='flase' is neither true nor false"):
        address_of(f"{AMAZON_MQ}?verify=flase")
    with pytest.raises(BrokerSettingError, match=r"extra tls='ture' is neither true nor false"):
        address_of("amqp://guest:guest@broker.example:5671/%2F?tls=ture")
    assert address_of("amqp://guest:guest@broker.example:5671/%2F?tls=true").tls is True
    assert address_of(f"{AMAZON_MQ}?verify=true").ssl_context().verify_mode == ssl.CERT_REQUIRED


def test_the_publishers_refuse_an_unverified_broker_before_connecting(monkeypatch):
    """`water publish`, `water up`'s probe and the completion events say why and send nothing."""
    conn = connection_from_uri(f"{AMAZON_MQ}?verify=false", events.AMQP_CONN_ID)
    monkeypatch.setattr(amqp_publish, "open_connection", pytest.fail)  # nothing is attempted
    outgoing = amqp_publish.Outgoing(routing_key=events.CONTROL_QUEUE, body={}, message_id="m-1")
    for attempt in (lambda: amqp_publish.send(conn, outgoing), lambda: amqp_publish.probe(conn)):
        with pytest.raises(amqp_publish.PublishError, match="extra verify='false' would turn off checking") as refused:
            attempt()
        assert PASSWORD not in str(refused.value)


def test_the_trigger_keeps_retrying_an_unverified_broker_saying_why(monkeypatch, caplog):
    from water.triggers.amqp import AmqpQueueProducer, ConsumerSettings

    monkeypatch.setenv("AIRFLOW_CONN_WATER_TEST_INSECURE", f"{AMAZON_MQ}?verify=false")
    producer = AmqpQueueProducer(ConsumerSettings(queue="water.control", amqp_conn_id="water_test_insecure"))

    async def first_attempt() -> None:
        stream = producer.open_stream()
        with pytest.raises(TimeoutError):  # no event: it waits to retry
            await asyncio.wait_for(anext(stream), timeout=0.5)
        await producer.aclose()

    with caplog.at_level("WARNING", logger="water.triggers.amqp"):
        asyncio.run(first_attempt())
    (line,) = [m for m in caplog.messages if m.startswith("Cannot consume queue")]
    assert "connection 'water_test_insecure': extra verify='false' would turn off checking" in line and "retrying" in line
    assert PASSWORD not in caplog.text


# --- real TLS handshakes -------------------------------------------------------------------------


def self_signed(tmp_path: Path, name: str, ip: str | None = None) -> tuple[Path, Path]:
    """A certificate (and its key) for DNS name `name` (and `ip`), signed by itself: no system CA knows it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    alternatives: list[x509.GeneralName] = [x509.DNSName(name)]
    if ip:
        alternatives.append(x509.IPAddress(ipaddress.ip_address(ip)))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certfile, keyfile


def connect_to_tls_server(certfile: Path, keyfile: Path, extra: dict[str, str]) -> Exception:
    """open_connection to a TLS server on 127.0.0.1 presenting `certfile` (it speaks no AMQP): what failed."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certfile, keyfile)

    async def attempt() -> Exception:
        async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        query = "&".join(f"{k}={v}" for k, v in extra.items())
        address = address_of(f"amqps://water:{PASSWORD}@127.0.0.1:{port}/%2F" + (f"?{query}" if query else ""))
        try:
            async with server:
                connection = await open_connection(address, "water test", timeout=5)
                await connection.close()
        except Exception as exc:  # what the client saw is the result
            return exc
        raise AssertionError("a server that speaks no AMQP was taken for a broker")

    return asyncio.run(attempt())


def failures(exc: BaseException | None) -> list[BaseException]:
    """The error and those it was raised from, outermost first."""
    chain = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def verification_failures(exc: BaseException) -> list[str]:
    return [str(e) for e in failures(exc) if isinstance(e, ssl.SSLCertVerificationError)]


def test_a_certificate_no_trusted_ca_signed_is_refused_in_the_handshake(tmp_path):
    certfile, keyfile = self_signed(tmp_path, "broker.test", ip="127.0.0.1")
    failed = connect_to_tls_server(certfile, keyfile, {})
    assert any("self-signed certificate" in said for said in verification_failures(failed)), failures(failed)
    assert PASSWORD not in repr(failures(failed))


def test_a_private_ca_given_as_cafile_is_trusted_and_the_host_name_still_checked(tmp_path):
    certfile, keyfile = self_signed(tmp_path, "broker.test", ip="127.0.0.1")
    past_the_handshake = connect_to_tls_server(certfile, keyfile, {"cafile": str(certfile)})
    # the handshake passed: what failed is the AMQP greeting the server never sent
    assert not any(isinstance(e, ssl.SSLError) for e in failures(past_the_handshake)), failures(past_the_handshake)
    other_name, other_key = self_signed(tmp_path, "other.test")  # trusted, but not issued for 127.0.0.1
    mismatch = connect_to_tls_server(other_name, other_key, {"cafile": str(other_name)})
    assert any("IP address mismatch" in said for said in verification_failures(mismatch)), failures(mismatch)


def test_the_connection_extra_is_json_in_airflow_s_own_form_too():
    """AIRFLOW_CONN_AMQP_DEFAULT may be a JSON connection instead of a URI."""
    from airflow.sdk import Connection

    def amazon_mq(extra: dict) -> Connection:
        return Connection(
            conn_id="amqp_default",
            conn_type="amqps",
            host="b-1234abcd.mq.eu-west-1.amazonaws.com",
            login="water",
            password=PASSWORD,
            extra=json.dumps(extra),
        )

    with pytest.raises(BrokerSettingError, match="extra verify=False would turn off"):
        BrokerAddress.from_connection(amazon_mq({"verify": False}))
    assert BrokerAddress.from_connection(amazon_mq({})).port == 5671
