"""`python -m exporters.ship ship --families X` replaces one family's shipped models and keeps the rest."""

from __future__ import annotations

import json
from pathlib import Path

from exporters.ship import MANIFEST, SUMMARY, ship, ship_families


def _model(repository: Path, name: str, family: str, payload: bytes) -> None:
    version = repository / name / "1"
    version.mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(f'name: "{name}"\n')
    (version / "model.onnx").write_bytes(payload)
    (version / "meta.json").write_text(json.dumps({"family": family, "recipe": "fp32", "quality": {"miou": 0.5}}))


def test_shipping_one_family_replaces_its_models_and_keeps_the_others(tmp_path: Path) -> None:
    first, second, shipped = tmp_path / "first", tmp_path / "second", tmp_path / "shipped"
    _model(first, "din-fp32", "ctr", b"din")
    _model(first, "segmentation-head-fp32", "segmentation", b"old head")
    _model(first, "segmentation-encoder9-fp32", "segmentation", b"a stage the new build lacks")
    (first / "aliases.json").write_text(json.dumps({"din": "din-fp32"}))
    ship(first, shipped, {"built_by": "full build", "code_revision": "r1", "shipped_by": "ship"})
    din_manifest = (shipped / "din-fp32" / MANIFEST).read_text()

    _model(second, "segmentation-head-fp32", "segmentation", b"new head")
    _model(second, "din-fp32", "ctr", b"a din that must not ship")
    summary = ship_families(second, shipped, ["segmentation"],
                            {"built_by": "seg build", "code_revision": "r2", "shipped_by": "ship --families"})

    assert (shipped / "segmentation-head-fp32" / "1" / "model.onnx").read_bytes() == b"new head"
    assert not (shipped / "segmentation-encoder9-fp32").exists()
    assert (shipped / "din-fp32" / "1" / "model.onnx").read_bytes() == b"din"
    assert (shipped / "din-fp32" / MANIFEST).read_text() == din_manifest
    assert json.loads((shipped / "aliases.json").read_text()) == {"din": "din-fp32"}
    assert summary["models"] == ["din-fp32", "segmentation-head-fp32"]
    assert json.loads((shipped / SUMMARY).read_text())["updates"][-1]["families"] == ["segmentation"]
    head = json.loads((shipped / "segmentation-head-fp32" / MANIFEST).read_text())
    assert head["code_revision"] == "r2" and head["size_bytes"] > len(b"new head")
    again = ship_families(second, shipped, ["segmentation"],
                          {"built_by": "seg build 2", "code_revision": "r3", "shipped_by": "ship --families"})
    assert [u["code_revision"] for u in again["updates"]] == ["r3"]  # a later update supersedes the earlier one


def test_a_whole_reship_keeps_the_model_built_elsewhere_unless_told(tmp_path: Path) -> None:
    """`make ship-models` builds the synthetic-world PaSST; the shipped corpus-pretrained one (its manifest
    records the checkpoint it came from) stays, with its SHIPPED.json update, unless --replace-built-elsewhere."""
    first, build, shipped = tmp_path / "first", tmp_path / "build", tmp_path / "shipped"
    _model(first, "din-fp32", "ctr", b"din")
    _model(first, "audio-passt-fp32", "audio", b"pretrained passt")
    ship(first, shipped, {"built_by": "full build", "code_revision": "r1", "shipped_by": "ship"})
    manifest_path = shipped / "audio-passt-fp32" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "source_checkpoint": {"sha256": "cc591c6d"}}))
    summary_path = shipped / SUMMARY
    update = {"families": ["audio"], "models": ["audio-passt-fp32"], "built_by": "pretrain", "code_revision": "r2",
              "shipped_by": "ship-audio-pretrained"}
    summary_path.write_text(json.dumps({**json.loads(summary_path.read_text()), "updates": [update]}))

    _model(build, "din-fp32", "ctr", b"new din")
    _model(build, "audio-passt-fp32", "audio", b"synthetic-world passt")
    summary = ship(build, shipped, {"built_by": "full build", "code_revision": "r3", "shipped_by": "ship"})
    assert (shipped / "din-fp32" / "1" / "model.onnx").read_bytes() == b"new din"
    assert (shipped / "audio-passt-fp32" / "1" / "model.onnx").read_bytes() == b"pretrained passt"
    assert "source_checkpoint" in json.loads(manifest_path.read_text())
    assert summary["models"] == ["audio-passt-fp32", "din-fp32"] and summary["updates"] == [update]
    assert summary["size_bytes"] == sum(json.loads((shipped / name / MANIFEST).read_text())["size_bytes"]
                                        for name in ("din-fp32", "audio-passt-fp32"))

    summary = ship(build, shipped, {"built_by": "full build", "code_revision": "r4", "shipped_by": "ship"},
                   replace_built_elsewhere=True)
    assert (shipped / "audio-passt-fp32" / "1" / "model.onnx").read_bytes() == b"synthetic-world passt"
    assert "updates" not in summary
