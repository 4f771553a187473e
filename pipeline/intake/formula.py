"""Recompute simple formulas that were saved without their result.

Tools that do not calculate (scripts, some web exports) save "=B5+B6" with no cached value;
every reader then sees an empty cell. Arithmetic on numbers and cells of the same sheet, with
SUM over ranges, covers what units type; anything else stays an error for the unit to fix
(never a silent 0). No eval: a small recursive-descent parser.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|(\$?[A-Za-z]{1,3}\$?\d+(?::\$?[A-Za-z]{1,3}\$?\d+)?)|(SUM|sum)\s*\(|([-+*/(),]))")
_REF = re.compile(r"\$?([A-Za-z]{1,3})\$?(\d+)")
MAX_RANGE_CELLS = 10_000


class FormulaError(Exception):
    """The formula is outside what we recompute."""


def evaluate(formula: str, cell: Callable[[int, int], object], depth: int = 0) -> float:
    """Value of ``formula`` (without "="); ``cell(row, col)`` (0-based) gives referenced values."""
    if depth > 20:
        raise FormulaError("references too deep")
    tokens = _tokenize(formula)
    parser = _Parser(tokens, cell)
    value = parser.expression()
    if parser.position != len(tokens):
        raise FormulaError("trailing input")
    return value


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise FormulaError(f"unsupported at {text[position:]!r}")
        number, ref, function, symbol = match.groups()
        if number is not None:
            tokens.append(("num", number))
        elif ref is not None:
            tokens.append(("ref", ref))
        elif function is not None:
            tokens.append(("sum", "("))
        else:
            tokens.append(("sym", symbol))
        position = match.end()
    return tokens


def _position(ref: str) -> tuple[int, int]:
    match = _REF.fullmatch(ref)
    if not match:
        raise FormulaError(ref)
    col = 0
    for char in match.group(1).upper():
        col = col * 26 + ord(char) - 64
    return int(match.group(2)) - 1, col - 1


class _Parser:
    def __init__(self, tokens, cell):
        self.tokens = tokens
        self.position = 0
        self.cell = cell

    def peek(self):
        return self.tokens[self.position] if self.position < len(self.tokens) else (None, None)

    def take(self):
        token = self.peek()
        self.position += 1
        return token

    def expression(self) -> float:
        value = self.term()
        while self.peek() in (("sym", "+"), ("sym", "-")):
            _, op = self.take()
            right = self.term()
            value = value + right if op == "+" else value - right
        return value

    def term(self) -> float:
        value = self.factor()
        while self.peek() in (("sym", "*"), ("sym", "/")):
            _, op = self.take()
            right = self.factor()
            if op == "/" and right == 0:
                raise FormulaError("division by zero")
            value = value * right if op == "*" else value / right
        return value

    def factor(self) -> float:
        kind, text = self.take()
        if kind == "num":
            return float(text)
        if kind == "ref":
            if ":" in text:
                raise FormulaError("range outside SUM")
            return self.value_at(*_position(text))
        if kind == "sym" and text == "-":
            return -self.factor()
        if kind == "sym" and text == "+":
            return self.factor()
        if kind == "sym" and text == "(":
            value = self.expression()
            if self.take() != ("sym", ")"):
                raise FormulaError("missing )")
            return value
        if kind == "sum":
            return self.sum_args()
        raise FormulaError(f"unexpected {text!r}")

    def sum_args(self) -> float:
        total = 0.0
        while True:
            kind, text = self.peek()
            if kind == "ref" and ":" in text:
                self.take()
                total += self.range_sum(text)
            else:
                total += self.expression()
            kind, text = self.take()
            if (kind, text) == ("sym", ")"):
                return total
            if (kind, text) != ("sym", ","):
                raise FormulaError("bad SUM arguments")

    def range_sum(self, text: str) -> float:
        first, last = text.split(":")
        (r0, c0), (r1, c1) = _position(first), _position(last)
        if (abs(r1 - r0) + 1) * (abs(c1 - c0) + 1) > MAX_RANGE_CELLS:
            raise FormulaError("range too large")
        total = 0.0
        for r in range(min(r0, r1), max(r0, r1) + 1):
            for c in range(min(c0, c1), max(c0, c1) + 1):
                value = self.cell(r, c)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    total += value  # SUM skips text and blanks, as Excel does
                elif isinstance(value, str) and value.startswith(("#", "=")):
                    raise FormulaError("range holds an error")
        return total

    def value_at(self, r: int, c: int) -> float:
        value = self.cell(r, c)
        if value is None or value == "":
            return 0.0
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FormulaError(f"non-number at {r},{c}")
        return float(value)
