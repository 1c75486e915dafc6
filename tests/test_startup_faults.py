"""Starting in a bad world: no broker yet, a central that does not resolve, TLS to a private CA.

- Broker down at start-up: the gateway keeps trying (a listener on the broker's port counts
  the attempts and hangs up on each), /healthz answers 503 meanwhile, and once the broker
  starts it connects by itself (no restart) and presses flow.
- The central's host does not resolve: events are kept in the outbox, the log says which host
  failed and that it retries; once the config points at the right central (and the gateway is
  restarted, as for any config change) every event arrives.
- TLS with a private CA: a CA and a server certificate made here with `cryptography`, a real
  TLS server on 127.0.0.1 in front of the real central. With `central.ca_file` the events are
  delivered; without it the certificate is refused (verification is on by default), the events
  are kept, and nothing reaches the central. No setting turns verification off.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers.central_proxy import CentralProxy
from tests.helpers.support import (
    Broker,
    Gateway,
    device_topic,
    free_port,
    mashang,
    outbox_depth,
    publish,
    set_option,
    wait_for,
)

pytestmark = pytest.mark.system


def health(gateway: Gateway) -> tuple[int | None, dict | None]:
    """(status, body) of the gateway's /healthz; (None, None) while nothing listens."""
    url = f"http://127.0.0.1:{gateway.http_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None, None


def presses(count: int, device: str = "btn-0001") -> list[tuple[str, str]]:
    return [(device_topic(device), json.dumps({"seq": n, "action": "long"}))
            for n in range(1, count + 1)]


def press_ids_at(central, device: str) -> set[int]:
    return {e["data"]["seq"] for e in central.events()
            if e["device_id"] == device and e["type"] in ("button.press", "button.repeat")}


class Doorman:
    """Holds a port where the broker will be: accepts each connection and closes it at once,
    counting them, so that the test can see the gateway try again and again."""

    def __init__(self, port: int) -> None:
        self.attempts = 0
        self._server = socket.create_server(("127.0.0.1", port))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self.attempts += 1
            connection.close()

    def close(self) -> None:
        self._server.close()
        self._thread.join(5)


def test_broker_down_at_start_then_up(tmp_path: Path, central):
    broker = Broker(tmp_path / "broker", port=free_port())  # not started yet
    gateway = Gateway(tmp_path / "gateway", broker.port, central.url)
    doorman = Doorman(broker.port)
    try:
        gateway.start(wait_ready=False)
        status = wait_for(lambda: health(gateway)[0], 20, what="the gateway's listener")
        assert status == 503, "healthy without a broker"
        assert health(gateway)[1]["broker"] == "not subscribed"
        wait_for(lambda: doorman.attempts >= 3, 30, what="three connection attempts")
        assert health(gateway)[0] == 503
        assert gateway.running(), gateway.output()[-3000:]

        doorman.close()
        broker.start()
        wait_for(lambda: health(gateway)[0] == 200, 30, what="/healthz 200 once the broker is up")
        publish(broker.port, presses(5))
        wait_for(lambda: press_ids_at(central, "btn-0001") == {1, 2, 3, 4, 5}, 30,
                 what="presses at the central")
        assert "Traceback" not in gateway.output()
    finally:
        doorman.close()
        gateway.kill()
        broker.kill()


def test_central_unresolvable_keeps_events_and_says_so(broker, central, make_gateway):
    gateway = make_gateway("http://central.invalid:8080")
    gateway.start()
    publish(broker.port, presses(20, "btn-0002"))
    wait_for(lambda: outbox_depth(gateway.config)["alerts"] == 20, 30,
             what="20 alerts kept in the outbox")
    wait_for(lambda: "central.invalid" in gateway.output(), 30, what="the host named in the log")
    failures = [line for line in gateway.output().splitlines()
                if "not delivered" in line and "central.invalid" in line]
    assert len(failures) >= 2, "no retries logged"
    assert all("retrying in" in line for line in failures)
    assert not press_ids_at(central, "btn-0002")

    gateway.terminate()
    set_option(gateway.config, "central", "url", json.dumps(central.url))
    gateway.start()
    wait_for(lambda: press_ids_at(central, "btn-0002") == set(range(1, 21)), 30,
             what="every kept press at the central")
    wait_for(lambda: outbox_depth(gateway.config)["alerts"] == 0, 30, what="an empty outbox")
    gateway.kill()


# -- TLS with a private CA -------------------------------------------------------------------


def make_private_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signs for 127.0.0.1 and localhost."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Mashang test community CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "central.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
        ]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "central.pem", folder / "central.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_file, cert_file, key_file


