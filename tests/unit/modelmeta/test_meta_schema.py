"""meta.json's schema (modelmeta): the shipped models validate as they are, each against its
family's schema, and a bad, missing or future field is refused naming the model, version and field."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infersuite.modelmeta import (
    SCHEMA_VERSION,
    AudioMeta,
    CtrMeta,
    MetaError,
    ModelMeta,
    SegmentationBackboneMeta,
    SegmentationMeta,
    SplitComputeMeta,
    read_meta,
    validate_meta,
)

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = sorted((ROOT / "shipped_models").glob("*/[0-9]*/meta.json"))


def _shipped(model: str) -> dict[str, Any]:
    return json.loads((ROOT / "shipped_models" / model / "1" / "meta.json").read_text())


def test_every_family_ships_models() -> None:
    assert {json.loads(p.read_text())["family"] for p in SHIPPED} == {"ctr", "segmentation", "splitcompute", "audio"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.parent.name)
def test_every_shipped_meta_validates_unchanged_against_its_family_schema(path: Path) -> None:
    before = path.read_bytes()
    meta = read_meta(path, model=path.parent.parent.name, version=path.parent.name)
    backbone = json.loads(before).get("stage") == "backbone_gate"
    expected = {"ctr": CtrMeta, "splitcompute": SplitComputeMeta, "audio": AudioMeta,
                "segmentation": SegmentationBackboneMeta if backbone else SegmentationMeta}[meta.family or ""]
    assert type(meta) is expected
    # exports from before the stamp carry none and read as version 1; later ones (the corpus-pretrained PaSST) write 1
    assert meta.schema_version == 1 and json.loads(before).get("schema_version", 1) == 1
    assert path.read_bytes() == before


def test_typed_access_to_the_shipped_blocks() -> None:
    din = validate_meta(_shipped("din-fp32"), model="din-fp32", version=1)
    assert isinstance(din, CtrMeta) and (din.vocabulary.n_items, din.vocabulary.n_categories) == (600, 30)
    assert din.limits is not None and din.limits.inputs["candidate_user"].below_dim == ("history_items", 0)
    assert din.limits.products["attention_cells"].max == 262144
    assert din.batching is not None and din.batching.rows is not None
    assert din.batching.rows.group_index == {"candidate_user": "history_items"}
    backbone = validate_meta(_shipped("segmentation-backbone-fp32"), model="b", version=1)
    assert isinstance(backbone, SegmentationBackboneMeta)
    assert backbone.pipeline.exits == [2, 3, 4, 5, 6] and backbone.pipeline.stages.gate == "segmentation-gate-fp32"
    server = validate_meta(_shipped("splitcompute-server-fp32"), model="s", version=1)
    assert isinstance(server, SplitComputeMeta) and server.codec.latent_shape == (16, 12, 12)
    assert len(server.codec.pmf[0]) == 2 * server.codec.radius + 1 == 43


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation of a meta dict: the key at the dotted path set to value (value _DELETE removes it)."""
    def mutate(meta: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return mutate


_DELETE = object()

BROKEN = [  # (model, mutation, the field the message names, what it says)
    ("din-fp32", _set("limits.inputs.history_items.max_shape", [256, "1024"]),
     "limits.inputs.history_items.max_shape[1]", "valid integer"),
    ("din-fp32", _set("limits.inputs.history_items.range", [30, 0]),
     "limits.inputs.history_items.range", "low bound 30 is above high bound 0"),
    ("din-fp32", _set("limits.max_element", 5), "limits.max_element", "Extra inputs are not permitted"),
    ("din-fp32", _set("vocabulary.n_items", _DELETE), "vocabulary.n_items", "Field required"),
    ("din-fp32", _set("vocabulary.n_items", 600.0), "vocabulary.n_items", "valid integer"),
    ("din-fp32", _set("batching.rows.group_index", {"candidate_user": "candidate_items"}), "batching.rows",
     "which are row inputs"),
    ("segmentation-backbone-fp32", _set("pipeline", _DELETE), "pipeline", "Field required"),
    ("segmentation-backbone-fp32", _set("pipeline.exits", [2, 7]), "pipeline", "within the 6 encoder layers"),
    ("segmentation-encoder1-fp32", _set("stage", "encoder_layer_x"), "stage", "should match pattern"),
    ("splitcompute-server-fp32", _set("codec.radius", 20), "codec", "radius 20 needs 41"),
    ("splitcompute-encoder-fp32", _set("codec", _DELETE), "codec", "Field required"),
    ("audio-passt-fp32", _set("window_samples", 0), "window_samples", "greater than 0"),
    ("audio-bow-fp32", _set("sample_rate", 16000), "", "front_end.sample_rate 32000 differs from sample_rate 16000"),
]


@pytest.mark.parametrize(("model", "mutate", "field", "why"), BROKEN, ids=[f"{m}:{f or w}" for m, _, f, w in BROKEN])
def test_a_broken_field_is_refused_naming_model_version_and_field(model: str, mutate: Callable[[dict], None],
                                                                  field: str, why: str) -> None:
    meta = copy.deepcopy(_shipped(model))
    mutate(meta)
    with pytest.raises(MetaError) as refused:
        validate_meta(meta, model=model, version=1)
    assert str(refused.value).startswith(f"model {model!r} version 1: meta.json ")
    assert refused.value.fields == [field]
    assert why in str(refused.value)
    if field:
        assert f"field {field}: " in str(refused.value)


def test_the_brief_s_example_message() -> None:
    meta = _shipped("din-fp32")
    meta["limits"]["inputs"]["history_items"]["max_shape"] = "256x1024"
    with pytest.raises(MetaError, match=r"^model 'din-fp32' version 1: meta.json field "
                                        r"limits.inputs.history_items.max_shape: Input should be a valid array"):
        validate_meta(meta, model="din-fp32", version="1")


def test_schema_versions() -> None:
    meta = _shipped("din-fp32")
    assert validate_meta({**meta, "schema_version": SCHEMA_VERSION}, model="d", version=1).schema_version == 1
    with pytest.raises(MetaError, match=r"^model 'd' version 4: meta.json field schema_version: 2 is newer than "
                                        r"this infersuite reads \(up to 1\)") as refused:
        validate_meta({**meta, "schema_version": 2, "vocabulary": "renamed in version 2"}, model="d", version=4)
    assert refused.value.fields == ["schema_version"]  # the version alone, not the fields it changed
    for wrong in (0, "1", 1.0, True):
        with pytest.raises(MetaError, match="is not a schema version"):
            validate_meta({"schema_version": wrong}, model="d", version=1)


def test_plain_and_plugin_models_need_no_family_fields_and_keep_their_own_keys() -> None:
    assert type(validate_meta({}, model="user-mlp", version=1)) is ModelMeta
    plugin = validate_meta({"family": "fifth", "recipe": "fp32", "fifth": {"anything": [1, 2]}}, model="p", version=1)
    assert type(plugin) is ModelMeta and plugin.extra_fields() == {"fifth": {"anything": [1, 2]}}
    # family blocks take unknown keys (forward-compatible); the runtime's blocks refuse them
    din = _shipped("din-fp32")
    din["vocabulary"]["n_brands"] = 7
    typed = validate_meta(din, model="d", version=1)
    assert isinstance(typed, CtrMeta) and typed.vocabulary.model_extra == {"n_brands": 7}


def test_what_json_would_not_write_is_refused() -> None:
    with pytest.raises(MetaError, match=r"meta.json is not JSON data"):
        validate_meta({"parity_max_abs_diff": float("nan")}, model="m", version=2)
    with pytest.raises(MetaError, match=r'field quality: Input should be an object \(got "0.7"\), or Input should '
                                        r'be a valid array'):
        validate_meta({"quality": "0.7"}, model="m", version=2)


def test_several_problems_are_listed_up_to_five() -> None:
    meta = {"size_bytes": -1, "onnx_opset": 0, "recipe": 3, "model_sha256": "ABC", "torch_version": 2,
            "parity_max_abs_diff": -1.0, "kernels": 1}
    with pytest.raises(MetaError, match=r"\(and 2 more\)$") as refused:
        validate_meta(meta, model="m", version=1)
    assert sorted(refused.value.fields) == sorted(meta)


def test_the_schema_imports_neither_grpc_nor_torch_nor_onnxruntime() -> None:
    probe = ("import sys, infersuite.modelmeta; print(sorted(m for m in ('grpc', 'torch', 'onnxruntime', "
             "'infersuite.services') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
