"""Progress bars for long work: tqdm when it is installed, silence otherwise."""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(show: bool, total: int, desc: str, unit: str = "it") -> Any:
    """A tqdm bar (``update``, ``set_postfix``, ``close``), or a silent stand-in.

    Pass ``show=False`` on MPI ranks other than the root and when the user
    asked for quiet output. Without tqdm (``pip install 'dosna[progress]'``)
    nothing is shown.
    """
    if not show:
        return _Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Silent()
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
