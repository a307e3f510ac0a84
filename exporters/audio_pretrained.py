"""`python -m exporters.audio_pretrained` (`make ship-audio-pretrained`): ships the PaSST pretrained on the
audio corpus (`models/audio/pretrain.py`, issue 25) as the default `audio-passt-fp32`.

    python -m exporters.audio_pretrained export --checkpoint artifacts/audio-pretrain/seed0-e40/pretrain.pt \
        --out artifacts/ship-audio/repository --quantization-report reports/audio_passt_quantization.md
    python -m exporters.audio_pretrained ship --checkpoint <the same> --out <the same> --quantization-report \
        <the same> --to shipped_models --built-by "make ship-audio-pretrained ..."

1. Export through `exporters.audio.export_embedder`, the exporter of the synthetic-world PaSST: the same
   graph (waveform (B, 32000) -> embedding (B, 128), log-mel front end inside), the same parity gate
   (torch vs ONNX within 1e-4 on synthetic windows and the edge windows: silence, 1e-30, 1e20, denormals),
   the same meta.json layout. The pretrained model has the shipped architecture and front end
   (`PasstConfig()`, `FrontEndConfig()`: 32 kHz, 1 s windows), so the service and the HEAR module take
   it unchanged; a checkpoint with another front end is refused here rather than the service adapted.
   Its meta.json `quality` holds the pretraining's summary and the held-out corpus figures of the run
   that produced the checkpoint (`quality.json` beside it) instead of synthetic-world figures.
2. The quantization gate `make quantize-report` applies (`exporters.quantize.report`, the deployable
   recipes, audio-passt only): each recipe's relative loss of the fp32-trained probes' mean accuracy on
   the windows of the audio corpus's four held-out tasks (exporters/audio_quality.py `CorpusBench`; the
   pretraining needs the corpus, so it is there; 1,000 held-out synthetic windows where it is not), 1%
   bound. Written to `--quantization-report`. `gate` runs this step alone on the shipped graph
   (`make report-audio-quantization`).
3. `ship` (after `make ship-audio-pretrained` ran hearvalidator on the export): only `audio-passt-fp32`
   goes into the shipped repository (bag-of-words stays as it was): its files, a manifest
   (`exporters.ship.model_manifest`) and an entry in SHIPPED.json's `updates` naming the checkpoint, its
   sha256, the pretraining seed and the commands.
4. `verify` (`make verify-models`, `make verify-audio-pretrained`): `exporters.build` does not build this
   model, so it is checked against the path that did. By default the recorded checkpoint (manifest
   `source_checkpoint`, refused unless its sha256 is the recorded one) is exported again and the new graph's
   embeddings must equal the shipped graph's within the parity bound, its figures the shipped ones within their
   tolerances (those figures are the recorded run's quality.json, re-read, not re-measured). With `--pretrain`
   the recorded pretraining (its seed, epochs and pooling) runs again with its held-out evaluation, and the
   re-measured figures must land within the tolerances (a retrained graph is not expected to equal the shipped one).

    python -m exporters.audio_pretrained verify --shipped shipped_models --out artifacts/verify/audio-pretrained \
        [--pretrain --corpus artifacts/audio-corpus]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from exporters.audio import PARITY_ATOL, export_embedder
from exporters.onnx_export import reference_session
from exporters.repository import sha256_file
from exporters.ship import MANIFEST, MAX_BYTES, SUMMARY, code_revision, compare, model_manifest
from models.audio.frontend import FrontEndConfig

MODEL = "audio-passt-fp32"
QUANT_FAMILY = "audio-passt"
PRETRAINED = "PaSST pretrained on the corpus"  # models.audio.pretrain's title for the pretrained embedder
DEPLOYABLE_RECIPES = ("fp16", "int8-dynamic", "int8-static-minmax", "int8-static-perchannel", "int8-qat",
                      "int4-weight-only", "mixed", "mixed-int4-int8")


def checked_checkpoint(checkpoint: Path) -> dict[str, Any]:
    """The pretrained checkpoint, refused unless it is a PaSST with the front end the service was shipped with."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if ckpt.get("kind") != "Passt" or "pretrain_config" not in ckpt.get("metrics", {}):
        raise SystemExit(f"{checkpoint}: not a checkpoint of python -m models.audio.pretrain")
    if ckpt["config"]["front_end"] != asdict(FrontEndConfig()):
        raise SystemExit(f"{checkpoint}: front end {ckpt['config']['front_end']} is not the shipped one "
                         f"{asdict(FrontEndConfig())}")
    return ckpt


