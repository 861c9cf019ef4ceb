"""Reports that check what they read (issue 22, cause 6): a base metrics file that is no JSON
or a base params.yaml that cannot be parsed ends the pull-request report in one line naming
the file (not "no metrics at the base yet", not every param "changed from None"); the sweep
summary leaves out metrics of datasets that a run's params.yaml does not list; a negative
MSE in a DVCLive table never reaches the README.
"""
import subprocess

import pytest

from scripts import pr_report, readme_results, sweep_summary
from tests import test_sweep
from tests.conftest import command_env
from tests.test_readme import results  # noqa: F401 (a fixture)

METRICS = "metrics/lecture/mnist.json"
CSVS = {"per_class": "per_class.csv", "finetune_classifier": "finetune_classifier"}


def git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, env=command_env(), check=True, capture_output=True,
                   timeout=60)


@pytest.fixture
def base(tmp_path, monkeypatch):
    """A git repository whose commit `base` holds good metrics and params; returns a function
    that commits `files` ({path: text}) as the base and builds the report against it, with
    DVC's diffs as DVC gives them for such a base (nothing of the broken file)."""
    git("init", "-q", cwd=tmp_path)
    monkeypatch.chdir(tmp_path)

    def report(files, metrics=None, params=None):
        for path, text in files.items():
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text(text)
        git("add", "-A", cwd=tmp_path)
        git("commit", "-qm", "base", cwd=tmp_path)
        diffs = {"metrics": metrics or {}, "params": params or {}}
        monkeypatch.setattr(pr_report, "dvc_diff", lambda kind, base, *options: diffs[kind])
        monkeypatch.setattr(pr_report, "evaluations",
                            lambda: iter([("lecture", "mnist", METRICS, CSVS)]))
        monkeypatch.setattr(pr_report, "seed_noise", lambda: {})
        for name in ("read_sides", "history_sides"):  # no plot tables on either side
            monkeypatch.setattr(pr_report, name, lambda *args: [None, None])
        monkeypatch.setattr(pr_report, "figures", lambda *args: None)
        return pr_report.build_report("HEAD", tmp_path / "out")
    return report


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", "\x00\x01binary"])
def test_a_base_metrics_file_that_is_no_json_object_ends_the_report_in_one_line(base, text):
    with pytest.raises(SystemExit) as stop:
        base({METRICS: text, "params.yaml": "lecture: {lr: 0.1}\n"})
    message = str(stop.value)
    assert message.startswith(f"error: {METRICS} at HEAD is no metrics file") and \
        "\n" not in message, message


@pytest.mark.parametrize("text", ["lecture: [unclosed\n", "a: 1\na: 2\n", "- a list\n",
                                  "\x00binary"])
def test_a_base_params_file_that_cannot_be_parsed_ends_the_report_in_one_line(base, text):
    changed = {"params.yaml": {"lecture.lr": (None, 0.1), "common.seed": (None, 0)}}
    with pytest.raises(SystemExit) as stop:
        base({METRICS: '{"test_accuracy": 0.9}', "params.yaml": text}, params=changed)
    message = str(stop.value)
    assert message.startswith("error: params.yaml at HEAD cannot be read") and \
        "\n" not in message, message


def test_a_readable_base_still_gives_the_report(base):
    text = base({METRICS: '{"test_accuracy": 0.9}', "params.yaml": "lecture: {lr: 0.1}\n"},
                params={"params.yaml": {"lecture.lr": (0.1, 0.2)}})
    assert "| `lecture.lr` | `0.1` | `0.2` |" in text


def test_the_sweep_summary_leaves_out_datasets_that_params_yaml_does_not_list():
    shown = test_sweep.shown()
    runs = [shown[1], *(exp["revs"][0] for exp in shown[1]["experiments"])]
    for run in runs:
        run["data"]["params"]["params.yaml"]["data"]["datasets"] = ["mnist"]
    table, _ = sweep_summary.summary_table(shown)
    assert set(table.metrics) == {test_sweep.FILES[1]}  # metrics/lecture/mnist.json only
    text = sweep_summary.markdown(table, [test_sweep.LR], None)
    assert "fashion" not in text


def test_a_negative_mse_in_a_dvclive_table_never_reaches_the_readme(results):  # noqa: F811
    table = results / "plots" / "lecture" / "mnist" / "pretrain_layer1" / "plots" / "metrics" \
        / "train_loss.tsv"
    table.write_text(table.read_text().replace("\t0.1007", "\t-0.1007"))
    with pytest.raises(SystemExit) as stop:
        readme_results.main(["--root", str(results)])
    assert str(stop.value) == (f"error: {table}: train_loss is -0.1007; it must be a finite "
                               "number >= 0")
    assert "old tables" in (results / "README.md").read_text()  # nothing written


def test_a_broken_history_table_ends_the_report_in_one_line_not_as_no_run(tmp_path):
    tables = tmp_path / "plots" / "metrics"
    tables.mkdir(parents=True)
    (tables / "train_loss.tsv").write_text("step\ttrain_loss\n1\t0.5\n1\t0.4\n")  # repeated
    with pytest.raises(SystemExit, match=r"error: the base's tables: .*train_loss.tsv"):
        pr_report.history(tmp_path, "the base's tables")
    assert pr_report.history(tmp_path / "absent", "no run there") is None
