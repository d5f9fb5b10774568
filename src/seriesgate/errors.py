"""The exception hierarchy: every failure the user can meet, with its exit code.

Each error renders as one line: what went wrong and what to do about it.

>>> str(InputError("no patches in mbox x.mbox", hint="check the message-id"))
'no patches in mbox x.mbox (check the message-id)'
"""

from __future__ import annotations

from collections.abc import Sequence

# Exit codes a pipeline can gate on (documented in README.md).
EXIT_PASS = 0
EXIT_GATE_FAILS = 1
EXIT_UNDECIDED = 2


class SeriesgateError(Exception):
    """Base class: the run could not decide (infrastructure or bad input)."""

    exit_code = EXIT_UNDECIDED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(SeriesgateError):
    """Bad input: an mbox, message-id, manifest, base spec or option."""


class InfraError(SeriesgateError):
    """The machinery failed: apt, network, disk, test VM, timeouts."""


class CommandError(InfraError):
    """An external command failed; carries its command line and output tail."""

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str],
        returncode: int | None,
        output: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output


class GateFailure(SeriesgateError):
    """The gate decided: the series is not fit to merge (conflict, build, regression)."""

    exit_code = EXIT_GATE_FAILS
