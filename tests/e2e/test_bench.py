"""tests/bench/run --quick: the benchmark harness runs end to end, so it never rots.

Only the shape of the output is checked, never a number against a goal: a benchmark
on a shared CI machine measures the machine as much as nestbox. Rows whose nestbox
feature has not landed print `n/a (feature missing: ...)` and still count."""
import json
import re
import subprocess

from conftest import NESTBOX, ROOT

BENCH = ROOT / "tests" / "bench" / "run"


def test_quick_run(tmp_path):
    out = tmp_path / "x.json"
    proc = subprocess.run([str(BENCH), "--quick", "--json", str(out), "--nestbox", str(NESTBOX)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    table = [l for l in proc.stdout.splitlines() if l.startswith("|")]
    assert table[0].startswith("| # | row | variant | median | ratio | goal | met? |")
    numbers = {m.group(1) for l in table[2:] for m in [re.match(r"\| (\d+) \|", l)] if m}
    assert numbers == {str(n) for n in range(1, 15)}, proc.stdout

    result = json.loads(out.read_text())
    assert result["quick"] is True
    assert [r["row"] for r in result["rows"]] == list(range(1, 15))
    for row in result["rows"]:
        assert row["reason"] is None or "harness error" not in row["reason"], row

    # the sandbox exists, so row 1 is measured: nestbox's median and its ratio to bwrap
    row1 = result["rows"][0]
    assert row1["reference"] == "bwrap"
    nestbox = next(v for v in row1["variants"] if v["name"] == "nestbox sandbox")
    assert nestbox["status"] == "ok", nestbox
    assert isinstance(nestbox["median_ms"], float) and nestbox["median_ms"] > 0
    assert isinstance(nestbox["ratio"], float) and nestbox["ratio"] > 0
    assert nestbox["ratios"]["bwrap"] == nestbox["ratio"]
    assert len(nestbox["samples"]) == 1  # --quick: one run, no warm-up


def test_bad_option_is_a_usage_error(tmp_path):
    proc = subprocess.run([str(BENCH), "--rows", "15", "--json", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--rows" in proc.stderr
    assert not (tmp_path / "x.json").exists()
