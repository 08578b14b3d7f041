"""The conformance suite on every backend × engine (see conftest.py for the selection)."""

import pytest

from dosna.testing import ConformanceSuite, _examples, index_cases


class TestConformance(ConformanceSuite):
    @pytest.fixture(autouse=True)
    def _is_reference(self, is_reference) -> None:
        self.is_reference = is_reference

    def oracle_plan(self, connection, mode="numpy"):
        """All cases on the reference combination (ram × cpu, or the one selected); elsewhere
        the indexing path is the same, so a tenth of them, each with chunks to read and
        write (no empty axes) and at most 64 chunks, which is what differs."""
        if self.is_reference:
            return _examples(), index_cases(mode=mode)
        return max(20, _examples() // 10), index_cases(mode=mode, min_len=1, max_chunks=64)
