"""botkit's own commands, on the internal Context (not the public plugin API: they reach the
conversation and the store directly)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from pydantic import Field

from botkit.backends.base import BackendError, BackendInfo
from botkit.core.commands import Command, CommandError, Param, Plugin
from botkit.core.context import Context
from botkit.core.router import MAX_MESSAGE_CHARS
from botkit.core.settings import (
    RANDOM_SEED,
    ChatSettings,
    Persona,
    SamplingOptions,
    SeedValue,
    max_reply_tokens,
    option_type,
)
from botkit.plugins.charts import context_chart
from botkit.plugins.context_lines import picture_lines, retrieval_lines

__all__ = ["check_fixed_cost", "plugin"]

plugin = Plugin("builtin", help="The commands every botkit has", internal=True)

Question = Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)]


@plugin.command("ask", writes_ahead=True, uses_model=True)
async def ask(ctx: Context, question: Question) -> None:
    """Ask the model a question (in group chats: without mentioning the bot)."""
    await ctx.conversation.respond(ctx, question)


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _setting_command(
    name: str,
    setting: str,
    label: str,
    annotation: Any,
    help: str,
    check: Callable[[Context, Any], Awaitable[None]] | None = None,
) -> Command:
    """A command that shows a setting (no argument) or sets it for this chat."""

    async def handler(ctx: Context, value: Any = None) -> str:
        current = getattr(ctx.settings, setting)
        default = getattr(ctx.defaults, setting)
        if value is None:
            return f"{label} is {_show(current)} (default {_show(default)})"
        if check is not None:
            await check(ctx, value)
        await ctx.store.set_setting(ctx.chat.id, setting, value)
        return f"{label} set to {_show(value)} (was {_show(current)})"

    return Command(
        name=name,
        help=help,
        handler=handler,
        params=(Param("value", annotation | None, None),),
        changes_settings=True,
    )


async def _check_max_tokens(ctx: Context, value: int) -> None:
    await check_fixed_cost(ctx, ctx.settings.model_copy(update={"max_tokens": value}))


async def check_fixed_cost(ctx: Context, settings: ChatSettings) -> None:
    """Refuse settings whose persona, examples and reply reserve together leave the
    conversation too little room (the one check for /persona, /examples and /maxtokens)."""
    problem = await ctx.planner.fixed_cost_problem(ctx.backend, settings)
    if problem is not None:
        raise CommandError(problem)


# Setting checks beyond the option's own range.
_CHECKS: dict[str, Callable[[Context, Any], Awaitable[None]]] = {"max_tokens": _check_max_tokens}

# One command per sampling option that names one (core/settings.py declares them all).
for _name, _info in SamplingOptions.model_fields.items():
    _extra = _info.json_schema_extra if isinstance(_info.json_schema_extra, dict) else {}
    if isinstance(_extra.get("command"), str):
        plugin.add(
            _setting_command(
                str(_extra["command"]), _name, _name, option_type(_name),
                _info.description or _name, _CHECKS.get(_name),
            )
        )  # fmt: skip


@plugin.command("seed", changes_settings=True)
async def seed(ctx: Context, value: SeedValue | None = None) -> str:
    """Show or set the random seed: a number makes replies repeatable, `random` does not."""
    last = await ctx.store.last_reply(ctx.chat.id)
    used = f" The last reply used seed {last.seed}." if last and last.seed is not None else ""
    if value is None:
        current = "random" if ctx.settings.seed == RANDOM_SEED else str(ctx.settings.seed)
        return f"seed is {current}.{used}"
    new = RANDOM_SEED if value == "random" else int(value)
    await ctx.store.set_setting(ctx.chat.id, "seed", new)
    shown = "random (a new seed for every reply)" if new == RANDOM_SEED else str(new)
    return f"seed set to {shown}.{used}"


@plugin.command("persona", changes_settings=True)
async def persona(ctx: Context, text: Persona | None = None) -> str:
    """Show or set the persona (the system prompt); `/persona reset` restores the default."""
    if text is None:
        source = "default" if ctx.chat.overrides.get("persona") is None else "set for this chat"
        return f"persona ({source}): {ctx.settings.persona}"
    if text.strip().lower() == "reset":
        await ctx.store.set_setting(ctx.chat.id, "persona", None)
        return f"persona reset to the default: {ctx.defaults.persona}"
    await check_fixed_cost(ctx, ctx.settings.model_copy(update={"persona": text}))
    tokens = await ctx.backend.message_tokens({"role": "system", "content": text})
    await ctx.store.set_setting(ctx.chat.id, "persona", text)
    return f"persona set ({tokens} tokens)."


@plugin.command("settings")
async def settings(ctx: Context) -> str:
    """Show every setting of this chat with its default."""
    lines = ["Settings for this chat (* = changed here):"]
    ignored = ctx.backend.ignored_settings
    for name in ctx.settings.names():
        value = getattr(ctx.settings, name)
        default = getattr(ctx.defaults, name)
        mark = "*" if ctx.chat.overrides.get(name) is not None else " "
        if name == "seed":
            value, default = ("random" if v == RANDOM_SEED else v for v in (value, default))
        if name == "examples":
            value, default = (f"{len(v)} pairs (/examples)" for v in (value, default))
        if name == "persona":
            value = value if len(value) <= 60 else value[:57] + "..."
            default = default if len(default) <= 60 else default[:57] + "..."
        note = f"  — ignored by {ctx.settings.backend}" if name in ignored else ""
        lines.append(f"{mark} {name}: {_show(value)}  (default {_show(default)}){note}")
    return "\n".join(lines)


@plugin.command("reset", changes_history=True)
async def reset(ctx: Context) -> str:
    """Forget this chat's history and its memory (settings and documents stay); a reply being
    generated is stopped."""
    await ctx.conversation.cancel(ctx.chat.id)
    removed = await ctx.store.clear_history(ctx.chat.id)  # their memory chunks go with them
    ctx.retrieval.forget(ctx.chat.id)
    return (
        f"History cleared ({removed} messages forgotten). Memory recalls none of them; "
        "settings and documents are unchanged."
    )


@plugin.command("context", uses_model=True)
async def context(ctx: Context) -> None:
    """How the context window is spent: persona, kept history, memory and documents, reply
    reserve, free."""
    reserve = await ctx.retrieval.reserve(ctx.chat.id, ctx.settings)
    offer = await ctx.services.tools.offer(ctx, ctx.backend)
    report = await ctx.planner.report(ctx.chat, ctx.settings, reserve, offer.tokens)
    p = report.plan
    tools = (
        f"{p.tools_tokens} ({len(offer.specs)} tools' declarations, /tools)"
        if offer.specs
        else f"0 ({offer.note})"
    )
    last = ctx.retrieval.sources(ctx.chat.id)
    lines = [
        f"Context window: {p.window} tokens ({ctx.backend.name})",
        f"  persona:        {p.persona_tokens}",
        f"  examples:       {p.examples_tokens} ({p.examples} pairs, /examples)",
        f"  kept history:   {p.history_tokens} ({p.kept_messages} messages)",
        *retrieval_lines(ctx, p.memory_budget, p.knowledge_budget, last)[:2],
        f"  tools:          {tools}",
        *picture_lines(p.image_tokens, p.pictures, await ctx.services.sight.problem(ctx.backend)),
        f"  reply framing:  {p.new_tokens} (the chat template's start of the reply)",
        f"  reply reserve:  {p.reserve}",
        f"  free:           {report.free}",
        *retrieval_lines(ctx, p.memory_budget, p.knowledge_budget, last)[2:],
    ]
    if report.cached is not None:
        prompt = p.used - p.new_tokens
        lines.append(
            f"KV cache: {report.cached} of these {prompt} prompt tokens are cached for this "
            f"chat; the next reply evaluates the other {max(0, prompt - report.cached)} and "
            "your message (/stats shows the last reply's figures)"
        )
    lines.append(f"Older messages no longer seen by the model: {report.dropped_messages}")
    text = "\n".join(lines)
    parts = [
        ("persona", p.persona_tokens),
        ("examples", p.examples_tokens),
        ("history", p.history_tokens),
        ("memory", p.memory_budget),
        ("documents", p.knowledge_budget),
        ("tools", p.tools_tokens),
        ("framing", p.new_tokens),
        ("reply reserve", p.reserve),
        ("free", report.free),
    ]
    chart = await asyncio.to_thread(context_chart, parts, p.window, report.dropped_messages)
    await ctx.reply_image(chart, text)


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / 1_000_000:.1f} MB"


BackendName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


@plugin.command("model")
async def model(ctx: Context, name: BackendName | None = None) -> str:
    """Show this chat's model (size, quantization, context, file) and the backends;
    `/model NAME` switches this chat to backend NAME."""
    if name is not None:
        return await _switch_backend(ctx, name)
    lines = []
    try:
        lines += _describe(await ctx.backend.info())
    except BackendError as exc:
        lines.append(f"backend {ctx.backend.name}: {exc}")
    tools = ctx.services.tools
    problem = await tools.support(ctx.backend)
    forced = "" if tools.can_force(ctx.backend) else "; a call can be forced: /tool NAME …"
    lines.append(
        "  tools: the model calls them itself (/tools)" if problem is None
        else f"  tools: not offered: {problem}{forced}"
    )  # fmt: skip
    lines.append("Backends (switch with /model NAME):")
    for backend_name, config in ctx.services.backend_configs.items():
        here = "  ← this chat" if backend_name == ctx.settings.backend else ""
        what = getattr(config, "model", None) or "bundled model"
        if getattr(config, "model_path", None):
            what = str(getattr(config, "model_path", ""))
        lines.append(
            f"  {backend_name} ({config.kind}: {what}{await _facts(ctx, backend_name)}){here}"
        )
    return "\n".join(lines)


async def _facts(ctx: Context, backend_name: str) -> str:
    """A backend's quantization and file size for the /model list ("" if it cannot tell)."""
    backend = ctx.backends.get(backend_name)
    if backend is None:
        return ""
    try:
        info = await backend.info()
    except BackendError:
        return ", not available"
    size = f", {_size(info.file_size)}" if info.file_size else ""
    return f", {info.quantization or 'quantization unknown'}{size}"


