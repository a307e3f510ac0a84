"""The HEAR task of Debian game sound effects (models/audio/packaged_task.py): the kind rules, the folds that keep
near-copies together, and a built folder that the HEAR reader accepts, on fake packages this test writes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from models.audio import packaged_task
from models.audio.corpus.debian import Package
from models.audio.hear_task import read_task

ROOT = Path(__file__).resolve().parents[3]


def test_the_kind_rules_read_file_paths() -> None:
    assert packaged_task.kind_of("btanks-data/data/sounds/building-explosion2") == "explosion"
    assert packaged_task.kind_of("scorched3d-data/data/globalmods/none/data/wav/explosions/xlarge") == "explosion"
    assert packaged_task.kind_of("scorched3d-data/data/globalmods/none/data/wav/shoot/xlarge") == "shot"
    assert packaged_task.kind_of("scorched3d-data/data/globalmods/none/data/wav/misc/birdchirp3") == "animal"
    assert packaged_task.kind_of("scorched3d-data/data/globalmods/apoc/data/wav/misc/carhorn4") == "vehicle"
    assert packaged_task.kind_of("pingus-data/sounds/ohno") == "voice"
    assert packaged_task.kind_of("btanks-data/data/sounds/menu/select") == "interface"
    assert packaged_task.kind_of("btanks-data/data/tunes/glory") is None  # music: left out
    assert packaged_task.kind_of("scorched3d-data/data/globalmods/none/data/wav/misc/laserdeath") is None


def test_near_copies_share_a_fold() -> None:
    groups = {packaged_task.NUMBERED.sub("", f"scorched3d-data/wav/misc/carhorn{i}") for i in range(1, 7)}
    assert groups == {"scorched3d-data/wav/misc/carhorn"}
    assert len({packaged_task.fold_of(f"p/{k}") for k in range(200)}) == packaged_task.FOLDS


def test_a_built_folder_is_a_valid_hear_task_naming_its_sources(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    share = tmp_path / "usr" / "share" / "games" / "toy" / "sounds"
    names = ["explosion1", "explosion2", "shot", "dog", "helicopter", "scream1", "menu/select", "glory", "dog2"]
    names += [f"{kind}{a}{b}" for kind in ("boom", "click") for a in "abcde" for b in "xyz"]  # 30 groups more
    for name in names:
        path = share / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = np.zeros(8000) if name == "dog2" else 0.3 * rng.standard_normal(int(22050 * rng.uniform(0.3, 1.0)))
        soundfile.write(str(path), audio.astype(np.float32), 22050)
    (share / "cannon1.wav").write_bytes((share / "shot.wav").read_bytes())  # byte-identical: kept once
    monkeypatch.setattr(packaged_task, "installed_files", lambda package: sorted(share.rglob("*.*")))
    monkeypatch.setattr(packaged_task, "describe", lambda package: Package(package, "1.0", ("GPL-2+",), "copyright"))
    out = tmp_path / "task"
    built = packaged_task.build(out, packages=("toy-data",))
    assert built["clips"] == {"explosion": 17, "shot": 1, "animal": 1, "vehicle": 1, "voice": 1, "interface": 16}
    assert built["left_out"] == 1 and built["silent"] == 1  # glory (music); dog2 (silent)
    task = read_task(out)
    assert task.mode == "folds" and len(task.clips) == 37 and task.sample_rates == (32000,)
    folds = {c.split for c in task.clips if c.file.startswith("toy_data_sounds_explosion")}
    assert len(folds) == 1  # explosion1 and explosion2: one group
    assert re.search(r"\| toy-data \| 1\.0 \| GPL-2\+ \| animal 1, explosion 17", (out / "sources.md").read_text())
    with pytest.raises(SystemExit, match="hold no clip"):  # a few groups cannot fill every fold
        for path in share.rglob("*[xyz].wav"):
            path.unlink()
        packaged_task.build(tmp_path / "small", packages=("toy-data",))


def test_the_package_split_holds_whole_packages_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    folders = {}
    for package, names in (("scorched3d-data", ["dog", "explosion", "shot"]), ("btanks-data", ["cow", "cannon1"]),
                           ("toy-data", ["boom", "menu/select"])):
        folders[package] = tmp_path / package / "usr" / "share" / "games" / package / "sounds"
        for name in names:
            path = folders[package] / f"{name}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(str(path), (0.3 * rng.standard_normal(8000)).astype(np.float32), 16000)
    monkeypatch.setattr(packaged_task, "installed_files", lambda package: sorted(folders[package].rglob("*.wav")))
    monkeypatch.setattr(packaged_task, "describe", lambda package: Package(package, "1.0", ("GPL-2+",), "copyright"))
    out = tmp_path / "by-package"
    packaged_task.build(out, packages=tuple(folders), split="packages")
    task = read_task(out)
    assert task.name == "debian-game-sound-effects-by-packages" and task.splits == ("fold00", "fold01", "fold02")
    by_fold = {split: {c.file.split("_sounds_")[0] for c in task.clips if c.split == split} for split in task.splits}
    assert by_fold == {"fold00": {"scorched3d_data"}, "fold01": {"btanks_data"}, "fold02": {"toy_data"}}


def test_the_makefile_installs_every_package_the_task_reads() -> None:
    listed = re.search(r"^AUDIO_PACKAGED_PACKAGES := ((?:.*\\\n)*.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert listed is not None and set(listed.group(1).replace("\\", " ").split()) == set(packaged_task.PACKAGES)
