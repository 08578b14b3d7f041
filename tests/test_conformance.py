"""The conformance suite on every backend × engine (see conftest.py for the selection)."""

import pytest

from dosna.testing import ConformanceSuite, _examples, index_cases

NETWORK_BACKENDS = ("ceph", "s3")


class TestConformance(ConformanceSuite):
    @pytest.fixture(autouse=True)
    def _is_reference(self, is_reference) -> None:
        self.is_reference = is_reference

    def oracle_plan(self, connection, mode="numpy"):
        """All cases on the reference combination (ram × cpu, or the one selected); elsewhere
        the indexing path is the same, so a tenth of them, each with chunks to read and
        write (no empty axes) and at most 64 chunks, which is what differs.

        On a network store (ceph, s3) the store's chunk path is what differs, and cpu
        runs it with a tenth; each engine's own path runs with a tenth on hdf5. The
        other engines there get a fiftieth (at least 20 cases each)."""
        if self.is_reference:
            return _examples(), index_cases(mode=mode)
        sharp = index_cases(mode=mode, min_len=1, max_chunks=64)
        if connection.backend.name in NETWORK_BACKENDS and connection.engine.name != "cpu":
            return max(20, _examples() // 50), sharp
        return max(20, _examples() // 10), sharp
