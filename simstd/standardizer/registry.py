"""The standardization methods by name: ``Standardizer(method=...)`` picks one here."""
from __future__ import annotations

from ..errors import SimstdError
from .corrected import HubnessMethod
from .method import Method
from .paper import PaperMethod

#: Every method, by its ``method=`` name. A new method: a module with a
#: :class:`~simstd.standardizer.method.Method` subclass, and one line here.
BACKENDS: dict[str, Method] = {backend.name: backend for backend in (PaperMethod(), HubnessMethod())}
METHODS = tuple(BACKENDS)


def backend(name: str) -> Method:
    """The backend of ``method=name``."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise SimstdError(f"unknown method {name!r}; use one of {list(METHODS)}") from None
