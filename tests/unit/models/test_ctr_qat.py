"""QAT in the deployed scheme: every matrix product fake-quantized, the export carries the observers' ranges."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from models.ctr.data import iterate_batches
from models.ctr.din import SlotLinear
from models.ctr.qat import SCHEMES, FakeQuant, QuantDequant, fake_quantizers, freeze, prepare_qat, strip
from models.ctr.train import INPUT_KEYS


def _observed(make_din, tiny_click_data, variant="din_dice", scheme="int8-static-minmax"):
    """A prepared model whose activation observers saw two training batches, in eval mode."""
    model = prepare_qat(make_din(variant), scheme)
    model.train()
    with torch.no_grad():
        for batch in list(iterate_batches(tiny_click_data, tiny_click_data.train_users[:64], 32)):
            model(*(batch[k] for k in INPUT_KEYS))
    return model.eval()


def _inputs(tiny_click_data):
    batch = next(iterate_batches(tiny_click_data, tiny_click_data.test_users[:8], 8))
    return tuple(batch[k] for k in INPUT_KEYS)


def test_every_matrix_product_gets_a_fake_quantizer_and_strip_removes_them(make_din):
    din, base = prepare_qat(make_din("din_dice")), prepare_qat(make_din("base"))
    # head: 3 Linear x (input, weight); unit: out Linear x 2 + 3 split products x 2; weighted sum: 2
    assert len(fake_quantizers(din)) == 16 and len(fake_quantizers(base)) == 6
    assert {q.kind for q in fake_quantizers(din)} == {"activation", "weight"}
    float_keys = set(make_din("din_dice").state_dict())
    assert not fake_quantizers(strip(din)) and set(din.state_dict()) == float_keys


@pytest.mark.parametrize("block", [0, 1, 3])  # w_e -> behaviour term, w_a -> ad term, w_p -> product term
def test_attention_first_layer_is_quantized_a_sub_step_nudge_changes_nothing(make_din, tiny_click_data, block):
    model = _observed(make_din, tiny_click_data)
    unit = model.attention
    inputs = _inputs(tiny_click_data)
    slot = {0: "w_behaviour", 1: "w_ad", 3: "w_product"}[block]
    weight = dict(zip(("w_behaviour", "w_ad", "w_product"), unit.split_weights(), strict=True))
    with torch.no_grad():
        quantizer = unit.quant[slot]
        raw = {"w_behaviour": lambda w: w[0] + w[2], "w_ad": lambda w: w[1] - w[2], "w_product": lambda w: w[3]}[slot](
            unit.fc.weight.split(unit.dim, dim=1))
        grid = weight[slot]  # the fake-quantized values
        gap = (grid - raw).abs()
        gap[raw == raw.max()] = gap[raw == raw.min()] = float("inf")  # keep the range (and the scale) as is
        h, d = divmod(int(torch.argmin(torch.where(gap > 1e-7, gap, torch.inf))), raw.shape[1])
        column = block * unit.dim + d
        before, _ = model(*inputs)
        float_model = strip(make_din("din_dice")).eval()
        float_model.load_state_dict(model.state_dict(), strict=False)
        float_before, _ = float_model(*inputs)
        nudge = 0.5 * float(grid[h, d] - raw[h, d])  # halfway to its grid point: same quantized value
        unit.fc.weight[h, column] += nudge
        float_model.attention.fc.weight[h, column] += nudge
        assert torch.equal(model(*inputs)[0], before)
        assert not torch.equal(float_model(*inputs)[0], float_before)
        step = float((raw.max() - raw.min()) / 255.0)
        unit.fc.weight[h, column] += 2 * step  # two steps: another grid point
        assert not torch.equal(model(*inputs)[0], before)
    assert isinstance(quantizer, FakeQuant)


def test_weight_grids_follow_the_scheme(make_din):
    layer = prepare_qat(make_din("din_dice"), "int8-static-minmax").head.layers[0]
    assert isinstance(layer, SlotLinear)
    assert len(torch.unique(layer.weight_quant(layer.weight))) <= 256
    layer = prepare_qat(make_din("din_dice"), SCHEMES["int8-static-perchannel"]).head.layers[0]
    q = layer.weight_quant(layer.weight).detach()
    scales = layer.weight.detach().abs().amax(1, keepdim=True) / 127.0
    codes = q / scales
    torch.testing.assert_close(codes, codes.round(), atol=1e-3, rtol=0)  # symmetric: zero point 0, per-row scale
    assert codes.abs().max() <= 127.0 + 1e-3


def test_frozen_export_carries_the_observer_ranges_and_matches_torch(make_din, tiny_click_data, tmp_path):
    from exporters.ctr import parity_inputs
    from exporters.onnx_export import export_onnx, parity_max_abs_diff
    from models.ctr.din_rows import DinRows

    model = _observed(make_din, tiny_click_data)
    inputs = _inputs(tiny_click_data)
    with torch.no_grad():
        expected, _ = model(*inputs)
    observer = model.head.layers[0].input_quant
    low, high = min(float(observer.low), 0.0), max(float(observer.high), 0.0)
    freeze(model)
    assert not fake_quantizers(model) and isinstance(model.head.layers[0].input_quant, QuantDequant)
    with torch.no_grad():
        torch.testing.assert_close(model(*inputs)[0], expected, atol=1e-6, rtol=0)
    path = export_onnx(DinRows(model), tmp_path / "qat.onnx")
    graph = onnx.load(str(path)).graph
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantize) == 16
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes = [n for n in graph.node if n.op_type == "Constant"]
    constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in nodes})
    scales = [float(constants[n.input[1]].reshape(-1)[0]) for n in quantize if n.input[1] in constants]
    assert any(np.isclose(s, (high - low) / 255.0, rtol=1e-6) for s in scales)  # the observer's own range
    assert parity_max_abs_diff(DinRows(model), path, parity_inputs(model)[:4]) < 1e-5
