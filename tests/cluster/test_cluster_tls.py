"""TLS between coordinator, scheduler and workers, with certificates this test makes: a run
with the cluster's CA, certificate and key succeeds; without them it is refused with
CLUSTER_UNAVAILABLE (the cluster talks to nobody without a certificate of its CA)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.cluster.conftest import cli_run, summary_of

pytestmark = pytest.mark.timeout(600)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_certificates(where: Path) -> dict[str, str]:
    """A CA and one certificate it signs for 127.0.0.1 (server and client use), as PEM."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("engine test CA"))
          .issuer_name(_name("engine test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1"))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                 x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": where / "ca.pem", "cert": where / "cert.pem", "key": where / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    paths["key"].chmod(0o600)
    return {k: str(v) for k, v in paths.items()}


def test_tls_cluster(make_cluster, tmp_path):
    certs = make_certificates(tmp_path)
    tls = ["--tls-ca-file", certs["ca"], "--tls-cert", certs["cert"], "--tls-key", certs["key"]]
    cluster = make_cluster(workers=1, tls=tls, protocol="tls")
    assert cluster.address.startswith("tls://127.0.0.1:")
    done = cli_run(str(tmp_path / "data"), "--scheduler", cluster.address, "--shards", "2",
                   *tls)
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary_of(done)["passed"]

    refused = cli_run(str(tmp_path / "other"), "--scheduler", cluster.address)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert summary_of(refused)["error"]["code"] == "CLUSTER_UNAVAILABLE"
