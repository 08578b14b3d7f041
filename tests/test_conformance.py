"""The conformance suite on every backend × engine (see conftest.py for the selection)."""

from dosna.testing import ConformanceSuite


class TestConformance(ConformanceSuite):
    pass
