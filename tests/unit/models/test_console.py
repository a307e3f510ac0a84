"""One line per warning kind: the first record of a (logger, template) pair shows, repeats are counted;
after the block, the handlers are as they were (pytest's log capture is one of them here)."""

from __future__ import annotations

import io
import logging
import warnings

import pytest

from models.console import one_line_per_warning_kind


def test_repeats_of_a_warning_kind_are_counted_not_shown() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    noisy = logging.getLogger("tests.console.noisy")
    noisy.addHandler(handler)
    noisy.propagate = False
    try:
        with one_line_per_warning_kind() as kinds:
            for op in ("nms", "roi_align", "roi_pool", "nms"):
                noisy.warning("torchvision is not installed. Skipping %s", op)
            noisy.warning("another kind")
            noisy.error("an error %s", 1)
            noisy.error("an error %s", 2)
    finally:
        noisy.removeHandler(handler)
        noisy.propagate = True
    lines = stream.getvalue().splitlines()
    assert lines == ["torchvision is not installed. Skipping nms", "another kind", "an error 1", "an error 2"]
    assert kinds.suppressed == 3


def test_leaving_the_block_takes_the_filter_off_every_handler_and_restores_the_warning_filters(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tests.console.later")
    before = warnings.filters[:]
    with one_line_per_warning_kind() as kinds:
        logging.getLogger("tests.console.later").warning("service %s is NOT_SERVING", "beta")
    assert warnings.filters == before
    handlers = [h for logger in (logging.getLogger(), *logging.Logger.manager.loggerDict.values())
                if isinstance(logger, logging.Logger) for h in logger.handlers]
    assert handlers and not [h for h in handlers if kinds in h.filters]
    # A record of a kind seen inside the block still reaches the test's own capture afterwards.
    caplog.clear()
    logging.getLogger("tests.console.later").warning("service %s is NOT_SERVING", "beta")
    assert [r.getMessage() for r in caplog.records] == ["service beta is NOT_SERVING"]
