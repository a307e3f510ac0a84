"""What regularising the embeddings costs per training step: the DIN paper's reason for mini-batch aware
regularisation (MBA, eq. 4, section 5.1), measured where the paper puts it.

The paper does not claim MBA is more accurate than L2; it claims L2 is unaffordable on sparse inputs: with
millions of ids a mini-batch looks up a few thousand rows, yet L2 over every row gives every row a gradient at
every step. This benchmark trains DIN at the paper's widths (item and category embeddings 64 + 64, activation
unit 80, MLP 200-80, Dice; batches of 32 users with histories of up to 100 behaviours and two candidates, ids
drawn with a 1/rank long tail) and times `models.ctr.train.train_step` for each regulariser and table size:

- dense tables under Adam (the trainer's default): none, L2 on every row, MBA;
- sparse tables under lazy Adam (`TrainConfig.sparse_embeddings`, torch.optim.SparseAdam): none, MBA.
  L2 cannot run here: its gradient is dense by construction (`make_optimizer` refuses it).

Each arm runs in its own process (so its peak resident memory is its own), on one thread, in interleaved
rounds whose order alternates. Per step: wall and CPU milliseconds (median over the timed steps), the bytes of
the embedding tables' gradients, the optimizer's state, and the process's peak RSS with its growth over the
state the step starts from. The run is valid when work outside it took at most 5% of the cores (/proc/stat).

    python -m benchmarks.ctr.regularisers [--items 10000 100000 1000000 3000000] [--steps 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARMS = (("none", "dense"), ("l2", "dense"), ("mba", "dense"), ("none", "sparse"), ("mba", "sparse"))
ITEMS = (10_000, 100_000, 1_000_000, 3_000_000)
CATEGORIES = 800  # Amazon Electronics has 801
BATCH_USERS = 32  # the paper's batch size
MAX_HISTORY = 100
MEAN_HISTORY = 30
CANDIDATES = 2  # the next item and a sampled negative
WIDTHS = {"item_dim": 64, "category_dim": 64, "attention_hidden": 80, "mlp_hidden": (200, 80)}
MIB = 1 << 20


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_batches(items: int, count: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`count` training batches of `BATCH_USERS` users and the training-data frequencies n_j of every id.

    Item ids have a 1/rank long tail (id = rank); an item's category is fixed by its id. History lengths are
    geometric with mean `MEAN_HISTORY`, cut at `MAX_HISTORY`; candidate 0 is labelled clicked, 1 not."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)

    def draw(shape: tuple[int, ...]) -> np.ndarray:  # log-uniform rank = density 1/rank over 1..items
        return np.minimum(np.exp(rng.uniform(0.0, np.log(items + 1), shape)).astype(np.int64), items)

    def category(ids: np.ndarray) -> np.ndarray:
        return np.where(ids > 0, 1 + (ids * 7919) % CATEGORIES, 0)

    batches = []
    for _ in range(count):
        lengths = np.minimum(rng.geometric(1.0 / MEAN_HISTORY, BATCH_USERS), MAX_HISTORY)
        width = int(lengths.max())
        mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.float32)
        history = draw((BATCH_USERS, width)) * mask.astype(np.int64)
        candidates = draw((BATCH_USERS, CANDIDATES))
        batches.append({
            "history_items": torch.from_numpy(history), "history_categories": torch.from_numpy(category(history)),
            "history_mask": torch.from_numpy(mask), "candidate_items": torch.from_numpy(candidates),
            "candidate_categories": torch.from_numpy(category(candidates)),
            "candidate_mask": torch.ones(BATCH_USERS, CANDIDATES),
            "labels": torch.tensor([[1.0, 0.0]]).expand(BATCH_USERS, CANDIDATES).contiguous()})
    ranks = np.arange(items + 1, dtype=np.float64)
    item_counts = np.concatenate([[0.0], np.maximum(1.0, np.round(1e6 / ranks[1:]))])  # n_j of the long tail
    category_counts = np.bincount(category(np.arange(items + 1)), weights=item_counts, minlength=CATEGORIES + 1)
    frequencies = {"item": torch.from_numpy(item_counts).float(), "category": torch.from_numpy(category_counts).float()}
    return batches, frequencies


def run_arm(regulariser: str, tables: str, items: int, steps: int, warmup: int, seed: int = 0) -> dict[str, Any]:
    """One arm in this process: `warmup` untimed then `steps` timed `train_step`s -> its figures."""
    import numpy as np
    import torch

    from models.ctr.din import DeepInterestNetwork, variant_config
    from models.ctr.train import TrainConfig, make_optimizer, train_step

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    batches, frequencies = make_batches(items, warmup + steps, seed)
    rss_inputs = _rss_bytes()
    model = DeepInterestNetwork(variant_config("din_dice", items, CATEGORIES, **WIDTHS)).train()
    cfg = TrainConfig(regulariser=regulariser, sparse_embeddings=tables == "sparse", lr=1e-3)  # type: ignore[arg-type]
    optimizer = make_optimizer(model, cfg)
    rng = np.random.default_rng(seed)
    rss_model = _rss_bytes()
    for batch in batches[:warmup]:  # the optimizer's state exists after the first step
        train_step(model, optimizer, batch, frequencies, cfg, rng)
    rss_start, peak_start = _rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    wall, cpu, losses = [], [], []
    for batch in batches[warmup:]:
        w0, c0 = time.perf_counter(), time.process_time()
        losses.append(train_step(model, optimizer, batch, frequencies, cfg, rng))
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gradients = 0
    for table in model.embedding_tables().values():
        grad = table.weight.grad
        assert grad is not None
        gradients += (grad.coalesce().values() if grad.is_sparse else grad).numel() * grad.element_size()
    state = sum(t.numel() * t.element_size() for t in optimizer.state_tensors())
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    if not all(np.isfinite(losses)):
        raise RuntimeError(f"{regulariser}/{tables} at {items} items: a non-finite loss {losses}")
    return {"regulariser": regulariser, "tables": tables, "items": items, "steps": steps,
            "wall_ms": [1e3 * x for x in wall], "cpu_ms": [1e3 * x for x in cpu],
            "gradient_bytes": gradients, "optimizer_state_bytes": state, "parameter_bytes": parameters,
            "rss_inputs_bytes": rss_inputs, "rss_model_bytes": rss_model,
            "rss_start_bytes": rss_start, "peak_rss_bytes": peak, "peak_before_timing_bytes": peak_start,
            "last_loss": losses[-1]}


def measure(items: list[int], steps: int, warmup: int, rounds: int) -> dict[str, Any]:
    """Every arm x size in its own child process, `rounds` interleaved rounds (alternating order)."""
    from benchmarks.serving.machine import Window, all_cores, take_sample

    sample = take_sample(os.getpid())
    runs: list[dict[str, Any]] = []
    for index in range(rounds):
        for size in items:
            for regulariser, tables in ARMS if index % 2 == 0 else ARMS[::-1]:
                child = {"regulariser": regulariser, "tables": tables, "items": size, "steps": steps, "warmup": warmup}
                argv = [sys.executable, "-m", "benchmarks.ctr.regularisers", "--child", json.dumps(child)]
                out = subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, text=True).stdout
                runs.append({"round": index + 1, **json.loads(out.strip().splitlines()[-1])})
                r = runs[-1]
                print(f"round {r['round']} {size:>9} items {regulariser:>4}/{tables:<6} "
                      f"{statistics.median(r['wall_ms']):8.1f} ms/step  peak RSS {r['peak_rss_bytes'] / MIB:7.0f} MiB",
                      flush=True)
    cores = all_cores(Window(sample, take_sample(os.getpid())))
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    return {"revision": sha, "items": items, "steps": steps, "warmup": warmup, "rounds": rounds, "runs": runs,
            "cores": cores, "load_after": os.getloadavg()}


def _arm(result: dict[str, Any], size: int, regulariser: str, tables: str) -> list[dict[str, Any]]:
    return [r for r in result["runs"] if (r["items"], r["regulariser"], r["tables"]) == (size, regulariser, tables)]


def ratio(result: dict[str, Any], size: int, a: tuple[str, str], b: tuple[str, str],
          key: str = "wall_ms") -> list[float]:
    """Per round: median step time of arm `a` / that of arm `b` at `size` items."""
    by_round = {(r["round"], r["regulariser"], r["tables"]): statistics.median(r[key]) for r in result["runs"]
                if r["items"] == size}
    return [by_round[(k, *a)] / by_round[(k, *b)] for k in range(1, result["rounds"] + 1)]


def render(result: dict[str, Any], command: str) -> str:
    from benchmarks.serving.validity import FOREIGN_SHARE_MAX

    cores = result["cores"]
    valid = cores["foreign_share"] <= FOREIGN_SHARE_MAX
    names = {("none", "dense"): "none, dense tables (Adam)", ("l2", "dense"): "L2 on every row, dense (Adam)",
             ("mba", "dense"): "MBA, dense (Adam)", ("none", "sparse"): "none, sparse tables (lazy Adam)",
             ("mba", "sparse"): "MBA, sparse (lazy Adam)"}
    lines = [
        *([] if valid else [f"> **INVALID: work outside this benchmark took {cores['foreign_share']:.1%} of the "
                            "cores; no figure below may be quoted.**", ""]),
        "# DIN: what regularising the embeddings costs per training step", "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} at {result['revision']}. "
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}; one thread per arm, each arm in its own "
        f"process; {result['rounds']} interleaved rounds (order alternating), {result['warmup']} untimed then "
        f"{result['steps']} timed steps per arm and round. Both cores over the run (/proc/stat): idle "
        f"{cores['idle_share']:.0%}, foreign work {cores['foreign_share']:.1%} "
        f"({', '.join(cores['offenders']) or 'nobody'}; valid when at most {FOREIGN_SHARE_MAX:.0%}); load average "
        f"after {[round(x, 2) for x in result['load_after']]}.", "",
        "The paper (section 5.1) motivates MBA by cost, not accuracy: L2 over every embedding row gives every row a "
        "gradient at every step, unaffordable with millions of ids, while a batch looks up a few thousand rows. "
        "Model: DIN (Dice) at the paper's widths (embeddings 64 + 64, activation unit 80, MLP 200-80), "
        f"{CATEGORIES} categories; batches of {BATCH_USERS} users, histories geometric with mean {MEAN_HISTORY} cut "
        f"at {MAX_HISTORY}, {CANDIDATES} candidates, item ids with a 1/rank long tail. One step = "
        "`models.ctr.train.train_step` (forward, BCE + the regulariser, backward, optimizer step). Dense tables: "
        "torch.optim.Adam on every parameter (the trainer's default, which moves every row each step whatever the "
        "regulariser). Sparse tables: `--sparse-embeddings` (torch.optim.SparseAdam on the tables: only the looked-up "
        "rows and their moments move); L2 cannot run sparse, its gradient is dense by construction.", "",
        "| item rows | regulariser, tables | ms per step (median; rounds) | CPU ms per step | embedding gradient "
        "MiB | optimizer state MiB | peak RSS MiB | training's growth MiB |", "|---|---|---|---|---|---|---|---|"]
    for size in result["items"]:
        for arm in ARMS:
            runs = _arm(result, size, *arm)
            per_round = [statistics.median(r["wall_ms"]) for r in runs]
            lines.append(
                f"| {size:,} | {names[arm]} | {statistics.median(per_round):.1f} "
                f"({', '.join(f'{x:.1f}' for x in per_round)}) | "
                f"{statistics.median(statistics.median(r['cpu_ms']) for r in runs):.1f} | "
                f"{max(r['gradient_bytes'] for r in runs) / MIB:.2f} | "
                f"{max(r['optimizer_state_bytes'] for r in runs) / MIB:.1f} | "
                f"{max(r['peak_rss_bytes'] for r in runs) / MIB:.0f} | "
                f"{max(r['peak_rss_bytes'] - r['rss_model_bytes'] for r in runs) / MIB:.0f} |")
    lines += ["", "Step time ratios, per round then their median (1.00 = the same cost):", "",
              "| item rows | L2 / none (dense) | MBA / none (dense) | MBA / none (sparse) | MBA sparse / L2 dense | "
              "none sparse / none dense |", "|---|---|---|---|---|---|"]
    pairs = ((("l2", "dense"), ("none", "dense")), (("mba", "dense"), ("none", "dense")),
             (("mba", "sparse"), ("none", "sparse")), (("mba", "sparse"), ("l2", "dense")),
             (("none", "sparse"), ("none", "dense")))
    for size in result["items"]:
        cells = []
        for a, b in pairs:
            values = ratio(result, size, a, b)
            cells.append(f"{_fmt(statistics.median(values))} ({', '.join(_fmt(v) for v in values)})")
        lines.append(f"| {size:,} | " + " | ".join(cells) + " |")
    lines += ["", reading(result), ""]
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.4f}"


def reading(result: dict[str, Any]) -> str:
    """The reading of the smallest and largest sizes, from their medians over rounds."""
    small, large = min(result["items"]), max(result["items"])

    def med(size: int, a: tuple[str, str], b: tuple[str, str]) -> float:
        return statistics.median(ratio(result, size, a, b))

    def peak(size: int, arm: tuple[str, str]) -> float:
        return max(r["peak_rss_bytes"] for r in _arm(result, size, *arm)) / MIB

    sparse, dense = ("mba", "sparse"), ("l2", "dense")
    overhead = med(small, ("none", "sparse"), ("none", "dense"))
    small_tables = (": where the tables are small, the bookkeeping of sparse updates outweighs what they save"
                    if overhead > 1.05 else ", about the same" if overhead >= 0.95 else "")
    return (f"Reading (medians over rounds): at {large:,} item rows, under dense Adam L2 on every row costs "
            f"{med(large, dense, ('none', 'dense')):.2f}x an unregularised step and MBA "
            f"{med(large, ('mba', 'dense'), ('none', 'dense')):.2f}x; with sparse tables MBA costs "
            f"{med(large, sparse, ('none', 'sparse')):.2f}x an unregularised sparse step, and a sparse MBA step takes "
            f"{_fmt(med(large, sparse, dense))}x the time of a dense L2 step at a peak RSS of "
            f"{peak(large, sparse):,.0f} "
            f"against {peak(large, dense):,.0f} MiB. At {small:,} rows the same ratio is "
            f"{med(small, sparse, dense):.2f}x, and unregularised sparse tables cost {overhead:.2f}x dense ones"
            f"{small_tables}. "
            "The quality of the regularisers is `make report-ctr`'s (reports/ctr_quality.md), not this report's.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ctr.regularisers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=list(ITEMS), help="item-table sizes (rows)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per arm and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (the optimizer state is made)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "ctr_regularisers.md")
    parser.add_argument("--rerender", type=Path, default=None,
                        help="write --out again from this run's .json (no step is rerun)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_arm(**json.loads(args.child))))
        return
    given = shlex.join(argv if argv is not None else sys.argv[1:])
    if args.rerender is not None:
        saved = json.loads(args.rerender.read_text())
        text = render(saved, saved.get("command", "python -m benchmarks.ctr.regularisers"))
        args.out.write_text(text.replace("\n\n", f"\n\nRe-rendered from {args.rerender.name} by `python -m "
                                         f"benchmarks.ctr.regularisers {given}`: no step was rerun.\n\n", 1))
        print(args.out.read_text())
        return
    result = measure(args.items, args.steps, args.warmup, args.rounds)
    result["command"] = f"python -m benchmarks.ctr.regularisers {given}".strip()
    args.out.write_text(render(result, result["command"]))
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(args.out.read_text())
    from benchmarks.serving.validity import FOREIGN_SHARE_MAX

    if not result["cores"]["foreign_share"] <= FOREIGN_SHARE_MAX:
        sys.exit("INVALID run: other work took more than its share of the cores")


if __name__ == "__main__":
    main()
