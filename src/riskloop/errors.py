"""The exception hierarchy of riskloop.

::

    RiskloopError                 base of everything we raise on purpose
    ├── UserError                 a mistake the user can fix: CLI exit code 2, HTTP 4xx
    │   ├── NotFoundError         unknown NAME@VERSION, deployment, run, ...
    │   ├── ConflictError         duplicate version, state that forbids the action
    │   ├── InputError            unreadable path, wrong format, bad option value
    │   └── PolicyViolation       a gate, signature or trust rule refuses the action
    ├── IntegrityError            stored data does not match what it claims (digest, audit chain)
    └── StoreError                the database cannot be opened or is corrupted

Every message is one line saying what was wrong, where, and what to do.
"""

from __future__ import annotations


class RiskloopError(Exception):
    """Base class of every error riskloop raises on purpose."""

    exit_code = 2


class UserError(RiskloopError):
    """A mistake the user can fix; reported as one line, exit code 2."""


class NotFoundError(UserError):
    """Something referred to by name does not exist."""


class ConflictError(UserError):
    """The action conflicts with what is stored (duplicate, wrong state)."""


class InputError(UserError):
    """A path, file or option value is unusable."""


class PolicyViolation(UserError):
    """A policy (gate, signature, trust) refuses the action."""


class IntegrityError(RiskloopError):
    """Stored content no longer matches its recorded digest or hash chain."""

    exit_code = 1


class StoreError(RiskloopError):
    """The store cannot be opened, migrated or read."""


# Message templates that tests assert on.
MSG_UNKNOWN_REF = "unknown {kind} '{ref}': run 'riskloop inventory' to list what is registered"
MSG_BAD_REF = "bad reference '{ref}': expected NAME, NAME@VERSION or NAME@latest"
MSG_DUPLICATE_VERSION = (
    "{kind} '{name}' already has version {version}: omit --version to take the next one"
)
MSG_PATH_MISSING = "path '{path}' does not exist: check the path and try again"
MSG_PATH_UNREADABLE = "path '{path}' cannot be read ({reason}): check permissions"
MSG_NOT_INITIALISED = (
    "no riskloop store at '{where}': run 'riskloop init' first (or set RISKLOOP_WORKSPACE)"
)
MSG_CORRUPT_DB = "database '{where}' is not a usable riskloop store ({reason}): restore a backup or point RISKLOOP_DB_URL elsewhere"
