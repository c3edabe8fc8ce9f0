"""Helpers shared by the end-to-end tests that use the official Python MCP SDK."""

from __future__ import annotations


def field(obj, snake: str):
    """Read a result field under SDK 2.x (snake_case) or 1.x (camelCase) spelling."""
    if hasattr(obj, snake):
        return getattr(obj, snake)
    head, *rest = snake.split("_")
    return getattr(obj, head + "".join(part.title() for part in rest))


def text_of(result) -> str:
    """The text items of a tool result, joined."""
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")
