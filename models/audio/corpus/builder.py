"""Builds the corpus: plans every source's clips, renders them (subprocesses in a small thread pool; the
work is deterministic per clip, so the pool's order changes nothing), and writes the manifest and the
evaluation tasks' label files. Same seed + same package versions -> the same bytes."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from models.audio.corpus import clips, debian, events, held_out, notes, onsets, speech
from models.audio.corpus.manifest import render_markdown
from models.audio.data import SAMPLE_RATE

MANIFEST, SUMMARY, TASKS_DIR = "manifest.json", "manifest.md", "tasks"


class Item(Protocol):
    @property
    def file(self) -> str: ...

    def labels(self) -> dict[str, str | int]: ...


@dataclass(frozen=True)
class Source:
    name: str
    packages: tuple[str, ...]
    command: str  # how one clip is rendered, for the manifest
    fit: str  # how a rendering becomes a clip, for the manifest
    plan: Callable[[], Sequence[Any]]
    render: Callable[[Any, Path], float | None]


SOURCES = (
    Source("speech", speech.PACKAGES, speech.COMMAND, clips.FIT_RULE, speech.plan, speech.render),
    Source("notes", notes.PACKAGES, notes.COMMAND, clips.FIT_RULE, notes.plan, notes.render),
    Source("events", events.PACKAGES, events.COMMAND,
           f"whole file, mono (channel mean), resampled to {SAMPLE_RATE} Hz, levels as recorded; "
           "byte-identical duplicates once", events.plan, events.render),
)


def subsample(items: Sequence[Item], max_clips: int | None, seed: int) -> list[Item]:
    """At most `max_clips` items, a seeded draw kept in plan order (all of them when None)."""
    if max_clips is None or len(items) <= max_clips:
        return list(items)
    keep = np.random.default_rng(seed).choice(len(items), size=max_clips, replace=False)
    return [items[i] for i in sorted(keep.tolist())]


def prepare(out: Path) -> None:
    """An empty folder, or an earlier corpus whose parts are replaced; anything else is refused."""
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise SystemExit(f"{out} is not empty and holds no {MANIFEST}: choose an empty or a corpus folder")
    for part in ("speech", "notes", "events", TASKS_DIR):
        shutil.rmtree(out / part, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def render_source(source: Source, items: Sequence[Item], out: Path, jobs: int,
                  held: held_out.HeldOut) -> tuple[list[dict[str, Any]], list[str]]:
    """(clip records in plan order, files dropped as silent)."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        durations = list(pool.map(lambda item: source.render(item, out / item.file), items))
    records, silent = [], []
    for item, duration in zip(items, durations, strict=True):
        if duration is None:
            silent.append(item.file)
            continue
        labels = item.labels()
        records.append({"file": item.file, "source": source.name, "duration_s": duration,
                        "split": "held_out" if held.holds(source.name, labels) else "pretrain", "labels": labels})
    return records, silent


def task_rows(task: str, records: list[dict[str, Any]], held: held_out.HeldOut) -> list[dict[str, str]]:
    """The task's rows in user_data's labels.csv layout; labels kept only when both sides of the split hold them."""
    source, label_field, group_field, _ = held_out.TASKS[task]
    rows = []
    for record in records:
        split = held_out.probe_split(task, record["labels"], held) if record["source"] == source else None
        if split is not None:
            rows.append({"file": record["file"], "label": str(record["labels"][label_field]), "split": split,
                         "group": str(record["labels"][group_field])})
    both = {r["label"] for r in rows if r["split"] == "train"} & {r["label"] for r in rows if r["split"] == "test"}
    return [r for r in rows if r["label"] in both]


def write_tasks(out: Path, records: list[dict[str, Any]], held: held_out.HeldOut) -> dict[str, Any]:
    (out / TASKS_DIR).mkdir(exist_ok=True)
    summary = {}
    for task, (source, label_field, group_field, description) in held_out.TASKS.items():
        rows = task_rows(task, records, held)
        with (out / TASKS_DIR / f"{task}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["file", "label", "split", "group"], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        summary[task] = {"labels_csv": f"{TASKS_DIR}/{task}.csv", "source": source, "label": label_field,
                         "group": group_field, "description": description,
                         "train": sum(r["split"] == "train" for r in rows),
                         "test": sum(r["split"] == "test" for r in rows), "classes": len({r["label"] for r in rows})}
    return summary


def build(out: Path, seed: int = 0, max_clips: int | None = None, jobs: int = 3,
          sources: Sequence[Source] = SOURCES, onset_mixtures: dict[str, int] = onsets.MIXTURES) -> dict[str, Any]:
    prepare(out)
    held = held_out.draw(seed)
    records: list[dict[str, Any]] = []
    described: dict[str, Any] = {}
    for source in sources:
        packages = [debian.describe(name).to_manifest() for name in source.packages]
        items = subsample(source.plan(), max_clips, seed)
        print(f"{source.name}: rendering {len(items)} clips", file=sys.stderr, flush=True)
        rendered, silent = render_source(source, items, out, jobs, held)
        records.extend(rendered)
        seconds = sum(r["duration_s"] for r in rendered)
        described[source.name] = {
            "packages": packages, "command": source.command, "fit": source.fit, "planned": len(items),
            "clips": len(rendered), "hours": round(seconds / 3600, 4), "dropped_silent": silent,
            "held_out_clips": sum(r["split"] == "held_out" for r in rendered)}
    total_seconds = sum(r["duration_s"] for r in records)
    timed = onsets.write_task(out, records, held, seed, TASKS_DIR, onset_mixtures)
    manifest = {
        "corpus": "infersuite audio corpus (issue 25): real recordings and renderings from Debian packages",
        "build": {"seed": seed, "max_clips_per_source": max_clips, "sample_rate": SAMPLE_RATE,
                  "clip_seconds_words_and_notes": clips.CLIP_SECONDS, "format": "WAV, 16-bit PCM, mono"},
        "totals": {"clips": len(records), "hours": round(total_seconds / 3600, 4),
                   "pretrain_clips": sum(r["split"] == "pretrain" for r in records),
                   "held_out_clips": sum(r["split"] == "held_out" for r in records)},
        "sources": described, "held_out": held.to_manifest(), "tasks": write_tasks(out, records, held),
        "event_tasks": {} if timed is None else {onsets.TASK: timed}, "clips": records}
    write_manifest(out, manifest)
    return manifest


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    (out / SUMMARY).write_text(render_markdown(manifest))


def add_onset_task(corpus: Path) -> dict[str, Any]:
    """(Re)writes the onset task of a corpus `build` wrote, from its held-out clips; returns the task's entry."""
    manifest = json.loads((corpus / MANIFEST).read_text())
    seed = manifest["build"]["seed"]
    held = held_out.draw(seed)
    if json.loads(json.dumps(held.to_manifest())) != manifest["held_out"]:  # tuples as JSON lists
        raise SystemExit(f"{corpus / MANIFEST}: its held-out sources are not the ones seed {seed} draws here "
                         "(built by other code): rebuild the corpus")
    entry = onsets.write_task(corpus, manifest["clips"], held, seed, TASKS_DIR)
    if entry is None:
        raise SystemExit(f"{corpus}: fewer than two of speech, notes and events have held-out clips on both sides "
                         "of their probe splits")
    event_tasks = {**manifest.get("event_tasks", {}), onsets.TASK: entry}
    # the key order of a fresh build: the event tasks just before the per-clip records
    write_manifest(corpus, {key: value for key, value in manifest.items() if key not in ("event_tasks", "clips")}
                   | {"event_tasks": event_tasks, "clips": manifest["clips"]})
    return entry
