"""Rewrites of exported ONNX graphs that make a recognisable "version 2" of a model without
training one: negate an input or output, or reverse an output along an axis. Tests use them to
tell, from an answer alone, which versions of a multi-graph model computed it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]


def _negate_input(graph: onnx.GraphProto, name: str) -> None:
    inner = f"{name}__negated"
    _rename_uses(graph, name, inner)
    graph.node.insert(0, helper.make_node("Neg", [name], [inner], name=f"{inner}_node"))


def _rewrite_output(graph: onnx.GraphProto, name: str, make: Callable[[str, str], list[onnx.NodeProto]]) -> None:
    raw = f"{name}__raw"
    for node in graph.node:
        node.output[:] = [raw if out == name else out for out in node.output]
    _rename_uses(graph, name, raw)
    graph.node.extend(make(raw, name))


def _reverse(graph: onnx.GraphProto, axis: int) -> Callable[[str, str], list[onnx.NodeProto]]:
    def make(raw: str, out: str) -> list[onnx.NodeProto]:
        constants = {"starts": -1, "ends": np.iinfo(np.int64).min, "axes": axis, "steps": -1}
        names = []
        for key, value in constants.items():
            names.append(f"{out}__{key}")
            graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64), names[-1]))
        return [helper.make_node("Slice", [raw, *names], [out], name=f"{out}__reverse")]
    return make


def edit_graph(source: Path, target: Path, *, negate_inputs: tuple[str, ...] = (),
               negate_outputs: tuple[str, ...] = (), reverse_outputs: dict[str, int] | None = None) -> None:
    model = onnx.load(str(source))
    graph = model.graph
    for name in negate_inputs:
        _negate_input(graph, name)
    for name in negate_outputs:
        _rewrite_output(graph, name, lambda raw, out: [helper.make_node("Neg", [raw], [out], name=f"{out}__neg")])
    for name, axis in (reverse_outputs or {}).items():
        _rewrite_output(graph, name, _reverse(graph, axis))
    onnx.checker.check_model(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))


def new_version(repository: Path, name: str, edit: dict[str, Any], meta: Callable[[dict], dict] | None = None,
                source: str = "1", version: str = "2") -> dict[str, Any]:
    """Writes <name>/<version>/ from <name>/<source>/: the graph rewritten by `edit`, meta.json
    through `meta`. Returns the new meta.json."""
    old, new = repository / name / source, repository / name / version
    values = json.loads((old / "meta.json").read_text())
    values = meta(values) if meta is not None else values
    edit_graph(old / "model.onnx", new / "model.onnx", **edit)
    (new / "meta.json").write_text(json.dumps(values))
    return values
