"""What a person sees while models build: one line per kind of warning, not one per call.

A log record's kind is its logger and its message template (`"torchvision is not installed.
Skipping %s"` is one kind, whatever op it names): the first record of each kind is shown, the
repeats are counted. Exporting every graph re-registers torch's ONNX ops and re-runs onnxscript's
optimiser, which would otherwise print the same warnings dozens of times per build.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


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


@contextmanager
def one_line_per_warning_kind() -> Iterator[FirstOfEachKind]:
    """Within the block, the filter is on every log handler that exists when it starts (the root's and
    torch's own) and each Python warning message shows once; leaving it takes both back. The handlers
    are not ours (pytest's log capture among them, when a test builds): a filter left on them kept
    hiding every later record of a kind it had seen, in whatever came next. Enter it after importing torch."""
    kinds = FirstOfEachKind()
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    handlers = [handler for logger in loggers for handler in logger.handlers]
    for handler in handlers:
        handler.addFilter(kinds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("once")
            yield kinds
    finally:
        for handler in handlers:
            handler.removeFilter(kinds)
