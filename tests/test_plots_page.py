"""`dvc plots show` reads without guessing (issue 27): the project's templates in .dvc/plots/
name each series, call the epoch an epoch, show accuracy in percent and order classes by
label, and its page template states its charset. Drawn in a browser by
tests/test_pr_report.py (test_the_comment_and_the_plots_page_render_in_chromium)."""
import json
import subprocess
import sys

import yaml

from sae.datasets import DATASETS
from tests.conftest import ROOT

TEMPLATES = ROOT / ".dvc" / "plots"
LABEL_ORDER = list(dict.fromkeys(n for info in DATASETS.values() for n in info.class_names))


def template(name):
    return json.loads((TEMPLATES / f"{name}.json").read_text("utf-8"))


def test_confusion_and_per_class_views_order_classes_by_label():
    confusion = template("confusion_by_label")["spec"]["encoding"]
    assert confusion["x"]["sort"] == confusion["y"]["sort"] == LABEL_ORDER
    assert template("per_class_by_label")["encoding"]["y"]["sort"] == LABEL_ORDER


def test_every_plot_of_dvc_yaml_uses_a_project_template_and_calls_the_epoch_an_epoch():
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    entries = [props for entry in pipeline["plots"] for props in entry.values()]
    for stage in pipeline["stages"].values():
        entries += [props for entry in stage.get("plots", []) if isinstance(entry, dict)
                    for props in entry.values() if props.get("x") or props.get("template")]
    assert entries
    for props in entries:
        if "template" in props:
            assert (TEMPLATES / f"{props['template']}.json").is_file(), props
        if props.get("x") == "step":
            assert props.get("template") == "epochs" and props["x_label"] == "epoch", props


def test_the_page_states_its_charset_and_the_charts_name_their_series(tmp_path):
    # No --html-template: .dvc/config names the project's page (plots.html_template).
    done = subprocess.run([sys.executable, "-m", "dvc", "plots", "show",
                           "-o", str(tmp_path / "page")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "page" / "index.html").read_text("utf-8")
    assert text.count('<meta charset="utf-8">') == 1 and "{plot_divs}" not in text
    done = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    specs = {name: entry[0]["content"] for name, entry in json.loads(done.stdout)["data"].items()
             if entry and entry[0]["type"] == "vega"}
    lines = [spec for spec in specs.values() if isinstance(spec.get("mark"), dict)
             and spec["mark"]["type"] == "line" and spec["encoding"]["x"]["field"] == "epoch"]
    assert len(lines) >= 5, sorted(specs)
    for spec in lines:  # one colour per series, named from its path; a dash per revision
        assert spec["encoding"]["x"]["title"] == "epoch"
        assert spec["encoding"]["color"]["field"] == "series"
        assert spec["encoding"]["strokeDash"]["field"] == "rev"
    assert not any(json.dumps(spec).count('"title": "step"') for spec in specs.values())
