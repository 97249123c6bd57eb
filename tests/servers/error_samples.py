"""What an error of the library is, for tests that make one again (from its ``args``, from
JSON, through a real Celery result backend) and compare: its type, message, repr and public
attributes."""

from __future__ import annotations

from typing import Any

from broadcasting import CloseError, ConfigurationError


def described(error: BaseException) -> dict[str, Any]:
    """What must come back: the type, the message, the repr and the public attributes (nested
    errors described alike; CloseError's drivers' errors as its message says each)."""
    attributes = {k: _plain(v) for k, v in vars(error).items() if not k.startswith("_")}
    if isinstance(error, ConfigurationError):
        attributes["problems"] = [described(p) for p in error.problems if p is not error]
    if isinstance(error, CloseError):
        # each driver's error comes back as the message says it (a BroadcastError of that
        # text: no JSON holds the exception), which str(error) compares
        attributes["errors"] = len(error.errors)
        assert all(isinstance(e, BaseException) for e in error.errors)
    return {"type": type(error), "str": str(error), "repr": repr(error), **attributes}


def _plain(value: Any) -> Any:
    if isinstance(value, BaseException):
        return described(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
