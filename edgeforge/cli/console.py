"""Terminal output policy: results on stdout, progress and diagnostics on stderr; colour only
when stderr is a terminal and neither NO_COLOR, TERM=dumb nor --no-color says otherwise."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass
class Console:
    json: bool = False
    verbose: int = 0
    quiet: bool = False
    no_color: bool = False

    @property
    def interactive(self) -> bool:
        """Progress bars only for a person at a terminal: not under --json, -q or CI."""
        return sys.stderr.isatty() and not self.json and not self.quiet and not os.environ.get("CI")

    @property
    def color(self) -> bool:
        return (sys.stderr.isatty() and not self.no_color and "NO_COLOR" not in os.environ
                and os.environ.get("TERM") != "dumb")

    def style(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def out(self, text: str = "") -> None:
        print(text, file=sys.stdout)

    def err(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


class CliReporter:
    """Renders library events on stderr according to the console policy."""

    def __init__(self, console: Console) -> None:
        self.c = console
        self._bar = False

    def _clear(self) -> None:
        if self._bar:
            sys.stderr.write("\r\033[K")
            self._bar = False

    def stage(self, name: str) -> None:
        self._clear()
        if self.c.interactive or (self.c.verbose and not self.c.quiet):
            self.c.err(self.c.style(f"» {name}", "2"))

    def progress(self, done: int, total: int, note: str = "") -> None:
        if not self.c.interactive or total <= 0:
            return
        width = 30
        filled = int(width * done / total)
        sys.stderr.write(f"\r\033[K  [{'#' * filled}{'.' * (width - filled)}] {done}/{total}" + (f"  {note}" if note else ""))
        sys.stderr.flush()
        self._bar = True
        if done >= total:
            self._clear()

    def warning(self, message: str) -> None:
        self._clear()
        if not self.c.quiet:
            self.c.err(self.c.style("warning: ", "1;33") + message)

    def detail(self, message: str) -> None:
        if self.c.verbose:
            self._clear()
            self.c.err(message)
