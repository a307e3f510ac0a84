"""Recorded sound events shipped in small Debian packages: desktop sound themes (freedesktop, Oxygen, Yaru,
deepin), the sound-icons set of speech-enabled applications and the sound effects of the game Heroes. Each
file is one clip, kept whole (mono, resampled, levels as recorded). Labels: the package, the file's name
and a coarse event kind read from the name (the desktop themes follow the freedesktop sound naming
specification, so their kinds line up across packages)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from models.audio.corpus.clips import is_silent, read_mono, write_clip
from models.audio.corpus.debian import installed_files

PACKAGES = ("sound-theme-freedesktop", "oxygen-sounds", "yaru-theme-sound", "deepin-sound-theme", "sound-icons",
            "heroes-sound-effects")
EXTENSIONS = (".oga", ".ogg", ".wav")
COMMAND = "soundfile.read(FILE) (libsndfile: Vorbis, PCM WAV), channel mean, resample"
# Coarse kinds, first match wins: (kind, words that name it in a file name).
KINDS = (
    ("error", ("error", "critical", "negative", "foes")),
    ("warning", ("warning", "battery-low", "question", "attention")),
    ("login", ("login", "log-in", "system-ready", "contact-in", "suspend-resume")),
    ("logout", ("logout", "log-out", "logoff", "shutdown", "contact-out")),
    ("device", ("device-added", "device-removed", "plug", "insert-medium")),
    ("message", ("message", "msg", "mail", "sms", "nudge", "irc-event", "sent-to-desktop")),
    ("connection", ("connect", "network")),
    ("phone", ("phone", "ring")),
    ("complete", ("complete", "success", "positive", "finish")),
    ("trash", ("trash",)),
    ("camera", ("camera", "screen-capture")),
    ("window", ("window",)),
    ("bell", ("bell", "alarm", "clock")),
    ("audio", ("audio-",)),
)


@dataclass(frozen=True)
class EventFile:
    package: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem.lower()

    @property
    def file(self) -> str:
        return f"events/{self.package}/{self.name}.wav"

    def labels(self) -> dict[str, str | int]:
        return {"package": self.package, "name": self.name, "kind": event_kind(self.name)}


def event_kind(name: str) -> str:
    """The coarse kind a file name states (see KINDS), else the name without its numbers."""
    lowered = name.lower()
    for kind, words in KINDS:
        if any(word in lowered for word in words):
            return kind
    return re.sub(r"[-_]?\d+$", "", lowered.removeprefix("oxygen-")) or lowered


def plan(packages: tuple[str, ...] = PACKAGES) -> list[EventFile]:
    """Every recording once: a symbolic link is its target, and of byte-identical files (Yaru ships some
    twice under two names, Oxygen one of freedesktop's) the first in file order is kept, so a held-out
    package never shares a recording with a pretraining one."""
    found = sorted((EventFile(package, path) for package in packages for path in installed_files(package)
                    if path.suffix.lower() in EXTENSIONS), key=lambda event: event.file)
    seen: set[str] = set()
    unique = []
    for event in found:
        digest = hashlib.sha256(event.path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append(event)
    return unique


def render(event: EventFile, out: Path) -> float | None:
    samples = read_mono(event.path)
    return None if is_silent(samples) else write_clip(out, samples)
