"""README.md stays short, and its results tables are what the committed metrics and plot CSVs
say: scripts.readme_results renders them, and its --check fails when the README drifts."""
import json

import pandas as pd
import pytest

from sae.datasets import DATASETS
from sae.live import epoch_logger
from scripts import mean_ci95, params_table, readme_results
from tests.conftest import ROOT, params_with

MAX_README_BYTES = 12 * 1024
LAYER1 = [0.1918, 0.1007, 0.09, 0.08, 0.075, 0.072, 0.07, 0.068, 0.067, 0.0663]
STACKED = [0.0877, 0.07, 0.0665, 0.0588, 0.058, 0.057, 0.056, 0.055, 0.054, 0.0533]
ACCURACY = [0.598, 0.7849, 0.8553, 0.8814, 0.89, 0.9, 0.905, 0.91, 0.912, 0.9133]
TEST_IMAGES = 10_000
NLL = [1.6, 1.049, 0.629, 0.481, 0.45, 0.4, 0.37, 0.34, 0.32, 0.302]


def write_results(root, recipe, dataset, accuracy=0.9133):
    """Committed results of one recipe and dataset in dvc.yaml's layout, with known numbers."""
    metrics = {"test_accuracy": accuracy, "test_nll": 0.2919,
               "reconstruction_mse": {"layer1": 0.066, "pca_layer1": 0.00033, "stacked": 0.0675,
                                      "pca_stacked": 0.0015, "mean_image": 0.0675}}
    (root / "metrics" / recipe).mkdir(parents=True, exist_ok=True)
    (root / "metrics" / recipe / f"{dataset}.json").write_text(json.dumps(metrics))
    folder = root / "plots" / recipe / dataset
    folder.mkdir(parents=True, exist_ok=True)
    epochs = range(1, 11)
    for phase, columns in (("pretrain_layer1", {"train_loss": LAYER1}),
                           ("stack_layer2", {"train_loss": STACKED}),
                           ("finetune_classifier", {"train_loss": NLL, "test_loss": NLL,
                                                    "test_accuracy": ACCURACY})):
        with epoch_logger(folder / phase) as log:
            for epoch in epochs:
                log({"epoch": epoch, **{name: values[epoch - 1]
                                        for name, values in columns.items()}})
    per_class = [0.9796, 0.9745, 0.87, 0.88, 0.95, 0.8733, 0.94, 0.92, 0.87, 0.88]
    pd.DataFrame({"class": DATASETS[dataset].class_names, "test_accuracy": per_class}).to_csv(
        folder / "per_class.csv", index=False)
    labels = [str(i % 10) for i in range(TEST_IMAGES)]  # one row per test image
    pd.DataFrame({"actual": labels, "predicted": labels}).to_csv(folder / "confusion.csv",
                                                                 index=False)


def write_label_budget_study(folder, baseline=0.8, seeds=3, budgets=(0, 1000, 100)):
    """A label-budget study's summaries as scripts.ablation writes them (all labels first):
    greedy 90 %, the other arms `baseline`, std 1 and 2 points over `seeds`; 100 labels
    without a linear probe. gain_summary.csv: each arm's gain over no pretraining, std 0.5
    points."""
    std = {arm: 0.01 if arm == "greedy" else 0.02 for arm in readme_results.ARM_TITLES}
    mean = {arm: 0.9 if arm == "greedy" else baseline for arm in readme_results.ARM_TITLES}
    runs = [("tuned", dataset, labels, arm) for dataset in DATASETS for labels in budgets
            for arm in readme_results.ARM_TITLES if (labels, arm) != (100, "linear_probe")]
    run_columns = ["recipe", "dataset", "labels", "arm"]
    accuracy = [dict(zip(run_columns, run)) | {
        "test_accuracy_mean": mean[run[3]], "test_accuracy_std": std[run[3]],
        "test_accuracy_count": seeds, "test_accuracy_ci95": mean_ci95(std[run[3]], seeds)}
        for run in runs]
    gains = [dict(zip(run_columns, run)) | {
        "gain_mean": mean[run[3]] - baseline, "gain_std": 0.005, "gain_count": seeds,
        "gain_ci95": mean_ci95(0.005, seeds)} for run in runs if run[3] != "no_pretraining"]
    folder.mkdir(parents=True)
    pd.DataFrame(accuracy).to_csv(folder / "ablation_summary.csv", index=False)
    pd.DataFrame(gains).to_csv(folder / "gain_summary.csv", index=False)


