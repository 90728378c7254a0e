"""TLS between coordinator, scheduler and workers, with certificates this test makes: a run
with the cluster's CA, certificate and key succeeds (also with TLS required); without them it
is refused with CLUSTER_UNAVAILABLE (the cluster talks to nobody without a certificate of its
CA). With TLS required (``--require-tls``, ``ENGINE_DASK_REQUIRE_TLS``, the resource's
``require_tls``) a plain-TCP scheduler off loopback is refused with CLUSTER_INSECURE before
any connection; loopback stays allowed (tests/cluster/test_cluster_run.py runs with it)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine_core.cluster.coordinator import ClusterSettings, connect, is_loopback_address
from engine_core.errors import EngineError
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
                   "--require-tls", *tls)
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary_of(done)["passed"]

    refused = cli_run(str(tmp_path / "other"), "--scheduler", cluster.address)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert summary_of(refused)["error"]["code"] == "CLUSTER_UNAVAILABLE"


# TEST-NET-1 (RFC 5737): never routed, so nothing is ever reached even if a check failed
OFF_LOOPBACK = "tcp://192.0.2.1:8786"


def test_loopback_addresses():
    for address in ("tcp://127.0.0.1:8786", "127.0.0.1:8786", "tcp://127.3.4.5:1",
                    "tcp://localhost:8786", "tcp://[::1]:8786"):
        assert is_loopback_address(address), address
    for address in (OFF_LOOPBACK, "tcp://10.0.0.5:8786", "tcp://0.0.0.0:8786",
                    "tcp://[2001:db8::1]:8786", "tcp://:8786", "inproc://x"):
        assert not is_loopback_address(address), address


def test_required_tls_refuses_plain_tcp_off_loopback(tmp_path, monkeypatch):
    import engine_assets.resources as resources

    with pytest.raises(EngineError) as err:
        connect(ClusterSettings(OFF_LOOPBACK, require_tls=True, connect_timeout_s=1))
    assert err.value.code == "CLUSTER_INSECURE" and "192.0.2.1" in str(err.value)
    # a scheduler file naming such an address: the address it names is what is checked
    sched = tmp_path / "scheduler.json"
    sched.write_text(f'{{"address": "{OFF_LOOPBACK}"}}')
    with pytest.raises(EngineError) as err:
        connect(ClusterSettings(str(sched), require_tls=True, connect_timeout_s=1))
    assert err.value.code == "CLUSTER_INSECURE"

    # the CLI flag, and the environment variable without the flag
    for extra, env in ((["--require-tls"], {}), ([], {"ENGINE_DASK_REQUIRE_TLS": "1"})):
        done = cli_run(str(tmp_path / "data"), "--scheduler", OFF_LOOPBACK, *extra,
                       env={**os.environ, **env}, timeout=120)
        assert done.returncode == 2, done.stderr[-3000:]
        assert summary_of(done)["error"]["code"] == "CLUSTER_INSECURE"
        assert not (tmp_path / "data" / "_shards").exists()

    # the Dagster resource: its field, and the environment variable
    monkeypatch.delenv("ENGINE_DASK_REQUIRE_TLS", raising=False)
    engine = resources.EngineSettings(scheduler=OFF_LOOPBACK)
    assert engine.cluster_settings().require_tls is False
    assert resources.EngineSettings(scheduler=OFF_LOOPBACK,
                                    require_tls=True).cluster_settings().require_tls
    monkeypatch.setenv("ENGINE_DASK_REQUIRE_TLS", "true")
    settings = engine.cluster_settings()
    assert settings.require_tls
    with pytest.raises(EngineError) as err:
        connect(settings)
    assert err.value.code == "CLUSTER_INSECURE"
