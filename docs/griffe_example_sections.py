"""Griffe extension for the API pages: read ``Example:`` docstring sections as ``Examples:``.

visattn's docstrings use the Google-style heading ``Example:`` (singular), which griffe's Google parser
does not know and would render as prose, so doctest lines such as ``[(2, 17), ...]`` turn into broken
Markdown links. This extension renames the heading before parsing; the docstrings stay as they are.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section headings to ``Examples:``."""

    def on_instance(
        self, *, node: ast.AST | griffe.ObjectNode, obj: griffe.Object, agent: Any, **kwargs: Any
    ) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\g<indent>Examples:", obj.docstring.value)