def write_code_size_summary(root):
    """A code-size summary as scripts.reconstruction writes it: PCA 0.016 at 32 and 0.0014 at
    256, greedy half and twice that, end to end only at 32."""
    rows = [{"dataset": dataset, "code_size": k, "method": method, "test_mse_mean": mean,
             "test_mse_std": 0.0001, "test_mse_count": 3, "test_mse_ci95": 0.0002,
             "pca_test_mse": pca, "ratio_to_pca": mean / pca}
            for dataset in DATASETS
            for k, method, mean, pca in ((32, "greedy", 0.008, 0.016),
                                         (32, "end_to_end", 0.012, 0.016),
                                         (256, "greedy", 0.0028, 0.0014))]
    (root / "plots" / "reconstruction").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / "plots" / "reconstruction" / "reconstruction_summary.csv",
                              index=False)


@pytest.fixture
def results(tmp_path):
    """A repository root with results of both recipes on both datasets, an ablation summary
    and a README."""
    for dataset in DATASETS:
        write_results(tmp_path, "lecture", dataset)
        write_results(tmp_path, "tuned", dataset, accuracy=0.98765)
    write_label_budget_study(tmp_path / "plots" / "label_budget")
    write_code_size_summary(tmp_path)
    (tmp_path / "README.md").write_text(
        f"# Title\n\n{readme_results.START}\nold tables\n{readme_results.END}\n\n## Next\n"
        f"{readme_results.LEARN_START}\nold\n{readme_results.LEARN_END}\n")
    return tmp_path