def pretrained_quality(ckpt: dict[str, Any], held_out: dict[str, Any]) -> dict[str, Any]:
    """meta.json's quality: the pretraining's summary, then each held-out task's linear-probe accuracy of the
    pretrained PaSST (`heldout_<task>_accuracy`, checked by `exporters.ship verify` at +-0.03) and its interval."""
    metrics = ckpt["metrics"]
    quality: dict[str, Any] = {
        "pretrain_epochs": metrics["pretrain_config"]["epochs"], "pretrain_seed": metrics["pretrain_config"]["seed"],
        "pretrain_clips": metrics["clips"], "pretrain_steps": metrics["steps"],
        "pretrain_seconds": metrics["train_seconds"], "last_loss": metrics["history"][-1]["mean_loss"],
        "heldout_protocol": "linear probe on scene embeddings, corpus held-out tasks (models.audio.corpus.evaluate)",
    }
    for task, result in held_out["tasks"].items():
        figures = result["embedders"][PRETRAINED]
        quality[f"heldout_{task}_accuracy"] = figures["accuracy"]
        quality[f"heldout_{task}_interval_95"] = figures["interval_95"]
    return quality


def export(checkpoint: Path, repository: Path) -> Path:
    """<repository>/audio-passt-fp32/1/ from the pretrained checkpoint and the quality.json beside it."""
    ckpt = checked_checkpoint(checkpoint)
    held_out_path = checkpoint.parent / "quality.json"
    if not held_out_path.is_file():
        raise SystemExit(f"{held_out_path} is missing: python -m models.audio.pretrain writes it unless --no-eval")
    quality = pretrained_quality(ckpt, json.loads(held_out_path.read_text()))
    return export_embedder(checkpoint, repository, MODEL, quality=quality)


def quantization_gate(repository: Path, report: Path) -> dict[str, Any]:
    """`make quantize-report`'s gate on the exported graph. It runs on a copy (<repository>-quantized): the
    report rewrites the fp32 model's meta.json as one of its recipe rows, and the export ships as written."""
    from exporters.quantize import report as quantize_report

    work = repository.with_name(repository.name + "-quantized")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(repository / MODEL, work / MODEL)
    quantize_report.main(["--repository", str(work), "--families", QUANT_FAMILY,
                          "--recipes", *DEPLOYABLE_RECIPES, "--report", str(report)])
    return gate_result(report)


def gate_result(report: Path) -> dict[str, Any]:
    """{"default": the recipe the gate would serve, "passed": {recipe: within the 1% bound}} from its report."""
    section = json.loads(report.with_suffix(".json").read_text())["families"][0]
    return {"default": section["default"],
            "passed": {r["recipe"]: bool(r.get("passed")) for r in section["rows"] if r["status"] == "ok"}}


