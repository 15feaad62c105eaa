"""RE2 for rule regexes: linear-time matching (no backtracking), the syntax the API server's CEL
also speaks. A small typed face over the ``google-re2`` binding, which ships no type hints."""

from __future__ import annotations

from typing import Any

import re2  # type: ignore[import-untyped]

__all__ = ["Regex", "RegexError"]


class RegexError(ValueError):
    """The pattern is not valid RE2 (the message says why, in RE2's words)."""


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # errors are raised as RegexError, not printed to stderr
    return options


_OPTIONS = _options()


class Regex:
    """A compiled RE2 pattern."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str) -> None:
        try:
            self._compiled = re2.compile(pattern, _OPTIONS)
        except re2.error as exc:
            detail = exc.args[0] if exc.args else "invalid pattern"
            if isinstance(detail, bytes):
                detail = detail.decode("utf-8", "replace")
            raise RegexError(str(detail)) from None
        self.pattern = pattern

    @property
    def groups(self) -> int:
        """The number of capture groups."""
        return int(self._compiled.groups)

    def search(self, text: str) -> tuple[str, ...] | None:
        """Search ``text`` anywhere; the groups of the first match ('' for unmatched) or None."""
        found = self._compiled.search(text)
        if found is None:
            return None
        return tuple(group or "" for group in found.groups())

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"
