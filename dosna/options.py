"""Options given as text (``k=v,k=v`` on a command line, ``?k=v&k=v`` in a URL), typed.

A value is converted by the type its parameter declares on the class that takes
it (a backend's or engine's ``__init__``): ``directory=123`` stays the string
``'123'`` for a ``str`` parameter, ``create=no`` is ``False`` for a ``bool`` one,
and a value that does not fit (``create=maybe``, ``timeout=soon``) or a name the
class does not take is refused with :class:`~dosna.errors.InvalidOptionError`
before anything connects. Where no type is declared, a value is read as a JSON
value when it is one (``128``, ``0.5``, ``true``, ``null``, ``"quoted text"``,
``[1, 2]``) and as the text itself otherwise.
"""

from __future__ import annotations

import inspect
import json
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from .errors import InvalidOptionError

__all__ = ["json_value", "parse_options", "split_options", "typed_options"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null"}


def split_options(text: str | None, separator: str = ",") -> dict[str, str]:
    """``'a=1,b="x,y",c=[1,2]'`` → ``{'a': '1', 'b': '"x,y"', 'c': '[1,2]'}`` (values untouched).

    Separators inside double quotes or brackets do not split.

    Raises
    ------
    InvalidOptionError
        For an item without ``=``, an empty key or a key given twice.
    """
    items: list[str] = []
    current: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in text or "":
        if quoted:
            quoted = escaped or char != '"'
            escaped = not escaped and char == "\\"
        elif char == '"':
            quoted = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        elif char == separator and depth == 0:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    out: dict[str, str] = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidOptionError(f"option {item!r} is not of the form key=value")
        if key in out:
            raise InvalidOptionError(f"option {key!r} is given twice")
        out[key] = value.strip()
    return out


def json_value(text: str) -> Any:
    """``text`` as a JSON value if it is one (``12``, ``1e-3``, ``true``, ``"x"``, ``[1]``), else ``text``."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _parameters(target: Callable) -> tuple[dict[str, Any], bool]:
    """The keyword parameters ``target`` takes, with their types, and whether it takes ``**kwargs``."""
    function = target.__init__ if isinstance(target, type) else target  # type: ignore[misc]
    signature = inspect.signature(function)
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # annotations that do not evaluate here: treat them as undeclared
        hints = {}
    params: dict[str, Any] = {}
    var_keyword = False
    positional = 1 if isinstance(target, type) else 0  # self
    for index, (name, param) in enumerate(signature.parameters.items()):
        if param.kind is param.VAR_KEYWORD:
            var_keyword = True
        elif param.kind is param.VAR_POSITIONAL:
            continue
        elif isinstance(target, type) and index == positional and param.default is param.empty:
            continue  # the connection name
        elif index >= positional:
            params[name] = hints.get(name, Any)
    return params, var_keyword


def _kinds(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return (annotation,)


def _describe(kinds: tuple[Any, ...]) -> str:
    names = []
    for kind in kinds:
        if kind is type(None):
            names.append("none")
        elif kind is os.PathLike or kind is str:
            names.append("text")
        else:
            names.append(getattr(kind, "__name__", str(kind)))
    return " or ".join(dict.fromkeys(names))


def _convert(key: str, text: str, annotation: Any, owner: str) -> Any:
    kinds = _kinds(annotation)
    if any(k is Any or k is object for k in kinds):
        return json_value(text)
    word = text.lower()
    if type(None) in kinds and word in _NONE:
        return None
    texts = any(k is str or k is os.PathLike for k in kinds)
    if text.startswith('"') and texts:
        value = json_value(text)
        if isinstance(value, str):
            return value
    if bool in kinds:
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    if int in kinds:
        try:
            return int(text)
        except ValueError:
            pass
    if float in kinds:
        try:
            return float(text)
        except ValueError:
            pass
    if texts:
        return text
    known = {bool, int, float, type(None)}
    if all(k in known for k in kinds):
        raise InvalidOptionError(f"option {key}={text!r} of {owner}: expected {_describe(kinds)}")
    return json_value(text)  # a type text cannot spell: the plain JSON reading


def typed_options(target: Callable | None, raw: Mapping[str, str], owner: str = "") -> dict[str, Any]:
    """Convert text values by the parameter types of ``target`` (a class or function).

    Parameters
    ----------
    target : class or callable, optional
        What takes the options: a backend or engine class (its ``__init__``,
        without the connection name), or a function. None: JSON readings only.
    raw : mapping of str to str
        Option names and their text.
    owner : str
        How ``target`` is named in error messages, e.g. ``"the hdf5 backend"``.

    Raises
    ------
    InvalidOptionError
        For a name ``target`` does not take, or a value its type cannot hold.
    """
    if target is None:
        return {key: json_value(text) for key, text in raw.items()}
    owner = owner or getattr(target, "__name__", repr(target))
    params, var_keyword = _parameters(target)
    out: dict[str, Any] = {}
    for key, text in raw.items():
        if key not in params:
            if not var_keyword:
                known = ", ".join(sorted(params)) or "none"
                raise InvalidOptionError(f"{owner} takes no option {key!r} (its options: {known})")
            out[key] = json_value(text)
        else:
            out[key] = _convert(key, text, params[key], owner)
    return out


def parse_options(text: str | None, target: Callable | None = None, owner: str = "") -> dict[str, Any]:
    """Parse ``'k=v,k=v'`` and type the values (see :func:`typed_options`).

    Examples
    --------
    >>> parse_options('hidden=128,lr=1e-3,act=relu,flags=[1,2]')
    {'hidden': 128, 'lr': 0.001, 'act': 'relu', 'flags': [1, 2]}
    >>> from dosna.backends.hdf5 import Hdf5Backend
    >>> parse_options('directory=123,create=no', Hdf5Backend)
    {'directory': '123', 'create': False}
    """
    return typed_options(target, split_options(text), owner)
