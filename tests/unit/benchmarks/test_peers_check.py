"""The peers' check and launcher helpers without any server: comparisons, requests, ONNX runs, /proc readings."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.peers.check import ATOL, REQUEST_SHAPES, _rows, compare, din_requests
from benchmarks.peers.onnx_model import BadInputs, OnnxModel
from benchmarks.peers.proc import cpu_seconds, process_tree, thread_names, tree_cpu_seconds
from tests.fixtures import write_add_one_onnx

META = {"layout": "rows", "vocabulary": {"n_items": 120, "n_categories": 8}}


def test_compare_passes_equal_and_near_values_and_reports_the_difference() -> None:
    expected = np.array([[0.25, 0.5]], np.float32)
    assert compare(expected.copy(), expected) == (0.0, True, "")
    diff, ok, _ = compare(expected + np.float32(ATOL / 2), expected)
    assert ok and 0 < diff <= ATOL


@pytest.mark.parametrize("got, why", [
    (np.array([[0.25, np.nan]], np.float32), "not finite"),
    (np.array([[0.25, np.inf]], np.float32), "not finite"),
    (np.array([[0.25, 0.5 + 1e-3]], np.float32), "differs by"),
    (np.array([[0.25, 0.5]], np.float64), "float64[1, 2] != float32[1, 2]"),
    (np.array([0.25, 0.5], np.float32), "float32[2] != float32[1, 2]"),
    (None, "missing"),
])
def test_compare_fails_nan_inf_far_values_and_wrong_dtype_or_shape(got, why: str) -> None:
    _, ok, note = compare(got, np.array([[0.25, 0.5]], np.float32))
    assert not ok and note.startswith(why)


def test_a_nan_in_the_reference_is_a_mismatch_too() -> None:
    reference = np.array([np.nan], np.float32)
    assert not compare(reference.copy(), reference)[1]


def test_requests_are_ragged_rows_layout_din_tensors_within_the_vocabulary() -> None:
    requests = list(din_requests(META))
    assert len(requests) == len(REQUEST_SHAPES)
    for (_, inputs), (history, counts) in zip(requests, REQUEST_SHAPES, strict=True):
        users, rows = len(counts), sum(counts)
        mask = inputs["history_mask"]
        assert mask.dtype == np.float32 and mask.shape == (users, max(history, 1))
        assert mask[0].sum() == history  # the first user's history fills the tensor, or is empty
        for name in ("history_items", "history_categories"):
            assert inputs[name].dtype == np.int64 and inputs[name].shape == mask.shape
            assert ((inputs[name] > 0) == (mask > 0)).all()  # ids where the mask is on, padding 0 elsewhere
        for name in ("candidate_items", "candidate_categories", "candidate_user"):
            assert inputs[name].dtype == np.int64 and inputs[name].shape == (rows,)
        assert np.bincount(inputs["candidate_user"], minlength=users).tolist() == list(counts)
        assert inputs["candidate_items"].min() >= 1 and inputs["candidate_items"].max() <= META["vocabulary"]["n_items"]
        assert inputs["candidate_categories"].max() <= META["vocabulary"]["n_categories"]
    assert any(0 < inputs["history_mask"].sum() < inputs["history_mask"].size for _, inputs in requests)  # ragged
    assert any(not inputs["history_mask"].any() for _, inputs in requests)  # an empty history


def test_requests_refuse_a_layout_they_do_not_know() -> None:
    with pytest.raises(ValueError, match="layout 'grid'"):
        next(din_requests({**META, "layout": "grid"}))


def test_rows_fail_on_an_error_and_on_outputs_the_graph_lacks() -> None:
    expected = {"y": np.ones((1, 4), np.float32)}
    [error] = _rows("kserve", "r", "raw", "error: StatusCode.INTERNAL boom", expected)
    assert not error.ok and "boom" in error.note
    rows = _rows("kserve", "r", "raw", {"y": np.ones((1, 4), np.float32), "z": np.ones(1, np.float32)}, expected)
    assert [row.ok for row in rows] == [True, False] and rows[1].output == "z"


def test_onnx_model_runs_every_output_or_the_requested_ones(tmp_path) -> None:
    model = OnnxModel(write_add_one_onnx(tmp_path / "add.onnx"))
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(model.run({"x": x})["y"], x + 1)
    assert list(model.run({"x": x}, ["y"])) == ["y"]
    assert model.inputs[0].shape == (-1, 4) and model.outputs[0].dtype == np.float32


@pytest.mark.parametrize("inputs, outputs, message", [
    ({"w": np.zeros((1, 4), np.float32)}, (), "inputs must be exactly ['x']"),
    ({"x": np.zeros((1, 4), np.float64)}, (), "input 'x' must be float32, got float64"),
    ({"x": np.zeros((1, 5), np.float32)}, (), "the model rejected the inputs"),
    ({"x": np.zeros((1, 4), np.float32)}, ("z",), "unknown outputs ['z']"),
])
def test_onnx_model_says_what_is_wrong_with_bad_inputs(tmp_path, inputs, outputs, message: str) -> None:
    model = OnnxModel(write_add_one_onnx(tmp_path / "add.onnx"))
    with pytest.raises(BadInputs, match=message.replace("[", r"\[").replace("]", r"\]")):
        model.run(inputs, outputs)


def test_cpu_time_of_a_process_tree_counts_its_children() -> None:
    # The child burns 0.25 s of its own CPU (whatever else the machine does), says so, then waits; /proc counts
    # in clock ticks, so the assertions leave it a tick or more.
    burn = ("import sys, time\nwhile time.process_time() < 0.25: pass\nprint('burnt', flush=True)\n"
            "sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "burnt"
        tree = process_tree(os.getpid())
        assert tree[0] == os.getpid() and child.pid in tree
        assert cpu_seconds(child.pid) >= 0.2
        own = cpu_seconds(os.getpid())
        assert tree_cpu_seconds(os.getpid()) >= own + 0.2
        assert sum(thread_names(child.pid).values()) >= 1
    finally:
        child.communicate("")
    assert cpu_seconds(child.pid) == 0.0  # gone
