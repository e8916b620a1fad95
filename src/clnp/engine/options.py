"""A method's own settings, declared once with their kind, default, range and help.

In the manner of scikit-learn's declared parameter constraints: a method lists its :class:`Option` s in its
:class:`~clnp.engine.method.Method`, and every door (``--option``, ``extra:`` in YAML, the library's
``build_method``) checks a value against that one declaration before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """One of a method's own settings (``--option METHOD.NAME=VALUE``, ``extra:`` in YAML): its kind and range."""

    kind: str
    """``number``, ``int``, ``bool`` or ``choice``."""
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""

    def range_text(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        what = "an integer" if self.kind == "int" else "a finite number"
        lo = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        hi = "" if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        return what + (f" {bounds}" if bounds else "")

    def check(self, method: str, name: str, value: Any) -> Any:
        """The value, converted (``"5"`` -> 5.0); ``ValueError`` with the allowed range when it does not fit."""
        bad = ValueError(f"option {method}.{name} must be {self.range_text()}, got {value!r}")
        if self.kind == "choice":
            if value not in self.choices:
                raise bad
            return value
        if self.kind == "bool":
            words = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False,
                     "off": False}
            if isinstance(value, bool):
                return value
            if str(value).strip().lower() not in words:
                raise bad
            return words[str(value).strip().lower()]
        if isinstance(value, bool):
            raise bad
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(number):
            raise bad
        if self.kind == "int":
            if number != int(number):
                raise bad
            number = int(number)
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            raise bad
        if self.high is not None and (number > self.high or (self.high_open and number == self.high)):
            raise bad
        return number


__all__ = ["Option"]
