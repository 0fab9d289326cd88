"""The evaluation plan of a governed run: within its share of the budget, by hand arithmetic."""

import pytest

from budgetune.train.evalplan import describe, eval_due, fractions, make_plan


def test_plan_fits_the_share_and_samples_fixed_examples():
    # 100 examples cost 1e10 FLOPs per whole evaluation (1e8 each); budget 1e12, share 10%: 1e11 for evaluation.
    # Two whole evaluations take 2e10, leaving 8e10 for 10 points: 80 examples each (8e9 per point).
    plan = make_plan(max_flops=1e12, whole_flops=1e10, n_examples=100, points=10, min_points=6, min_sample=8,
                     share=0.1, seed=3)
    assert plan["points"] == 10 and plan["sample_size"] == 80 and len(plan["sample"]) == 80
    assert plan["share"] == pytest.approx((2e10 + 10 * 80 * 1e8) / 1e12)
    assert plan["share"] <= 0.1 and not plan["note"]
    again = make_plan(max_flops=1e12, whole_flops=1e10, n_examples=100, points=10, min_points=6, min_sample=8,
                      share=0.1, seed=3)
    assert again["sample"] == plan["sample"]  # the same examples every time: evaluations compare pair by pair


def test_a_tight_budget_gets_fewer_points_then_none_in_between():
    # Left for the points: 0.1·1e11 − 2·1e9 = 8e9 = 80 example-evaluations of 1e8; 10 points of 8 examples fit.
    plan = make_plan(max_flops=1e11, whole_flops=1e9, n_examples=10, points=12, min_points=6, min_sample=8,
                     share=0.1)
    assert (plan["points"], plan["sample_size"]) == (10, 8) and not plan["note"]
    # 0.1·2e10 − 2e9 = 0 left: not even one point fits, so none is planned and the share holds (2e9 of 2e10).
    tight = make_plan(max_flops=2e10, whole_flops=1e9, n_examples=10, points=12, min_points=6, min_sample=8,
                      share=0.1)
    assert tight["points"] == 0 and tight["share"] == pytest.approx(2e9 / 2e10)
    assert "no evaluations in between" in tight["note"] and "--max-flops" in tight["note"]
    assert describe(tight, "marginal").startswith("governor marginal: no evaluations in between")
    # 0.1·2.4e10 − 2e9 = 4e8: 4 example-evaluations, below the 6 points of 8 asked for: none either.
    assert make_plan(max_flops=2.4e10, whole_flops=1e9, n_examples=10, points=12, min_points=6, min_sample=8,
                     share=0.1)["points"] == 0


def test_a_paired_test_needs_two_examples():
    one = make_plan(max_flops=1e13, whole_flops=1e9, n_examples=1, points=10, min_points=6, min_sample=8,
                    share=0.1)
    assert one["points"] == 0 and "a paired test needs 2" in one["note"]
    # Fewer examples than the governor's minimum sample: the whole set is the sample (0.1·1e12 − 2e9 = 9.8e10).
    few = make_plan(max_flops=1e12, whole_flops=1e9, n_examples=3, points=10, min_points=6, min_sample=8,
                    share=0.1)
    assert (few["points"], few["sample_size"], few["sample"]) == (10, 3, None)


def test_no_flop_budget_means_whole_set_evaluations_and_a_line_for_the_user():
    plan = make_plan(max_flops=None, whole_flops=1e9, n_examples=10, points=10, min_points=6, min_sample=8,
                     share=0.1)
    assert plan["sample"] is None and plan["sample_size"] == 10
    line = describe(make_plan(max_flops=1e12, whole_flops=1e10, n_examples=100, points=10, min_points=6,
                              min_sample=8, share=0.1), "marginal")
    assert "10 evaluations on 80 held-out examples" in line and "whole held-out set" in line


def test_points_fall_evenly_over_the_budget():
    plan = {"points": 3}
    assert fractions(plan) == [0.25, 0.5, 0.75]
    assert [eval_due(plan, f, 1) for f in (0.2, 0.25)] == [False, True]
    assert eval_due(plan, 0.75, 3) and not eval_due(plan, 0.99, 4)  # the final evaluation is the loop's own
    assert not any(eval_due({"points": 0}, f, 1) for f in (0.1, 0.5, 0.99))  # no points: none in between
    # spacing 1.5 crowds the start: 0.25^1.5 = 0.125, 0.5^1.5 = 0.3536, 0.75^1.5 = 0.6495
    assert fractions({"points": 3, "spacing": 1.5}) == pytest.approx([0.125, 0.35355, 0.64952], abs=1e-5)
    assert eval_due({"points": 3, "spacing": 1.5}, 0.13, 1) and not eval_due({"points": 3, "spacing": 1.5}, 0.3, 2)


