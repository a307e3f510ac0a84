"""The audio corpus of issue 25 (models/audio/corpus): the MIDI writer's bytes, the one-second fit, licences
read from copyright files, the seeded held-out draw and the evaluation tasks built on it, the manifest of a
build (deterministic for a seed), the Makefile's package list, and, where espeak-ng and fluidsynth are
installed (make test installs them through audio-tools), real renderings of words and notes."""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile

from models.audio.corpus import builder as corpus_build
from models.audio.corpus import clips, debian, events, held_out, midi, notes, speech
from models.audio.data import SAMPLE_RATE

ROOT = Path(__file__).resolve().parents[3]
FEW_MIXTURES = {"train": 4, "test": 3}  # of the onset task: enough to read, quick to write


def _parse_smf(data: bytes) -> tuple[tuple[int, int, int], list[tuple[int, bytes]]]:
    """(format, tracks, division) and the one track's (delta, event) pairs, read independently of the writer."""
    assert data[:4] == b"MThd" and struct.unpack(">I", data[4:8])[0] == 6
    header = struct.unpack(">HHH", data[8:14])
    assert data[14:18] == b"MTrk"
    length = struct.unpack(">I", data[18:22])[0]
    track, position, parsed = data[22:22 + length], 0, []
    assert len(track) == length
    while position < len(track):
        delta = 0
        while True:
            byte = track[position]
            position += 1
            delta = (delta << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        status = track[position]
        size = 3 + track[position + 2] if status == 0xFF else (2 if status & 0xF0 == 0xC0 else 3)
        parsed.append((delta, track[position:position + size]))
        position += size
    return header, parsed


def test_variable_length_quantities_match_the_smf_specification_examples():
    examples = {0: "00", 0x40: "40", 0x7F: "7F", 0x80: "8100", 0x2000: "C000", 0x3FFF: "FF7F", 0x4000: "818000",
                0x100000: "C08000", 0x1FFFFF: "FFFF7F", 0x200000: "81808000", 0x0FFFFFFF: "FFFFFF7F"}
    for value, expected in examples.items():
        assert midi.variable_length(value).hex().upper() == expected
    with pytest.raises(ValueError):
        midi.variable_length(-1)


def test_single_note_file_holds_program_note_on_and_off_at_the_stated_times():
    header, track = _parse_smf(midi.single_note(program=73, note=69, velocity=100, held_seconds=0.75,
                                                tail_seconds=0.5, channel=2))
    assert header == (0, 1, midi.TICKS_PER_QUARTER)
    assert [event[:2] for _, event in track] == [b"\xff\x51", b"\xc2\x49", b"\x92\x45", b"\x82\x45", b"\xff\x2f"]
    assert track[2][1][2] == 100
    assert track[3][0] == 720 and track[4][0] == 480  # 0.75 s and 0.5 s at 960 ticks per second
    with pytest.raises(ValueError, match="velocity"):
        midi.single_note(0, 60, 128, 0.5, 0.5)


def test_fit_starts_10_ms_before_the_onset_and_lasts_exactly_one_second():
    rate = SAMPLE_RATE
    sound = np.zeros(3 * rate, dtype=np.float32)
    onset = int(0.3 * rate)
    sound[onset:] = 0.5 * np.cos(2 * np.pi * 440 * np.arange(sound.size - onset) / rate)
    sound[:onset] = 1e-4  # a hiss 74 dB below the peak is not the onset
    window = clips.fit_to_window(sound)
    assert window.shape == (rate,)
    lead = round(clips.PRE_ONSET_SECONDS * rate)
    assert np.all(window[:lead] == np.float32(1e-4)) and window[lead] == np.float32(0.5)
    short = clips.fit_to_window(np.full(100, 0.5, dtype=np.float32))
    assert short.shape == (rate,) and short[:100].min() == 0.5 and not short[100:].any()
    assert clips.is_silent(np.full(rate, 5e-5)) and not clips.is_silent(np.full(rate, 2e-4))


def test_licences_come_from_license_fields_else_from_a_gpl_notice():
    dep5 = "Files: *\nLicense: GPL-2+\n\nFiles: sounds/*\nLicense: CC-BY-SA-3.0\nLicense: GPL-2+\n"
    assert debian.licences_in(dep5) == ("CC-BY-SA-3.0", "GPL-2+")
    prose = ("it under the terms of the GNU General Public License as published by\n the Free Software "
             "Foundation; either version 3 of the License, or\n (at your option) any later version.")
    assert debian.licences_in(prose) == ("GPL-3+",)
    assert debian.licences_in("All rights reserved.") == ("not stated in the copyright file",)
    with pytest.raises(debian.PackageError, match="apt-get install"):
        debian.installed_version("infersuite-no-such-package")


def test_event_kinds_line_up_across_sound_themes():
    assert events.event_kind("dialog-error-critical") == events.event_kind("Oxygen-Sys-App-Error") == "error"
    assert events.event_kind("desktop-logoff") == events.event_kind("service-logout") == "logout"
    assert events.event_kind("device-added") == events.event_kind("power-unplug") == "device"
    assert events.event_kind("cembalo-10") == "cembalo"


def test_plans_have_one_file_per_clip_and_the_stated_sizes():
    spoken, played = speech.plan(), notes.plan()
    assert len(spoken) == len(speech.voices()) * len(speech.WORDS) * len(speech.SPEEDS_WPM) * len(speech.PITCHES)
    assert len({u.file for u in spoken}) == len(spoken) and len({u.voice for u in spoken}) == 36
    assert len({n.file for n in played}) == len(played) == 128 * len(notes.NOTES) * len(notes.VELOCITIES)
    assert notes.Note(40, 69, 50).labels() | {} == {"program": 40, "instrument": "violin", "family": "strings",
                                                   "note": 69, "pitch_class": "A", "octave": 4, "velocity": 50}
    assert notes.Note(127, 60, 50).family == "sound effects" and notes.Note(0, 61, 50).labels()["pitch_class"] == "C#"


def test_held_out_draw_is_seeded_and_holds_whole_sources():
    first, again, other = held_out.draw(0), held_out.draw(0), held_out.draw(1)
    assert first == again and first != other
    assert len(set(first.voices)) == held_out.HELD_OUT_VOICES and len(set(first.words)) == held_out.HELD_OUT_WORDS
    families = [p // 8 for p in first.programs]
    assert families == sorted(families) and all(families.count(f) == 2 for f in range(16))
    voice = first.voices[0]
    assert first.holds("speech", {"voice": voice, "word": "unheard"})
    kept = next(v for v in (f"{lang}+{var}" for lang, var in speech.voices()) if v not in first.voices)
    assert first.holds("speech", {"voice": kept, "word": first.words[0]})
    assert not first.holds("speech", {"voice": kept, "word": next(w for w in speech.WORDS if w not in first.words)})


def test_probe_splits_never_put_one_source_on_both_sides():
    held = held_out.draw(0)
    records = [{"file": u.file, "source": "speech", "labels": u.labels()} for u in speech.plan()]
    records += [{"file": n.file, "source": "notes", "labels": n.labels()} for n in notes.plan()[::5]]
    for task in held_out.TASKS:
        if task == "event_kind_unseen_package":
            continue
        rows = corpus_build.task_rows(task, records, held)
        sides = {side: {r["group"] for r in rows if r["split"] == side} for side in ("train", "test")}
        assert sides["train"] and sides["test"] and not sides["train"] & sides["test"], task
    voices = {r["group"] for r in corpus_build.task_rows("word_unseen_voice", records, held)}
    assert voices == set(held.voices)


def test_task_rows_keep_only_labels_present_on_both_sides():
    held = held_out.HeldOut((), (), (), ("theme-a", "theme-b"))
    records = [{"file": f"{package}/{kind}.wav", "source": "events", "labels": {"package": package, "kind": kind}}
               for package, kind in (("theme-a", "error"), ("theme-a", "bell"), ("theme-b", "error"),
                                     ("theme-b", "trash"), ("theme-c", "bell"))]
    rows = corpus_build.task_rows("event_kind_unseen_package", records, held)
    assert [(r["file"], r["split"]) for r in rows] == [("theme-a/error.wav", "train"), ("theme-b/error.wav", "test")]


def _fake_render(item: speech.Utterance, out: Path) -> float | None:
    """A tone whose pitch follows the word and whose level follows the voice; one 'word' renders silent."""
    if item.word == "off":
        return None
    frequency = 200 + 40 * speech.WORDS.index(item.word)
    tone = 0.3 * np.sin(2 * np.pi * frequency * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    return clips.write_clip(out, tone.astype(np.float32))


def _fake_speech(count: int) -> corpus_build.Source:
    utterances = [u for u in speech.plan() if u.speed == 180 and u.pitch == 30]
    return corpus_build.Source("speech", ("dpkg",), "fake", "fake", lambda: utterances[:count], _fake_render)


def test_build_writes_a_deterministic_manifest_tasks_and_summary(tmp_path):
    source = _fake_speech(40 * 20)
    first = corpus_build.build(tmp_path / "a", seed=3, max_clips=300, jobs=2, sources=[source],
                               onset_mixtures=FEW_MIXTURES)
    corpus_build.build(tmp_path / "b", seed=3, max_clips=300, jobs=1, sources=[source], onset_mixtures=FEW_MIXTURES)
    for name in ("manifest.json", "manifest.md", "tasks/word_unseen_voice.csv", "tasks/voice_unseen_word.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert first["event_tasks"] == {}  # one source: no onset task (it needs two labels)
    described = first["sources"]["speech"]
    assert described["planned"] == 300 and described["clips"] == 300 - len(described["dropped_silent"])
    assert described["dropped_silent"] and all("/off_" in f for f in described["dropped_silent"])
    assert described["packages"][0]["package"] == "dpkg" and described["packages"][0]["version"]
    assert first["totals"]["hours"] == pytest.approx(described["clips"] / 3600, abs=1e-4)
    held = held_out.HeldOut(**{k: tuple(v) for k, v in first["held_out"].items() if k != "instruments"})
    assert held == held_out.draw(3)
    for clip in first["clips"]:
        assert clip["split"] == ("held_out" if held.holds("speech", clip["labels"]) else "pretrain")
        assert soundfile.info(str(tmp_path / "a" / clip["file"])).samplerate == SAMPLE_RATE
    summary = (tmp_path / "a" / "manifest.md").read_text()
    assert f"{first['totals']['clips']:,} clips" in summary and "| speech | `dpkg`" in summary
    other = corpus_build.build(tmp_path / "c", seed=4, max_clips=300, sources=[source], onset_mixtures=FEW_MIXTURES)
    assert other["held_out"] != first["held_out"]


def test_build_refuses_a_non_empty_folder_that_is_not_a_corpus(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not empty"):
        corpus_build.build(tmp_path, sources=[_fake_speech(2)])
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_makefile_installs_every_package_the_corpus_reads():
    makefile = (ROOT / "Makefile").read_text()
    listed = re.search(r"^AUDIO_CORPUS_PACKAGES := ((?:.*\\\n)*.*)$", makefile, re.M)
    assert listed is not None
    assert set(listed.group(1).replace("\\", " ").split()) == {p for s in corpus_build.SOURCES for p in s.packages}


needs_renderers = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("fluidsynth") and notes.SOUND_FONT.is_file()),
    reason="espeak-ng, fluidsynth or timgm6mb-soundfont not installed (make audio-tools installs them)")


def _dominant_frequency(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples[: SAMPLE_RATE // 2] * np.hanning(SAMPLE_RATE // 2)))
    return float(np.fft.rfftfreq(SAMPLE_RATE // 2, 1 / SAMPLE_RATE)[np.argmax(spectrum)])


@needs_renderers
def test_real_words_and_notes_render_to_deterministic_one_second_clips(tmp_path):
    words = [speech.Utterance("seven", "en", "m3", 180, 50), speech.Utterance("stop", "de", "f2", 150, 70)]
    played = [notes.Note(73, 69, 110), notes.Note(0, 48, 50)]  # flute A4 (440 Hz), piano C3 (130.8 Hz)
    rendered = {}
    for item in (*words, *played):
        for attempt in ("a", "b"):
            render = speech.render if isinstance(item, speech.Utterance) else notes.render
            assert render(item, tmp_path / attempt / item.file) == 1.0  # type: ignore[arg-type]
        first, second = ((tmp_path / a / item.file).read_bytes() for a in ("a", "b"))
        assert first == second, item
        samples, rate = soundfile.read(str(tmp_path / "a" / item.file), dtype="float32")
        assert rate == SAMPLE_RATE and samples.shape == (SAMPLE_RATE,) and np.abs(samples).max() > 0.01
        rendered[item] = samples
    assert abs(_dominant_frequency(rendered[played[0]]) - 440) < 8
    piano = _dominant_frequency(rendered[played[1]])
    assert min(abs(piano - 130.8 * k) for k in (1, 2, 3)) < 6  # the fundamental or a low harmonic
    assert np.abs(rendered[played[0]]).max() > np.abs(rendered[played[1]]).max()  # velocity 110 vs 50
    seven, stop = (rendered[w] for w in words)
    assert np.abs(np.corrcoef(seven, stop)[0, 1]) < 0.5
    assert debian.describe("espeak-ng").licences == ("GPL-3+",)


def test_the_manifest_of_a_built_corpus_names_versions_licences_and_sizes():
    manifest_path = ROOT / "artifacts" / "audio-corpus" / "manifest.json"
    if not manifest_path.is_file():
        pytest.skip("no built corpus (make audio-corpus)")
    manifest = json.loads(manifest_path.read_text())
    assert set(manifest["sources"]) == {"speech", "notes", "events"}
    for source in manifest["sources"].values():
        assert all(p["version"] and p["licences"] for p in source["packages"]) and source["clips"] > 0
    assert manifest["totals"]["clips"] == len(manifest["clips"])


def test_evaluate_probes_every_embedder_on_a_task_and_reports_intervals_and_controls(tmp_path):
    from models.audio.corpus.__main__ import main  # torch and onnxruntime only here
    from models.audio.user_data import BASELINE, EMBEDDERS

    corpus_build.build(tmp_path / "corpus", seed=0, sources=[_fake_speech(36 * 20)], onset_mixtures=FEW_MIXTURES)
    report = tmp_path / "eval" / "quality.md"
    main(["evaluate", "--corpus", str(tmp_path / "corpus"), "--repository", str(ROOT / "shipped_models"),
          "--task", "word_unseen_voice", "--report", str(report)])
    result = json.loads(report.with_suffix(".json").read_text())
    task = result["tasks"]["word_unseen_voice"]
    assert list(result["tasks"]) == ["word_unseen_voice"] and task["classes"] == 19  # 'off' renders silent
    assert task["train"] == 5 * 19 and task["test"] == 4 * 19
    assert set(task["embedders"]) == {BASELINE, *EMBEDDERS}
    baseline = task["embedders"][BASELINE]  # each fake word is one pure tone: its spectrum names it
    assert baseline["accuracy"] == 1.0 and baseline["interval_95"] == [1.0, 1.0]
    assert baseline["shuffled_label_control"] < 0.3
    for r in task["embedders"].values():
        assert 0.0 <= r["interval_95"][0] <= r["accuracy"] <= r["interval_95"][1] <= 1.0
    assert "| word_unseen_voice | 19 | 95 / 76 | PaSST |" in report.read_text()
    assert "event_tasks" not in result  # only the task asked for


def _fake_note_render(item: notes.Note, out: Path) -> float | None:
    """A decaying tone at the note's pitch."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = 0.3 * np.exp(-3 * t) * np.sin(2 * np.pi * 440 * 2 ** ((item.note - 69) / 12) * t)
    return clips.write_clip(out, tone.astype(np.float32))


def _fake_notes(seed: int) -> corpus_build.Source:
    """Two notes of each program the seed holds out, one of a program it does not."""
    held, planned = set(held_out.draw(seed).programs), notes.plan()
    chosen = [n for n in planned if n.velocity == planned[0].velocity]
    chosen = [n for p in sorted(held) for n in [c for c in chosen if c.program == p][:2]]
    other = next(n for n in planned if n.program not in held)
    return corpus_build.Source("notes", ("dpkg",), "fake", "fake", lambda: [*chosen, other], _fake_note_render)


def test_the_onset_task_is_built_with_the_corpus_and_scored_by_the_frame_probe(tmp_path):
    from models.audio.corpus.__main__ import main
    from models.audio.user_data import BASELINE, EMBEDDERS

    sources = [_fake_speech(36 * 20), _fake_notes(0)]
    manifest = corpus_build.build(tmp_path / "corpus", seed=0, sources=sources, onset_mixtures=FEW_MIXTURES)
    entry = manifest["event_tasks"]["onset_unseen_sources"]
    assert entry["labels"] == ["note", "speech"] and entry["train"]["mixtures"] == 4 and entry["test"]["mixtures"] == 3
    assert entry["train"]["sounds"]["note"] == entry["test"]["sounds"]["note"] == 32  # 16 programs a side, 2 notes
    assert "| onset_unseen_sources |" in (tmp_path / "corpus" / "manifest.md").read_text()
    report = tmp_path / "eval" / "quality.md"
    main(["evaluate", "--corpus", str(tmp_path / "corpus"), "--repository", str(ROOT / "shipped_models"),
          "--task", "onset_unseen_sources", "--report", str(report)])
    result = json.loads(report.with_suffix(".json").read_text())
    assert result["tasks"] == {} and set(result["event_tasks"]) == {"onset_unseen_sources"}
    task = result["event_tasks"]["onset_unseen_sources"]
    assert set(task["embedders"]) == {BASELINE, *EMBEDDERS} and task["test"] == 3
    for r in task["embedders"].values():
        assert 0.0 <= r["interval_95"][0] <= r["onset_f_measure"] <= r["interval_95"][1] <= 1.0
        assert len(r["per_clip_counts"]) == 3
    assert set(task["paired"]) == {f"PaSST - {BASELINE}", "PaSST - bag of words"}
    assert set(task["f_by_ratio_db"]) == set(task["embedders"])
    written = json.loads((tmp_path / "corpus" / entry["folder"] / "mixture_ratios.json").read_text())
    tested = {f"{ratio:+g}" for file, ratio in written.items() if file.startswith("test_")}
    for by_ratio in task["f_by_ratio_db"].values():  # one figure per ratio the test mixtures have
        assert set(by_ratio) == tested and all(0.0 <= f <= 1.0 for f in by_ratio.values())
    text = report.read_text()
    assert "## Timestamp task: onset_unseen_sources" in text and "| PaSST - bag of words |" in text
    assert "per event-to-background ratio" in text

    shutil.rmtree(tmp_path / "corpus" / "tasks" / "onset_unseen_sources")  # a corpus from before the task
    del manifest["event_tasks"]
    (tmp_path / "corpus" / "manifest.json").write_text(json.dumps(manifest))
    main(["onsets", "--corpus", str(tmp_path / "corpus")])  # adds it back, with the default mixture counts
    rebuilt = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert list(rebuilt)[-2:] == ["event_tasks", "clips"]
    assert rebuilt["event_tasks"]["onset_unseen_sources"]["test"]["mixtures"] == 60
    assert (tmp_path / "corpus" / "tasks" / "onset_unseen_sources" / "32000" / "test" / "test_059.wav").is_file()
