"""Machine output: JSON on stdout, one document (or one object per line for streams)."""

from __future__ import annotations

from typing import Any

import click
import orjson


def emit_json(value: Any, *, pretty: bool = True) -> None:
    option = orjson.OPT_INDENT_2 if pretty else 0
    click.echo(orjson.dumps(value, option=option | orjson.OPT_NON_STR_KEYS, default=str).decode())
