"""The validator's branch of the exception tree (the root is :mod:`protocol.errors`).

    EnsembleError                  protocol/errors.py
    └── ValidatorError             the validator core refused its input
        ├── ValidatorStateError    the state file is unreadable, corrupt or of another version
        ├── TaskRegistryError      a task type is invalid or its name is already taken
        ├── MetagraphError         metagraph arrays differ in length or repeat a uid or hotkey
        └── WeightsError           no valid weight row can be built from these scores
"""

from __future__ import annotations

from protocol.errors import EnsembleError

__all__ = [
    "MetagraphError",
    "TaskRegistryError",
    "ValidatorError",
    "ValidatorStateError",
    "WeightsError",
]


class ValidatorError(EnsembleError):
    """Root of the errors the validator core raises on purpose."""


class ValidatorStateError(ValidatorError):
    """The persisted validator state cannot be used: unreadable, corrupt, or another format.

    The message names the file and what is wrong; the file is left untouched so an operator
    can inspect it before deleting it.
    """


class TaskRegistryError(ValidatorError, ValueError):
    """A task type is malformed or a task of the same name is already registered."""


class MetagraphError(ValidatorError, ValueError):
    """The metagraph's arrays differ in length or repeat a uid or hotkey."""


class WeightsError(ValidatorError):
    """No weight row the ledger would accept can be built (e.g. every score is zero)."""
