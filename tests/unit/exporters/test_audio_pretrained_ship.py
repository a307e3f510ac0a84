"""Shipping the corpus-pretrained PaSST (exporters/audio_pretrained.py): the export records the held-out
figures of its pretraining run in meta.json, a checkpoint with another front end is refused, and shipping
replaces only audio-passt-fp32 (bag-of-words byte for byte as it was) with a manifest that matches its files
and a SHIPPED.json update naming the seed and the checkpoint."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from exporters import audio_pretrained, ship
from exporters.ship import MANIFEST, SUMMARY, quality_figures, sha256
from models.audio import pretrain
from models.audio.frontend import FrontEndConfig
from models.audio.passt import Passt, PasstConfig

SHIPPED = Path(__file__).resolve().parents[3] / "shipped_models"
HELD_OUT = {"tasks": {
    "word_unseen_voice": {"embedders": {audio_pretrained.PRETRAINED: {"accuracy": 0.8, "interval_95": [0.76, 0.83]},
                                        "log-mel statistics (nothing learned)": {"accuracy": 0.6}}},
    "voice_unseen_word": {"embedders": {audio_pretrained.PRETRAINED: {"accuracy": 0.7, "interval_95": [0.65, 0.74]}}},
}}


def _checkpoint(root: Path, seed: int = 3) -> Path:
    torch.manual_seed(seed)
    model = Passt(PasstConfig(dim=16, depth=1, heads=2)).eval()
    metrics = {"pretrain_config": asdict(pretrain.PretrainConfig(epochs=2, seed=seed)), "clips": 12, "steps": 4,
               "train_seconds": 1.5, "history": [{"epoch": 1, "mean_loss": 3.0}, {"epoch": 2, "mean_loss": 2.5}]}
    path = pretrain.save(root / "pretrain.pt", model, pretrain.MultiTaskHeads(32, {"word": ["a", "b"]}),
                         {"word": ["a", "b"]}, metrics)
    (root / "quality.json").write_text(json.dumps(HELD_OUT))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pretrained")
    checkpoint = _checkpoint(root)
    audio_pretrained.export(checkpoint, root / "repo")
    return checkpoint, root / "repo"


@pytest.mark.slow  # a torch export of a few seconds: not in `make test-fast`
def test_the_export_records_the_pretraining_and_its_held_out_figures(exported) -> None:
    checkpoint, repository = exported
    meta = json.loads((repository / "audio-passt-fp32" / "1" / "meta.json").read_text())
    assert meta["source_checkpoint_sha256"] == sha256(checkpoint)
    assert meta["parity_max_abs_diff"] <= 1e-4 and meta["sample_rate"] == meta["window_samples"] == 32000
    figures = quality_figures(meta["quality"])
    assert figures["heldout_word_unseen_voice_accuracy"] == 0.8 and figures["heldout_voice_unseen_word_accuracy"] == 0.7
    assert meta["quality"]["heldout_word_unseen_voice_interval_95"] == [0.76, 0.83]
    assert figures["pretrain_seed"] == 3 and figures["last_loss"] == 2.5
    assert "heldout_log-mel" not in json.dumps(meta["quality"])  # only the pretrained embedder's figures


def test_a_checkpoint_with_another_front_end_is_refused(tmp_path) -> None:
    other = asdict(replace(FrontEndConfig(), sample_rate=16000, window_samples=16000))
    torch.save({"kind": "Passt", "config": {"front_end": other, "passt": {}},
                "metrics": {"pretrain_config": {}}}, tmp_path / "pretrain.pt")
    with pytest.raises(SystemExit, match="not the shipped one"):
        audio_pretrained.checked_checkpoint(tmp_path / "pretrain.pt")


@pytest.mark.slow  # needs the export above
def test_shipping_replaces_only_the_passt_and_records_how(exported, tmp_path) -> None:
    _, repository = exported
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for name in ("audio-bow-fp32", "audio-passt-fp32", SUMMARY):
        (shutil.copytree if name != SUMMARY else shutil.copyfile)(SHIPPED / name, shipped / name)
    bow_before = {p.name: p.read_bytes() for p in (shipped / "audio-bow-fp32").rglob("*") if p.is_file()}
    summary = json.loads((shipped / SUMMARY).read_text())
    summary["models"] = ["audio-bow-fp32", "audio-passt-fp32"]
    (shipped / SUMMARY).write_text(json.dumps(summary))
    provenance = {"built_by": "make ship-audio-pretrained", "code_revision": "abc", "shipped_by": "python -m x",
                  "seeds": {"audio.PretrainConfig": 3}}
    after = audio_pretrained.ship_model(repository, shipped, provenance)
    assert {p.name: p.read_bytes() for p in (shipped / "audio-bow-fp32").rglob("*") if p.is_file()} == bow_before
    manifest = json.loads((shipped / "audio-passt-fp32" / MANIFEST).read_text())
    for name, digest in manifest["files"].items():
        assert sha256(shipped / "audio-passt-fp32" / name) == digest
    assert manifest["seeds"] == {"audio.PretrainConfig": 3}
    assert manifest["tolerances"]["heldout_word_unseen_voice_accuracy"] == {"abs": 0.03}
    sizes = [json.loads((shipped / n / MANIFEST).read_text())["size_bytes"] for n in after["models"]]
    assert after["size_bytes"] == sum(sizes) and after["updates"][-1]["models"] == ["audio-passt-fp32"]
    again = audio_pretrained.ship_model(repository, shipped, provenance)  # a re-ship supersedes, never piles up
    assert [u.get("models") for u in again["updates"]].count(["audio-passt-fp32"]) == 1


def _manifest(root: Path, model: str, **provenance) -> None:
    (root / model / "1").mkdir(parents=True)
    (root / model / MANIFEST).write_text(json.dumps({
        "model": model, "version": "1", "built_by": "make ship-audio-pretrained", **provenance,
        "quality": {"heldout_voice_unseen_word_accuracy": 0.7}, "tolerances": {"heldout_voice_unseen_word_accuracy":
                                                                                {"abs": 0.03}}}))


def test_exporters_build_verify_leaves_the_pretrained_passt_to_its_own_check_and_stays_strict_elsewhere(
        tmp_path, capsys) -> None:
    shipped, retrained = tmp_path / "shipped", tmp_path / "retrained"
    _manifest(shipped, "audio-passt-fp32", source_checkpoint="artifacts/x/pretrain.pt")
    retrained.mkdir()
    assert ship.verify(retrained, shipped)  # not compared with exporters.build's output, and said so
    assert "python -m exporters.audio_pretrained verify" in capsys.readouterr().out
    _manifest(shipped, "audio-bow-fp32")
    assert not ship.verify(retrained, shipped)  # a model exporters.build should have built is still missing
    shutil.rmtree(shipped)
    _manifest(shipped, "audio-passt-fp32")  # shipped by make ship-models: no source_checkpoint, compared as before
    assert not ship.verify(retrained, shipped)


def _ship(exported, tmp_path: Path) -> Path:
    checkpoint, repository = exported
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copyfile(SHIPPED / SUMMARY, shipped / SUMMARY)
    audio_pretrained.ship_model(repository, shipped, {
        "built_by": "test", "code_revision": "abc", "shipped_by": "test", "seeds": {"audio.PretrainConfig": 3},
        "source_checkpoint": str(checkpoint), "source_checkpoint_sha256": sha256(checkpoint)})
    return shipped


@pytest.mark.slow  # needs the export above, and exports again
def test_verify_re_exports_the_recorded_checkpoint_and_finds_a_graph_that_is_not_its_export(
        exported, tmp_path, capsys) -> None:
    shipped = _ship(exported, tmp_path)
    assert audio_pretrained.verify(shipped, tmp_path / "verify")
    out = capsys.readouterr().out
    assert "re-exporting the recorded checkpoint" in out and "OUT OF TOLERANCE" not in out
    other = tmp_path / "other"
    other.mkdir()
    audio_pretrained.export(_checkpoint(other, seed=4), other / "repo")
    shutil.copyfile(other / "repo" / "audio-passt-fp32" / "1" / "model.onnx", shipped / "audio-passt-fp32" / "1" /
                    "model.onnx")  # another seed's graph under the recorded checkpoint's manifest
    assert not audio_pretrained.verify(shipped, tmp_path / "verify-other")
    out = capsys.readouterr().out
    assert "NOT THE SHIPPED GRAPH" in out and "1/model.onnx: CHANGED since it was shipped" in out


@pytest.mark.slow  # needs the export above
def test_verify_refuses_a_missing_or_changed_checkpoint_and_names_the_pretraining(exported, tmp_path) -> None:
    shipped = _ship(exported, tmp_path)
    manifest_path = shipped / "audio-passt-fp32" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "source_checkpoint_sha256": "0" * 64}))
    with pytest.raises(SystemExit, match="is not the recorded checkpoint"):
        audio_pretrained.verify(shipped, tmp_path / "verify")
    manifest_path.write_text(json.dumps({**manifest, "source_checkpoint": str(tmp_path / "gone.pt")}))
    with pytest.raises(SystemExit, match="AUDIO_VERIFY=pretrain"):
        audio_pretrained.verify(shipped, tmp_path / "verify")
    args = audio_pretrained.recorded_pretraining(shipped / "audio-passt-fp32", Path("corpus"), Path("out"))
    assert args == ["--corpus", "corpus", "--out", "out", "--epochs", "2", "--seed", "3", "--pooling", "mean"]
