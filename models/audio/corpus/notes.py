"""Single instrument notes in the spirit of NSynth (Engel et al., 2017, section 4): every General MIDI
program of a sampled sound font played at many pitches and velocities, one note per clip, rendered by
fluidsynth from a one-note MIDI file. Sound font: TimGM6mb (Debian timgm6mb-soundfont, 6 MB), chosen over
the 120 MB fluid-soundfont-gm to keep the install small. Reverb and chorus are off, so a clip is the
instrument's own sound; the note is held 0.75 s and released, and the clip is its first second."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from models.audio.corpus.clips import fit_to_window, is_silent, read_mono, write_clip
from models.audio.corpus.midi import single_note
from models.audio.data import SAMPLE_RATE

PACKAGES = ("fluidsynth", "timgm6mb-soundfont")
SOUND_FONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
NOTES = tuple(range(36, 84))  # C2..B5: four octaves, every pitch class four times
VELOCITIES = (50, 110)
HELD_SECONDS, TAIL_SECONDS = 0.75, 0.5
COMMAND = (f"fluidsynth -ni -q -R 0 -C 0 -g 1.0 -o audio.file.format=float -F OUT.wav -r {SAMPLE_RATE} "
           f"{SOUND_FONT} NOTE.mid (NOTE.mid: program change, note on, note off after {HELD_SECONDS} s)")
TIMEOUT_SECONDS = 60
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# The General MIDI 1 sound set: 16 families of 8 programs each, in program order.
FAMILIES = ("piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
            "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects")
INSTRUMENTS = (
    "acoustic grand piano", "bright acoustic piano", "electric grand piano", "honky-tonk piano",
    "electric piano 1", "electric piano 2", "harpsichord", "clavinet",
    "celesta", "glockenspiel", "music box", "vibraphone", "marimba", "xylophone", "tubular bells", "dulcimer",
    "drawbar organ", "percussive organ", "rock organ", "church organ", "reed organ", "accordion", "harmonica",
    "tango accordion",
    "nylon guitar", "steel guitar", "jazz guitar", "clean electric guitar", "muted electric guitar",
    "overdriven guitar", "distortion guitar", "guitar harmonics",
    "acoustic bass", "fingered bass", "picked bass", "fretless bass", "slap bass 1", "slap bass 2",
    "synth bass 1", "synth bass 2",
    "violin", "viola", "cello", "contrabass", "tremolo strings", "pizzicato strings", "orchestral harp",
    "timpani",
    "string ensemble 1", "string ensemble 2", "synth strings 1", "synth strings 2", "choir aahs", "voice oohs",
    "synth voice", "orchestra hit",
    "trumpet", "trombone", "tuba", "muted trumpet", "french horn", "brass section", "synth brass 1",
    "synth brass 2",
    "soprano sax", "alto sax", "tenor sax", "baritone sax", "oboe", "english horn", "bassoon", "clarinet",
    "piccolo", "flute", "recorder", "pan flute", "blown bottle", "shakuhachi", "whistle", "ocarina",
    "square lead", "sawtooth lead", "calliope lead", "chiff lead", "charang lead", "voice lead", "fifths lead",
    "bass and lead",
    "new age pad", "warm pad", "polysynth pad", "choir pad", "bowed pad", "metallic pad", "halo pad",
    "sweep pad",
    "rain", "soundtrack", "crystal", "atmosphere", "brightness", "goblins", "echoes", "sci-fi",
    "sitar", "banjo", "shamisen", "koto", "kalimba", "bagpipe", "fiddle", "shanai",
    "tinkle bell", "agogo", "steel drums", "woodblock", "taiko drum", "melodic tom", "synth drum",
    "reverse cymbal",
    "guitar fret noise", "breath noise", "seashore", "bird tweet", "telephone ring", "helicopter", "applause",
    "gunshot",
)


@dataclass(frozen=True)
class Note:
    program: int  # General MIDI program, 0..127
    note: int  # MIDI note number
    velocity: int

    @property
    def family(self) -> str:
        return FAMILIES[self.program // 8]

    @property
    def file(self) -> str:
        return f"notes/{self.program:03d}/{self.note:03d}_v{self.velocity:03d}.wav"

    def labels(self) -> dict[str, str | int]:
        return {"program": self.program, "instrument": INSTRUMENTS[self.program], "family": self.family,
                "note": self.note, "pitch_class": PITCH_CLASSES[self.note % 12], "octave": self.note // 12 - 1,
                "velocity": self.velocity}

    def command(self, midi: Path, out: Path) -> list[str]:
        return ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "1.0", "-o", "audio.file.format=float",
                "-F", str(out), "-r", str(SAMPLE_RATE), str(SOUND_FONT), str(midi)]


def plan() -> list[Note]:
    return [Note(program, note, velocity) for program in range(len(INSTRUMENTS)) for note in NOTES
            for velocity in VELOCITIES]


def render(note: Note, out: Path) -> float | None:
    """Renders the note and writes the fitted clip to `out`; the duration, or None when the font is silent there."""
    with tempfile.TemporaryDirectory(prefix="fluidsynth-") as scratch:
        midi, raw = Path(scratch) / "note.mid", Path(scratch) / "raw.wav"
        midi.write_bytes(single_note(note.program, note.note, note.velocity, HELD_SECONDS, TAIL_SECONDS))
        subprocess.run(note.command(midi, raw), check=True, capture_output=True, timeout=TIMEOUT_SECONDS)
        samples = read_mono(raw)
    if is_silent(samples):
        return None
    return write_clip(out, fit_to_window(samples))
