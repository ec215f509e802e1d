"""The exceptions predstore raises.

Every error that predstore raises on purpose is a :class:`PredstoreError`, so
``except predstore.PredstoreError`` catches all of them and nothing else. Each
subclass also derives from the builtin exception a Python user would expect
(``ValueError`` for bad input, ``KeyError`` for a missing key, ...), and each
message names the key, index or file concerned and says what was expected.
"""

from __future__ import annotations


class PredstoreError(Exception):
    """Base class of every error that predstore raises on purpose."""

    def __str__(self) -> str:
        # KeyError quotes its message; keep every message readable as written.
        return str(self.args[0]) if self.args else ""


class InvalidBatchError(PredstoreError, ValueError):
    """A batch handed to a writer is malformed: lengths, indices or names."""


class SchemaError(PredstoreError, ValueError):
    """A key's type or shape cannot be stored, or differs from its schema."""


class StoreExistsError(PredstoreError, FileExistsError):
    """The path already holds a store (or other data) and the mode forbids writing."""


class StoreNotCommittedError(PredstoreError, FileNotFoundError):
    """The path holds no committed store: there is no store manifest."""


class CorruptStoreError(PredstoreError):
    """A manifest or data file is unreadable, inconsistent or unsafe."""


class StorePermissionError(PredstoreError, PermissionError):
    """A file of the store exists but this process may not read it."""


class FormatVersionError(PredstoreError):
    """The store was written by a newer predstore format than this one reads."""


class UnknownKeyError(PredstoreError, KeyError):
    """A key was asked for that the store does not hold."""


class MissingRowsError(PredstoreError, KeyError):
    """Indices or names were asked for that the store does not hold."""


class OutOfRangeError(PredstoreError, IndexError):
    """A dataset item was asked for outside the dataset's range."""


class CoverageError(PredstoreError):
    """A committed write has duplicate or missing indices and ``strict=True`` was set."""


class CommitConflictError(PredstoreError):
    """Another process committed the store while this commit was being prepared."""


class ConfigError(PredstoreError, ValueError, TypeError):
    """A writer, callback or logger was given invalid or conflicting arguments.

    Both a ``ValueError`` and a ``TypeError``: a wrong value and a value of the
    wrong type are both configuration errors, and whichever a caller catches
    keeps catching it.
    """


class RegistryError(PredstoreError):
    """The run registry cache is missing, outdated or busy."""


class QueryError(RegistryError, ValueError):
    """A registry query names an unknown field, operator or export format."""


class UnknownRunError(RegistryError, KeyError):
    """No run, or more than one run, in the registry matches the given run id."""


class CorruptRunError(RegistryError):
    """A file of a run directory is unreadable or does not follow its format."""
