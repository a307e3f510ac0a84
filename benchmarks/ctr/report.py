"""reports/ctr_quality.md: the DIN study (models/ctr/study.py) and QAT vs PTQ vs control
(exporters/ctr_qat_study.py), with seeds and paired-bootstrap intervals (models/ctr/report.py).

    python -m benchmarks.ctr.report --out artifacts/ctr_study --report reports/ctr_quality.md
    python -m benchmarks.ctr.report --out /tmp/ctr --report /tmp/ctr.md --quick --seeds 2   # seconds

Trained runs are cached under <out>/runs/ (keyed by every setting), so a rerun re-renders.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from models.ctr.report import by_name, comparison_table, model_table, summary
from models.ctr.study import MODEL, TRAIN, run_part

DICE_LABELS = {"base": "BaseModel (sum pooling, PReLU)", "din_prelu": "DIN, PReLU", "din_dice": "DIN, Dice",
               "din_dice_bucketed": "DIN, Dice, length-bucketed batches (running moments)",
               "din_dice_bucketed_reestimated": "same weights, Dice moments re-estimated"}
DICE_PAIRS = [("din_prelu", "base"), ("din_dice", "base"), ("din_dice", "din_prelu"),
              ("din_dice_bucketed_reestimated", "din_dice_bucketed"), ("din_dice", "din_dice_bucketed"),
              ("din_dice", "din_dice_bucketed_reestimated"), ("din_dice_bucketed", "din_prelu")]
REG_LABELS = {f"reg_{k}": v for k, v in (("none", "no regularisation"), ("l2", "L2 on every embedding row"),
                                         ("dropout", "dropout of 50% of behaviour item ids"),
                                         ("mba", "MBA (eq. 4)"))}
REG_PAIRS = [("reg_l2", "reg_none"), ("reg_dropout", "reg_none"), ("reg_mba", "reg_none"),
             ("reg_mba", "reg_l2"), ("reg_mba", "reg_dropout")]
QAT_LABELS = {"fp32": "fp32 (as trained)", "fp32_control": "fp32 control (fine-tuned, no fake quant)",
              "ptq": "PTQ int8-static-minmax of fp32", "ptq_control": "PTQ int8-static-minmax of the control",
              "qat_deployed": "QAT, deployed Q/DQ (observer ranges)",
              "qat_recalibrated": "QAT weights, fresh min-max calibration"}
QAT_PAIRS = [("qat_deployed", "ptq_control"), ("qat_deployed", "fp32_control"), ("ptq_control", "fp32_control"),
             ("ptq", "fp32"), ("fp32_control", "fp32"), ("qat_deployed", "qat_recalibrated"), ("qat_deployed", "ptq")]


def _section(title: str, intro: list[str], grouped: dict[str, Any], labels: dict[str, str],
             pairs: list[tuple[str, str]], baseline: str | None) -> tuple[list[str], dict[str, Any]]:
    rows, figures = comparison_table(grouped, labels, pairs)
    lines = [f"## {title}", "", *intro, "", *model_table(grouped, labels, baseline), "", *rows, ""]
    return lines, {"models": {n: summary(r) for n, r in grouped.items()}, "comparisons": figures}


def _world_line(part: dict[str, Any]) -> str:
    w = part["world"]
    exposure = f"Zipf({w['item_zipf']}) exposure" if w["item_zipf"] > 0 else "uniform exposure"
    return (f"World: {w['n_items']:,} items in {w['n_categories']} categories ({exposure}), "
            f"histories of 1-{w['max_history']}; {part['train_users']:,} training users, {part['test_users']:,} "
            f"test users ({part['test_impressions']:,} impressions); {part['items_seen']:,} items occur in "
            f"training, {part['items_seen_under_5']:.0%} of them fewer than 5 times. Oracle (true click "
            f"probability): GAUC {part['oracle']['gauc']:.4f}, AUC {part['oracle']['auc']:.4f}.")


# The claims checked against the data: (part, A, B, the claim that A beats B).
CLAIMS = [("dice", "din_prelu", "base", "DIN (attention pooling) beats the sum-pooling BaseModel (the paper)"),
          ("dice", "din_dice", "din_prelu", "Dice beats PReLU (the paper)"),
          ("dice", "din_dice_bucketed_reestimated", "din_dice_bucketed",
           "re-estimating Dice moments on shuffled batches helps a length-bucketed model"),
          ("reg", "reg_mba", "reg_none", "MBA beats no regularisation on a long tail (the paper)"),
          ("reg", "reg_mba", "reg_l2", "MBA beats plain L2 on every row (the paper's motivation for MBA)"),
          ("reg", "reg_dropout", "reg_none", "dropout of ids beats no regularisation (the paper)"),
          ("qat", "qat_deployed", "ptq_control", "QAT beats PTQ at equal training"),
          ("qat", "qat_deployed", "fp32_control",
           "QAT beats fp32 at equal training (the previous README: QAT +0.56% above fp32)")]


def claims(figures: dict[str, Any]) -> list[str]:
    """One line per claim: supported, contradicted or not resolved, with the interval."""
    lines = ["## Claims against the data", "",
             "Supported = the 95% paired-bootstrap interval of ΔGAUC (A - B) lies above 0; contradicted = below 0.", ""]
    for part, a, b, claim in CLAIMS:
        result = figures.get(part, {}).get("comparisons", {}).get(f"{a} - {b}")
        if result is None:
            continue
        point, low, high = result["bootstrap"]
        verdict = "supported" if low > 0 else "contradicted" if high < 0 else "not resolved"
        lines.append(f"- {claim}: **{verdict}**, ΔGAUC {point:+.4f} [{low:+.4f}, {high:+.4f}].")
    return [*lines, ""]


def render(parts: dict[str, Any], command: str, wall: float) -> tuple[str, dict[str, Any]]:
    trained = sum(r["metrics"]["train_seconds"] for p in ("dice", "reg") if p in parts
                  for r in parts[p]["records"] if "train_seconds" in r["metrics"])
    lines = ["# CTR quality: Deep Interest Network on synthetic click logs", "",
             f"Produced by `{command}` (= `make report-ctr`; {wall:.0f} s wall for this invocation; the "
             f"trainings it ran or reused from the run cache took {trained / 60:.0f} min of wall time summed over "
             "runs, one torch thread each, on a shared 2-core machine).", "",
             "The served din-fp32 is trained by `python -m models.ctr.train` on the larger default world; this "
             "study shrinks the world and the model so that seeds and variants fit on the CPU.", "",
             f"Model: embeddings {MODEL['item_dim']} (item) + {MODEL['category_dim']} (category), activation "
             f"unit hidden {MODEL['attention_hidden']}, MLP {MODEL['mlp_hidden']}. Training: Adam lr {TRAIN.lr}, "
             f"{TRAIN.batch_size} users per batch, shuffled unbucketed batches unless stated, MBA "
             f"λ={TRAIN.mba_lambda} unless stated; early stopping on validation GAUC (patience {TRAIN.patience}, "
             f"at most {TRAIN.epochs} epochs; `*` = stopped by the cap, not by the plateau), the best validation "
             "epoch is kept. Seeds change initialisation and batch order; the world is fixed. Intervals: "
             "2,000 paired bootstrap resamples of test users of the seed-averaged per-user AUC difference "
             "(GAUC weights); RelaImpr (eq. 11) from the seed means.", ""]
    figures: dict[str, Any] = {}
    if "dice" in parts:
        intro = [_world_line(parts["dice"]),
                 "Dice normalises with batch moments in training and running moments (momentum 0.1) at "
                 "evaluation. Length-bucketed batches make the training moments depend on the history length; "
                 "the re-estimated row scores the bucketed model's weights with moments averaged over "
                 f"shuffled unbucketed batches of {TRAIN.reestimate_users} training users."]
        section, figures["dice"] = _section("BaseModel vs DIN, PReLU vs Dice", intro, by_name(parts["dice"]["records"]),
                                            DICE_LABELS, DICE_PAIRS, "base")
        lines += section
    if "reg" in parts:
        intro = [_world_line(parts["reg"]), "DIN with PReLU; the paper's regulariser comparison (section 6.5). "
                 "L2 and MBA strengths are set so a row seen in one batch per epoch gets the same penalty "
                 "per epoch; neither was tuned further."]
        section, figures["reg"] = _section("Regularisers on a long-tail item vocabulary", intro,
                                           by_name(parts["reg"]["records"]), REG_LABELS, REG_PAIRS, "reg_none")
        lines += section
    if "qat" in parts:
        s = parts["qat"]["settings"]
        intro = [f"From each seed's DIN-Dice checkpoint above; QAT and the control both fine-tune {s['epochs']} "
                 f"epochs at lr {s['lr']} with the same loop and batches. QAT fake-quantizes both operands of every "
                 f"matrix product (the activation unit's split first layer and the attention-weighted sum "
                 f"included) in the {s['scheme']} scheme; the deployed graph carries the observers' ranges. "
                 "Every row is the exported rows-layout graph scored by onnxruntime."]
        section, figures["qat"] = _section("QAT vs PTQ vs an fp32 fine-tune control", intro,
                                           by_name(parts["qat"]["records"]), QAT_LABELS, QAT_PAIRS, None)
        lines += section
    head = lines.index("## BaseModel vs DIN, PReLU vs Dice") if "dice" in parts else len(lines)
    lines[head:head] = claims(figures)
    return "\n".join(lines), figures


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ctr.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/ctr_study"), help="run cache and checkpoints")
    parser.add_argument("--report", type=Path, default=None, help="markdown (default <out>/quality.md)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--parts", default="dice,reg,qat", help="comma-separated: dice, reg, qat")
    parser.add_argument("--quick", action="store_true", help="tiny worlds, 2 epochs: smoke test")
    parser.add_argument("--cached-only", action="store_true", help="render the cached runs, train nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    started = time.perf_counter()
    seeds, wanted = list(range(args.seeds)), args.parts.split(",")
    train = not args.cached_only
    parts: dict[str, Any] = {p: run_part(p, seeds, args.out, args.quick, train_missing=train)
                             for p in ("dice", "reg") if p in wanted}
    if "qat" in wanted:
        from exporters.ctr_qat_study import run_qat  # onnxruntime and the quantization recipes

        parts["qat"] = run_qat(seeds, args.out, args.quick, train_missing=train)
    command = "python -m benchmarks.ctr.report " + shlex.join(argv if argv is not None else sys.argv[1:])
    text, figures = render(parts, command.strip(), time.perf_counter() - started)
    report = args.report or args.out / "quality.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    report.with_suffix(".json").write_text(json.dumps(figures, indent=1) + "\n")
    print(text)
    return figures


if __name__ == "__main__":
    main()
