"""The benchmark scripts run and print their tables (tiny sizes; their numbers are not checked), and
gpu_check.sh stops at once where there is no GPU."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import ROOT, TINY, TINY_MODEL


def script(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_train_prints_phases_overhead_extra_time_and_profile(tmp_path: Path) -> None:
    out = script(
        "bench_train.py", "--batch-sizes", "4,8", "--steps", "2", "--repeats", "2", "--out", str(tmp_path),
        "--profile", "3", *TINY, *TINY_MODEL["transformer"],
    )  # fmt: skip
    number = r"-?[\d.,]+%?"
    phases = rf"^\| (\d+)(?: \| {number}){{7}} \|$"  # batch, 5 phases, bare samples/s, peak MB
    assert re.findall(phases, out, re.M) == ["4", "8"]
    # ..., overhead, range, epoch end ms
    overhead = rf"^\| (\d+)(?: \| {number}){{5}} \| {number} to {number} \| {number} \|$"
    assert re.findall(overhead, out, re.M) == ["4", "8"]
    assert re.search(r"\noverhead -?\d+% \(batch 8\)\n$", out)
    assert "host syncs" not in out  # reported on CUDA only
    # --profile: host time of 3 profiled bare and Lightning steps at the first batch size, by part
    assert re.search(r"^host time per step under cProfile at batch 4 \(3 steps each; ", out, re.M)
    ms = r"(-?[\d.]+)"
    rows = re.findall(rf"^\| ([A-Za-z][^|]+) \| {ms} \| {ms} \| ([+-][\d.]+) \|$", out, re.M)
    parts = {part: [float(v) for v in values] for part, *values in rows}
    assert parts["Lightning (loops, hooks, logging, plugins)"][0] == 0  # the bare loop has no Lightning
    assert parts["Lightning (loops, hooks, logging, plugins)"][1] > 0
    assert any(part.startswith("torch operators") for part in parts)
    bare, fit, added = parts.pop("all")
    assert abs(sum(v[0] for v in parts.values()) - bare) < 0.01 and abs(fit - bare - added) < 0.01
    # The fit gathers its batches (the bare loop reuses gathered ones) and watches for a NaN loss
    only = re.search(r"^torch operators only the fit calls \(calls per step\): (.+)$", out, re.M)
    assert only and {"index_select 1", "torch.isfinite 1"} <= set(only.group(1).split(", "))


def test_bench_data_prints_both_loaders_and_the_speed_up() -> None:
    out = script("bench_data.py", "--batch-size", "16", "--batches", "2")
    assert re.search(r"^\| heatforecast loader \| [\d,]+ \| [\d.]+ \| [\d.]+% \|$", out, re.M)
    flipped = r"^\| heatforecast loader, augment.flip=0.5 \| [\d,]+ \| [\d.]+ \| [\d.]+% \|$"
    assert re.search(flipped, out, re.M)
    assert re.search(r"^\| naive Dataset \+ DataLoader \| [\d,]+ \| [\d.]+ \| [\d.]+% \|$", out, re.M)
    assert re.search(r"loader speed-up over naive: [\d.]+x\n$", out)


def test_bench_losses_times_every_loss_against_mse() -> None:
    out = script("bench_losses.py", "--repeats", "1", "--shapes", "2x3x181", "--panel-shape", "2x3x40")
    for name in ("mse", "cumsum_mse", "cosine", "emd", "kl", "cramer", "cumsum_mse_over_cos"):
        assert re.search(rf"^\| {re.escape(name)} \| [\d.]+ \| [\d.]+ \|$", out, re.M), name
    pot = r"emd forward @ 2x3x181: heatforecast [\d.]+ ms, POT ot.wasserstein_1d [\d.]+ ms -> [\d.]+x faster"
    assert re.search(pot, out)
    assert "| metric panel @ 2x3x40: peaks.max_count | ms per batch | x max_count 4 |" in out
    counts = re.findall(r"^\| (\d) \| [\d.]+ \| ([\d.]+) \|$", out, re.M)
    assert [c for c, _ in counts] == list("12345678") and dict(counts)["4"] == "1.00"


@pytest.mark.parametrize(
    "name, args, message",
    [  # was: a ZeroDivisionError, IndexError or ValueError traceback, or an error from the data config
        ("bench_train.py", ["--batch-sizes", "64,0"], "--batch-sizes: '64,0'; expected whole numbers >= 1"),
        ("bench_train.py", ["--steps", "0"], "--steps and --repeats must be >= 1, --profile >= 0"),
        ("bench_train.py", ["--repeats", "0"], "--steps and --repeats must be >= 1"),
        ("bench_data.py", ["--batches", "0"], "--batch-size and --batches must be >= 1"),
        ("bench_losses.py", ["--repeats", "0"], "--repeats must be >= 1"),
        ("bench_losses.py", ["--shapes", "8x10"], "--shapes: '8x10'; expected BxHxA, e.g. 8x10x181"),
        ("bench_losses.py", ["--panel-shape", "0x10x181"], "--panel-shape: '0x10x181'; expected BxHxA"),
    ],
)
def test_bench_scripts_refuse_sizes_that_measure_nothing(
    name: str, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), ROOT / "scripts" / name)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(sys, "argv", [name, *args])
    with pytest.raises(SystemExit) as stop:
        bench.main()
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the script runs (tests/test_gpu.py's side)")
def test_gpu_check_stops_at_once_without_a_gpu(tmp_path: Path) -> None:
    path = ROOT / "scripts" / "gpu_check.sh"
    # What it would run on a GPU parses: the shell script, and each Python heredoc in it.
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    snippets = re.findall(r"<<'PY'[^\n]*\n(.*?)^PY$", path.read_text(), re.S | re.M)
    assert len(snippets) == 3
    for snippet in snippets:
        compile(snippet, str(path), "exec")
    env = {**os.environ, "PYTHON": sys.executable, "LOG_DIR": str(tmp_path)}
    cmd = ["bash", str(path)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "gpu_check: no CUDA device visible to torch" in done.stderr
    assert not list(tmp_path.iterdir())  # nothing ran
