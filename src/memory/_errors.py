"""The one exception tree of ``memory``.

::

    MemoryServiceError                 base of everything this package raises
    ├── ConfigError                    invalid configuration (file, key path, expected, found)
    ├── StoreError                     a database operation failed (mapped from driver errors)
    │   ├── StoreUnavailable           transient: refused/reset/timeout/gone away/locked/read-only
    │   └── StoreRejected              permanent: the database refused this row (too long, bad value)
    └── InvalidKeyError (+ ValueError) a vault key or user id that would escape the vault

The write path (``append_event``, ``append_turn``, ``finish_turn``) never raises any of these:
storage errors are caught inside the service, counted and logged. They surface only from
explicit maintenance calls (``MemoryService.initialize()``, the CLI, the store used directly)
and from config loading.
"""

from __future__ import annotations

from collections.abc import Iterator


class MemoryServiceError(Exception):
    """Base class of every error raised by ``memory``."""


class ConfigError(MemoryServiceError):
    """Invalid configuration.

    The message names the file, the key path, what was expected and what was found, e.g.
    ``config/memory.yaml: failure_queue.max_retries: expected an integer >= 1, got 'abc'``.
    """

    def __init__(self, message: str, *, source: str = "", key: str = "") -> None:
        super().__init__(message)
        self.source = source
        self.key = key


class StoreError(MemoryServiceError):
    """A database operation failed. ``transient`` says whether retrying can help."""

    transient: bool = False


class StoreUnavailable(StoreError):
    """The database cannot be reached or cannot write right now; retrying may succeed."""

    transient = True
    #: The connection broke in a way a single oversized or malformed row can cause (MySQL
    #: "gone away" / "lost connection" / packet too large). If it repeats while the server
    #: answers a ping, the writer isolates the batch instead of retrying it forever.
    row_suspect: bool = False


class StoreRejected(StoreError):
    """The database rejected the data itself (too long, invalid value); retrying will not help."""

    transient = False


class InvalidKeyError(MemoryServiceError, ValueError):
    """A vault key or user id that is empty, absolute, contains ``..`` or NUL, or escapes the vault."""


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps (a driver's ``orig``, causes, contexts), each once."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]
