"""The plan's CPU memory is the kernel's MemAvailable (page cache included), not the free pages."""

from pathlib import Path

import pytest

from budgetune.joint.memory import cpu_available

MEMINFO = Path("/proc/meminfo")


def _meminfo_kib(field: str) -> int:
    for line in MEMINFO.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@pytest.mark.skipif(not MEMINFO.exists(), reason="Linux /proc/meminfo only")
def test_cpu_available_reads_mem_available_not_mem_free():
    available, total = cpu_available()
    # read independently from the kernel's own table; the value moves a little between the two reads
    assert available == pytest.approx(_meminfo_kib("MemAvailable") * 1024, rel=0.05, abs=64 * 2**20)
    assert total == _meminfo_kib("MemTotal") * 1024
    assert available >= _meminfo_kib("MemFree") * 1024 - 64 * 2**20
