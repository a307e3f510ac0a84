"""benchmarks/ctr/regulariser_sweep.py: the strengths are chosen on validation only, the study's runs are reused."""

from __future__ import annotations

from benchmarks.ctr.regulariser_sweep import L2_STRENGTHS, MBA_STRENGTHS, analyse, chosen, render, runs


def test_the_study_strengths_are_the_study_runs_and_the_others_differ_only_in_strength():
    from models.ctr.study import L2_LAMBDA, PARTS

    study = {run.name: run for run in PARTS["reg"]}
    grid = runs()
    assert grid["none"] == {0.0: study["reg_none"]}
    assert grid["l2"][L2_LAMBDA] is study["reg_l2"] and grid["mba"][0.05] is study["reg_mba"]
    assert set(grid["l2"]) == set(L2_STRENGTHS) and set(grid["mba"]) == set(MBA_STRENGTHS)
    for strength, run in grid["mba"].items():
        if strength != 0.05:
            assert run.train == {**study["reg_mba"].train, "mba_lambda": strength} and run.name != "reg_mba"
    names = [run.name for by in grid.values() for run in by.values()]
    assert len(names) == len(set(names))  # every arm has its own cache file


def _record(seed: int, valid: float, test_shift: float) -> dict:
    per_user = {str(u): [2, 0.5 + test_shift + 0.001 * ((u * 7 + seed) % 5)] for u in range(40)}
    return {"seed": seed, "metrics": {"valid_gauc": valid, "epochs_run": 5},
            "test": {"gauc": 0.5 + test_shift, "per_user": per_user}}


def _result() -> dict:
    def arm(valid: float, shift: float) -> list[dict]:
        return [_record(seed, valid + 0.001 * seed, shift) for seed in range(3)]

    # the highest test GAUC (L2 5e-05) is NOT the highest validation one: the choice must follow validation
    return {"world": {"seed": 7, "n_items": 100, "item_zipf": 1.0, "n_users": 50}, "seeds": 3, "threads": 1,
            "test_users": 40, "wall_seconds": 1.0,
            "records": {"none": {"0": arm(0.60, 0.00)},
                        "l2": {"5e-05": arm(0.61, 0.05), "0.0005": arm(0.63, 0.01), "0.005": arm(0.62, 0.02)},
                        "mba": {"0.005": arm(0.64, 0.03), "0.05": arm(0.62, 0.04), "0.5": arm(0.61, 0.00)}}}


def test_each_strength_is_chosen_by_its_mean_validation_gauc_never_by_test():
    result = _result()
    assert chosen(result, "l2") == "0.0005" and chosen(result, "mba") == "0.005"
    figures = analyse(result)
    assert figures["chosen"] == {"none": "0", "l2": "0.0005", "mba": "0.005"}
    assert abs(figures["comparisons"]["mba - l2"]["estimate"] - 0.02) < 1e-9
    assert figures["comparisons"]["mba - none"]["verdict"] == "supported"


def test_the_report_marks_the_choice_and_a_choice_at_the_edge_of_the_grid():
    text = render(_result(), "python -m benchmarks.ctr.regulariser_sweep")
    assert "| MBA (eq. 4) | 0.005 | 0.6410 | 0.5300 +- 0.0000 | 5.0 | yes |" in text
    assert "| L2 on every embedding row | 0.0005 | 0.6310 |" in text
    assert "At the edge of its grid: MBA (eq. 4); its best strength may lie beyond the grid." in text
    assert "| MBA (eq. 4) (0.005) - L2 on every embedding row (0.0005) | +0.0200 |" in text
