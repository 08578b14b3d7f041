"""The errors of the training runner."""

from __future__ import annotations

from ..errors import ModelStateError

__all__ = ["ResumeError"]


class ResumeError(ModelStateError):
    """A run cannot continue from its checkpoint: other settings or data, or a learner without state."""
