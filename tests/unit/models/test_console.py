"""One line per warning kind: the first record of a (logger, template) pair shows, repeats are counted."""

from __future__ import annotations

import io
import logging

from models.console import one_line_per_warning_kind


def test_repeats_of_a_warning_kind_are_counted_not_shown() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    noisy = logging.getLogger("tests.console.noisy")
    noisy.addHandler(handler)
    noisy.propagate = False
    try:
        kinds = one_line_per_warning_kind()
        for op in ("nms", "roi_align", "roi_pool", "nms"):
            noisy.warning("torchvision is not installed. Skipping %s", op)
        noisy.warning("another kind")
        noisy.error("an error %s", 1)
        noisy.error("an error %s", 2)
    finally:
        noisy.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines == ["torchvision is not installed. Skipping nms", "another kind", "an error 1", "an error 2"]
    assert kinds.suppressed == 3
