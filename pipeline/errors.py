"""Exception types and the Issue record.

Problems found in the users' files are data (``Issue``), gathered and written to 问题清单; only
problems that stop the whole run (bad configuration, another run holding the lock) are raised.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ERROR = "错误"
WARNING = "警告"


class ConsolidateError(Exception):
    """Base class for errors that stop a command; the message is shown to the user as is."""


class ConfigError(ConsolidateError):
    """config.toml or the task list is missing or malformed."""


class LockedError(ConsolidateError):
    """Another run holds the state lock."""


class MailError(ConsolidateError):
    """The mail could not be built or sent."""


@dataclass(frozen=True)
class Issue:
    """One row of 问题清单: where a problem is, how bad it is, and what to do about it."""

    file: str
    unit: str
    location: str  # "Sheet1!E7", "Sheet1" or "" when the problem is the whole file
    level: str  # ERROR or WARNING
    code: str  # stable, machine-readable: "not-a-number", "rate-mismatch", ...
    message: str  # Chinese: what is wrong and what to do

    def to_dict(self) -> dict:
        return asdict(self)


def cell_address(row: int, col: int) -> str:
    """1-based row and 0-based column → "E7"."""
    return f"{column_letter(col)}{row}"


def column_letter(col: int) -> str:
    """0-based column index → Excel letters (0 → A, 26 → AA)."""
    letters = ""
    col += 1
    while col:
        col, rem = divmod(col - 1, 26)
        letters = chr(65 + rem) + letters
    return letters
