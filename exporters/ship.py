"""The shipped model repository: the default models committed with the project so that `make serve`
answers in minutes instead of training first.

    python -m exporters.ship ship --source artifacts/ship/repository --to shipped_models
    python -m exporters.ship ship --source artifacts/repo --to shipped_models --families segmentation
    python -m exporters.ship describe shipped_models          # where the served models came from
    python -m exporters.ship verify --retrained artifacts/verify/repository --shipped shipped_models

`ship` copies every fp32 model of a freshly built repository (the layout `python -m exporters.build`
writes) and writes `<model>/manifest.json` beside each: sha256 of every file, the build command,
seeds, code revision and the quality figures with the tolerance `verify` allows when retraining.
Standard library only at import time: `describe` runs in the serve-only environment (no torch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
# Shipped models that exporters.build does not build, and the command that verifies each against the build its
# manifest records (`source_checkpoint`); `verify` leaves them to it only while their manifest records that build.
VERIFIED_ELSEWHERE = {"audio-passt-fp32": "python -m exporters.audio_pretrained verify"}
SUMMARY = "SHIPPED.json"
MAX_BYTES = 25 * 1024 * 1024  # the shipped repository stays small enough to commit
BUILD_COMMAND = "python -m exporters.build --out artifacts/ship/repository --artifacts artifacts/ship/checkpoints"
# Figure name fragments -> how far a retrained model may land from the shipped one (training on
# another machine or thread count changes float summation order, not the result's quality).
TOLERANCES: tuple[tuple[str, str, float], ...] = (
    ("seconds", "skip", 0.0), ("gauc", "abs", 0.01), ("auc", "abs", 0.01), ("accuracy", "abs", 0.03),
    ("miou", "abs", 0.02), ("bytes", "rel", 0.05), ("mse", "rel", 0.10), ("gflops", "rel", 0.05),
    ("mean_layers", "abs", 0.25),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tolerance(figure: str) -> dict[str, float] | None:
    """{"abs": x} or {"rel": x} for a checked figure, None for one only recorded (or a timing)."""
    for fragment, kind, value in TOLERANCES:
        if fragment in figure.lower():
            return None if kind == "skip" else {kind: value}
    return None


def quality_figures(quality: Any) -> dict[str, float]:
    """meta.json's `quality`, flattened to name -> number (rows of a list are keyed by their policy)."""
    if isinstance(quality, dict):
        return {k: float(v) for k, v in quality.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if isinstance(quality, list):
        figures: dict[str, float] = {}
        for row in quality:
            if isinstance(row, dict) and "policy" in row:
                figures.update({f"{row['policy']}.{k}": v for k, v in quality_figures(row).items()})
        return figures
    return {}


def training_seeds() -> dict[str, int]:
    """The seeds the default build trains with: every family's data and training config default
    (each family's `seed_configs()` in exporters/<family>.py)."""
    from exporters.families import seed_configs

    return {type(c).__module__.rsplit(".", 2)[-2] + "." + type(c).__name__: int(c.seed) for c in seed_configs()}


def code_revision() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], capture_output=True,
                          text=True, check=False, cwd=Path(__file__).resolve().parents[1])
    return done.stdout.strip() or "unknown"


def write_manifests(repository: Path, models: list[str], command: str) -> None:
    """manifest.json of each of `models` in `repository` (files and their sha256, provenance, quality), built
    by `command` at this code revision: what a model trained on a user's data ships with."""
    provenance = {"built_by": command, "code_revision": code_revision()}
    for model in models:
        manifest = model_manifest(repository / model, provenance)
        (repository / model / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def model_manifest(model_dir: Path, provenance: dict[str, Any]) -> dict[str, Any]:
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name != MANIFEST)
    version_dirs = sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                          key=lambda p: int(p.name))
    meta = json.loads((version_dirs[-1] / "meta.json").read_text())
    figures = quality_figures(meta.get("quality"))
    return {
        "model": model_dir.name, "version": version_dirs[-1].name, "family": meta.get("family"),
        "recipe": meta.get("recipe"),
        "files": {str(p.relative_to(model_dir)): sha256(p) for p in files},
        "size_bytes": sum(p.stat().st_size for p in files),
        **provenance,
        "torch_version": meta.get("torch_version"),
        "parity_max_abs_diff": meta.get("parity_max_abs_diff"),
        "quality": figures,
        "tolerances": {k: t for k in figures if (t := tolerance(k)) is not None},
    }


