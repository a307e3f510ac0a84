"""The quantization gate on an ECO-M2F trained on a user's labelled images (exporters/segmentation_user_quant.py,
`python -m models.segmentation.user_data export`): a tiny data set from the module's own example writer (mixed
sizes, outlines under the ignore index 250), a training of seconds, then the gate with a passing recipe (fp16),
a recipe its toolchain refuses (int8-dynamic on the conv-heavy backbone) and one that must fail (a test recipe
that negates the head's logits): every verdict recorded, only the passing recipe exported, the served figures
(masks at each image's own size, ignored pixels left out), and an unfinished checkpoint refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from exporters.quantize import report as quant_report
from exporters.quantize.schemes import RecipeOutput
from exporters.segmentation_user_quant import (
    SOURCE,
    UnfinishedTraining,
    UserSegmentationQuantization,
    remove_variants,
    render_gate,
    require_finished,
    verdict,
)
from infersuite.services.segmentation.imaging import to_model_input
from models.segmentation.eco_m2f import EcoM2FConfig
from models.segmentation.train import TrainConfig, load_checkpoint, run
from models.segmentation.user_data import (
    LabelMapConfig,
    export_user_model,
    main,
    read_image,
    scan_label_maps,
    write_example,
)
from models.segmentation.user_report import write_report

SIZE = 32
IGNORE = 250
TINY = EcoM2FConfig(n_layers=3, d_model=32, n_heads=2, ffn_dim=64, widths=(16, 24, 32), head_dim=16, gate_hidden=16)
EPOCHS = 10
NEGATED = "test-negated-head"
RECIPES = ["fp16", "int8-dynamic", NEGATED]
STAGES = ["segmentation-backbone", "segmentation-encoder1", "segmentation-encoder2", "segmentation-encoder3",
          "segmentation-head", "segmentation-gate"]


def _negated_head(src: Path, dst: Path, family: Any, graph: str) -> RecipeOutput:
    """A recipe that must fail the gate: every stage as it is, but the head answers with -logits (each
    pixel's argmax becomes its least likely class)."""
    model = onnx.load(str(src))
    if graph == "segmentation-head":
        out = model.graph.output[0].name
        for node in model.graph.node:
            for i, name in enumerate(node.output):
                if name == out:
                    node.output[i] = f"{out}_raw"
        model.graph.node.append(onnx.helper.make_node("Neg", [f"{out}_raw"], [out]))
    onnx.save(model, str(dst))
    return RecipeOutput(dst, ["test recipe: the head's logits negated"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example writer's scenes with the ignore index moved to 250, trained for a few seconds, reported."""
    root = tmp_path_factory.mktemp("seg-user-quant")
    data = write_example(root / "data", n_images=60)
    for path in (data / "annotations").iterdir():
        labels = np.asarray(Image.open(path))
        Image.fromarray(np.where(labels == 255, IGNORE, labels).astype(np.uint8)).save(path)
    (data / "classes.txt").write_text((data / "classes.txt").read_text().replace("ignore_index: 255",
                                                                                 f"ignore_index: {IGNORE}"))
    model, _ = run(LabelMapConfig(str(data), image_size=SIZE), TINY,
                   TrainConfig(epochs=EPOCHS, batch_size=8, lr=1e-2, gate_epochs=10), beta=0.01, out=root / "out",
                   progress=False)
    write_report(model, root / "out" / "eco_m2f.pt", root / "out" / "quality.md")
    return root


@pytest.fixture(scope="module")
def gated(trained: Path) -> dict[str, Any]:
    """`export_user_model` with the gate on fp16, int8-dynamic and the negated-head recipe."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(quant_report.ALL_RECIPES, NEGATED, _negated_head)
        result = export_user_model(trained / "out" / "eco_m2f.pt", trained / "repo", recipes=RECIPES)
    assert result is not None
    return result


def _meta(repository: Path, model: str) -> dict[str, Any]:
    return json.loads((repository / model / "1" / "meta.json").read_text())


def test_every_recipe_gets_a_verdict_and_only_the_passing_one_is_exported(trained: Path, gated: dict) -> None:
    repo = trained / "repo"
    by_recipe = {v["recipe"]: v for v in gated["recipes"]}
    assert list(by_recipe) == RECIPES
    assert by_recipe["int8-dynamic"]["verdict"] == "refused" and "conv-heavy" in by_recipe["int8-dynamic"]["reason"]
    assert gated["fp32"]["pixel_accuracy"] > 0.5  # a model that learnt something: -logits must cost it
    negated = by_recipe[NEGATED]
    assert negated["verdict"] == "failed" and negated["relative_miou_loss"] > 0.01
    assert negated["test_miou"] < gated["fp32"]["miou"]
    assert "over the 1.0% tolerance" in negated["reason"] and "exported" not in negated
    fp16 = by_recipe["fp16"]
    assert fp16["verdict"] == "passed" and abs(fp16["relative_miou_loss"]) <= 0.01
    assert fp16["exported"] == [f"{stage}-fp16" for stage in STAGES]
    written = sorted(p.name for p in repo.iterdir() if p.is_dir())
    assert written == sorted([*(f"{s}-fp32" for s in STAGES), *(f"{s}-fp16" for s in STAGES)])
    assert not any(NEGATED in name or "int8-dynamic" in name for name in written)


def test_the_exported_recipe_is_a_servable_pipeline_with_its_manifest(trained: Path, gated: dict) -> None:
    repo = trained / "repo"
    meta = _meta(repo, "segmentation-backbone-fp16")
    assert meta["pipeline"]["stages"] == {"backbone": "segmentation-backbone-fp16", "head": "segmentation-head-fp16",
                                          "encoder_layers": [f"segmentation-encoder{k}-fp16" for k in (1, 2, 3)],
                                          "gate": "segmentation-gate-fp16"}
    assert meta["pipeline"]["ignore_index"] == IGNORE and meta["pipeline"]["image_size"] == SIZE
    assert meta["quality_gate"] == "passed" and meta["source_model"] == SOURCE
    assert meta["quality"]["test_miou"] == pytest.approx(gated["recipes"][0]["test_miou"])
    for model in [*(f"{s}-fp32" for s in STAGES), *(f"{s}-fp16" for s in STAGES)]:
        manifest = json.loads((repo / model / "manifest.json").read_text())
        assert manifest["model"] == model and manifest["built_by"].startswith("python -m models.segmentation")
        onnx_sha = hashlib.sha256((repo / model / "1" / "model.onnx").read_bytes()).hexdigest()
        assert manifest["files"]["1/model.onnx"] == onnx_sha
        assert manifest["files"]["1/meta.json"] == hashlib.sha256(
            (repo / model / "1" / "meta.json").read_bytes()).hexdigest()  # written after the verdicts
    aliases = json.loads((repo / "aliases.json").read_text())
    default = gated["default"].removeprefix("segmentation-backbone-")
    assert aliases == {stage: f"{stage}-{default}" for stage in STAGES}
    assert gated["serve"] == f"INFERSUITE_SEGMENTATION_BACKBONE_MODEL=segmentation-backbone-{default}"


def test_every_verdict_is_in_the_fp32_meta_and_the_user_report(trained: Path, gated: dict) -> None:
    recorded = _meta(trained / "repo", SOURCE)["quantization_gate"]
    assert recorded["recipes"] == json.loads(json.dumps(gated["recipes"]))
    assert recorded["tolerance_relative_miou_loss"] == 0.01 and "fp32" not in recorded
    report = (trained / "out" / "quality.md").read_text()
    assert report.count("## Quantization gate") == 1 and report.index("## Test split") < report.index(
        "## Quantization gate")
    for recipe in RECIPES:
        assert f"| {recipe} |" in report
    assert f"- {NEGATED}: test mIoU" in report and "- int8-dynamic: conv-heavy graph" in report
    assert "| fp16 |" in report and "segmentation-backbone-fp16 (+ 5 stages)" in report
    figures = json.loads((trained / "out" / "quality.figures.json").read_text())
    assert figures["quantization_gate"]["default"] == gated["default"]


def test_the_gate_scores_the_served_answer_on_the_test_split_with_ignored_pixels_left_out(
        trained: Path, gated: dict) -> None:
    """The gate's fp32 figures are the report's (torch behind the service's resize, masks at each image's
    own size, the ignore index 250 left out) up to onnxruntime's float differences."""
    figures = json.loads((trained / "out" / "quality.figures.json").read_text())
    assert figures["ignored_pixels"] > 0 and gated["fp32"]["images"] == figures["images"] == gated["test_images"]
    assert gated["fp32"]["miou"] == pytest.approx(figures["miou"], abs=0.005)
    assert gated["fp32"]["pixel_accuracy"] == pytest.approx(figures["pixel_accuracy"], abs=0.005)
    assert gated["fp32"]["mean_layers"] == pytest.approx(figures["mean_layers"], abs=0.5)


def test_calibration_is_the_validation_split_as_the_service_resizes_it(trained: Path, gated: dict) -> None:
    family = UserSegmentationQuantization(trained / "repo", trained / "out" / "eco_m2f.pt")
    scan = scan_label_maps(family.data_cfg)
    batches = family.calibration("segmentation-backbone", 16)
    plan = family.calibration_plan()
    assert plan == gated["calibration"] and plan["validation_images"] == len(scan.pairs["valid"]) >= 1
    assert len(batches) == plan["batches"] >= 1 and batches[0]["image"].shape == (plan["batch"], 3, SIZE, SIZE)
    want = np.concatenate([to_model_input(read_image(image, family.data_cfg), SIZE)
                           for image, _ in scan.pairs["valid"][:plan["batch"]]])
    np.testing.assert_array_equal(batches[0]["image"], want)
    tokens = family.calibration("segmentation-encoder2", 16)[0]["tokens"]  # what the fp32 layer 1 gives it
    assert tokens.shape[0] == plan["batch"] and tokens.shape[2] == TINY.d_model
    assert not set(scan.pairs["valid"]) & set(scan.pairs["test"])


def _unfinished(trained: Path, tmp_path: Path, change: str) -> Path:
    checkpoint = torch.load(trained / "out" / "eco_m2f.pt", map_location="cpu", weights_only=True)
    if change == "stopped":
        checkpoint["metrics"]["valid_miou_full_depth_curve"] = checkpoint["metrics"]["valid_miou_full_depth_curve"][:1]
    else:
        del checkpoint["metrics"]["test"], checkpoint["metrics"]["wall_seconds"]
    path = tmp_path / "eco_m2f.pt"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize(("change", "message"), [
    ("stopped", f"training stopped after 1 of its {EPOCHS} epochs"),
    ("no-test", "the checkpoint lacks test, wall_seconds"),
])
def test_an_unfinished_checkpoint_is_refused_before_anything_is_written(
        trained: Path, tmp_path: Path, change: str, message: str) -> None:
    checkpoint = _unfinished(trained, tmp_path, change)
    with pytest.raises(UnfinishedTraining, match=message):
        export_user_model(checkpoint, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
    with pytest.raises(SystemExit) as stopped:  # the CLI: one error line
        main(["export", str(checkpoint), "--repository", str(tmp_path / "repo")])
    assert str(stopped.value).startswith("error: ") and message in str(stopped.value)
    assert not (tmp_path / "repo").exists()


def test_require_finished_on_the_checkpoint_fields() -> None:
    finished: dict[str, Any] = {"scene_config": {"source": "label_maps"},
                "metrics": {"valid_miou_full_depth_curve": [0.3, 0.4], "train_config": {"epochs": 2}, "beta": 0.01,
                            "stage_gflops": {}, "test": [], "wall_seconds": 3.0}}
    require_finished(finished)
    with pytest.raises(UnfinishedTraining, match="ran no epoch"):
        require_finished({**finished, "metrics": {**finished["metrics"], "valid_miou_full_depth_curve": []}})
    with pytest.raises(UnfinishedTraining, match="synthetic scenes"):
        require_finished({**finished, "scene_config": {"seed": 0}})
    with pytest.raises(UnfinishedTraining, match="lacks valid_miou_full_depth_curve, train_config, beta, "
                                                 "stage_gflops, test, wall_seconds"):
        require_finished({"metrics": {}})


def test_no_quantize_exports_fp32_only_and_clears_the_previous_runs_recipes(
        trained: Path, gated: dict, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(trained / "repo", repo)  # holds the gated run's fp16 stages and verdicts
    report = tmp_path / "quality.md"
    shutil.copyfile(trained / "out" / "quality.md", report)
    assert export_user_model(trained / "out" / "eco_m2f.pt", repo, quantize=False, report=report) is None
    assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == sorted(f"{s}-fp32" for s in STAGES)
    assert "quantization_gate" not in _meta(repo, SOURCE)
    assert json.loads((repo / "aliases.json").read_text()) == {stage: f"{stage}-fp32" for stage in STAGES}
    text = report.read_text()
    assert text.count("## Quantization gate") == 1 and "Not run: --no-quantize" in text and "| fp16 |" not in text
    model, _ = load_checkpoint(trained / "out" / "eco_m2f.pt")
    assert _meta(repo, SOURCE)["pipeline"]["n_layers"] == model.config.n_layers


def test_remove_variants_takes_only_recipes_of_the_fp32_stages(tmp_path: Path) -> None:
    for model, source in (("segmentation-backbone-fp32", None), ("segmentation-head-int8-static-minmax",
                                                                 "segmentation-head-fp32"),
                          ("segmentation-encoder1-fp16", "segmentation-encoder1-fp32"), ("din-fp16", "din-fp32")):
        (tmp_path / model / "1").mkdir(parents=True)
        (tmp_path / model / "1" / "meta.json").write_text(json.dumps({"source_model": source}))
    assert remove_variants(tmp_path) == ["segmentation-encoder1-fp16", "segmentation-head-int8-static-minmax"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["din-fp16", "segmentation-backbone-fp32"]


def test_verdicts_and_their_rendering() -> None:
    fp32 = {"miou": 0.50, "pixel_accuracy": 0.90, "mean_layers": 2.5, "images": 6}
    base = {"status": "ok", "notes": [], "speedup": {"1": 1.0, "32": 1.1}, "size_ratio": 2.0}
    near = verdict({**base, "recipe": "near", "quality": 0.496, "relative_loss": 0.008, "passed": True}, fp32,
                   {"miou": 0.496, "pixel_accuracy": 0.89, "mean_layers": 2.5}, 0.01)
    far = verdict({**base, "recipe": "far", "quality": 0.49, "relative_loss": 0.02, "passed": False}, fp32,
                  {"miou": 0.49, "pixel_accuracy": 0.88, "mean_layers": 2.0}, 0.01)
    refused = verdict({"recipe": "int8-qat", "status": "refused", "notes": ["no QAT loop", "no QAT loop"]}, fp32,
                      None, 0.01)
    assert near["verdict"] == "passed" and near["miou_difference"] == pytest.approx(-0.004)
    assert far["reason"] == "test mIoU 0.4900 vs fp32 0.5000: relative loss 2.00% over the 1.0% tolerance"
    assert refused == {"recipe": "int8-qat", "tolerance_relative_miou_loss": 0.01, "verdict": "refused",
                       "reason": "no QAT loop"}
    text = render_gate({"tolerance_relative_miou_loss": 0.01, "fp32": fp32, "default": "segmentation-backbone-fp32",
                        "serve": "INFERSUITE_SEGMENTATION_BACKBONE_MODEL=segmentation-backbone-fp32",
                        "calibration": {"validation_images": 3, "batch": 3, "batches": 1}, "test_images": 6,
                        "recipes": [{**near, "exported": ["segmentation-backbone-near", "segmentation-head-near"]},
                                    far, refused]})
    assert "| near | 49.60 | -0.40 | 89.00 | 2.50 | +0.80% (<= 1.0%) | 1.10x | passed | " \
           "segmentation-backbone-near (+ 1 stages) |" in text
    assert "| far | 49.00 | -1.00 | 88.00 | 2.00 | +2.00% (<= 1.0%) | 1.10x | failed | no |" in text
    assert "| int8-qat | | | | | | | refused | no |" in text and "- int8-qat: no QAT loop" in text
    assert render_gate(None, "--no-quantize").endswith("Not run: --no-quantize.\n")
