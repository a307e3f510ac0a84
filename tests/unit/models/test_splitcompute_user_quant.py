"""The quantization gate on an Entropic Student trained on a user's image folder
(exporters/splitcompute_user_quant.py through models/splitcompute/user_data.py): a tiny folder, a tiny
training (seconds), the gate's verdict in both meta.json files and the report, and runs that did not
finish refused before anything is written."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from exporters import families, splitcompute_user_quant
from exporters.splitcompute_user_quant import ENCODER, SERVER, UnfinishedTraining, require_finished
from models.splitcompute.data import to_float
from models.splitcompute.train import TrainConfig, load_student, quantize, run, single_thread
from models.splitcompute.user_data import ImageFolderConfig, export_trained, load_image_folder, main

COLOURS = {"blue": (30, 60, 220), "green": (40, 200, 60), "red": (220, 40, 40)}
SIZE = 32


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 12 photos of any size and aspect (PNG and JPEG): a colour patch on a grey ground."""
    root = tmp_path_factory.mktemp("sc-quant-images")
    rng = np.random.default_rng(5)
    for name, colour in COLOURS.items():
        (root / name).mkdir()
        for i in range(12):
            w, h = (int(v) for v in rng.integers(24, 90, 2))
            pixels = np.full((h, w, 3), rng.integers(60, 200), np.float64)
            pixels[h // 5:h - h // 5, w // 5:w - w // 5] = colour
            pixels += rng.normal(0, 12, pixels.shape)
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            image.save(root / name / f"{i:03d}.{'jpg' if i % 2 else 'png'}")
    return root


@pytest.fixture(scope="module")
def trained(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run (teacher, one beta, summary.json) on the folder: a few seconds."""
    out = tmp_path_factory.mktemp("sc-quant-run") / "run"
    cfg = TrainConfig(teacher_epochs=2, stage1_epochs=1, stage2_epochs=1, batch_size=8, betas=(0.04,))
    run(out, ImageFolderConfig(str(folder), SIZE), cfg, log=False)
    return out


@pytest.fixture(scope="module")
def exported(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    work = tmp_path_factory.mktemp("sc-quant-export")
    report = work / "quality.md"
    report.write_text("# Split computing on your images\n\n## The claim\n\ntext\n")
    result = export_trained(trained, work / "repo", "pytest export", report=report)
    return work / "repo", report, result


def _copy_run(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def test_the_default_family_has_no_recipes_so_none_runs_on_a_users_model(tmp_path: Path) -> None:
    # The quantization report's own view of the family: not measured, for want of quant_families.
    _, not_measured = families.quant_families(tmp_path / "repo", tmp_path / "artifacts")
    assert not_measured["splitcompute"] == "exporters/splitcompute.py defines no quant_families()", (
        "the default split computing family is quantized now: exporters/splitcompute_user_quant.py must run "
        "the same recipes on a user's model")
    assert splitcompute_user_quant.default_recipes() == []


def test_the_gate_records_its_verdict_in_both_models_and_exports_fp32_only(exported, trained: Path) -> None:
    repo, _, result = exported
    gate = result["quantization_gate"]
    assert gate["recipes"] == [] and gate["default"] == SERVER and "quant_families" in gate["not_run"]
    # only the fp32 pair is written: no quantized model, no alias pointing anywhere else
    assert sorted(p.name for p in repo.iterdir()) == [ENCODER, SERVER]
    for model in (ENCODER, SERVER):
        meta = json.loads((repo / model / "1" / "meta.json").read_text())
        assert meta["recipe"] == "fp32" and meta["quantization_gate"] == json.loads(json.dumps(gate))
        manifest = json.loads((repo / model / "manifest.json").read_text())
        assert manifest["built_by"] == "pytest export" and manifest["recipe"] == "fp32"
        for name, digest in manifest["files"].items():  # the hashes are of the files as finally written
            assert hashlib.sha256((repo / model / name).read_bytes()).hexdigest() == digest, name
    assert result["checkpoint"] == str(trained / json.loads((trained / "summary.json").read_text())["default"])


def test_the_served_path_accuracy_is_the_trained_pipelines(exported, trained: Path, folder: Path) -> None:
    """fp32's figure in the verdict is measured through the exported graphs and the codec on the user's
    test split: it must be the torch pipeline's accuracy on the same images."""
    _, _, result = exported
    fp32 = result["quantization_gate"]["fp32"]
    data = load_image_folder(ImageFolderConfig(str(folder), SIZE))
    images, labels = data.split("test")
    student, ckpt = load_student(Path(result["checkpoint"]))
    with torch.no_grad(), single_thread():
        latent = quantize(student.encoder(torch.from_numpy(to_float(images))), ckpt["metrics"]["support_radius"])
        predicted = student.tail(student.decoder(latent)).argmax(dim=1).numpy()
    assert fp32["test_images"] == len(labels) == 6  # 15% of 12 per class, rounded: 2 x 3 classes
    assert fp32["test_accuracy"] == pytest.approx(float((predicted == labels).mean()), abs=1 / len(labels))
    assert fp32["torch_test_accuracy"] == ckpt["metrics"]["test_accuracy"]
    # a frame: the 17-byte header and at least one body byte per image
    assert fp32["mean_frame_bytes"] > 17


def test_the_report_gets_the_gate_section_once(exported, trained: Path, tmp_path: Path) -> None:
    _, report, result = exported
    text = report.read_text()
    assert text.startswith("# Split computing on your images\n\n## The claim\n\ntext\n")
    assert text.count("## Quantization gate") == 1 and "No recipe ran:" in text
    fp32 = result["quantization_gate"]["fp32"]
    assert f"| {ENCODER} + {SERVER} | fp32 | {fp32['test_accuracy']:.4f} |" in text
    # a second export into the same report replaces the section: the --no-quantize one says so
    export_trained(trained, tmp_path / "repo", "pytest again", quantize=False, report=report)
    again = report.read_text()
    assert again.count("## Quantization gate") == 1 and "Not run: --no-quantize." in again
    assert "No recipe ran:" not in again and again.startswith("# Split computing on your images\n\n## The claim")
    meta = json.loads((tmp_path / "repo" / SERVER / "1" / "meta.json").read_text())
    assert "quantization_gate" not in meta and (tmp_path / "repo" / SERVER / "manifest.json").is_file()
    fresh = tmp_path / "reports" / "new.md"  # no report yet: the section alone
    splitcompute_user_quant.write_gate_section(fresh, splitcompute_user_quant.render_gate(None, "--no-quantize"))
    assert fresh.read_text() == "## Quantization gate\n\nNot run: --no-quantize.\n"


def test_a_run_stopped_before_its_summary_is_refused_and_nothing_written(trained: Path, tmp_path: Path) -> None:
    run_dir = _copy_run(trained, tmp_path)
    (run_dir / "summary.json").unlink()  # stopped after the students, before the summary
    with pytest.raises(UnfinishedTraining, match=r"has no summary\.json"):
        export_trained(run_dir, tmp_path / "repo", "pytest")
    assert not (tmp_path / "repo").exists()
    with pytest.raises(SystemExit, match=r"^error: training did not finish: .* has no summary\.json"):
        main(["export", str(run_dir), "--repository", str(tmp_path / "repo"), "--no-quantize"])
    assert not (tmp_path / "repo").exists()  # --no-quantize skips the gate, not the refusal


def test_a_later_run_stopped_in_the_same_folder_is_refused(trained: Path, tmp_path: Path) -> None:
    run_dir = _copy_run(trained, tmp_path)
    teacher = torch.load(run_dir / "teacher.pt", map_location="cpu", weights_only=True)
    teacher["metrics"]["test_accuracy"] = -1.0  # a new teacher.pt, the old summary.json still there
    torch.save(teacher, run_dir / "teacher.pt")
    with pytest.raises(UnfinishedTraining, match=r"teacher\.pt in .* is not what summary\.json records"):
        require_finished(run_dir)
    run_dir = _copy_run(trained, tmp_path / "second")
    default = json.loads((run_dir / "summary.json").read_text())["default"]
    student = torch.load(run_dir / default, map_location="cpu", weights_only=True)
    student["metrics"]["train_seconds"] += 1.0  # the same beta retrained by the stopped run
    torch.save(student, run_dir / default)
    with pytest.raises(UnfinishedTraining, match=rf"{re.escape(default)} in .* is not what summary\.json records"):
        export_trained(run_dir, tmp_path / "repo", "pytest")
    assert not (tmp_path / "repo").exists()


def test_a_checkpoint_without_a_finished_students_figures_is_refused(trained: Path, tmp_path: Path) -> None:
    run_dir = _copy_run(trained, tmp_path)
    default = json.loads((run_dir / "summary.json").read_text())["default"]
    student = torch.load(run_dir / default, map_location="cpu", weights_only=True)
    for key in ("test_accuracy", "valid_accuracy"):
        del student["metrics"][key]
    torch.save(student, run_dir / default)
    with pytest.raises(UnfinishedTraining, match="lacks valid_accuracy, test_accuracy"):
        require_finished(run_dir)
    (run_dir / default).write_bytes((run_dir / default).read_bytes()[:100])  # killed while saving
    with pytest.raises(UnfinishedTraining, match="not a readable checkpoint"):
        require_finished(run_dir)
    (run_dir / default).unlink()
    with pytest.raises(UnfinishedTraining, match="the file is missing"):
        require_finished(run_dir)


def test_the_gate_refuses_to_diverge_once_the_defaults_are_quantized(trained: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from exporters import splitcompute

    monkeypatch.setattr(splitcompute, "quant_families", lambda repository, artifacts: [], raising=False)
    with pytest.raises(NotImplementedError, match="must run the same recipes"):
        export_trained(trained, tmp_path / "repo", "pytest")
    assert not (tmp_path / "repo").exists()  # refused before the export
    result = export_trained(trained, tmp_path / "repo", "pytest", quantize=False)  # fp32 alone is still the defaults'
    assert result["quantization_gate"] is None and (tmp_path / "repo" / SERVER / "1" / "model.onnx").is_file()
