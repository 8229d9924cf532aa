"""The selection rule and the verdicts: a correction never returns a model beyond the clean budget
without saying so, and no degraded or collapsed candidate is ever preferred or named best."""
import math

import pytest
import yaml

from model_training.corrections.selection import CleanBudget, choose, worst
from utils.evaluation.compare import _summary, best, display_rows

BUDGET = CleanBudget(reference_clean=0.88, max_clean_drop=0.03, majority_rate=0.5)


def test_status_of_a_clean_accuracy():
    assert BUDGET.status(0.90) == BUDGET.status(0.85) == "ok"  # exactly at the budget is still ok
    assert BUDGET.status(0.849) == BUDGET.status(0.56) == "degraded"
    assert BUDGET.status(0.55) == BUDGET.status(0.40) == "collapsed"
    # an original that never beat the majority class cannot collapse: it had nothing to lose
    weak = CleanBudget(reference_clean=0.52, max_clean_drop=0.03, majority_rate=0.5)
    assert weak.status(0.50) == "ok" and weak.status(0.45) == "degraded"
    # no original (ISNet from scratch): only a collapse can be judged
    scratch = CleanBudget(float("nan"), 0.03, 0.5)
    assert scratch.status(0.6) == "ok" and scratch.status(0.52) == "collapsed"
    assert worst(["ok", "collapsed", "degraded"]) == "collapsed" and worst(["ok", "degraded"]) == "degraded"


def test_the_rule_prefers_any_candidate_within_the_budget():
    # (clean, attacked): the collapsed and the degraded candidates have the best attacked accuracy
    candidates = [(0.50, 0.50), (0.80, 0.86), (0.87, 0.74), (0.89, 0.72)]
    assert choose(candidates, BUDGET) == 2
    # none within the budget: the highest clean accuracy, which keeps its status
    assert choose([(0.50, 0.50), (0.80, 0.86), (0.82, 0.70)], BUDGET) == 2
    assert choose([(0.87, 0.74), (0.87, 0.74)], BUDGET) == 0  # equals: the first (earliest, weakest)


def _row(method, status, val_attacked, **extra):
    return {"method": method, "status": status, "val_clean": 0.88, "val_attacked": val_attacked, "seeds": 1, **extra}


def test_best_is_never_degraded_or_collapsed():
    rows = [_row("original", "-", 0.68), _row("Vanilla", "ok", 0.85), _row("RRR", "collapsed", 0.99),
            _row("ISNet selective", "degraded", 0.95), _row("RRClarc", "ok", 0.80), _row("PClarc", "ok", 0.78)]
    assert best(rows)["method"] == "RRClarc"
    assert best([r for r in rows if r["method"] not in ("RRClarc", "PClarc")]) is None


def test_a_collapsed_candidate_reports_no_improvement():
    seeds = [{"epochs": 3.0, "val_clean": 0.5, "val_attacked": 0.5, "clean": c, "attacked": 0.5, "ch": 0.5, "gap_closed": 0.99,
              "clean_change": c - 0.88, "artifact_relevance": 0.0, "ar_excess": -0.1, "tcav": 0.5,
              "tcav_sensitivity": 0.0, "tcav_refit": 0.5, "seconds": 1.0, "p_clean": p, "p_attacked": p,
              "p_auroc": p, "status": s} for c, p, s in ((0.50, 1e-9, "collapsed"), (0.86, 0.2, "ok"))]
    row = _summary(seeds)
    assert row["status"] == "collapsed" and row["status_seeds"] == "ok 1, collapsed 1"
    assert all(math.isnan(row[k]) for k in ("gap_closed", "artifact_relevance", "ar_excess", "tcav"))
    assert row["clean"] == pytest.approx(0.68) and row["clean_sd"] == pytest.approx(0.2546, abs=1e-4)
    assert row["p_clean"] == pytest.approx((1e-9 + 0.2) / 2) and row["p_clean_significant"] == 1
    cells = display_rows([{**row, "method": "RRR", "seeds": 2}])[0]
    assert cells["gap_closed"] == "—" and cells["clean"] == "0.680 ± 0.255"
    assert cells["status"] == "collapsed (ok 1, collapsed 1)" and cells["p_clean"].endswith("(1/2)")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from datasets import get_dataset
    from tests.conftest import TINY_DATA, train_tiny_vgg

    splits = get_dataset("synth_derm", img_size=32, seed=0, dataset_options=TINY_DATA["dataset_options"],
                         artifact="band_aid")
    ckpt = tmp_path_factory.mktemp("trained") / "model.pt"
    train_tiny_vgg(splits.train, 32, ckpt, epochs=12)
    return ckpt


@pytest.mark.parametrize("lamb,lr", [(0.0, 1e-3), (1e4, 0.05)], ids=["gentle", "destructive"])
def test_a_correction_beyond_the_budget_says_so(trained, tmp_path, lamb, lr):
    """Whatever the strength, the kept epoch is the rule's choice over the epochs' validation numbers,
    and a kept model outside the clean budget carries the status degraded or collapsed."""
    from model_training.corrections.run import run_correction
    from tests.conftest import TINY_DATA
    from utils.config import load_config
    from utils.config.mitigation import MitigationConfig

    path = tmp_path / "rrr.yaml"
    path.write_text(yaml.safe_dump({**TINY_DATA, "model_name": "tiny_vgg", "artifact": "band_aid", "ckpt_path": str(trained),
                                    "batch_size": 16, "output_dir": str(tmp_path / "out"), "method": "RRR",
                                    "lamb": lamb, "lr": lr, "num_epochs": 3, "freeze": False}))
    _, metrics = run_correction(load_config(path, MitigationConfig))
    selection, history = metrics["selection"], metrics["history"]
    budget = CleanBudget(selection["original_val"]["clean"], selection["max_clean_drop"], selection["majority_rate"])
    expected = choose([(row["val_clean"], row["val_attacked"]) for row in history], budget)
    assert selection["epoch"] == history[expected]["epoch"]
    assert selection["val"]["clean"] == history[expected]["val_clean"]  # the saved model is the kept epoch
    assert selection["status"] == budget.status(selection["val"]["clean"])
    if selection["val"]["clean"] < budget.reference_clean - budget.max_clean_drop:
        assert selection["status"] in ("degraded", "collapsed")
    if lamb > 0:  # the destructive strength really is destructive, and says so
        assert selection["status"] in ("degraded", "collapsed") and all(row["val_status"] != "ok" for row in history)


def test_the_report_names_the_significant_differences():
    from utils.evaluation.compare import significance

    rows = [_row("original", "-", 0.68), _row("Vanilla", "ok", 0.70, p_attacked=0.4, p_attacked_significant=0,
                                               p_clean=0.9, p_clean_significant=0, seeds=3),
            _row("RRR", "ok", 0.85, p_attacked=1e-6, p_attacked_significant=3, p_clean=0.03, p_clean_significant=2, seeds=3)]
    attacked, clean = significance(rows)
    assert attacked.endswith("for: RRR; not for: Vanilla.")  # 3 of 3 seeds
    assert clean.endswith("for: none; not for: Vanilla, RRR.")  # 2 of 3 seeds is not every seed
