"""Every command-line entry point names itself as it is run (`python -m package.module`, not
`build.py`) and describes itself with a whole paragraph, not a first line cut mid-sentence."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "exporters", "benchmarks", "loadtest")


def test_every_argument_parser_names_its_module() -> None:
    found = 0
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "kserve_runtime.py":  # extends KServe's own model-server parser, run by KServe
                continue
            text = path.read_text()
            for call in re.findall(r"argparse\.ArgumentParser\((.*?)\)\n", text, re.DOTALL):
                found += 1
                module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__main__")
                prog = re.search(r'prog="([^"]+)"', call)
                assert prog is not None, f"{path.relative_to(ROOT)}: no prog="
                assert prog.group(1) in (f"python -m {module}", "loadtest"), path
                assert 'split("\\n")[0]' not in call and "splitlines()[0]" not in call, f"{path}: cut description"
    assert found >= 15
