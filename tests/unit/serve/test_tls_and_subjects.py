"""The gateway over TLS to the official `openai` client, and the subjects it records for erasure.

The certificate is self-signed for 127.0.0.1, made here with `cryptography`; the client trusts it
as its only CA. A deployment that redacts personal data also records the keyed hashes of what it
redacted with each trace, so `keel govern erase --subject` finds and deletes those traces.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from keel.cli._app import app
from keel.monitor import list_traces
from keel.pipeline._erase import erase_subjects, erasure_impact
from keel.serve import DeploymentSettings, Gateway, ServeSettings, create_app, create_deployment, serve_in_thread
from keel.store import Store


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keel-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.mark.timeout(120)
def test_the_gateway_serves_the_openai_client_over_tls_and_its_traces_can_be_erased(
    store: Store, upstream: str, chat_versions: tuple[str, str], tmp_path: Path, api_key: str
) -> None:
    import openai

    cert, key = _self_signed(tmp_path)
    settings = DeploymentSettings(pii="redact")
    create_deployment(store, "private", "chat@v1", route={"upstream": f"{upstream}/v1"}, settings=settings)
    gateway = Gateway(store, ServeSettings(reload_interval_s=0.1))
    trust = ssl.create_default_context(cafile=str(cert))
    with (
        serve_in_thread(create_app(gateway), tls_cert=str(cert), tls_key=str(key)) as url,
        httpx.Client(verify=trust) as http,
    ):
        assert url.startswith("https://")
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=api_key, http_client=http, max_retries=0)
        answers = [
            client.chat.completions.create(
                model="private", messages=[{"role": "user", "content": f"ticket {i}: reach me at Jane@Example.com"}]
            )
            for i in range(5)
        ]
        client.chat.completions.create(model="private", messages=[{"role": "user", "content": "no one here"}])
        with pytest.raises(httpx.ConnectError), httpx.Client(verify=True) as untrusting:
            untrusting.get(f"{url}/v1/models")  # a client that does not trust the certificate is refused
        with pytest.raises(httpx.RemoteProtocolError), httpx.Client() as plain:
            plain.get(url.replace("https://", "http://") + "/v1/models")  # no plain HTTP on the TLS port
        gateway_traces = _wait_for_traces(store, 6)
    assert all(a.choices[0].message.content == f"chat: ticket {i}: reach me at <EMAIL>" for i, a in enumerate(answers))
    assert len(gateway_traces) == 6
    impact = erasure_impact(store, ["email:jane@example.com"])
    assert len(impact.traces) == 5
    _, certificate = erase_subjects(store, ["email:jane@example.com"])
    assert certificate is not None and certificate.document["done"]["traces_deleted"] == 5
    assert [t.flags for t in list_traces(store)] == [[]]  # the one request without the subject stays


def _wait_for_traces(store: Store, count: int) -> list[Any]:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = list_traces(store, limit=100)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    return list_traces(store, limit=100)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "cert.pem"], "expected both --tls-cert and --tls-key"),
        (["--tls-cert", "missing.pem", "--tls-key", "missing.pem"], "expected a readable PEM file for --tls-cert"),
        (["--tls-cert", "keel.yaml", "--tls-key", "keel.yaml"], "expected a PEM file"),
        (["--alerts", "missing.yaml"], "expected a readable YAML alerts file"),
        (["--alerts", "keel.yaml"], "is not a valid alerts file"),
        (["--alerts", "rules.yaml", "--alerts-every", "often"], "expected a duration such as 30s"),
    ],
)
def test_bad_tls_options_are_one_line_exit_2(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(workspace)
    rule = {"name": "Errors", "metric": "error_rate", "window": "5m", "condition": "> 5%"}
    (workspace / "rules.yaml").write_text(json.dumps({"rules": [rule]}), encoding="utf-8")
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KEEL_QUERY_ENCODER", "fast", "KEEL_QUERY_ENCODER: Input should be 'onnx', 'onnx-int8' or 'torch'"),
        ("KEEL_MAX_BODY_BYTES", "lots", "KEEL_MAX_BODY_BYTES: Input should be a valid integer"),
    ],
)
def test_a_bad_gateway_setting_in_the_environment_is_one_line_exit_2(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.chdir(workspace)
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2, result.output
    assert "invalid gateway settings: " + message in result.output and "Traceback" not in result.output
