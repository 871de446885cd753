"""Session-wide test settings, and the PostgreSQL the store tests run on (issue 18)."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator

import pytest

from roost.dev import postgres
from tests.ports import free_port


def _terminate(_signum: int, _frame: object) -> None:
    # A run stopped with SIGTERM (a CI timeout, `timeout`, `kill`) unwinds like Ctrl-C, so fixtures still
    # tear down their fleets and nothing they started is left running.
    raise KeyboardInterrupt


def pytest_configure() -> None:
    signal.signal(signal.SIGTERM, _terminate)


_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[postgres.LocalPostgres]:
    """One real PostgreSQL for the run (Debian's binaries, on loopback)."""
    if not postgres.available():
        if os.environ.get("ROOST_REQUIRE_POSTGRES"):  # CI as root: setup installed it, so a skip would hide a bug
            pytest.fail("PostgreSQL is not installed, though ROOST_REQUIRE_POSTGRES is set")
        pytest.skip("PostgreSQL is not installed (./scripts/setup installs it when run as root)")
    cluster = postgres.LocalPostgres(tmp_path_factory.mktemp("postgres"), free_port())
    cluster.start()
    saved = os.environ.get("PGPASSFILE")
    os.environ.update(cluster.env())  # libpq reads the password from there, as the server does
    try:
        yield cluster
    finally:
        cluster.stop()
        if saved is None:
            os.environ.pop("PGPASSFILE", None)
        else:
            os.environ["PGPASSFILE"] = saved


@pytest.fixture
def postgres_url(postgres_cluster: postgres.LocalPostgres) -> str:
    """A new, empty database on the run's cluster."""
    return postgres_cluster.create_database(f"test{next(_databases)}")