def test_with_a_test_set_apart_the_dev_side_is_the_sample_throughout():
    # dev: 100 examples at 1e8 each (1e10 whole); test: 5e9 whole, evaluated before and after; generation 4e9.
    # Share 1e11 − 2·5e9 − 4e9 = 8.6e10 for the origin and 10 points: 11 evaluations of 78 examples (7.8e9 each).
    plan = make_plan(max_flops=1e12, whole_flops=1e10, n_examples=100, points=10, min_points=6, min_sample=8,
                     share=0.1, reported_flops=5e9, origin_on_sample=True, outside_flops=4e9)
    assert plan["points"] == 10 and plan["sample_size"] == 78
    assert plan["share"] == pytest.approx((2 * 5e9 + 4e9 + 11 * 78 * 1e8) / 1e12)
    assert plan["final_flops"] == pytest.approx(5e9 + 4e9)  # no final dev evaluation: the test one is reported
    line = describe(plan, "marginal")
    assert "11 evaluations on 78 dev examples (the first before training)" in line and "whole test set" in line


def test_evaluation_flops_are_the_batches_heldout_losses_runs(tiny_model, tokenizer):
    from accelerate import Accelerator
    from helpers import small_split

    from budgetune.flops import profile_from_model
    from budgetune.train.evalplan import evaluation_flops
    from budgetune.train.evaluate import heldout_losses

    examples = small_split(tokenizer, n_target=8).target
    r = heldout_losses(tiny_model, examples, pad_id=0, batch_size=3, accelerator=Accelerator(cpu=True))
    priced = evaluation_flops(profile_from_model(tiny_model), [e.n_tokens for e in examples], 3)
    assert priced == pytest.approx(r["flops"])  # the plan's price is what the evaluation is charged


def test_an_evaluation_the_share_cannot_pay_for_is_skipped_when_time_ends_the_run():
    from budgetune.budget import Budget, Ledger
    from budgetune.train.governed import affordable

    plan = {"share": 0.1, "share_target": 0.1, "whole_flops": 1e10, "n_examples": 100, "sample_size": 10,
            "final_flops": 2e9}
    budget = Budget(max_flops=1e12, max_seconds=100.0)
    ledger = Ledger()
    ledger.charge("train", 9e9)
    ledger.charge("eval", 1e9)
    ledger.seconds = 50.0  # half the time for 1e10 FLOPs: on course for 2e10, far below the 1e12 budget
    # 1e9 spent + 1e9 (10 examples) + 2e9 final = 4e9 > 10% of 2e10: skipped.
    assert not affordable(plan, budget, ledger, budget.fraction_spent(ledger))
    ledger.seconds = 1.0  # on course for 1e12 (the FLOP budget binds): the plan holds
    assert affordable(plan, budget, ledger, budget.fraction_spent(ledger))


def test_an_evaluation_in_between_that_would_eat_the_final_reserve_is_skipped():
    # The 3e12-FLOP governed run that overran: 2.84e12 spent after its last step, an 8-example sample evaluation of
    # 9.46e10 on record, 2.36e11 kept for the final evaluation: 2.84e12 + 9.46e10 + 2.36e11 = 3.17e12 > 3e12.
    from budgetune.budget import Budget, Ledger
    from budgetune.train.governed import fits_flops

    ledger = Ledger()
    ledger.charge("train", 2.84e12, 1)
    evals = [{"eval_flops": 9.46e10, "eval_indices": list(range(8))}]
    assert not fits_flops(Budget(max_flops=3e12), ledger, evals, list(range(8)), 16, 2.36e11)
    assert fits_flops(Budget(max_flops=3.2e12), ledger, evals, list(range(8)), 16, 2.36e11)
    # priced per example: the whole 16-example set costs twice the 8-example sample (2.84 + 0.1892 + 0.236 = 3.265)
    assert not fits_flops(Budget(max_flops=3.2e12), ledger, evals, None, 16, 2.36e11)
    assert fits_flops(Budget(max_flops=None), ledger, evals, None, 16, 2.36e11)
