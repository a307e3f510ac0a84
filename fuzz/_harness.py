"""The one entry point every harness shares: libFuzzer arguments from argv, the target, run."""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris


def main(test_one_input: Callable[[bytes], None]) -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
