"""The one CLI convention of `edge-enforcer` and `edge-control`: options shared by every command.

A CLI declares its connection options once, as `SharedOption`s on a `SharedGroup` subclass.
Each is then taken before the subcommand (``edge-control --url U site ls``), after it
(``edge-control site ls --url U``) and from its environment variable; the command line after
the subcommand wins over the one before it, which wins over the environment. The commands do
not receive them as arguments: they read the outcome with `shared_values`, and fall back to
their configuration for what is still unset.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, MutableMapping
from typing import Any, ClassVar, TypeVar

import click

__all__ = ["SharedGroup", "SharedOption", "not_taking", "shared_values"]

_META_KEY = "edgeward.shared-options"
F = TypeVar("F", bound=Callable[..., Any])


class SharedOption:
    """One shared option: click's `decls` and attributes, and the environment variable."""

    def __init__(self, *decls: str, envvar: str, help: str, type: Any = None) -> None:
        self.decls = decls
        self.envvar = envvar
        self.help = help
        self.type = type

    def make(self, *, from_environment: bool) -> click.Option:
        """The option as a parameter of a command; only the root group reads the environment
        (so that a value given before the subcommand is not overridden by the environment)."""
        help = f"{self.help} [env {self.envvar}]" if from_environment else self.help
        return _SharedParam(
            list(self.decls),
            envvar=self.envvar if from_environment else None,
            type=self.type,
            default=None,
            help=help,
        )


class _SharedParam(click.Option):
    """Marks the parameters that `SharedGroup` added, so that they can be told apart."""


class SharedGroup(click.Group):
    """A group whose `shared` options every command under it takes, before it and after it."""

    shared: ClassVar[tuple[SharedOption, ...]] = ()
    group_class = type  # subgroups made with @group.group() are of this class too

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _replace_params(self, from_environment=True)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(cmd, name)
        self._adopt(cmd)

    def _adopt(self, cmd: click.Command) -> None:
        _replace_params(cmd, from_environment=False, options=self.shared)
        if isinstance(cmd, click.Group):
            for child in cmd.commands.values():
                self._adopt(child)


def _replace_params(
    cmd: click.Command,
    *,
    from_environment: bool,
    options: tuple[SharedOption, ...] | None = None,
) -> None:
    if options is None:
        options = cmd.shared if isinstance(cmd, SharedGroup) else ()
    if not options:
        return
    skip = getattr(cmd.callback, "_not_taking", ())
    own = [p for p in cmd.params if not isinstance(p, _SharedParam)]
    taken = [o.make(from_environment=from_environment) for o in options]
    cmd.params = own + [p for p in taken if p.name not in skip]
    if cmd.callback is not None and not getattr(cmd.callback, "_takes_shared", False):
        cmd.callback = _taking_shared(cmd.callback)


def not_taking(*names: str) -> Callable[[F], F]:
    """Marks a command's function: the command does not take the shared options `names`
    (by parameter name) after it, as ``serve`` takes no ``--url``."""

    def mark(fn: F) -> F:
        fn._not_taking = names  # type: ignore[attr-defined]
        return fn

    return mark


def _taking_shared(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps a command's callback: the shared options go to `shared_values`, not to it."""

    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        values = shared_values(ctx)
        for param in ctx.command.params:
            if isinstance(param, _SharedParam) and param.name in kwargs:
                value = kwargs.pop(param.name)
                if value is not None:
                    values[param.name] = value
        return callback(*args, **kwargs)

    wrapper._takes_shared = True  # type: ignore[attr-defined]  # (wraps kept _not_taking)
    return wrapper


def shared_values(ctx: click.Context) -> MutableMapping[str, Any]:
    """The shared options given so far (by parameter name); one mapping for the whole
    invocation, filled in as the group and then the subcommand start."""
    values: MutableMapping[str, Any] = ctx.meta.setdefault(_META_KEY, {})
    return values
