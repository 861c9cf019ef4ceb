"""The label-budget study's two protocols side by side (scripts.protocols): what is paired with
what, which budgets are compared, and one line of error for studies that cannot be."""
import pandas as pd
import pytest

from scripts import ablation, protocols
from tests.conftest import ROOT
from tests.test_plots import PNG_SIGNATURE

# Per arm, the test accuracy of seed 0; seed s adds s points to every arm alike, as the labelled
# images a seed draws would. The fixed length costs each arm its own, exact amount.
ACCURACY = {"greedy": 0.80, "end_to_end": 0.81, "no_pretraining": 0.78, "linear_probe": 0.76}
FIXED_COST = {"greedy": 0.01, "end_to_end": 0.02, "no_pretraining": 0.03, "linear_probe": 0.04}


def study(budgets, cost=None, seeds=(0, 1, 2)):
    """An ablation.csv's rows: every arm, both datasets, `budgets` and `seeds`."""
    return pd.DataFrame([
        {"arm": arm, "recipe": "tuned", "dataset": dataset, "labels": labels, "seed": seed,
         "test_accuracy": ACCURACY[arm] + seed / 100 - (cost or {}).get(arm, 0)}
        for arm in ablation.ARMS for dataset in ("mnist", "fashion_mnist")
        for labels in budgets for seed in seeds])


def write(folder, table):
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "ablation.csv", index=False)
    return str(folder)


def test_gains_and_the_selections_worth_are_paired_by_seed(tmp_path):
    validation = write(tmp_path / "validation", study([100, 1000, 0]))
    fixed = write(tmp_path / "fixed", study([100, 1000], FIXED_COST))
    protocols.main([validation, fixed])
    summary = pd.read_csv(tmp_path / "fixed" / "protocols.csv")
    # "all labels" is in one study only: not compared
    assert sorted(summary["labels"].unique()) == [100, 1000]
    assert len(summary) == 2 * 2 * len(ablation.ARMS)
    assert list(summary.dataset.unique()) == ["mnist", "fashion_mnist"]
    rows = summary.set_index(["dataset", "labels", "arm"])
    greedy = rows.loc[("mnist", 100, "greedy")]
    # The seeds move every arm alike: paired, the gain and the selection have no spread.
    assert greedy.validation_gain_mean == pytest.approx(0.02)
    assert greedy.fixed_gain_mean == pytest.approx(0.02 - 0.01 + 0.03)
    assert greedy.validation_gain_ci95 == pytest.approx(0, abs=1e-12)
    assert greedy.validation_test_accuracy_ci95 > 0.01  # unpaired, the seeds' spread shows
    for arm, cost in FIXED_COST.items():
        assert rows.loc[("fashion_mnist", 1000, arm)].selection_mean == pytest.approx(cost)
        assert rows.loc[("fashion_mnist", 1000, arm)].selection_count == 3
    assert pd.isna(rows.loc[("mnist", 100, "no_pretraining")].fixed_gain_mean)
    assert (tmp_path / "fixed" / "protocols.png").read_bytes().startswith(PNG_SIGNATURE)


def test_a_seed_run_under_one_protocol_only_is_left_out_of_the_pairs(tmp_path):
    validation = write(tmp_path / "validation", study([100], seeds=(0, 1, 2)))
    fixed = write(tmp_path / "fixed", study([100], FIXED_COST, seeds=(0, 1)))
    protocols.main([validation, fixed])
    summary = pd.read_csv(tmp_path / "fixed" / "protocols.csv")
    assert set(summary.selection_count) == {2}
    assert set(summary.validation_test_accuracy_count) == {3}


def test_studies_without_a_common_budget_are_one_line(tmp_path):
    validation = write(tmp_path / "validation", study([0]))
    fixed = write(tmp_path / "fixed", study([100], FIXED_COST))
    with pytest.raises(SystemExit, match="share no label budget"):
        protocols.main([validation, fixed])
    assert not (tmp_path / "fixed" / "protocols.csv").exists()


def test_a_missing_study_says_which_and_how_to_make_it(tmp_path):
    validation = write(tmp_path / "validation", study([100]))
    with pytest.raises(SystemExit, match="label_budget_fixed.ablation.csv does not exist.*make"):
        protocols.main([validation, str(tmp_path / "label_budget_fixed")])


def test_an_accuracy_out_of_range_names_the_file_and_the_value(tmp_path):
    table = study([100])
    table.loc[3, "test_accuracy"] = 1.5
    validation = write(tmp_path / "validation", table)
    fixed = write(tmp_path / "fixed", study([100], FIXED_COST))
    with pytest.raises(SystemExit, match=r"validation.ablation\.csv: test_accuracy is 1\.5"):
        protocols.main([validation, fixed])
    assert not (tmp_path / "fixed" / "protocols.csv").exists()


def test_the_readme_s_answer_holds_for_the_committed_studies():
    """What README.md says of the two protocols, checked against protocols.csv."""
    text = " ".join((ROOT / "README.md").read_text().split())
    summary = pd.read_csv(ROOT / "plots" / "label_budget_fixed" / "protocols.csv")
    gains = summary.dropna(subset=["validation_gain_mean"])
    assert len(gains) == 2 * 3 * 3 and (gains.fixed_gain_count == 5).all()
    assert "every gain stays within its early-stopping interval" in text
    assert ((gains.fixed_gain_mean - gains.validation_gain_mean).abs()
            <= gains.validation_gain_ci95).all()
    assert "add at most 0.6 points to any arm" in text
    assert summary.selection_mean.max() <= 0.006 and (summary.selection_count == 5).all()
    assert "the best arm here reaches 80 %" in text
    mnist_100 = summary[(summary.dataset == "mnist") & (summary["labels"] == 100)]
    best = mnist_100[["validation_test_accuracy_mean", "fixed_test_accuracy_mean"]].max().max()
    assert round(best * 100) == 80
    gain = pd.read_csv(ROOT / "plots" / "label_budget" / "gain_summary.csv").set_index(
        ["dataset", "labels", "arm"]).gain_mean * 100
    assert ("greedy adds 3 to 4 points at 100 labels on both datasets, at most half a point"
            in text)
    for dataset in ("mnist", "fashion_mnist"):
        assert 3 <= gain[dataset, 100, "greedy"] <= 4 and gain[dataset, 0, "greedy"] <= 0.5
        # "end to end does as well": within a point of greedy at every budget
        assert all(abs(gain[dataset, n, "end_to_end"] - gain[dataset, n, "greedy"]) < 1
                   for n in (100, 1000, 10000, 0))
