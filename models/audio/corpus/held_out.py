"""The sources kept out of any pretraining, drawn once from the build's seed and recorded in the manifest,
and the evaluation tasks (HEAR-style, issue 25 step 3) built on them. A held-out source is held out
whole: a voice with all its words, an instrument with all its notes, a package with all its files; a
held-out word is kept from pretraining in every voice. The evaluation probes then train on some held-out
sources and test on others, so neither the embedder nor the probe has heard a test clip's source."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from models.audio.corpus import notes, speech

HELD_OUT_VOICES = 9  # of 36: 5 for a probe's training, 4 for its test
HELD_OUT_WORDS = 5  # of 20
PROGRAMS_PER_FAMILY = 2  # of 8: one for a probe's training, one for its test
# Two desktop themes that follow the freedesktop sound naming specification, so their event kinds line
# up with each other (a probe trains on one and tests on the other) and with the pretraining themes.
HELD_OUT_EVENT_PACKAGES = ("yaru-theme-sound", "deepin-sound-theme")


@dataclass(frozen=True)
class HeldOut:
    voices: tuple[str, ...]  # in draw order: the first half trains the probes, the rest tests them
    words: tuple[str, ...]
    programs: tuple[int, ...]  # per family, its probe-training program then its probe-test program
    event_packages: tuple[str, ...]

    def to_manifest(self) -> dict[str, Any]:
        return asdict(self) | {"instruments": [notes.INSTRUMENTS[p] for p in self.programs]}

    def holds(self, source: str, labels: dict[str, Any]) -> bool:
        if source == "speech":
            return labels["voice"] in self.voices or labels["word"] in self.words
        if source == "notes":
            return labels["program"] in self.programs
        return labels["package"] in self.event_packages


def draw(seed: int) -> HeldOut:
    rng = np.random.default_rng(seed)
    names = sorted(f"{language}+{variant}" for language, variant in speech.voices())
    voices = tuple(str(v) for v in rng.permutation(names)[:HELD_OUT_VOICES])
    words = tuple(sorted(str(w) for w in rng.permutation(sorted(speech.WORDS))[:HELD_OUT_WORDS]))
    programs = tuple(int(family * 8 + p) for family in range(len(notes.FAMILIES))
                     for p in rng.permutation(8)[:PROGRAMS_PER_FAMILY])
    return HeldOut(voices, words, programs, HELD_OUT_EVENT_PACKAGES)


def probe_split(task: str, labels: dict[str, Any], held: HeldOut) -> str | None:
    """'train' or 'test' for the task's probe, None when the clip is not in the task."""
    if task in ("word_unseen_voice", "voice_unseen_word"):
        if labels.get("voice") not in held.voices:
            return None
        if task == "word_unseen_voice":
            return "train" if held.voices.index(labels["voice"]) < (len(held.voices) + 1) // 2 else "test"
        return "test" if labels["word"] in held.words else "train"
    if task in ("family_unseen_instrument", "pitch_class_unseen_instrument"):
        if labels.get("program") not in held.programs:
            return None
        return "train" if held.programs.index(labels["program"]) % PROGRAMS_PER_FAMILY == 0 else "test"
    if task == "event_kind_unseen_package":
        if labels.get("package") not in held.event_packages:
            return None
        return "train" if labels["package"] == held.event_packages[0] else "test"
    raise ValueError(f"unknown task {task!r}")


# task -> (source, label field, group field, what it measures)
TASKS = {
    "word_unseen_voice": ("speech", "word", "voice",
                          "spoken word; the probe trains on held-out voices and tests on other held-out voices"),
    "voice_unseen_word": ("speech", "voice", "word",
                          "voice; the probe trains on the held-out voices' pretraining words, tests on held-out words"),
    "family_unseen_instrument": ("notes", "family", "program",
                                 "GM instrument family; probe trains on one held-out program per family, "
                                 "tests on another"),
    "pitch_class_unseen_instrument": ("notes", "pitch_class", "program",
                                      "pitch class; the same held-out programs and split"),
    "event_kind_unseen_package": ("events", "kind", "package",
                                  "event kind; probe trains on one held-out theme, tests on the other, kinds "
                                  "present in both"),
}
