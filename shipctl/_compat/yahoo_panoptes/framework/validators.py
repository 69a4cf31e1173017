"""Panoptes' value checks, for plugins that use them."""

from __future__ import annotations

import numbers
from typing import Any


class PanoptesValidators:
    @classmethod
    def valid_nonempty_string(cls, value: Any) -> bool:
        return isinstance(value, str) and len(value) > 0

    @classmethod
    def valid_number(cls, value: Any) -> bool:
        return isinstance(value, numbers.Number) and not isinstance(value, bool)

    @classmethod
    def valid_nonzero_integer(cls, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    @classmethod
    def valid_positive_integer(cls, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    @classmethod
    def valid_nonempty_iterable_of_strings(cls, value: Any) -> bool:
        return bool(value) and not isinstance(value, str) and all(cls.valid_nonempty_string(v) for v in value)
