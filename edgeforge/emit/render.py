"""The Jinja environment: strict (a missing variable is an error) and deterministic."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from edgeforge.resources import data_dir


@cache
def _environment(extra: tuple[str, ...]) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(p) for p in extra]
    loaders.append(jinja2.FileSystemLoader(str(data_dir("templates"))))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(name: str, context: dict[str, Any], template_dirs: Iterable[Path] = ()) -> bytes:
    """Render template ``name``; user template folders come first, so one file can be overridden."""
    env = _environment(tuple(str(p) for p in template_dirs))
    return env.get_template(name).render(**context).encode("utf-8")


def c_identifier(text: str, fallback: str = "model") -> str:
    """A valid C identifier from any name: other characters become '_', never a leading digit."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_") or fallback
    return f"_{ident}" if ident[0].isdigit() else ident


def header_guard(*parts: str) -> str:
    return "_".join(c_identifier(p).upper() for p in parts) + "_H_"


def hex_rows(data: bytes, per_row: int = 12) -> list[str]:
    return [", ".join(f"0x{b:02x}" for b in data[i : i + per_row]) + ","
            for i in range(0, len(data), per_row)]
