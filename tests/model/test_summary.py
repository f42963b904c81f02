"""Facts about python -m model.summary (model/summary.py)."""
import subprocess
import sys

from model import build_alexnet, summary


def test_summary_totals_equal_the_model():
    for two_tower in (False, True):
        model = build_alexnet(two_tower=two_tower)
        t = summary.totals(summary.layer_table(model))
        assert t["all"][0] == model.count_params()
        assert t["conv"][0] + t["fc"][0] == model.count_params()
    t = summary.totals(summary.layer_table(build_alexnet()))
    assert t["conv"] == (3_747_200, 1_076_634_144)
    assert t["fc"] == (58_631_144, 58_621_952)


def test_summary_command_prints_the_table():
    proc = subprocess.run(
        [sys.executable, "-m", "model.summary", "--two_tower"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "60,965,224" in proc.stdout
    assert "conv2" in proc.stdout and "27x27x256" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "model.summary", "--image_size", "50"], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: build_alexnet expected image_size")
