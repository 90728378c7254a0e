"""A throwaway PostgreSQL server on 127.0.0.1 for the instance tests.

Debian's ``postgresql`` package is installed with apt when its binaries are missing (as the
browser test installs chromium). ``initdb`` refuses to run as root, so as root the data
directory belongs to the ``postgres`` user and the server runs as that user. The server
listens on 127.0.0.1 only, on a free port, with password authentication; ``stop`` ends it by
its data directory (``pg_ctl stop``, which signals the postmaster's own PID).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.bench_backfill import free_port

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SUPERUSER = "postgres"


def postgres_bin_dir() -> Path | None:
    for candidate in sorted(glob.glob(PG_BIN_GLOB), reverse=True):
        if os.access(os.path.join(candidate, "initdb"), os.X_OK):
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def install_postgres() -> str | None:
    """Install Debian's postgresql when its binaries are missing; the reason it could not be,
    or None."""
    if postgres_bin_dir() is not None:
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "PostgreSQL is missing and apt-get cannot run here (not root or no apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "postgresql"],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {done.stderr.strip()[-500:]}"
    return None if postgres_bin_dir() is not None else "apt-get installed no initdb"


class PostgresServer:
    """``initdb`` + ``pg_ctl start`` in a temporary directory; ``stop`` removes it all."""

    def __init__(self, database: str = "dagster") -> None:
        bin_dir = postgres_bin_dir()
        assert bin_dir is not None, "call install_postgres() first"
        self.bin = bin_dir
        self.database = database
        self.port = free_port()
        self.host = "127.0.0.1"
        self.user = SUPERUSER
        self.password = secrets.token_hex(12)
        # Not under pytest's tmp_path: that is private to root and the server runs as postgres.
        self.base = Path(tempfile.mkdtemp(prefix="engine-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.started = False

    # -------------------------------------------------------------------------- processes
    def _as_owner(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            argv = ["su", SUPERUSER, "-s", "/bin/sh", "-c", " ".join(_quote(a) for a in argv)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(SUPERUSER)
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
        os.chmod(self.base, 0o700)
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        done = self._as_owner([
            str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user,
            "--auth-local=peer", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
            "-E", "UTF8", "--locale=C.UTF-8",
        ])  # fmt: skip
        assert done.returncode == 0, f"initdb failed: {done.stdout}{done.stderr}"
        pwfile.unlink()
        options = f"-c listen_addresses={self.host} -p {self.port} -k {self.base}"
        done = self._as_owner([
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", "60", "start",
        ])  # fmt: skip
        assert done.returncode == 0, f"pg_ctl start failed: {done.stderr}\n{self._log_tail()}"
        self.started = True
        self.sql(f"CREATE DATABASE {self.database}", database="postgres")
        return self

    def stop(self) -> None:
        if self.started:
            self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                            "-w", "-t", "30", "stop"])  # fmt: skip
            self.started = False
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    # -------------------------------------------------------------------------- clients
    def env(self) -> dict[str, str]:
        """The DAGSTER_PG_* variables deploy/dagster.postgres.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.database,
        }

    def sql(self, query: str, database: str | None = None) -> list[list[str]]:
        """Run one statement through psql over TCP; rows as lists of strings."""
        psql = self.bin / "psql"
        command = [
            str(psql if psql.exists() else "psql"), "-h", self.host, "-p", str(self.port),
            "-U", self.user, "-d", database or self.database, "-X", "-A", "-t", "-F", "\t",
            "-v", "ON_ERROR_STOP=1", "-c", query,
        ]  # fmt: skip
        env = {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"}
        deadline = time.monotonic() + 30
        while True:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
            if done.returncode == 0:
                return [line.split("\t") for line in done.stdout.splitlines() if line]
            if "starting up" not in done.stderr or time.monotonic() > deadline:
                raise AssertionError(f"psql {query!r} failed: {done.stderr}")
            time.sleep(0.5)


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\"'\"'") + "'"
