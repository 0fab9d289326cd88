"""Charges made to a run by other commands: recorded once, folded into a resumed ledger once, bad files refused."""

from __future__ import annotations

import json

import pytest

from budgetune.budget import Ledger, fold_outside, read_charges
from budgetune.charges import charge_outside, check_outside
from budgetune.errors import UserError


def _spent(phase: str, flops: float, tokens: int) -> Ledger:
    spent = Ledger()
    spent.charge(phase, flops, tokens)
    return spent


def test_outside_charges_fold_into_an_older_ledger_once(tmp_path):
    path = tmp_path / "ledger.json"
    checkpointed = Ledger()
    checkpointed.charge("train", 100.0, 10)
    checkpointed.save(path)
    charge_outside(path, _spent("eval", 7.0, 3), "eval")
    charge_outside(path, _spent("inference", 5.0, 2), "generate")
    on_disk = Ledger.load(path)
    assert on_disk.flops["eval"] == 7.0 and on_disk.flops["inference"] == 5.0 and on_disk.external == 2

    resumed = Ledger.from_dict(checkpointed.to_dict())  # what a checkpoint taken before both commands holds
    fold_outside(resumed, read_charges(tmp_path))
    assert resumed.flops == on_disk.flops and resumed.tokens == on_disk.tokens
    fold_outside(resumed, read_charges(tmp_path))  # a second fold adds nothing
    assert resumed.total_flops == 112.0


def test_bad_charges_record_is_one_line(tmp_path):
    (tmp_path / "charges.json").write_text(json.dumps({"flops": 1}))
    with pytest.raises(UserError, match="charges.json: cannot read the charges record"):
        check_outside(tmp_path / "ledger.json")
    (tmp_path / "charges.json").write_text("[{")
    with pytest.raises(UserError, match="remove it"):
        read_charges(tmp_path)
