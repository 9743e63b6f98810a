"""A click type for every integer option: bounded, so no number reaches the journal (or
Python's int parser) too large to handle, and refused in one line naming the option."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from eventstore.errors import InvalidInputError
from eventstore.numbers import MAX_INT64, whole_number

if TYPE_CHECKING:
    _IntType = click.ParamType[int, Any]
else:  # click before 8.5 has no generic ParamType to subscript at runtime
    _IntType = click.ParamType


class BoundedInt(_IntType):
    """A whole number from `low` to `high`; with `clamp`, larger numbers mean `high`."""

    name = "integer"

    def __init__(self, low: int, high: int = MAX_INT64, *, clamp: bool = False) -> None:
        self.low = low
        self.high = high
        self.clamp = clamp

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # a default: checked like typed text
        name = param.opts[0] if param is not None and param.opts else "value"
        try:
            return whole_number(value, name=name, low=self.low, high=self.high, clamp=self.clamp)
        except InvalidInputError as exc:
            self.fail(str(exc).removeprefix(f"invalid {name} value "), param, ctx)

    def __repr__(self) -> str:
        return f"BoundedInt({self.low}, {self.high})"