def test_tls_to_a_private_ca_verified_never_silently_off(tmp_path: Path, broker, central,
                                                         make_gateway):
    ca_file, cert_file, key_file = make_private_ca(tmp_path / "pki")
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert_file, key_file)
    with CentralProxy(central.url, ssl_context=server_side) as tls_central:
        assert tls_central.url.startswith("https://127.0.0.1:")

        # Without ca_file: the system's trust store does not know the private CA: refused.
        untrusting = make_gateway(tls_central.url)
        untrusting.start()
        publish(broker.port, presses(3, "btn-0003"))
        wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in untrusting.output()
                 or "certificate verify failed" in untrusting.output(), 30,
                 what="a refused certificate in the log")
        wait_for(lambda: outbox_depth(untrusting.config)["alerts"] == 3, 30,
                 what="the presses kept")
        assert not press_ids_at(central, "btn-0003")
        assert not tls_central.ingests, "a request went through an unverified connection"
        untrusting.terminate()

        # No setting turns verification off: a made-up one is a configuration error.
        for key in ("verify", "insecure", "verify_ssl", "tls_verify"):
            config = tmp_path / f"{key}.toml"
            config.write_text(untrusting.config.read_text().replace(
                "[central]\n", f"[central]\n{key} = false\n"))
            result = subprocess.run(mashang("outbox", "--config", str(config)),
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 2, (key, result.stdout, result.stderr)
            assert f"central.{key}: unknown key" in result.stderr

        # With ca_file: delivered, the kept presses included (same data folder, restarted).
        set_option(untrusting.config, "central", "ca_file", json.dumps(str(ca_file)))
        untrusting.start()
        publish(broker.port, presses(6, "btn-0003")[3:])
        wait_for(lambda: press_ids_at(central, "btn-0003") == set(range(1, 7)), 30,
                 what="every press over verified TLS")
        assert tls_central.ingests
        untrusting.kill()


def gateway_run(gateway: Gateway, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`mashang gateway` run to its end, as an operator (or systemd) would see it."""
    return subprocess.run(mashang("gateway", "--config", str(gateway.config)),
                          capture_output=True, text=True, timeout=timeout)


def test_an_http_port_in_use_is_one_line_and_exit_2(tmp_path: Path, broker):
    gateway = Gateway(tmp_path / "gateway", broker.port, "http://127.0.0.1:9")
    with socket.create_server(("127.0.0.1", gateway.http_port)):
        result = gateway_run(gateway)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    [line] = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert f"127.0.0.1:{gateway.http_port}" in line and "in use" in line


def test_a_second_gateway_on_the_same_data_directory_is_refused(tmp_path: Path, broker,
                                                                 central):
    first = Gateway(tmp_path / "first", broker.port, central.url)
    first.start()
    try:
        second = Gateway(tmp_path / "second", broker.port, central.url)
        set_option(second.config, "gateway", "data_dir", f'"{first.data_dir}"')
        set_option(second.config, "mqtt", "client_id", '"another-client"')
        result = gateway_run(second)
        assert result.returncode == 2, result.stderr
        assert "another gateway" in result.stderr and str(first.data_dir) in result.stderr
        assert "Traceback" not in result.stderr
        assert first.running(), "the first one is untouched"
    finally:
        first.kill()


def test_a_second_gateway_with_the_same_client_id_on_the_broker_is_refused(
        tmp_path: Path, broker, central):
    first = Gateway(tmp_path / "first", broker.port, central.url)
    first.start()
    try:
        second = Gateway(tmp_path / "second", broker.port, central.url)  # same gateway.id
        result = gateway_run(second)
        assert result.returncode == 2, result.stderr
        assert "client id" in result.stderr and "gateway.id" in result.stderr
        assert first.running()
    finally:
        first.kill()


def test_an_unreachable_broker_is_said_once_with_its_reason(tmp_path: Path, central):
    port = free_port()
    gateway = Gateway(tmp_path / "gateway", port, central.url)
    gateway.start(wait_ready=False)
    try:
        wait_for(lambda: "unreachable" in gateway.output(), 20, what="the broker warning")
        [line] = [line for line in gateway.output().splitlines() if "unreachable" in line]
        assert "WARNING" in line and f"127.0.0.1:{port}" in line
        assert "connection refused" in line and "retrying" in line
        # Something answers on the port now, and hangs up on every attempt (reconnect_max is
        # 1 s here): many attempts later, each new state was said once.
        doorman = Doorman(port)
        try:
            wait_for(lambda: doorman.attempts >= 6, 30, what="six more attempts")
        finally:
            doorman.close()
        said = [line for line in gateway.output().splitlines()
                if f"127.0.0.1:{port}" in line and "WARNING" in line]
        assert 2 <= len(said) <= 3, said
        assert gateway.running()
    finally:
        gateway.kill()
