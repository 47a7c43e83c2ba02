"""An example plugin: /roll dice like 2d6, with a tally in the chat's plugin data.

Copy this file into your plugins folder (config [plugins] paths) to start your own plugin.
"""

from __future__ import annotations

import random
from typing import Annotated

from pydantic import Field

from botkit.plugins.api import CommandError, Plugin, PluginContext

plugin = Plugin("dice", help="Dice rolls")

DiceSpec = Annotated[str, Field(pattern=r"^\d{1,3}d\d{1,4}$", description="like 2d6")]


@plugin.command("roll", tool=True)
async def roll(ctx: PluginContext, spec: DiceSpec = "1d6") -> str:
    """Roll dice, e.g. /roll 2d6 (up to 100 dice with up to 1000 sides)."""
    count, sides = (int(part) for part in spec.split("d"))
    if not 1 <= count <= 100 or not 2 <= sides <= 1000:
        raise CommandError("/roll: use 1 to 100 dice with 2 to 1000 sides, e.g. /roll 2d6")
    rolls = [random.randint(1, sides) for _ in range(count)]
    # One atomic update: two rolls at once both count (a get then a set would lose one).
    total = await ctx.data.update("rolls", lambda n: int(n) + 1, 0)
    shown = " + ".join(str(r) for r in rolls)
    result = f"{shown} = {sum(rolls)}" if count > 1 else str(rolls[0])
    return f"🎲 {spec}: {result} (roll #{total} in this chat)"
