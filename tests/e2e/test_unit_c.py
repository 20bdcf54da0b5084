"""Runs every C unit test binary that meson built, so one pytest run reports them all."""
import subprocess

import pytest

from conftest import BUILD

UNIT_BINARIES = sorted(p for p in (BUILD / "tests").glob("test-*") if p.is_file() and p.stat().st_mode & 0o111)


@pytest.mark.parametrize("binary", UNIT_BINARIES, ids=[p.name for p in UNIT_BINARIES])
def test_unit(binary):
    proc = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_unit_binaries_were_built():
    assert UNIT_BINARIES, f"no unit test binaries under {BUILD / 'tests'}"
