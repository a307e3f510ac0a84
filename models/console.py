"""What a person sees while models build: one line per kind of warning, not one per call.

A log record's kind is its logger and its message template (`"torchvision is not installed.
Skipping %s"` is one kind, whatever op it names): the first record of each kind is shown, the
repeats are counted. Exporting every graph re-registers torch's ONNX ops and re-runs onnxscript's
optimiser, which would otherwise print the same warnings dozens of times per build.
"""

from __future__ import annotations

import logging
import warnings


class FirstOfEachKind(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True  # errors always show
        kind = (record.name, str(record.msg))
        if kind in self.seen:
            self.suppressed += 1
            return False
        self.seen.add(kind)
        return True


def one_line_per_warning_kind() -> FirstOfEachKind:
    """Installs the filter on every log handler that exists now (the root's and torch's own) and
    shows each Python warning message once. Call it after importing torch."""
    kinds = FirstOfEachKind()
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            handler.addFilter(kinds)
    warnings.simplefilter("once")
    return kinds
