"""Help text that reads like a well-made CLI's: `--input KEY=VALUE`, `run WORKFLOW`.

Typer labels every value with its Python type (`<list[str]>`, `<str>`, `<path>`) and wraps a
required argument in braces in the usage line (`{WORKFLOW}`). We give each parameter a metavar
(its own, or one derived from its name and kind) and show only that, once, for every command.
"""

from __future__ import annotations

from typing import Any

from typer._click.exceptions import BadParameter
from typer.core import TyperArgument, TyperGroup, TyperOption

# Options whose value is better named by what it holds than by the option's name.
_NAMED = {
    "inputs": "KEY=VALUE", "allow": "KEY:VALUE", "max_parallel": "N", "limit": "N", "next": "N",
    "project": "DIR", "output": "DIR", "now": "TIME", "base": "REF", "grace": "DURATION",
    "install": "COMMAND", "executable": "PATH", "env_file": "FILE", "attach": "FILE", "next_count": "N",
    "paths": "PATH",
}


def _without_pydantic_prefix(exc: BadParameter) -> BadParameter:
    """Typer checks values with pydantic, whose messages start "Value error, ": not ours to show."""
    exc.message = exc.message.replace("Value error, ", "", 1)
    return exc


class _PlainOption(TyperOption):
    def process_value(self, ctx: Any, value: Any) -> Any:
        try:
            return super().process_value(ctx, value)
        except BadParameter as exc:
            raise _without_pydantic_prefix(exc) from None


class _PlainArgument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def process_value(self, ctx: Any, value: Any) -> Any:
        try:
            return super().process_value(ctx, value)
        except BadParameter as exc:
            raise _without_pydantic_prefix(exc) from None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


def _metavar(param: Any) -> str:
    named = _NAMED.get(param.name or "")
    if named:
        return named
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and descriptor.is_choice:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in descriptor.choices or ()) + "]"
    if descriptor is not None and descriptor.is_path:
        return "FILE"
    return (param.name or "value").upper()


def plain_help(command: Any) -> None:
    """Give every parameter of `command` and its subcommands a plain metavar, shown once."""
    for param in getattr(command, "params", []):
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = _NAMED.get(param.name or "", (param.name or "value").upper())
            param.__class__ = _PlainArgument
        elif isinstance(param, TyperOption):
            if not param.is_flag and param.metavar is None:
                param.metavar = _metavar(param)
            param.__class__ = _PlainOption
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)


class OrchestrGroup(TyperGroup):
    """The root command: its subcommands get plain help as they are looked up."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        plain_help(self)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            plain_help(command)
        return command
