"""Every `python train.py` and `python evaluate.py` command the docs and the --help texts give
composes and passes the entry point's checks up to the work itself, and every `python scripts/...`
command parses: a renamed option, key or flag fails here, not in a reader's terminal. Links reach
their files and headings, and the loss study's tables are the CSVs its commands wrote."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import torch
from hydra import initialize_config_dir

from heatforecast.training import (
    CheckpointError,
    evaluate,
    run,
)
from heatforecast.training.checkpoints import read_checkpoint
from heatforecast.training.command_line import checked_command_line, first_job
from heatforecast.training.config import check_config

from .conftest import CONF, ROOT, TINY, hydra_job
from .test_losses import forum_frame

DOCS = [ROOT / "README.md", ROOT / "data" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"python3?\s+(train|evaluate)\.py\b")
SCRIPT = re.compile(r"python3?\s+scripts/(\w+)\.py\b")


def doc_commands(path: Path, command: re.Pattern = COMMAND) -> list[tuple[str, str]]:
    """(where, command) for each ``command`` in a markdown file: a line of a fenced block (backslash
    continuations joined), or an inline code span, which may wrap over lines."""
    found = []
    line = 1
    for i, part in enumerate(re.split(r"^```.*$", path.read_text(), flags=re.M)):
        if i % 2:  # inside a fenced block
            rows = part.split("\n")
            j = 0
            while j < len(rows):
                row, first = rows[j], j
                while row.endswith("\\") and j + 1 < len(rows):
                    j += 1
                    row = row[:-1] + " " + rows[j].strip()
                if match := command.search(row):  # up to a backtick: the layout's prose quotes some
                    found.append((f"{path.name}:{line + first}", row[match.start() :].split("`")[0]))
                j += 1
        else:
            for span in re.finditer(r"`([^`]+)`", part):  # may wrap over lines, or follow a prefix
                if match := command.search(span.group(1)):
                    where = f"{path.name}:{line + part[: span.start()].count(chr(10))}"
                    found.append((where, span.group(1)[match.start() :].replace("\n", " ")))
        line += part.count("\n")
    return found


def help_commands(path: Path) -> list[tuple[str, str]]:
    """(where, command) for each example in a config's --help text: the line up to its description."""
    found = []
    for number, row in enumerate(path.read_text().splitlines(), 1):
        if re.match(r"\s+" + COMMAND.pattern, row):  # an indented example line, not a comment
            found.append((f"{path.name}:{number}", re.split(r"\s{2,}", row.strip())[0]))
    return found


COMMANDS = [c for path in DOCS for c in doc_commands(path)]
COMMANDS += [c for name in ("train", "evaluate") for c in help_commands(CONF / f"{name}.yaml")]
SCRIPT_COMMANDS = [c for path in DOCS for c in doc_commands(path, SCRIPT)]


def words(command: str) -> list[str]:
    """A documented command's words, as the reader would type them: placeholders (`<run folder>`,
    `<overrides>`) stand for something typed, and only the first command of an `&&` chain counts."""
    return shlex.split(re.sub(r"<[^<>]*>", "X", command.split("&&")[0]), comments=True)