async def _switch_backend(ctx: Context, name: str) -> str:
    if not ctx.incoming.user.can_change_settings:
        raise CommandError("only people allowed to change this chat's settings can switch models")
    if name not in ctx.backends:
        names = ", ".join(ctx.backends)
        raise CommandError(f"there is no backend named {name!r}. Allowed: {names}")
    backend = ctx.backends[name]
    if ctx.settings.max_tokens > max_reply_tokens(backend.context_window):
        raise CommandError(
            f"this chat's max_tokens ({ctx.settings.max_tokens}) is too large for {name}'s "
            f"{backend.context_window}-token window: lower /maxtokens first"
        )
    await ctx.store.set_setting(ctx.chat.id, "backend", name)
    return f"this chat now uses backend {name} (was {ctx.settings.backend})"


def _describe(info: BackendInfo) -> list[str]:
    params = f"{info.parameters / 1e6:.1f}M" if info.parameters else "unknown"
    bits = ""
    if info.parameters and info.file_size:
        bits = f" ({info.file_size * 8 / info.parameters:.2f} bits per weight)"
    trained = f" (trained for {info.trained_context_length})" if info.trained_context_length else ""
    lines = [
        f"backend: {info.backend} ({info.kind})",
        f"model: {info.model_name}",
        f"parameters: {params}",
        f"quantization: {info.quantization or 'unknown'}{bits}",
        f"context length: {info.context_length} tokens{trained}",
        f"file size: {_size(info.file_size)}",
    ]
    if info.kv_bytes_per_token:
        kv = info.kv_bytes_per_token * info.context_length
        per_token = f"{info.kv_bytes_per_token / 1024:.0f} KiB per token"
        lines.append(
            f"memory: weights {_size(info.file_size)} + KV cache {_size(kv)} for a full "
            f"{info.context_length}-token window ({per_token})"
        )
        if info.slots > 1:
            lines.append(
                f"batching: {info.slots} chats at once, each with its own window: KV cache "
                f"{_size(kv * info.slots)} in all"
            )
    if info.lora is not None:
        lora = info.lora
        kinds = ", ".join(sorted({t.split(".")[-2] for t in lora.targets if "." in t}))
        alpha = f"alpha {lora.alpha:g}" if lora.alpha else "no alpha (scale alone)"
        lines.append(
            f"LoRA adapter: {lora.file}, rank {lora.rank}, {alpha}, scale {lora.scale:g}: "
            f"W + {lora.multiplier:g} × BA on {len(lora.targets)} weight matrices ({kinds})"
        )
        if info.parameters and lora.parameters:
            share = lora.parameters / info.parameters
            lines.append(
                f"  its A and B matrices hold {lora.parameters / 1e3:.1f}K parameters, "
                f"{share:.2%} of the model's: all that fine-tuning trained"
            )
    if info.parameters:
        same = ", ".join(
            f"{name} {_size(info.parameters * width)}"
            for name, width in (("fp32", 4), ("fp16", 2), ("int8", 1))
        )
        lines.append(f"the same weights at {same}")
    return lines + [f"{k}: {v}" for k, v in info.extra.items()]


