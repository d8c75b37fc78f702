"""A short soak (``make soak`` runs the long one): a gateway process reading four simulated
machines keeps its memory and file descriptors flat once warmed up."""

from __future__ import annotations

from tests.soak.soak import soak

#: stated bounds for a 45 s run: RSS growth between the second and last quarter, and fds
RSS_GROWTH_BOUND_MIB = 10.0
FD_GROWTH_BOUND = 2


def test_short_soak_has_flat_memory_and_descriptors() -> None:
    report = soak(45.0, machines=4)
    print(report.summary())
    assert report.exit_code == 0
    assert report.records_written > 0
    assert report.rss_growth_mib < RSS_GROWTH_BOUND_MIB, report.summary()
    assert report.fd_growth <= FD_GROWTH_BOUND, report.summary()