@functools.cache
def load_script(name: str) -> ModuleType:
    """scripts/NAME.py as a module, loaded once for all its documented commands."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_the_docs_give_commands_for_both_entry_points_and_the_scripts() -> None:
    scripts = {COMMAND.search(command).group(1) for _, command in COMMANDS}
    assert scripts == {"train", "evaluate"} and len(COMMANDS) > 40
    scripts = {SCRIPT.search(command).group(1) for _, command in SCRIPT_COMMANDS}
    assert scripts == {
        "bench_data", "bench_losses", "bench_train", "compare_runs", "loss_vs_shift", "make_synthetic"
    }  # fmt: skip


def test_help_shows_examples_before_the_option_groups() -> None:
    done = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("heatforecast train.py: train a forecaster")
    examples, groups = (
        done.stdout.index("python train.py -m loss="),
        done.stdout.index("\nloss: combo, cosine"),
    )
    assert examples < groups < done.stdout.index("\nseed: 0")


@pytest.mark.parametrize("script", ["train.py", "evaluate.py"])
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--help"], "heatforecast"),
        (["los=emd"], "los=emd: the config has no setting 'los' (did you mean 'loss'?); expected one of: "),
        (["loss=emdd"], "loss=emdd: loss has no option 'emdd' (did you mean 'emd'?); expected one of: "),
        (["-m", "loss=mse,emd", "trainer.max_epoch=3"], "trainer has no setting 'max_epoch' (did you mean"),
    ],
)
def test_help_and_a_mistyped_override_are_answered_without_loading_torch(
    script: str, args: list[str], said: str
) -> None:
    # The script as `python SCRIPT ARGS` runs it, then which modules it had loaded when Hydra exited.
    probe = (
        "import runpy, sys\n"
        f"sys.argv = [{script!r}, *{args!r}]\n"
        f"try:\n    runpy.run_path({script!r}, run_name='__main__')\n"
        "except SystemExit as done:\n    print('exit', done.code)\n"
        "print('loaded', 'torch' in sys.modules, 'lightning' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.splitlines()[-1] == "loaded False False", done.stdout + done.stderr
    assert ("exit 0" in done.stdout) == (args == ["--help"])
    assert said in done.stdout + done.stderr  # ours exit with the message, which the probe prints


def own_code(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The files of the README's "Your own loss or model" (``mine/...``) written under ``folder``, with
    ``folder/mine`` importable, as its commands' PYTHONPATH=mine makes it."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Your own loss or model") : text.index("## GPUs and clusters")]
    files = re.findall(r"`(mine/[^`]+)`:\n\n```\w+\n(.*?)```", section, flags=re.S)
    assert [name for name, _ in files] == [
        "mine/my_forecasting.py", "mine/conf/loss/js.yaml", "mine/conf/model/bin_mlp.yaml"
    ]  # fmt: skip
    for name, body in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(body)
    monkeypatch.syspath_prepend(str(folder / "mine"))
    monkeypatch.delitem(sys.modules, "my_forecasting", raising=False)  # another test's copy


@pytest.mark.parametrize("where, command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_a_documented_command_composes_and_passes_the_checks(
    where: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the docs' files and checkpoints are not here, whatever this checkout holds
    if "hydra.searchpath" in command:  # the README's own loss and model, beside the checkout as it says
        own_code(tmp_path, monkeypatch)
    typed = words(command)
    script, args = COMMAND.match(" ".join(typed[:2])).group(1), typed[2:]
    if "--help" in args:  # Hydra prints the help and exits: there is no job to check
        done = subprocess.run([sys.executable, ROOT / f"{script}.py", *args], capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.startswith(f"heatforecast {script}.py: "), where
        return
    args = [a for a in args if "=" in a or a in ("-m", "--multirun")]  # `X` alone: some overrides
    args = checked_command_line(args, CONF, script)  # as the script rewrites it; a refusal raises
    multirun = any(a in ("-m", "--multirun") for a in args)
    args = [a for a in args if not a.startswith("-")]
    if multirun:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            args = first_job(script, args)
        args.append("hydra.mode=MULTIRUN")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the GPU commands, on any machine
    with hydra_job(script, *args) as cfg:
        if script == "train":
            check_config(cfg)
        else:  # every check before the checkpoint is read: none of the docs' checkpoints is here
            with pytest.raises(CheckpointError, match="ckpt_path=.*no such file"):
                evaluate(cfg)


@pytest.mark.parametrize("where, command", SCRIPT_COMMANDS, ids=[w for w, _ in SCRIPT_COMMANDS])
def test_a_documented_script_command_parses(
    where: str, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    typed = words(re.sub(r"\[(--[^]]*)\]", r"\1", command))  # usage's optional `[--device cuda]`, taken
    name = SCRIPT.match(" ".join(typed[:2])).group(1)
    script = load_script(name)
    if name != "bench_train":
        script.arguments().parse_args(typed[2:])  # a wrong flag: SystemExit, argparse's message on stderr
        return
    _, overrides = script.arguments().parse_known_args(typed[2:])  # the rest are Hydra overrides
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the GPU benches, on any machine
    with hydra_job("train", *overrides) as cfg:
        check_config(cfg)


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_docs_links_reach_a_file_and_a_heading_there() -> None:
    # A renamed heading or a moved file breaks its links silently on GitHub; here it fails.
    broken, checked = [], 0
    for path in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            checked += 1
            if not linked.exists():
                broken.append(f"{path.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)
                if anchor not in {slug(h) for h in headings}:
                    broken.append(f"{path.name}: {target} (no such heading)")
    assert checked > 20 and not broken, broken


def markdown_table(text: str, heading: str, which: int = 0) -> list[list[str]]:
    """The cells of the ``which``-th table (0: the first) under ``## heading``, header and rule rows
    left out."""
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    tables = re.findall(r"^\|.*?(?=\n(?!\|))", section, flags=re.M | re.S)
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in tables[which].split("\n")[2:]]


STUDY = ROOT / "docs" / "loss_study.md"
PANEL = ["emd", "peak_err_deg", "mse", "kl", "mass_rel_err", "skill_emd"]  # the tables' test columns


def is_reference(row: pd.Series) -> bool:
    return row["run"].endswith("(same windows)")


def study_label(run: str) -> str:
    """The loss-study row a compare_runs.py CSV row stands for: the training loss (``emd w=0.1`` for a
    mass_weight), DLinear, or a reference (its row `persistence (same windows)` and the like)."""
    if run.endswith("(same windows)"):
        return run.split()[0]
    settings = dict(part.split("=", 1) for part in run.split(","))
    if "loss.mass_weight" in settings:
        return f"emd w={settings['loss.mass_weight']}"
    return "DLinear" if settings.get("model") == "linear" else settings["loss"]


def row_label(cell: str) -> str:
    """The same label for a table row's first cell: `` `emd_mse` ``, ``**DLinear** baseline``, `` `emd`,
    w = 0.1``, ``persistence (same windows)``, ``**linear reference**, ...``."""
    if weight := re.match(r"`emd`(?: \(w = |, w = )([\d.]+)", cell):
        return f"emd w={weight[1]}"
    return re.match(r"[`*]*(\w+)", cell)[1]


def study_csv(*names: str, seed: str | None = None) -> dict[str, pd.Series]:
    """Label -> row of compare_runs.py CSVs in docs/figures; with ``seed``, that seed's runs only
    (and the references)."""
    rows = {}
    for name in names:
        for _, row in pd.read_csv(ROOT / "docs" / "figures" / name, dtype=str).iterrows():
            if seed is None or f"seed={seed}" in row["run"].split(",") or is_reference(row):
                rows[study_label(row["run"])] = row
    return rows


@pytest.mark.parametrize(("heading", "csv"), [("Linear energy", "linear"), ("dB", "db")])
def test_the_loss_study_tables_are_the_csvs_that_compare_runs_wrote(heading: str, csv: str) -> None:
    # docs/loss_study.md's tables are typed from the CSVs its commands write: a rerun that updates one
    # and not the other fails here. The references' val EMD comes from a run's panel, not the CSV.
    written = study_csv(f"loss_study_{csv}.csv")
    rows = markdown_table(STUDY.read_text(), heading)
    assert len(rows) == len(written) == 15
    for cells in rows:
        row = written[row_label(cells[0])]
        assert cells[2:] == [row[c] for c in PANEL], cells[0]
        if not is_reference(row):  # a trained model: its best val EMD is the CSV's
            assert cells[1] == row["best val/emd"], cells[0]


@pytest.mark.parametrize(("scale", "csv"), [("linear", "linear"), ("dB", "db")])
def test_the_loss_study_mass_weight_table_is_the_csvs_too(scale: str, csv: str) -> None:
    # Its emd rows come from the mass_weight sweep's CSV; its emd_mse, DLinear and persistence rows
    # repeat the main tables, whose CSV they must match as well.
    written = study_csv(f"loss_study_{csv}.csv", f"loss_study_{csv}_mass.csv")
    table = markdown_table(STUDY.read_text(), "A magnitude term for EMD: `loss.mass_weight`")
    rows = [cells for cells in table if cells[1] == scale]
    assert len(rows) == 6
    for cells in rows:
        row = written[row_label(cells[0])]
        assert [cell.strip("*") for cell in cells[2:]] == [row[c] for c in PANEL], cells[0]


@pytest.mark.parametrize(("which", "csv"), [(0, "linear"), (1, "db")])
def test_the_loss_study_train_window_tables_are_their_csvs_too(which: int, csv: str) -> None:
    # Every trained row: the fit's changes and the best checkpoint's skills on train windows and on val.
    written = study_csv(f"loss_study_{csv}.csv")
    rows = markdown_table(STUDY.read_text(), "On the windows each loss trained on", which)
    columns = [
        "train loss change %",
        "train_eval/emd change %",
        "skill_emd train windows",
        "skill_emd val",
        "emd",
    ]
    assert len(rows) == sum(not is_reference(row) for row in written.values()) == 12
    for cells in rows:
        assert cells[1:] == [written[row_label(cells[0])][c] for c in columns], cells[0]


def test_the_loss_study_ospa_table_is_the_csvs_too() -> None:
    linear, db = study_csv("loss_study_linear.csv"), study_csv("loss_study_db.csv")
    rows = markdown_table(STUDY.read_text(), "Every source at its angle: `ospa_deg`")
    assert len(rows) == len(linear) == len(db) == 15
    for cells in rows:
        label = row_label(cells[0])
        written = [linear[label]["ospa_deg"], linear[label]["emd"], db[label]["ospa_deg"], db[label]["emd"]]
        assert [cell.strip("*") for cell in cells[1:]] == written, cells[0]


def test_the_loss_study_lead_time_table_is_the_seed_1_rows_of_its_csv() -> None:
    # Its intervals and step counts are the CSV's text (the page writes minus as "−"); its test EMD
    # and skill are the CSV's numbers to the digits the page shows.
    written = study_csv("loss_study_linear_runs.csv", seed="1")
    rows = markdown_table(STUDY.read_text(), "Lead time: up to which horizon step each loss stays ahead")
    assert len(rows) == len(written) == 15
    for cells in rows:
        row = written[row_label(cells[0])]
        assert float(cells[1]) == float(f"{float(row['emd']):.4g}"), cells[0]
        shown = [cell.replace("−", "-") for cell in cells[2:]]
        if is_reference(row):  # only a skill, shown to its own digits
            digits = len(shown[0].partition(".")[2])
            assert float(shown[0]) == float(f"{float(row['skill_emd']):.{digits}f}"), cells[0]
            continue
        assert shown == [
            row[c]
            for c in (
                "skill_emd vs persistence 95%",
                "skill_emd vs drift 95%",
                "ahead of persistence to step",
                "ahead of drift to step",
            )
        ], cells[0]


def test_the_readme_s_own_loss_and_model_train_join_a_combo_and_are_evaluated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    own_code(tmp_path, monkeypatch)
    search = "hydra.searchpath=[file://mine/conf]"  # as the README types it, from the folder holding mine/
    run_dir = tmp_path / "run"
    with hydra_job("train", *TINY, search, "loss=js", "model=bin_mlp", f"paths.output_dir={run_dir}") as cfg:
        run(cfg)
    result = json.loads((run_dir / "metrics.json").read_text())
    trained = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["hyper_parameters"]["config"]
    assert trained["loss"]["_target_"] == "my_forecasting.JensenShannon"
    assert trained["model"]["_target_"] == "my_forecasting.BinMLP"
    assert all(math.isfinite(v) for v in result["model"]["test"].values())
    assert result["model"]["test"]["emd"] != result["persistence"]["test"]["emd"]  # trained, not a copy

    combo = ("+loss@loss.terms.js=js", "+loss.weights.js=0.5")  # the README's combo term
    with hydra_job("train", *TINY, search, *combo, f"paths.output_dir={tmp_path / 'combo'}") as cfg:
        run(cfg)
    loss = read_checkpoint(tmp_path / "combo" / "checkpoints" / "last.ckpt")["hyper_parameters"]
    loss = loss["config"]["loss"]
    assert set(loss["terms"]) == {"emd", "mse", "js"} and loss["weights"]["js"] == 0.5

    ckpt = f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"
    with hydra_job("evaluate", ckpt, f"paths.output_dir={tmp_path / 'scored'}") as cfg:
        scored = evaluate(cfg)
    assert scored["model"]["test"]["emd"] == pytest.approx(result["model"]["test"]["emd"], rel=1e-6)

    # Where the module cannot be imported, the checkpoint is refused naming it, not a traceback.
    monkeypatch.delitem(sys.modules, "my_forecasting")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path / "mine")])
    with hydra_job("evaluate", ckpt, f"paths.output_dir={tmp_path / 'gone'}") as cfg:
        with pytest.raises(CheckpointError, match="no module named 'my_forecasting': code of one's own"):
            evaluate(cfg)


@pytest.mark.parametrize("scale", ["linear", "db"])
def test_the_readme_s_own_loss_is_the_jensen_shannon_divergence_of_scipy(
    scale: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_code(tmp_path, monkeypatch)
    from my_forecasting import JensenShannon
    from scipy.spatial.distance import jensenshannon

    frame = forum_frame()  # a real frame: zeros and negative values, read as dB here
    if scale == "linear":
        frame = frame.clamp_min(0) + torch.rand(frame.shape, generator=torch.Generator().manual_seed(0))
    pred = frame.roll(7) * 0.8
    eps = 1e-3
    value = JensenShannon(scale=scale, eps=eps)(pred, frame)
    weights = (lambda x: x + eps) if scale == "linear" else (lambda x: 10 ** (x / 10))
    # scipy normalises its arguments and returns the square root of the divergence (natural log).
    expected = jensenshannon(weights(pred.double()).numpy(), weights(frame.double()).numpy()) ** 2
    assert value.item() == pytest.approx(expected, rel=1e-4)
    same = frame.expand(3, -1)
    assert JensenShannon(scale=scale, reduction="none")(same, same).abs().max() < 1e-6