def _latest_meta(model_dir: Path) -> dict[str, Any] | None:
    metas = sorted(model_dir.glob("*/meta.json"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1)
    return json.loads(metas[-1].read_text()) if metas else None


def shippable(source: Path, families: list[str] | None = None) -> list[Path]:
    """The default models: every fp32 model in the source repository (of `families`, when given)."""
    found = []
    for config in sorted(source.glob("*/config.pbtxt")):
        meta = _latest_meta(config.parent)
        if meta and meta.get("recipe") == "fp32" and (families is None or meta.get("family") in families):
            found.append(config.parent)
    return found


def _copy_with_manifests(models: list[Path], target: Path, provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """Copies each model directory into `target` and writes its manifest beside it."""
    manifests = []
    for model in models:
        shutil.copytree(model, target / model.name)
        manifest = model_manifest(target / model.name, provenance)
        (target / model.name / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        manifests.append(manifest)
    return manifests


def ship_families(source: Path, target: Path, families: list[str], provenance: dict[str, Any]) -> dict[str, Any]:
    """Replaces only `families`' models (and their manifests) in an existing shipped repository; the
    other families' models, manifests and aliases stay as they are, and SHIPPED.json records the
    partial update under `updates`."""
    models = shippable(source, families)
    if not models:
        raise SystemExit(f"no fp32 models of {', '.join(families)} in {source}: build them first")
    summary = json.loads((target / SUMMARY).read_text())
    for old in target.iterdir():
        meta = _latest_meta(old) if old.is_dir() else None
        if meta is not None and meta.get("family") in families:
            shutil.rmtree(old)
    _copy_with_manifests(models, target, provenance)
    names = sorted(p.name for p in target.iterdir() if (p / MANIFEST).is_file())
    size = sum(json.loads((target / n / MANIFEST).read_text())["size_bytes"] for n in names)
    if size > MAX_BYTES:
        raise SystemExit(f"{size / 2**20:.1f} MiB of models: over the {MAX_BYTES / 2**20:.0f} MiB the project ships")
    aliases = json.loads((target / "aliases.json").read_text()) if (target / "aliases.json").is_file() else {}
    if (source / "aliases.json").is_file():
        shipped = {m.name for m in models}
        aliases.update({k: v for k, v in json.loads((source / "aliases.json").read_text()).items() if v in shipped})
    (target / "aliases.json").write_text(json.dumps({k: v for k, v in aliases.items() if v in names},
                                                    indent=2, sort_keys=True) + "\n")
    update = {"families": families, **{k: provenance[k] for k in ("built_by", "code_revision", "shipped_by")}}
    kept = [u for u in summary.get("updates", []) if not set(u["families"]) <= set(families)]  # superseded
    summary.update(models=names, size_bytes=size, updates=[*kept, update])
    (target / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def built_elsewhere(target: Path) -> list[str]:
    """Shipped models that exporters.build does not build (VERIFIED_ELSEWHERE) whose manifest records the
    build that made them (`source_checkpoint`): a whole re-ship keeps them unless told to replace them."""
    return [name for name in VERIFIED_ELSEWHERE if (target / name / MANIFEST).is_file()
            and "source_checkpoint" in json.loads((target / name / MANIFEST).read_text())]


def ship(source: Path, target: Path, provenance: dict[str, Any],
         replace_built_elsewhere: bool = False) -> dict[str, Any]:
    """Replaces the shipped repository with the source's fp32 models, except the models built elsewhere
    (`built_elsewhere`), which stay as shipped with their SHIPPED.json update (say `replace_built_elsewhere`
    to ship the source's build of them instead)."""
    keep = [] if replace_built_elsewhere or not target.exists() else built_elsewhere(target)
    models = [m for m in shippable(source) if m.name not in keep]
    if not models:
        raise SystemExit(f"no fp32 models in {source}: build them first (python -m exporters.build)")
    size = sum(p.stat().st_size for m in models for p in m.rglob("*") if p.is_file())
    size += sum(json.loads((target / name / MANIFEST).read_text())["size_bytes"] for name in keep)
    if size > MAX_BYTES:
        raise SystemExit(f"{size / 2**20:.1f} MiB of models: over the {MAX_BYTES / 2**20:.0f} MiB the project ships")
    kept_updates = []
    with tempfile.TemporaryDirectory() as stash:
        for name in keep:
            shutil.copytree(target / name, Path(stash) / name)
            print(f"{name}: kept as shipped (built elsewhere: `{VERIFIED_ELSEWHERE[name]}` checks it; "
                  "--replace-built-elsewhere ships this build's instead)")
        if keep and (target / SUMMARY).is_file():
            kept_updates = [u for u in json.loads((target / SUMMARY).read_text()).get("updates", [])
                            if set(u.get("models", [])) & set(keep)]
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for name in keep:
            shutil.copytree(Path(stash) / name, target / name)
    names = {m.name for m in models} | set(keep)
    aliases = json.loads((source / "aliases.json").read_text()) if (source / "aliases.json").is_file() else {}
    (target / "aliases.json").write_text(json.dumps({k: v for k, v in aliases.items() if v in names},
                                                    indent=2, sort_keys=True) + "\n")
    manifests = _copy_with_manifests(models, target, provenance)
    kept_bytes = sum(json.loads((target / name / MANIFEST).read_text())["size_bytes"] for name in keep)
    summary = {**provenance, "models": sorted(names),
               "size_bytes": sum(m["size_bytes"] for m in manifests) + kept_bytes}
    if kept_updates:
        summary["updates"] = kept_updates
    (target / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def describe(repository: Path) -> str:
    """One line on where the served models came from."""
    summary_path = repository / SUMMARY
    if summary_path.is_file():
        s = json.loads(summary_path.read_text())
        revisions = [s["code_revision"], *(u["code_revision"] for u in s.get("updates", []))]
        return (f"models: {repository}/ (shipped with the project: {len(s['models'])} models, "
                f"{s['size_bytes'] / 2**20:.1f} MiB, built at revision{'s' if len(revisions) > 1 else ''} "
                f"{', '.join(r[:7] for r in revisions)}; how, in {repository}/{SUMMARY}; `make models` retrains "
                "them into model_repository/)")
    # A model is a directory with config.pbtxt or a numeric version holding model.onnx (auto-complete).
    names = {p.parent.name for p in repository.glob("*/config.pbtxt")}
    names |= {p.parent.parent.name for p in repository.glob("*/*/model.onnx") if p.parent.name.isdigit()}
    origin = "built on this machine by `make models`" if (repository / ".built").is_file() else "every one served"
    return f"models: {repository}/ ({len(names)} models, {origin})"


def compare(shipped: dict[str, Any], retrained_meta: dict[str, Any]) -> list[tuple[str, float, float, bool]]:
    """(figure, shipped, retrained, within tolerance) for every figure the manifest checks."""
    figures = quality_figures(retrained_meta.get("quality"))
    rows = []
    for name, bound in sorted(shipped["tolerances"].items()):
        old, new = shipped["quality"][name], figures.get(name, float("nan"))
        limit = bound.get("abs", 0.0) + bound.get("rel", 0.0) * abs(old)
        # NaN (a missing or non-finite figure) fails: comparisons with NaN are False.
        rows.append((name, old, new, bool(abs(new - old) <= limit)))
    return rows


def verify(retrained: Path, shipped: Path) -> bool:
    ok = True
    for manifest_path in sorted(shipped.glob(f"*/{MANIFEST}")):
        manifest = json.loads(manifest_path.read_text())
        if manifest["model"] in VERIFIED_ELSEWHERE and "source_checkpoint" in manifest:
            print(f"{manifest['model']}: not built by exporters.build (built by: {manifest['built_by'][:60]}...); "
                  f"not compared here, `{VERIFIED_ELSEWHERE[manifest['model']]}` checks it")
            continue
        meta_path = retrained / manifest["model"] / manifest["version"] / "meta.json"
        if not meta_path.is_file():
            print(f"{manifest['model']}: MISSING from {retrained}")
            ok = False
            continue
        for name, old, new, good in compare(manifest, json.loads(meta_path.read_text())):
            print(f"{manifest['model']:<28} {name:<28} shipped {old:>10.4f} retrained {new:>10.4f} "
                  f"{'ok' if good else 'OUT OF TOLERANCE'} ({manifest['tolerances'][name]})")
            ok &= good
    return ok


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m exporters.ship", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("ship", help="copy a built repository's fp32 models + manifests into the shipped one")
    s.add_argument("--source", type=Path, required=True, help="repository written by python -m exporters.build")
    s.add_argument("--to", type=Path, default=Path("shipped_models"))
    s.add_argument("--built-by", default=BUILD_COMMAND, help="the command that trained and exported the source")
    s.add_argument("--revision", default=None, help="code revision the source was built from (default: git describe)")
    s.add_argument("--replace-built-elsewhere", action="store_true",
                   help="also replace the shipped models exporters.build does not build "
                        f"({', '.join(VERIFIED_ELSEWHERE)}) with this source's build of them (kept otherwise)")
    s.add_argument("--families", nargs="+", default=None,
                   help="replace only these families' models in an existing shipped repository")
    d = commands.add_parser("describe", help="one line: where a repository's models came from")
    d.add_argument("repository", type=Path)
    v = commands.add_parser("verify", help="do retrained figures reproduce the shipped ones within tolerance?")
    v.add_argument("--retrained", type=Path, required=True)
    v.add_argument("--shipped", type=Path, default=Path("shipped_models"))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "describe":
        print(describe(args.repository), flush=True)
    elif args.command == "ship":
        provenance = {"built_by": args.built_by, "code_revision": args.revision or code_revision(),
                      "seeds": training_seeds(), "shipped_by": "python -m exporters.ship " + " ".join(
                          sys.argv[1:] if argv is None else argv)}
        summary = (ship(args.source, args.to, provenance, args.replace_built_elsewhere) if args.families is None
                   else ship_families(args.source, args.to, args.families, provenance))
        print(f"shipped {len(summary['models'])} models ({summary['size_bytes'] / 2**20:.1f} MiB) into {args.to}")
    elif not verify(args.retrained, args.shipped):
        raise SystemExit("retrained figures do not reproduce the shipped ones (see OUT OF TOLERANCE above)")
    else:
        print("every retrained figure is within its tolerance of the shipped one")


if __name__ == "__main__":
    main()