def cells(block):
    """{first cell: the other cells} of every Markdown table row in `block`."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()
            if line.startswith("|")]
    return {row[0]: row[1:] for row in rows}


def test_lecture_tables_put_the_pipeline_beside_the_lecture_and_the_rerun(results):
    rows = cells(readme_results.render(results))
    assert rows["layer-1 train MSE, epochs 1, 2"] == ["~0.19, ~0.10", "0.192, 0.101",
                                                      "0.1918, 0.1007"]
    assert rows["stacked train MSE, epoch 1 → 10"][2] == "0.0877 → 0.0533"
    assert rows["classifier test accuracy, epochs 1-4"][2] == "59.80, 78.49, 85.53, 88.14"
    assert rows["classifier train NLL, epochs 2-4"][2] == "1.049, 0.629, 0.481"
    assert rows["classifier train NLL, epoch 10 (test NLL)"][2] == "0.302 (0.292)"
    assert rows["per-class test accuracy 0, 1, 5"][2] == "97.96, 97.45, 87.33"
    assert rows["stacked train MSE, epoch 1; first epoch below layer 1's end"][2] == (
        "0.0877; epoch 4 (0.0588)")
    assert rows["weakest classes"][2] == "Pullover 87.0 %, Bag 87.0 %"
    # Both datasets' tables have this row: the later (Fashion-MNIST) one is kept here.
    # 91.33 % on 10,000 images: 1.96 * sqrt(0.9133 * 0.0867 / 10000) = 0.55 points
    assert rows["classifier test accuracy, final (epoch 10)"] == ["–", "80.83 %",
                                                                 "91.33 % ± 0.55"]


def test_tuned_row_gives_accuracy_beside_its_aim_and_the_lecture_recipe(results):
    rows = cells(readme_results.render(results))
    for dataset, info in DATASETS.items():
        # no run over seeds yet: "–" in its column
        assert rows[info.title] == ["98.77 % ± 0.22", "–", readme_results.TUNED_AIMS[dataset],
                                    "0.292", "91.33 %"]


def test_tuned_row_gives_the_mean_over_seeds_with_its_t_interval(results):
    rows = [{"recipe": "tuned", "dataset": "mnist", "labels": 0, "arm": "greedy",
             "test_accuracy_mean": 0.987, "test_accuracy_std": 0.001, "test_accuracy_count": 5,
             "test_accuracy_ci95": mean_ci95(0.001, 5)}]
    (results / "plots" / "tuned_seeds").mkdir()
    pd.DataFrame(rows).to_csv(results / "plots" / "tuned_seeds" / "ablation_summary.csv",
                              index=False)
    rows = cells(readme_results.render(results))
    # 2.7764 * 0.1 / sqrt(5) = 0.12 points
    assert rows["MNIST"][1] == "98.70 ± 0.12 (5)" and rows["Fashion-MNIST"][1] == "–"


def test_code_size_rows_give_each_method_beside_pca_as_a_multiple(results):
    block = readme_results.render_learn(results)
    # code 256, where the end-to-end arm has not run
    assert "| MNIST | 256 | 0.0014 | 0.0028 ± 0.0002 (2.00×) | – |" in block
    assert ("| MNIST | 32 | 0.0160 | 0.0080 ± 0.0002 (0.50×) | 0.0120 ± 0.0002 (0.75×) |"
            in block)


def test_a_label_budget_study_not_run_yet_is_said_so(results):
    (results / "plots" / "label_budget" / "ablation_summary.csv").unlink()
    assert "_Not run yet: `make label-budget`._" in readme_results.render_learn(results)


def test_check_fails_on_a_stale_block_until_it_is_rendered(results, capsys):
    argv = ["--check", "--root", str(results)]
    with pytest.raises(SystemExit, match="run `python -m scripts.readme_results`"):
        readme_results.main(argv)
    readme_results.main(["--root", str(results)])
    readme_results.main(argv)  # no SystemExit: up to date
    text = (results / "README.md").read_text()
    assert text.startswith("# Title\n\n<!-- results:start -->")
    assert f"## Next\n{readme_results.LEARN_START}\n{readme_results.NOTE}\n" in text
    assert text.endswith(f"{readme_results.LEARN_END}\n")
    assert "old tables" not in text and "\nold\n" not in text


def test_learn_block_sets_each_autoencoder_beside_pca_and_the_ablation_arms(results):
    block = readme_results.render_learn(results)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()
            if line.startswith("| MNIST")]
    # layer 1: MSE 0.066 is 200 times PCA's 0.00033; the mean image predicts 0.0675
    assert ["MNIST", "layer 1 (code 400)", "0.0660 (200×)", "0.0660 (200×)", "0.00033",
            "0.0675"] in rows
    # the 95 % t-interval of a mean over 3 seeds: 4.3027 * std / sqrt(3)
    budgets = [row for row in rows if row[1] in readme_results.ARM_TITLES.values()]
    assert budgets == [  # the baseline's accuracy, then each arm's gain; an arm not run: "–"
        ["MNIST", "no pretraining", "80.0 ± 5.0", "80.0 ± 5.0", "80.0 ± 5.0"],
        ["MNIST", "greedy", "+10.0 ± 1.2", "+10.0 ± 1.2", "+10.0 ± 1.2"],
        ["MNIST", "end to end", "+0.0 ± 1.2", "+0.0 ± 1.2", "+0.0 ± 1.2"],
        ["MNIST", "linear probe", "–", "+0.0 ± 1.2", "+0.0 ± 1.2"]]
    assert "| dataset | arm | 100 | 1,000 | all |" in block  # fewest labels first
    assert "over 3 seeds): no pretraining's test accuracy" in block  # every cell's n


def test_label_budget_cells_give_each_protocol_a_budget_has_run_under(results):
    write_label_budget_study(results / "plots" / "label_budget_fixed", baseline=0.7, seeds=5,
                             budgets=(1000, 100))
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in readme_results.render_learn(results).splitlines()
            if line.startswith("| MNIST |")]
    by_arm = {row[1]: row[2:] for row in rows if row[1] in readme_results.ARM_TITLES.values()}
    # early stop / fixed length where both ran; all labels under early stop only; each cell
    # says its seeds, as the studies differ
    assert by_arm["no pretraining"] == ["80.0 ± 5.0 (3) / 70.0 ± 2.5 (5)",
                                        "80.0 ± 5.0 (3) / 70.0 ± 2.5 (5)", "80.0 ± 5.0 (3)"]
    assert by_arm["greedy"][0] == "+10.0 ± 1.2 (3) / +20.0 ± 0.6 (5)"
    assert by_arm["linear probe"][0] == "–"  # in neither study


def test_a_gain_out_of_range_stops_the_render_in_one_line(results):
    path = results / "plots" / "label_budget" / "gain_summary.csv"
    gains = pd.read_csv(path)
    gains.loc[1, "gain_mean"] = 12.0  # points, not a fraction
    gains.to_csv(path, index=False)
    with pytest.raises(SystemExit, match=rf"{path}, line 3: gain_mean is 12.0; a gain"):
        readme_results.main(["--root", str(results)])


def test_check_needs_the_markers(results):
    (results / "README.md").write_text("# Title\n")
    with pytest.raises(SystemExit, match="no <!-- results:start -->"):
        readme_results.main(["--check", "--root", str(results)])


def test_readme_results_are_those_of_the_committed_files():
    if not (ROOT / "metrics").is_dir():
        pytest.skip("metrics/ is absent: no committed results to check README.md against yet")
    readme_results.main(["--check", "--root", str(ROOT)])


def test_readme_is_short():
    size = (ROOT / "README.md").stat().st_size
    assert size <= MAX_README_BYTES, f"README.md is {size} bytes; move detail to docs/"


# ---------------------------------------------------------------- docs/pipeline.md's params


def test_docs_parameter_tables_are_those_of_params_yaml(monkeypatch):
    monkeypatch.chdir(ROOT)
    params_table.main(["--check"])  # exits 1, with the command to run, when stale


def test_docs_parameter_tables_follow_a_changed_value():
    from sae import params
    changed = params.parse(params_with(**{"tuned.finetune_classifier.epochs": 7,
                                          "lecture.split.validation": 500}))
    block = params_table.render(changed)
    assert "| `epochs` | 10 | 30, 30, 7 |" in block
    assert "| `split.validation` | 500 | 10000 |" in block
    assert block != params_table.render(params.load(ROOT / "params.yaml"))


# ------------------------------------------------------------------ bad data

@pytest.mark.parametrize("key, value", [("test_accuracy", float("nan")), ("test_accuracy", True),
                                        ("test_accuracy", "0.17"), ("test_accuracy", 1.2),
                                        ("test_nll", -1.0)])
def test_a_metrics_value_out_of_range_stops_the_render_in_one_line(results, key, value):
    path = results / "metrics" / "tuned" / "mnist.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))
    with pytest.raises(SystemExit) as stop:
        readme_results.main(["--root", str(results)])
    assert str(stop.value).startswith(f"error: {path}: {key} is {value!r}; ")
    assert "old tables" in (results / "README.md").read_text()  # nothing written


@pytest.mark.parametrize("change, message", [
    ({"test_accuracy_ci95": -0.01}, "test_accuracy_ci95 is -0.01; it must be a finite number"),
    ({"test_accuracy_std": float("nan")}, "test_accuracy_std is nan"),  # 3 seeds: a spread
    ({"test_accuracy_count": 0}, "test_accuracy_count is 0; a seed count must be"),
])
def test_a_bad_ablation_summary_stops_the_render_in_one_line(results, change, message):
    path = results / "plots" / "label_budget" / "ablation_summary.csv"
    summary = pd.read_csv(path)
    for column, value in change.items():
        summary.loc[0, column] = value
    summary.to_csv(path, index=False)
    with pytest.raises(SystemExit) as stop:
        readme_results.main(["--root", str(results)])
    assert str(stop.value).startswith(f"error: {path}, line 2: {message}")


def test_a_summary_without_the_interval_column_is_refused(results):
    path = results / "plots" / "label_budget" / "ablation_summary.csv"
    pd.read_csv(path).drop(columns="test_accuracy_ci95").to_csv(path, index=False)
    with pytest.raises(SystemExit, match="has no column 'test_accuracy_ci95'"):
        readme_results.main(["--root", str(results)])


def test_a_per_class_accuracy_out_of_range_is_refused(results):
    path = results / "plots" / "lecture" / "mnist" / "per_class.csv"
    path.write_text(path.read_text().replace("0.9796", "97.96"))
    with pytest.raises(SystemExit, match=r"per_class.csv: test_accuracy is 97.96; an accuracy"):
        readme_results.main(["--root", str(results)])
