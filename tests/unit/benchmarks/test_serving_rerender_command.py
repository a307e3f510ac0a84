"""`python -m benchmarks.serving --rerender`: re-rendering a report from its own .json again and again
keeps one stamp on the run's command (it used to append one more `re-rendered from` every time), and a
.json that already carries the appended form is repaired."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks.serving.__main__ import RERENDERED, _rerender

RUN = Path(__file__).resolve().parents[3] / "reports" / "serving_transport.json"


def test_rerendering_twice_keeps_one_stamp(tmp_path: Path) -> None:
    source, out = tmp_path / "run.json", tmp_path / "serving.md"
    shutil.copy(RUN, source)
    measured = json.loads(source.read_text())["context"]["command"].split(RERENDERED)[0]
    argv = ["--rerender", str(out.with_suffix(".json")), "--out", str(out)]
    _rerender(source, out, argv)
    first = json.loads(out.with_suffix(".json").read_text())["context"]
    _rerender(out.with_suffix(".json"), out, argv)
    again = json.loads(out.with_suffix(".json").read_text())["context"]
    stamped = f"{measured}{RERENDERED}python -m benchmarks.serving {' '.join(argv)}"
    assert again["command"] == first["command"] == stamped
    assert again["measured_command"] == measured and out.read_text().count("re-rendered from its .json") == 1


def test_an_already_appended_command_is_repaired(tmp_path: Path) -> None:
    run = json.loads(RUN.read_text())
    base = run["context"]["command"].split(RERENDERED)[0]
    run["context"]["command"] = f"{base}{RERENDERED}old one{RERENDERED}older one"
    run["context"].pop("measured_command", None)
    source, out = tmp_path / "run.json", tmp_path / "serving.md"
    source.write_text(json.dumps(run))
    _rerender(source, out, ["--rerender", "x"])
    assert json.loads(out.with_suffix(".json").read_text())["context"]["command"] == (
        f"{base}{RERENDERED}python -m benchmarks.serving --rerender x")
