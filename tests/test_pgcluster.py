"""The throwaway-cluster helper fault tests rely on: it starts, crashes and restarts on its own port."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.support.pgcluster import ThrowawayCluster, postgres_bin_dir


@pytest.fixture
def cluster() -> Iterator[ThrowawayCluster]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    throwaway = ThrowawayCluster(bin_dir)
    throwaway.init()
    throwaway.start()
    yield throwaway
    throwaway.destroy()


@pytest.mark.slow
def test_throwaway_cluster_survives_an_immediate_stop(cluster: ThrowawayCluster) -> None:
    assert cluster.port != 5432
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE acknowledged (n int)")
        conn.execute("INSERT INTO acknowledged VALUES (1)")
    cluster.stop("immediate")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(cluster.url, connect_timeout=2)
    cluster.start()
    with psycopg.connect(cluster.url) as conn:
        assert conn.execute("SELECT count(*) FROM acknowledged").fetchone() == (1,)
