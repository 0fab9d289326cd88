"""Memory sizes on the command line: a number without a unit is refused with the fix, not read as bytes."""

from __future__ import annotations

import pytest

from budgetune import cli
from budgetune.config import parse_bytes
from budgetune.errors import UserError


def test_sizes_with_units_are_read_by_hand_arithmetic():
    assert parse_bytes("24GiB") == 24 * 2**30
    assert parse_bytes("80GB") == 80 * 10**9
    assert parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes("0") == 0  # zero needs no unit (e.g. --overhead 0)


def test_a_unitless_size_is_refused_with_the_fix():
    with pytest.raises(UserError, match=r"'24' has no unit.*24GiB"):
        parse_bytes("24", "--gpu-memory")


def test_plan_with_a_unitless_gpu_memory_exits_2_with_one_line(capsys):
    assert cli.main(["plan", "--gpu-memory", "24"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--gpu-memory '24' has no unit" in err and "24GiB" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
