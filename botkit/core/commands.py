"""Commands: declared once by plugins, validated arguments on every platform, run by the router.

    plugin = Plugin("dice", help="Dice rolls")

    @plugin.command("roll", help="Roll dice like 2d6")
    async def roll(ctx: PluginContext, spec: Annotated[str, Field(pattern=r"^\\d+d\\d+$")] = "1d6"):
        ...

Arguments are parsed from the text after the command (or taken typed from a platform, e.g.
Discord's slash options) and validated by pydantic before the handler runs. The last
parameter, when it is a plain string, takes the rest of the line. Plugin authors import this
through `botkit.plugins.api`; the core uses it directly.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import TypeAdapter, ValidationError

__all__ = [
    "FILE_OPTION",
    "Command",
    "CommandError",
    "CommandRegistry",
    "Constraints",
    "Param",
    "Plugin",
    "constraints",
    "describe",
    "strip_optional",
]

Handler = Callable[..., Awaitable[str | None]]

# The name of the file a command that takes one is given (Discord: its slash option).
FILE_OPTION = "file"


class CommandError(Exception):
    """A command cannot run as asked; the message tells the user what is wrong and what works."""


def strip_optional(annotation: Any) -> tuple[Any, bool]:
    """(annotation without None, whether None was allowed)."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != len(get_args(annotation)):
            inner = args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007
            return inner, True
    return annotation, False


@dataclass(frozen=True, slots=True)
class Constraints:
    """An argument type taken apart: the plain type and its pydantic Field constraints."""

    base: Any
    ge: Any = None
    gt: Any = None
    le: Any = None
    lt: Any = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    description: str | None = None


def constraints(annotation: Any) -> Constraints:
    """The constraints of a (non-union) annotation like Annotated[float, Field(ge=0, le=2)]."""
    base, _ = strip_optional(annotation)
    found: dict[str, Any] = {}
    if get_origin(base) is Annotated:
        base, *metadata = get_args(base)
        for item in metadata:
            for c in getattr(item, "metadata", [item]):
                for name in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern"):
                    if getattr(c, name, None) is not None:
                        found[name] = getattr(c, name)
            if getattr(item, "description", None):
                found["description"] = item.description
    return Constraints(base=base, **found)


def describe(annotation: Any) -> str:
    """What values an annotation accepts, in words (from its type and Field constraints)."""
    base, _ = strip_optional(annotation)
    if get_origin(base) in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in get_args(base))
    c = constraints(base)
    bounds = [
        text
        for value, text in (
            (c.ge, f"from {c.ge}"),
            (c.gt, f"above {c.gt}"),
            (c.le, f"up to {c.le}"),
            (c.lt, f"below {c.lt}"),
            (c.max_length, f"at most {c.max_length} characters"),
            (c.min_length or None, f"at least {c.min_length} character(s)"),
            (c.pattern, f"matching {c.pattern}"),
        )
        if value is not None
    ]
    if get_origin(c.base) is Literal:
        kind = "one of " + ", ".join(str(v) for v in get_args(c.base))
    else:
        kind = {int: "a whole number", float: "a number", str: "text", bool: "on or off"}.get(
            c.base, getattr(c.base, "__name__", str(c.base))
        )
    note = f" ({c.description})" if c.description else ""
    return " ".join([kind, *bounds]) + note


@dataclass(frozen=True, slots=True)
class Param:
    """One command argument: its name, type (with constraints) and default."""

    name: str
    annotation: Any
    default: Any = inspect.Parameter.empty

    @property
    def required(self) -> bool:
        """Whether the user must give this argument."""
        return self.default is inspect.Parameter.empty

    @property
    def is_text(self) -> bool:
        """Whether the parameter is plain text (which may hold spaces)."""
        return constraints(self.annotation).base is str

    @property
    def allowed(self) -> str:
        """The accepted values, in words."""
        return describe(self.annotation)

    def validate(self, raw: Any) -> Any:
        """The raw value (text, or already typed) converted and checked; ValueError with
        pydantic's reason if not."""
        base, _ = strip_optional(self.annotation)
        try:
            return TypeAdapter(base).validate_python(raw)
        except ValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"]) from None