def ship_model(repository: Path, shipped: Path, provenance: dict[str, Any]) -> dict[str, Any]:
    """Replaces <shipped>/audio-passt-fp32 with the exported one and its manifest; SHIPPED.json gets the new
    total size and an `updates` entry (the other models, their manifests and aliases.json stay as they are)."""
    target = shipped / MODEL
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(repository / MODEL, target)
    (target / MANIFEST).write_text(json.dumps(model_manifest(target, provenance), indent=2, sort_keys=True) + "\n")
    summary = json.loads((shipped / SUMMARY).read_text())
    names = sorted(p.name for p in shipped.iterdir() if (p / MANIFEST).is_file())
    size = sum(json.loads((shipped / n / MANIFEST).read_text())["size_bytes"] for n in names)
    if size > MAX_BYTES:
        raise SystemExit(f"{size / 2**20:.1f} MiB of models: over the {MAX_BYTES / 2**20:.0f} MiB the project ships")
    update = {"families": ["audio"], "models": [MODEL], **provenance}
    kept = [u for u in summary.get("updates", []) if u.get("models") != [MODEL]]  # superseded by this one
    summary.update(models=names, size_bytes=size, updates=[*kept, update])
    (shipped / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def recorded_pretraining(model_dir: Path, corpus: Path, out: Path) -> list[str]:
    """models.audio.pretrain's arguments that rebuild the shipped checkpoint: the seed and epochs its manifest
    records, the pooling of its exported model config ("mean" before the option existed)."""
    manifest = json.loads((model_dir / MANIFEST).read_text())
    quality = manifest["quality"]
    meta = json.loads((model_dir / manifest["version"] / "meta.json").read_text())
    pooling = meta.get("model_config", {}).get("passt", {}).get("pooling", "mean")
    return ["--corpus", str(corpus), "--out", str(out), "--epochs", str(int(quality["pretrain_epochs"])),
            "--seed", str(int(manifest["seeds"]["audio.PretrainConfig"])), "--pooling", pooling]


def graph_difference(shipped_onnx: Path, rebuilt_onnx: Path, window: int, seed: int = 0) -> float:
    """Largest |embedding difference| of two graphs on the same windows: noise at three levels and silence."""
    rng = np.random.default_rng(seed)
    windows = np.concatenate([rng.standard_normal((6, window)).astype(np.float32) * np.float32(level)
                              for level in (1e-3, 0.1, 1.0)] + [np.zeros((1, window), np.float32)])
    outputs = [reference_session(p).run(["embedding"], {"waveform": windows})[0] for p in (shipped_onnx, rebuilt_onnx)]
    if outputs[0].shape != outputs[1].shape:
        return float("inf")
    return float(np.abs(outputs[0] - outputs[1]).max())


def _source_checkpoint(manifest: dict[str, Any]) -> Path:
    checkpoint = Path(manifest["source_checkpoint"])
    if not checkpoint.is_file():
        raise SystemExit(f"{MODEL}: its recorded checkpoint {checkpoint} is not here (artifacts/ is not committed): "
                         "`make verify-audio-pretrained AUDIO_VERIFY=pretrain` re-runs the recorded pretraining")
    if sha256_file(checkpoint) != manifest["source_checkpoint_sha256"]:
        raise SystemExit(f"{MODEL}: {checkpoint} is not the recorded checkpoint (sha256 "
                         f"{manifest['source_checkpoint_sha256'][:12]} recorded, {sha256_file(checkpoint)[:12]} found)")
    return checkpoint


def verify(shipped: Path, out: Path, pretrain_again: bool = False, corpus: Path = Path("artifacts/audio-corpus")
           ) -> bool:
    """Rebuilds the shipped audio-passt-fp32 the way its manifest says it was built (module docstring, 4) and
    compares; prints what it did and every check."""
    model_dir = shipped / MODEL
    manifest = json.loads((model_dir / MANIFEST).read_text())
    if "source_checkpoint" not in manifest:
        raise SystemExit(f"{model_dir} was not shipped by exporters.audio_pretrained: exporters.ship verify checks it")
    if pretrain_again:
        from models.audio import pretrain

        args = recorded_pretraining(model_dir, corpus, out / "pretrain")
        print(f"{MODEL}: re-running the recorded pretraining: python -m models.audio.pretrain {' '.join(args)}")
        pretrain.main(args)
        checkpoint = out / "pretrain" / "pretrain.pt"
    else:
        checkpoint = _source_checkpoint(manifest)
        print(f"{MODEL}: re-exporting the recorded checkpoint {checkpoint} (sha256 "
              f"{manifest['source_checkpoint_sha256'][:12]} as recorded); its figures are re-read from "
              f"{checkpoint.parent / 'quality.json'}, not re-measured")
    version_dir = export(checkpoint, out / "repository")
    ok = True
    for name, digest in sorted(manifest["files"].items()):  # the shipped files are the ones the manifest describes
        if sha256_file(model_dir / name) != digest:
            print(f"{MODEL:<28} {name}: CHANGED since it was shipped (sha256 differs from its manifest)")
            ok = False
    if ok:
        print(f"{MODEL:<28} {len(manifest['files'])} shipped files match their manifest's sha256")
    for name, old, new, good in compare(manifest, json.loads((version_dir / "meta.json").read_text())):
        print(f"{MODEL:<28} {name:<44} shipped {old:>10.4f} rebuilt {new:>10.4f} "
              f"{'ok' if good else 'OUT OF TOLERANCE'} ({manifest['tolerances'][name]})")
        ok &= good
    if not pretrain_again:  # the same checkpoint must give the shipped graph
        window = json.loads((version_dir / "meta.json").read_text())["window_samples"]
        shipped_onnx = model_dir / manifest["version"] / "model.onnx"
        difference = graph_difference(shipped_onnx, version_dir / "model.onnx", window)
        good = difference <= PARITY_ATOL
        print(f"{MODEL:<28} {'embedding max |shipped - rebuilt|':<44} {difference:.2e} "
              f"{'ok' if good else 'NOT THE SHIPPED GRAPH'} (bound {PARITY_ATOL:g})")
        ok &= good
    return ok


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m exporters.audio_pretrained", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, purpose in (("export", "export and run the quantization gate"),
                          ("ship", "replace audio-passt-fp32 in the shipped repository with the export")):
        command = commands.add_parser(name, help=purpose)
        command.add_argument("--checkpoint", type=Path, required=True, help="pretrain.pt of models.audio.pretrain")
        command.add_argument("--out", type=Path, default=Path("artifacts/ship-audio/repository"))
        command.add_argument("--quantization-report", type=Path, default=Path("artifacts/ship-audio/quantization.md"))
    ship = commands.choices["ship"]
    ship.add_argument("--to", type=Path, default=Path("shipped_models"))
    ship.add_argument("--built-by", required=True, help="the commands that pretrained and exported (SHIPPED.json)")
    check = commands.add_parser("verify", help="rebuild the shipped audio-passt-fp32 the recorded way and compare")
    check.add_argument("--shipped", type=Path, default=Path("shipped_models"))
    check.add_argument("--out", type=Path, default=Path("artifacts/verify/audio-pretrained"))
    check.add_argument("--pretrain", action="store_true", help="re-run the recorded pretraining (~11 min)")
    check.add_argument("--corpus", type=Path, default=Path("artifacts/audio-corpus"))
    again = commands.add_parser("gate", help="the quantization gate alone, on the shipped audio-passt-fp32 (a copy)")
    again.add_argument("--shipped", type=Path, default=Path("shipped_models"))
    again.add_argument("--out", type=Path, default=Path("artifacts/gate-audio/repository"))
    again.add_argument("--quantization-report", type=Path, default=Path("artifacts/gate-audio/quantization.md"))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "verify":
        if not verify(args.shipped, args.out, args.pretrain, args.corpus):
            raise SystemExit(f"{MODEL} does not reproduce from the recorded build (see above)")
        print(f"{MODEL} reproduces from its recorded build")
        return
    if args.command == "gate":  # the shipped graph as it is: the report's figures, the shipped files untouched
        shutil.rmtree(args.out, ignore_errors=True)
        shutil.copytree(args.shipped / MODEL, args.out / MODEL)
        print(f"quantization gate on {args.shipped / MODEL}: {quantization_gate(args.out, args.quantization_report)}")
        return
    if args.command == "export":
        version_dir = export(args.checkpoint, args.out)
        parity = json.loads((version_dir / "meta.json").read_text())["parity_max_abs_diff"]
        print(f"exported {version_dir} (parity {parity:.2e}); quantization gate: "
              f"{quantization_gate(args.out, args.quantization_report)}")
        return
    exported = json.loads((args.out / MODEL / "1" / "meta.json").read_text())
    if exported["source_checkpoint_sha256"] != sha256_file(args.checkpoint) or "quality_gate" in exported:
        raise SystemExit(f"{args.out / MODEL} is not the export of {args.checkpoint}: run the export first")
    command = "python -m exporters.audio_pretrained " + " ".join(sys.argv[1:] if argv is None else argv)
    seed = checked_checkpoint(args.checkpoint)["metrics"]["pretrain_config"]["seed"]
    provenance = {"built_by": args.built_by, "code_revision": code_revision(), "shipped_by": command,
                  "seeds": {"audio.PretrainConfig": seed}, "source_checkpoint": str(args.checkpoint),
                  "source_checkpoint_sha256": exported["source_checkpoint_sha256"],
                  "quantization_gate": gate_result(args.quantization_report)}
    summary = ship_model(args.out, args.to, provenance)
    print(f"shipped {MODEL} into {args.to} ({summary['size_bytes'] / 2**20:.1f} MiB in all)")


if __name__ == "__main__":
    main()
