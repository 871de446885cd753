"""A PostgreSQL of the local fleet's own (and the tests'): Debian's binaries, one cluster in a directory, on a
loopback port, password-protected (SCRAM; the password in a 0600 pgpass file that libpq reads through
PGPASSFILE, so it never appears on a command line).

PostgreSQL refuses to run as root. As root, it runs in a user namespace of its own that maps root to an
unprivileged user: it owns its files as root owns them outside, so the cluster can live in any directory
(root's home included) without a postgres account or a chown.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from roost.pids import pid_alive
from roost.private_files import write_private

USER = "roost"
DATABASE = "roost"
UNPRIVILEGED = "1000"  # who a root-started PostgreSQL is inside its user namespace


class PostgresError(Exception):
    pass


def find_binary(name: str) -> str | None:
    """Debian keeps the server's programs in /usr/lib/postgresql/VERSION/bin, off PATH: the newest there, else
    PATH."""
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if versions:
        return str(versions[-1])
    return shutil.which(name)


def available() -> bool:
    return find_binary("initdb") is not None and find_binary("postgres") is not None


def _as_unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        raise PostgresError("PostgreSQL cannot run as root and 'unshare' (util-linux) is missing: install it")
    return [unshare, "--user", f"--map-user={UNPRIVILEGED}", f"--map-group={UNPRIVILEGED}"]


@dataclass
class LocalPostgres:
    """The cluster in `directory` (data/, pgpass, postgres.log, the unix socket), listening on host:port
    (loopback; a netns fleet's servers reach it on this computer's fleet-network address)."""

    directory: Path
    port: int
    host: str = "127.0.0.1"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def pgpass(self) -> Path:
        return self.directory / "pgpass"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    def url(self, database: str = DATABASE) -> str:
        """The store URL (no password in it: libpq finds it in PGPASSFILE, see env())."""
        return f"postgresql://{USER}@{self.host}:{self.port}/{database}"

    def env(self) -> dict[str, str]:
        """What a client of this cluster adds to its environment."""
        return {"PGPASSFILE": str(self.pgpass)}

    def password(self) -> str:
        return self.pgpass.read_text().strip().rsplit(":", 1)[1]

    def init(self) -> None:
        """Create the cluster once (a second call finds it and does nothing)."""
        if (self.data / "PG_VERSION").exists():
            return
        initdb = find_binary("initdb")
        if initdb is None:
            raise PostgresError("PostgreSQL is not installed: install Debian's 'postgresql' package "
                                "(./scripts/setup does when run as root)")
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        password = secrets.token_urlsafe(24)
        pwfile = self.directory / "initdb-password"
        write_private(pwfile, password + "\n")
        try:
            result = subprocess.run(
                [*_as_unprivileged(), initdb, "-D", str(self.data), "-U", USER, "--auth=scram-sha-256",
                 f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "--no-instructions"],
                capture_output=True, text=True, timeout=120)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise PostgresError(f"initdb failed: {tail[0]}")
        # host:port:database:user:password, for every database of this cluster
        write_private(self.pgpass, f"*:{self.port}:*:{USER}:{password}\n")
        # Password logins from the networks this computer is on (a netns fleet's), beside initdb's loopback ones
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all samenet scram-sha-256\n")

    def pid(self) -> int | None:
        """The postmaster's pid while it runs (from its postmaster.pid)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(self, timeout: float = 30.0) -> int:
        """Start the cluster (initialising it first if needed), wait until it accepts connections, and make
        the fleet's database; returns the postmaster's pid."""
        self.init()
        running = self.pid()
        if running is not None:
            return running
        postgres = find_binary("postgres")
        assert postgres is not None  # init() found the installation
        log = self.log.open("ab")
        try:
            proc = subprocess.Popen(
                [*_as_unprivileged(), postgres, "-D", str(self.data), "-p", str(self.port),
                 "-c", f"listen_addresses={self.host}", "-c", f"unix_socket_directories={self.directory}",
                 "-c", "max_connections=200", "-c", "fsync=on"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PostgresError(f"PostgreSQL exited during start-up; its log ({self.log}) ends with: "
                                    f"{self._log_tail()}")
            try:
                self.create_database(DATABASE)
                return proc.pid
            except Exception as exc:  # not accepting connections yet
                last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            time.sleep(0.1)
        self.stop()
        raise PostgresError(f"PostgreSQL did not accept connections within {timeout:g}s ({last}); "
                            f"see {self.log}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = self.log.read_text(errors="replace").strip().splitlines()
            if lines:
                return lines[-1]
        return "(empty)"

    def create_database(self, database: str) -> str:
        """Make a database (if missing) on this cluster; returns its store URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(host=self.host, port=self.port, user=USER, dbname="postgres",
                             password=self.password(), connect_timeout=2, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        return self.url(database)

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT: disconnect clients, checkpoint), then SIGQUIT, then SIGKILL."""
        pid = self.pid()
        if pid is None:
            return
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if sig == signal.SIGKILL:  # its backends too: it leads the session it was started in
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not pid_alive(pid):
                return