@dataclass(frozen=True, slots=True)
class Command:
    """A chat command: name, help, handler and its parameters."""

    name: str
    help: str
    handler: Handler
    params: tuple[Param, ...] = ()
    changes_settings: bool = False  # with an argument: needs the settings permission
    plugin: str = ""
    changes_history: bool = False  # always needs the settings permission (/reset, /retry)
    uses_model: bool = False  # counts against the per-user rate limit, like a chat message
    # The command stores the user's message itself (/ask): delivery is confirmed only then.
    writes_ahead: bool = False
    # botkit's own commands get the whole internal Context; a plugin's get a PluginContext.
    internal: bool = False
    # The command reads files sent with it (ctx.attachments): a Telegram document or photo
    # whose caption is the command, Discord attachments or the slash command's `file` option.
    takes_file: bool = False
    # The model may call the command as a tool (botkit.tools): its parameters are the tool's
    # schema, its help the description; confirm: a person confirms each call first.
    tool: bool = False
    confirm: bool = False
    # Answered at once, not after the chat's turns (/confirm answers the turn waiting on it).
    immediate: bool = False

    @property
    def rest_index(self) -> int | None:
        """The text parameter that takes the rest of the line, if any.

        It is the first plain-text parameter after which every parameter is optional; those
        later parameters can then only be given by name (`/probs Hello temperature=0.3`).
        """
        for index, param in enumerate(self.params):
            if param.is_text and all(not p.required for p in self.params[index + 1 :]):
                return index
        return None

    @property
    def usage(self) -> str:
        """e.g. "/temp [value]" or "/probs <text…> [temperature=…]"."""
        rest = self.rest_index
        parts = [f"/{self.name}"]
        for index, p in enumerate(self.params):
            if rest is not None and index > rest:
                label = f"{p.name}=…"
            else:
                label = f"{p.name}…" if index == rest else p.name
            parts.append(f"<{label}>" if p.required else f"[{label}]")
        return " ".join(parts)

    def check_attachments(self, count: int) -> None:
        """Refuse files sent with a command that takes none: they would go unread."""
        if count and not self.takes_file:
            raise CommandError(
                f"/{self.name} takes no file; send the command without one. /help lists the "
                f"commands"
            )

    def _take_named(self, text: str) -> tuple[dict[str, str], str]:
        rest = self.rest_index
        names = [p.name for p in self.params[rest + 1 :]] if rest is not None else []
        if not names:
            return {}, text
        named: dict[str, str] = {}
        pattern = re.compile(rf"(?<!\S)({'|'.join(map(re.escape, names))})=(\S+)")
        for match in pattern.finditer(text):
            named[match[1]] = match[2]
        return named, " ".join(pattern.sub(" ", text).split())

    def parse(self, text: str) -> dict[str, Any]:
        """Split and validate the text after the command name."""
        named, remaining = self._take_named(text.strip())
        rest = self.rest_index
        raws: dict[str, Any] = {}
        for index, param in enumerate(self.params):
            raw: str | None
            if rest is not None and index > rest:
                raw = named.get(param.name)
            elif index == rest:
                raw, remaining = remaining or None, ""
            else:
                parts = remaining.split(None, 1)
                raw = parts[0] if parts else None
                remaining = parts[1] if len(parts) > 1 else ""
            if raw is not None:
                raws[param.name] = raw
        if remaining:
            raise CommandError(
                f"/{self.name} takes {len(self.params)} argument(s); unexpected: {remaining!r}. "
                f"Usage: {self.usage}"
            )
        return self.check(raws)

    def check(self, raws: Mapping[str, Any]) -> dict[str, Any]:
        """Validate arguments by name (text, or values already typed by the platform)."""
        unknown = set(raws) - {p.name for p in self.params}
        if unknown:
            raise CommandError(f"/{self.name} has no argument {sorted(unknown)[0]!r}: {self.usage}")
        values: dict[str, Any] = {}
        for param in self.params:
            raw = raws.get(param.name)
            if raw is None:
                if param.required:
                    raise CommandError(
                        f"/{self.name} needs {param.name} ({param.allowed}). Usage: {self.usage}"
                    )
                continue
            try:
                values[param.name] = param.validate(raw)
            except ValueError as exc:
                shown = str(raw)
                shown = shown if len(shown) <= 40 else f"{shown[:40]}… ({len(shown)} characters)"
                raise CommandError(
                    f"/{self.name}: {shown!r} is not a valid {param.name}: {exc}. "
                    f"Allowed: {param.allowed}. Usage: {self.usage}"
                ) from None
        return values


