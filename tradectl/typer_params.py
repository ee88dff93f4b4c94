"""Typer without pydantic for the arguments that need no conversion.

Typer (0.29) coerces every parameter's value through a pydantic TypeAdapter built on first
use, even a value that was not given (None) or a text argument that is already text; that
first use imports pydantic, about 40 ms of `tradectl status`'s start-up. A `LightGroup`
answers those two cases itself and leaves every other value (numbers, paths, choices, bad
input and its messages) to Typer's own coercion, built as before when first needed.
Numbers without bounds that are already numbers (defaults) pass the same way.
It uses Typer's lazy per-parameter hook (`_runtime_param`); on a Typer without it nothing
changes but the speed.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup

TEXT_TYPES = (str, str | None)


class LightGroup(TyperGroup):
    """A Typer group whose commands coerce absent values and plain text without pydantic."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for command in (self, *self.commands.values()):
            lighten(command)


class _Light:
    """Coerces what needs no conversion; hands anything else to Typer's own coercion."""

    def __init__(self, param: Any) -> None:
        self._param = param
        described = param.type_descriptor
        annotation = getattr(described, "annotation", None)
        self._text = annotation in TEXT_TYPES
        # a number without bounds, given as that very type (a default such as --wait's 0.0)
        self._number = annotation if annotation in (int, float) else None
        self._number = None if getattr(described, "is_ranged", True) else self._number

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None and not (param.multiple or param.nargs == -1):
            return None
        single = param.nargs == 1 and not param.multiple
        if single and self._text and isinstance(value, str):
            return value
        if single and self._number is not None and type(value) is self._number:
            return value
        self._param._runtime_param = None  # Typer builds its own now, and keeps it
        return self._param.get_runtime_param().coerce(value, param=param, ctx=ctx)


def lighten(command: Any) -> None:
    """Light coercion for the command's parameters and for its --help, made on first use."""
    for param in command.params:
        _lighten(param)
    made = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = made(ctx)
        if option is not None:
            _lighten(option)
        return option

    command.get_help_option = get_help_option


def _lighten(param: Any) -> None:
    if getattr(param, "_runtime_param", False) is None and hasattr(param, "type_descriptor"):
        param._runtime_param = _Light(param)
