"""The manifest's Markdown summary: what each source is (package, exact version, licences, the command
that rendered it), how big it is, what is held out of pretraining and which evaluation tasks that gives.
The per-clip records stay in manifest.json."""

from __future__ import annotations

from typing import Any


def _packages(packages: list[dict[str, Any]]) -> str:
    return "; ".join(f"`{p['package']}` {p['version']} ({', '.join(p['licences'])})" for p in packages)


def render_markdown(manifest: dict[str, Any]) -> str:
    build, totals, held = manifest["build"], manifest["totals"], manifest["held_out"]
    lines = [
        "# Audio corpus manifest", "",
        f"{manifest['corpus']}. {totals['clips']:,} clips, {totals['hours']:.2f} hours "
        f"({totals['pretrain_clips']:,} for pretraining, {totals['held_out_clips']:,} held out); "
        f"{build['sample_rate']} Hz {build['format']}; seed {build['seed']}"
        + (f", at most {build['max_clips_per_source']} clips per source" if build["max_clips_per_source"] else "")
        + ". Built by `python -m models.audio.corpus build` from installed Debian packages only "
        "(`make audio-corpus` installs them); per-clip file, duration, labels and split in manifest.json.", "",
        "| source | Debian packages (version, licences) | clips | hours | held out | dropped as silent |",
        "|---|---|---|---|---|---|"]
    for name, source in manifest["sources"].items():
        lines.append(f"| {name} | {_packages(source['packages'])} | {source['clips']:,} | {source['hours']:.3f} | "
                     f"{source['held_out_clips']:,} | {len(source['dropped_silent'])} |")
    lines += ["", "How each source was rendered:", ""]
    for name, source in manifest["sources"].items():
        lines.append(f"- **{name}**: `{source['command']}`; {source['fit']}.")
    lines += [
        "", "## Held out of pretraining", "",
        f"- voices ({len(held['voices'])}): {', '.join(held['voices'])}",
        f"- words, in every voice ({len(held['words'])}): {', '.join(held['words'])}",
        f"- GM programs ({len(held['programs'])}, two per family): "
        + ", ".join(f"{p} {n}" for p, n in zip(held["programs"], held["instruments"], strict=True)),
        f"- event packages: {', '.join(held['event_packages'])}", "",
        "## Evaluation tasks (labels in the folder's tasks/, user_data's labels.csv layout)", "",
        "| task | what | classes | train clips | test clips |", "|---|---|---|---|---|"]
    for name, task in manifest["tasks"].items():
        lines.append(f"| {name} | {task['description']} | {task['classes']} | {task['train']:,} | {task['test']:,} |")
    if manifest.get("event_tasks"):
        lines += ["", "## Timestamp (event onset) tasks (HEAR's event format, a folder each in tasks/)", "",
                  "| task | what | labels | train: mixtures, events | test: mixtures, events | held-out sounds drawn "
                  "from (train / test) |", "|---|---|---|---|---|---|"]
        for name, task in manifest["event_tasks"].items():
            train, test = task["train"], task["test"]
            sounds = "; ".join(f"{label} {train['sounds'][label]} / {test['sounds'][label]}"
                               for label in task["labels"])
            lines.append(f"| {name} | {task['description']} | {', '.join(task['labels'])} | {train['mixtures']}, "
                         f"{train['events']} | {test['mixtures']}, {test['events']} | {sounds} |")
    return "\n".join(lines) + "\n"