def params_from_signature(handler: Handler) -> tuple[Param, ...]:
    """Parameters after ctx, read from the handler's annotations."""
    hints = typing.get_type_hints(handler, include_extras=True)
    signature = inspect.signature(handler)
    names = list(signature.parameters)[1:]  # the first is the Context
    params: list[Param] = []
    for name in names:
        params.append(
            Param(
                name=name,
                annotation=hints.get(name, str),
                default=signature.parameters[name].default,
            )
        )
    return tuple(params)


@dataclass
class Plugin:
    """A named group of commands. Built-ins and user plugins are declared the same way."""

    name: str
    help: str = ""
    commands: list[Command] = field(default_factory=list)
    internal: bool = False  # botkit's own plugins only: their handlers get the internal Context

    def command(
        self,
        name: str | None = None,
        *,
        help: str | None = None,
        changes_settings: bool = False,
        changes_history: bool = False,
        uses_model: bool = False,
        writes_ahead: bool = False,
        takes_file: bool = False,
        tool: bool = False,
        confirm: bool = False,
        immediate: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated coroutine as a command; its docstring is the default help.
        takes_file: the command reads files sent with it (ctx.attachments). tool: the model may
        call it (its result is what it returns); confirm: someone in the chat confirms each
        such call. immediate: answered at once, even while the chat's reply is generated."""

        def register(handler: Handler) -> Handler:
            params = params_from_signature(handler)
            label = f"/{name or handler.__name__}"
            if tool and (uses_model or takes_file or writes_ahead or changes_history):
                # A tool runs inside the turn that holds the model's slot: one that asked the
                # model again would wait on itself; files and history are the chat's, not its.
                raise ValueError(
                    f"{label} cannot be a tool: a tool may not use the model, take files or "
                    f"change the history"
                )
            if takes_file and any(p.name == FILE_OPTION for p in params):
                raise ValueError(
                    f"{label} takes a file: its parameter {FILE_OPTION!r} "
                    f"would clash with the file option; rename it"
                )
            self.add(
                Command(
                    name=(name or handler.__name__).lower(),
                    help=help or inspect.getdoc(handler) or "",
                    handler=handler,
                    params=params,
                    changes_settings=changes_settings,
                    plugin=self.name,
                    changes_history=changes_history,
                    uses_model=uses_model,
                    writes_ahead=writes_ahead,
                    takes_file=takes_file,
                    tool=tool,
                    confirm=confirm,
                    immediate=immediate,
                )
            )
            return handler

        return register

    def add(self, command: Command) -> None:
        """Register a command built by hand (for generated commands)."""
        if any(c.name == command.name for c in self.commands):
            raise ValueError(f"plugin {self.name!r} declares /{command.name} twice")
        if not command.plugin:
            object.__setattr__(command, "plugin", self.name)
        object.__setattr__(command, "internal", self.internal)
        self.commands.append(command)


class CommandRegistry:
    """Every registered command, by name, from every loaded plugin."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}
        self.plugins: list[Plugin] = []

    def add_plugin(self, plugin: Plugin) -> None:
        """Register all of a plugin's commands; a name clash rejects the whole plugin."""
        clashes = [c.name for c in plugin.commands if c.name in self._commands]
        if clashes:
            owners = ", ".join(f"/{n} (from {self._commands[n].plugin})" for n in clashes)
            raise ValueError(f"plugin {plugin.name!r} redefines {owners}")
        for command in plugin.commands:
            self._commands[command.name] = command
        self.plugins.append(plugin)

    def get(self, name: str) -> Command | None:
        """The command called name, if any."""
        return self._commands.get(name.lower())

    def all(self) -> list[Command]:
        """All commands in registration order."""
        return list(self._commands.values())

    def names(self) -> list[str]:
        """All command names."""
        return list(self._commands)
