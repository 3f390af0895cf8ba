"""Hugging Face config.json: reading, `--set` overrides and derivation, sizes by architecture data."""

from __future__ import annotations

import ast
import copy
import json
import math
import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wsel.errors import CheckpointError, SpecError
from wsel.sources.local import read_small_file

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
}


class _Missing(Exception):
    """A config key named by an expression is absent or null, or gives no number (a string, a zero
    divisor, an overflow): try the next alternative."""


def load_config(path: Path) -> dict[str, Any]:
    try:
        data = read_small_file(Path(path), "a config.json")
    except CheckpointError as e:  # not a regular file, too large, unreadable: `<path>: <problem>` as it stands
        raise SpecError(str(e)) from None
    return parse_config(data, str(path))


def parse_config(data: bytes, where: str) -> dict[str, Any]:
    """A config.json's bytes as a JSON object. Raises SpecError naming `where`."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # ValueError: bad JSON, bad UTF-8, huge integers
        raise SpecError(f"{where}: cannot read the config: {e}") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{where}: expected a JSON object")
    return doc


def parse_set(item: str) -> tuple[str, Any]:
    """`key=value` → (key, value); the value is JSON when it parses (numbers, true, null, lists), else a string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. --set num_hidden_layers=16")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON: the value is the string itself
        value = raw
    return key.strip(), value


def apply_sets(config: dict[str, Any], sets: list[tuple[str, Any]]) -> dict[str, Any]:
    """A copy of `config` with dotted keys (`rope_parameters.rope_theta`) set."""
    result = copy.deepcopy(config)
    for key, value in sets:
        node = result
        *parents, last = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    return result


def lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            raise _Missing(dotted)
        node = node[part]
    return node


def evaluate(expression: str, config: dict[str, Any]) -> Any:
    """Evaluate a size expression such as `hidden_size / num_attention_heads` or `len(id2label)`.

    Only arithmetic on numbers and config keys is allowed: architecture data never runs code.
    Raises _Missing when a key is absent.
    """
    return _eval(ast.parse(expression, mode="eval").body, config)


def _eval(node: ast.AST, config: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.Name | ast.Attribute):
        return lookup(config, ast.unparse(node))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, config), _eval(node.right, config)
        if not (_is_number(left) and _is_number(right)):
            raise _Missing(ast.unparse(node))  # a string or a list in a config: this alternative gives no size
        try:
            return _BINARY[type(node.op)](left, right)
        except (ZeroDivisionError, OverflowError):  # a zero head count, or a float past 1e308
            raise _Missing(ast.unparse(node)) from None
    if isinstance(node, ast.Call) and ast.unparse(node.func) == "len" and len(node.args) == 1:
        return len(_eval_container(node.args[0], config))
    raise ValueError(f"unsupported size expression {ast.unparse(node)!r}")


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or isinstance(value, float) and math.isfinite(value)


def _eval_container(node: ast.AST, config: dict[str, Any]) -> Any:
    value = lookup(config, ast.unparse(node))
    if not isinstance(value, dict | list):
        raise _Missing(ast.unparse(node))
    return value


def first_value(alternatives: tuple[str, ...], config: dict[str, Any]) -> Any:
    """The value of the first alternative whose keys are all present; None when none is."""
    for expression in alternatives:
        try:
            return evaluate(expression, config)
        except _Missing:
            continue
    return None


def check_expression(expression: str) -> None:
    """Raise ValueError when an expression uses anything but arithmetic, names and len()."""
    tree = ast.parse(expression, mode="eval").body
    for node in ast.walk(tree):
        allowed = (ast.Constant, ast.Name, ast.Attribute, ast.BinOp, ast.Call, ast.Load, *_BINARY)
        if not isinstance(node, allowed):
            raise ValueError(f"unsupported element {type(node).__name__} in {expression!r}")
        if isinstance(node, ast.Call) and (ast.unparse(node.func) != "len" or len(node.args) != 1):
            raise ValueError(f"only len(key) may be called in {expression!r}")


def read_sizes(sizes: dict[str, tuple[str, ...]], config: dict[str, Any], where: str) -> dict[str, int]:
    """Axis sizes from a config by the architecture's expressions. Axes whose keys are absent are left out."""
    result: dict[str, int] = {}
    for axis, alternatives in sizes.items():
        value = first_value(alternatives, config)
        if value is None:
            continue
        whole = isinstance(value, int) or isinstance(value, float) and math.isfinite(value) and value.is_integer()
        if isinstance(value, bool) or not whole or value < 0:  # JSON's NaN and Infinity are no sizes
            raise SpecError(f"{where}: {alternatives[0]} gives {axis} = {value!r}, expected a whole number")
        result[axis] = int(value)
    return result


def derivations(sizes: dict[str, tuple[str, ...]], config: dict[str, Any]) -> dict[str, str]:
    """For each axis whose size the config does not state under its own key but derives (the first
    alternative is absent): how, with the values, e.g. `hidden_size / num_attention_heads = 288 / 3`."""
    result: dict[str, str] = {}
    for axis, alternatives in sizes.items():
        for index, expression in enumerate(alternatives):
            try:
                evaluate(expression, config)
            except _Missing:
                continue
            if index > 0:
                result[axis] = f"{expression} = {_with_values(expression, config)}"
            break
    return result


def _with_values(expression: str, config: dict[str, Any]) -> str:
    """`hidden_size / num_attention_heads` → `288 / 3`."""

    class Substitute(ast.NodeTransformer):
        def visit_Call(self, node: ast.Call) -> ast.AST:  # len(key): its value
            return ast.Constant(evaluate(ast.unparse(node), config))

        def visit_Name(self, node: ast.Name) -> ast.AST:
            return ast.Constant(lookup(config, node.id))

        def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
            return ast.Constant(lookup(config, ast.unparse(node)))

    return ast.unparse(Substitute().visit(ast.parse(expression, mode="eval")))


def is_key(expression: str) -> bool:
    """Whether a size expression is a config key a student can set (`head_dim`), not a derivation
    (`hidden_size / num_attention_heads`)."""
    return _KEY.fullmatch(expression) is not None


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def size_keys(sizes: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """The config key users set for each axis (for messages): the first alternative."""
    return {axis: alternatives[0] for axis, alternatives in sizes.items()}


def derive_config(teacher_config: dict[str, Any], sets: list[tuple[str, Any]]) -> dict[str, Any]:
    """The teacher's config with overrides; an explicit head_dim that merely restated hidden / heads follows the
    new sizes unless it was set too (as transformers derives it when absent). Other keys that restate sizes are
    the architecture data's (`derived_keys`)."""
    config = apply_sets(teacher_config, sets)
    set_keys = {k for k, _ in sets}
    hidden, heads = teacher_config.get("hidden_size"), teacher_config.get("num_attention_heads")
    if (
        "head_dim" not in set_keys
        and isinstance(teacher_config.get("head_dim"), int)
        and isinstance(hidden, int)
        and isinstance(heads, int)
        and heads
        and teacher_config["head_dim"] * heads == hidden
    ):
        s_hidden, s_heads = config.get("hidden_size"), config.get("num_attention_heads")
        if isinstance(s_hidden, int) and isinstance(s_heads, int) and s_heads and s_hidden % s_heads == 0:
            config["head_dim"] = s_hidden // s_heads
    return config