# Telegram deep links (t.me/bot?start=PAYLOAD) send "/start PAYLOAD": up to 64 of A-Z a-z 0-9 _ -
# (Bot API, "Deep linking"). botkit has no use for it yet, but must not refuse it.
StartPayload = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


@plugin.command("start")
async def start(ctx: Context, payload: StartPayload | None = None) -> str:
    """Say hello (Telegram sends /start when someone opens the bot for the first time)."""
    where = (
        "Write to me and I answer"
        if ctx.incoming.is_dm
        else "Mention me or reply to one of my messages and I answer"
    )
    return (
        f"Hi! I am a chat bot running a language model on this server ({ctx.settings.backend}). "
        f"{where}. /help lists the commands."
    )


# The commands that show the workshop ideas on the real model, listed together by /help.
CONCEPTS = (
    "probs", "tokens", "context", "model", "retry", "stats", "examples", "memory", "docs",
    "sources", "embed", "tools",
)  # fmt: skip


@plugin.command("help")
async def help_(ctx: Context) -> str:
    """List the commands."""

    def line(command: Command) -> str:
        first = command.help.splitlines()[0] if command.help else ""
        internal = command.plugin in {
            plugin.name, "explain", "fewshot", "knowledge", "tools", "pictures",
        }  # fmt: skip
        origin = "" if internal else f"  [{command.plugin}]"
        return f"  {command.usage} — {first}{origin}"

    commands = ctx.commands.all()
    concepts = [c for name in CONCEPTS for c in commands if c.name == name]
    lines = ["Commands:", *(line(c) for c in commands if c not in concepts)]
    if concepts:
        lines += ["See what the model does (the workshop concepts):", *map(line, concepts)]
    lines.append("Anything else you type is a chat message.")
    return "\n".join(lines)
