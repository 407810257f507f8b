"""Progress events: the library reports, the CLI decides how (or whether) to show them."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def stage(self, name: str) -> None:
        """A long step starts (conversion, calibration, evaluation...)."""

    def progress(self, done: int, total: int, note: str = "") -> None:
        """Progress within the current stage (``note``: e.g. the best result so far)."""

    def warning(self, message: str) -> None:
        """Something the user must know about, though the work goes on."""

    def detail(self, message: str) -> None:
        """Verbose detail (shown with -v)."""


class NullReporter:
    """Discards everything: the default for library calls."""

    def stage(self, name: str) -> None:
        pass

    def progress(self, done: int, total: int, note: str = "") -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def detail(self, message: str) -> None:
        pass


class RecordingReporter:
    """Keeps every event; used by tests and by results that list warnings."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def stage(self, name: str) -> None:
        self.events.append(("stage", name))

    def progress(self, done: int, total: int, note: str = "") -> None:
        self.events.append(("progress", (done, total, note) if note else (done, total)))

    def warning(self, message: str) -> None:
        self.events.append(("warning", message))

    def detail(self, message: str) -> None:
        self.events.append(("detail", message))

    @property
    def warnings(self) -> list[str]:
        return [str(m) for kind, m in self.events if kind == "warning"]
