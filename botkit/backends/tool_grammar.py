"""GBNF grammars that make an in-process model's tool call valid JSON for the tool's schema.

Built from each tool's JSON schema with llama-cpp-python's JSON-schema converter (the port of
llama.cpp's json_schema_to_grammar.py), for the object a Hermes call holds:
`{"name": NAME, "arguments": <the tool's schema>}`, wrapped in the `<tool_call>` tags.

Two grammars: a forced call (tool_choice names the tool) constrains the whole reply; an
"auto" reply is free until it writes `<tool_call>`, and from there on (llama_jobs.CallWatch
switches the slot's sampler) the grammar covers one or more calls to any of the tools.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from typing import Any

from botkit.backends.base import BackendError
from botkit.backends.hermes import CALL_CLOSE, CALL_OPEN
from botkit.tools.spec import ToolSpec

__all__ = ["ToolGrammarError", "after_tag_grammar", "forced_grammar"]

# The converter ignores minimum/maximum on integers; a bounded range this narrow becomes an
# enum of its values, which it does enforce. A wider range is left to the core's validation.
_ENUM_RANGE = 256
_CALL = "tool-call"
_JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'


class ToolGrammarError(BackendError):
    """A tool's schema cannot be turned into a grammar (the message names the tool)."""


def forced_grammar(tool: ToolSpec) -> str:
    """The whole reply is one call to tool: `<tool_call>\\n{...}\\n</tool_call>`, then the
    end of the reply."""
    rules = _rules([tool])
    return rules + f'\nroot ::= "{CALL_OPEN}\\n" {_CALL} "\\n{CALL_CLOSE}"\n'


def after_tag_grammar(tools: Sequence[ToolSpec]) -> str:
    """What may follow a `<tool_call>` the model wrote freely: the rest of that call to any of
    tools, then more calls or the end of the reply (no text after calls)."""
    rules = _rules(tools)
    block = f'"{CALL_OPEN}\\n" {_CALL} "\\n{CALL_CLOSE}"'
    return rules + f'\nroot ::= [ \\t\\n]* {_CALL} "\\n{CALL_CLOSE}" ("\\n" {block})*\n'


def _rules(tools: Sequence[ToolSpec]) -> str:
    from llama_cpp import llama_grammar

    converter_class: Any = llama_grammar.SchemaConverter  # untyped
    defs: dict[str, Any] = {}
    calls = [_wrapper(tool, index, defs) for index, tool in enumerate(tools)]
    schema: dict[str, Any] = calls[0] if len(calls) == 1 else {"oneOf": calls}
    if defs:
        schema = {**schema, "$defs": defs}
    converter: Any = converter_class(
        prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False,
        raw_pattern=False,
    )  # fmt: skip
    try:
        resolved = converter.resolve_refs(schema, "tools")
        converter.visit(resolved, _CALL)
        if "char" in converter._rules:
            # Raw control characters are not valid inside a JSON string (RFC 8259 §7); this
            # converter's `char` allows them, llama.cpp's current one does not.
            converter._rules["char"] = _JSON_CHAR
        grammar: str = converter.format_grammar()
    except Exception as exc:  # the converter asserts and raises plain errors on what it lacks
        names = ", ".join(t.name for t in tools)
        raise ToolGrammarError(
            f"the arguments schema of {names} cannot be turned into a llama.cpp grammar "
            f"({type(exc).__name__}: {exc}); the tool needs a schema without that feature "
            "(local $refs, types, enums, consts, patterns ^…$ and objects are supported)"
        ) from exc
    return grammar


def _wrapper(tool: ToolSpec, index: int, defs: dict[str, Any]) -> dict[str, Any]:
    """The call object's schema; the tool's own $defs move to the top (prefixed per tool),
    since its $refs point at the top of the document the converter reads."""
    parameters = _narrow_ranges(copy.deepcopy(tool.parameters))
    prefix = f"t{index}-"
    own = {**parameters.pop("definitions", {}), **parameters.pop("$defs", {})}
    for name, sub in own.items():
        defs[prefix + name] = _rebase(sub, prefix)
    arguments = _rebase(parameters, prefix)
    if _refers_to_root(tool.parameters):
        defs[prefix + "root"] = arguments
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": arguments},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _rebase(node: Any, prefix: str) -> Any:
    """node with its local $refs pointing at the moved definitions."""
    if isinstance(node, list):
        return [_rebase(item, prefix) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _rebase(value, prefix) for key, value in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        if ref == "#":
            out["$ref"] = f"#/$defs/{prefix}root"
        else:
            name = ref.removeprefix("#/$defs/").removeprefix("#/definitions/")
            out["$ref"] = f"#/$defs/{prefix}{name}"
    return out


def _refers_to_root(node: Any) -> bool:
    return '"$ref": "#"' in json.dumps(node)


def _narrow_ranges(node: Any) -> Any:
    """Integer schemas with a narrow minimum..maximum become an enum of the allowed values."""
    if isinstance(node, list):
        return [_narrow_ranges(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _narrow_ranges(value) for key, value in node.items()}
    if out.get("type") == "integer" and "enum" not in out and "const" not in out:
        low = _bound(out, "minimum", "exclusiveMinimum", 1)
        high = _bound(out, "maximum", "exclusiveMaximum", -1)
        if low is not None and high is not None and 0 <= high - low < _ENUM_RANGE:
            kept = {k: v for k, v in out.items() if k in ("title", "description", "default")}
            return {**kept, "enum": list(range(low, high + 1))}
    return out


def _bound(node: dict[str, Any], inclusive: str, exclusive: str, step: int) -> int | None:
    """The lowest (step 1) or highest (step -1) integer the schema allows, if it says."""
    value = node.get(exclusive)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return math.floor(value) + 1 if step > 0 else math.ceil(value) - 1
    value = node.get(inclusive)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return math.ceil(value) if step > 0 else math.floor(value)
    return None
