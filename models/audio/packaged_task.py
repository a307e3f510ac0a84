"""Real recorded sound effects from Debian game packages as a HEAR 2021 scene task folder: the audio family's
run on real packaged data (issue 24), read by the same path as a user's task (`python -m models.audio.user_data
--format hear`). None of these packages is in the audio corpus (models/audio/corpus), so neither embedder was
trained on any of these recordings.

    python -m models.audio.packaged_task build OUT      # make report-audio-packaged installs the packages

Labels: six kinds of sound read from each file's path by the rules in KINDS (first match wins); files that
match none (music, ambience, game-specific noises) are left out and counted. Each file is one clip: mono,
resampled to 32 kHz (models/audio/corpus/clips.py), at most MAX_SECONDS from its start, levels as recorded;
silent files are dropped. Byte-identical files are kept once. Evaluation: HEAR's folds mode, in one of two splits:

- `--split groups` (the default): FOLDS folds; the files of a group (one package's files whose names differ only
  by digits, e.g. carhorn1..carhorn6) share a fold, so the probe is never tested on a near-copy of a file it
  trained on;
- `--split packages`: PACKAGE_FOLDS, whole packages per fold (scorched3d, btanks, the six small ones), so the probe
  is tested on sound effects of games it never heard: sound-event kinds from held-out packages.

OUT/sources.md names every package, its version and the licences of its copyright file (dpkg's records here).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

from models.audio.corpus.clips import SAMPLE_RATE, is_silent, read_mono, write_clip
from models.audio.corpus.debian import PackageError, describe, installed_files

PACKAGES = ("btanks-data", "scorched3d-data", "lbreakout2-data", "mirrormagic-data", "chromium-bsu-data",
            "pingus-data", "tuxpaint-data", "frozen-bubble-data")
EXTENSIONS = (".wav", ".ogg", ".oga", ".flac")
MAX_SECONDS = 10.0
NUMBERED = re.compile(r"[-_]?\d+$")  # carhorn1 .. carhorn6: one group
FOLDS = 5
# --split packages: the two large packages each a fold of their own, the six small ones together.
PACKAGE_FOLDS = {"scorched3d-data": 0, "btanks-data": 1}
# (kind, pattern searched in "<package>/<path under the package's folder, lowercased, without suffix>").
KINDS = (
    ("explosion", r"explo|boom|kabumm|nuke-explosion|napalm|/explosions/(exp|large|medium|small|xlarge|tank|crunch"
                  r"|thud|shockwave|meteor)$"),
    ("shot", r"cannon\d|/shot$|machinegun|shotgun|tripleshot|/shoot/|/laser\d?$"),
    ("animal", r"/cows?$|/dog\d?$|/moo$|rooster|sheep|/bats\d|birdchirp|/birds\d|frogs|/gull\d|/wolf$|/bees$"),
    ("vehicle", r"engine|helicopter|tank-?move|/train$|submarine|vehicle-sound|cessna|firetruck|policecar|apache"
                r"|/f1[68]_\d|/jet$|/t38$|carhorn"),
    ("voice", r"deadman|scream|laugh|cheering|fight4life|ohno|yipee|letsgo|goodidea|dammit|/damn$|excellent"
              r"|verygood|wontgiveup|autsch|lachen|giggle"),
    ("interface", r"/menu/|click|menu_|keyclick"),
)


def kind_of(name: str) -> str | None:
    """The kind KINDS gives `name` ("<package>/<path>" lowercased, no suffix), None when no rule matches."""
    for kind, pattern in KINDS:
        if re.search(pattern, name):
            return kind
    return None


def _name(package: str, path: Path) -> str:
    parts = [p.lower() for p in path.with_suffix("").parts]
    # Below the package's own folder (/usr/share/games/<game>/... or /usr/share/<game>/...).
    for anchor in ("games", "share"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + 2:]
            break
    return f"{package}/{'/'.join(parts)}"


def fold_of(group: str) -> int:
    return int(hashlib.sha1(group.encode()).hexdigest(), 16) % FOLDS


def build(out: Path, packages: tuple[str, ...] = PACKAGES, split: str = "groups") -> dict[str, object]:
    """Writes the task folder; -> what it holds (clips per kind, left out, per package)."""
    folds = FOLDS if split == "groups" else len(set(PACKAGE_FOLDS.values())) + 1
    try:
        described = [describe(package) for package in packages]
    except PackageError as error:
        raise SystemExit(f"error: {error} (make report-audio-packaged installs every package of "
                         "models/audio/packaged_task.py)") from None
    labels: dict[str, dict[str, list[str]]] = {f"fold{k:02d}": {} for k in range(folds)}
    seen: set[str] = set()
    left_out = silent = 0
    per_package: dict[str, dict[str, int]] = {}
    for package in packages:
        for path in installed_files(package):
            if path.suffix.lower() not in EXTENSIONS:
                continue
            name = _name(package, path)
            kind = kind_of(name)
            if kind is None:
                left_out += 1
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            samples = read_mono(path)[:int(MAX_SECONDS * SAMPLE_RATE)]
            if is_silent(samples):
                silent += 1
                continue
            index = (fold_of(NUMBERED.sub("", name)) if split == "groups"
                     else PACKAGE_FOLDS.get(package, folds - 1))
            fold = f"fold{index:02d}"
            file = re.sub(r"[^a-z0-9]+", "_", name).strip("_") + ".wav"
            write_clip(out / str(SAMPLE_RATE) / fold / file, samples)
            labels[fold][file] = [kind]
            counts = per_package.setdefault(package, {})
            counts[kind] = counts.get(kind, 0) + 1
    empty = [fold for fold, entries in labels.items() if not entries]
    if empty:
        raise SystemExit(f"error: folds {empty} hold no clip: too few groups of labelled files in {list(packages)}")
    for fold, entries in labels.items():
        (out / f"{fold}.json").write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    kinds = [kind for kind, _ in KINDS]
    (out / "task_metadata.json").write_text(json.dumps(
        {"task_name": f"debian-game-sound-effects-by-{split}", "mode": "folds", "nfolds": folds,
         "embedding_type": "scene",
         "prediction_type": "multiclass", "label_vocabulary": kinds, "sample_rate": SAMPLE_RATE}, indent=1) + "\n")
    clips = {kind: sum(counts.get(kind, 0) for counts in per_package.values()) for kind in kinds}
    lines = ["", "## Sources of the recordings", "",
             f"Built by `python -m models.audio.packaged_task build` from installed Debian packages only "
             f"(models/audio/packaged_task.py: the kinds are read from file paths by its KINDS rules). "
             f"{sum(clips.values())} clips ({', '.join(f'{k} {n}' for k, n in clips.items())}); {left_out} files "
             f"matched no kind and {silent} were silent: left out. "
             + (f"{folds} folds, a group of near-copies in one fold." if split == "groups" else
                f"{folds} folds of whole packages: " + ", ".join(
                    [f"fold {k}: {name}" for name, k in PACKAGE_FOLDS.items()]
                    + [f"fold {folds - 1}: the other packages"]) + "."),
             "", "| package | version | licences (its copyright file) | clips by kind |", "|---|---|---|---|"]
    for about in described:
        found = ", ".join(f"{k} {n}" for k, n in sorted(per_package.get(about.name, {}).items())) or "none"
        lines.append(f"| {about.name} | {about.version} | {', '.join(about.licences)} | {found} |")
    (out / "sources.md").write_text("\n".join(lines) + "\n")
    return {"clips": clips, "left_out": left_out, "silent": silent, "per_package": per_package}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.audio.packaged_task", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    built = commands.add_parser("build", help="write the HEAR task folder")
    built.add_argument("out", type=Path)
    built.add_argument("--split", choices=("groups", "packages"), default="groups",
                       help="folds of near-copy groups, or of whole packages (held-out games)")
    args = parser.parse_args(argv)
    print(json.dumps(build(args.out, split=args.split), indent=1))


if __name__ == "__main__":
    main()
