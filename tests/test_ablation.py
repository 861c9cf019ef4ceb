"""The ablation and label-budget study's bookkeeping: which runs it queues, with which
params, how their names read back, and what it writes (without running DVC)."""
import pandas as pd
import pytest

from sae import params
from scripts import ablation, experiments
from tests.test_plots import PNG_SIGNATURE

BUDGETS, SEEDS = [100, 0], [0, 1, 2]


def test_every_arm_budget_and_seed_is_one_run_greedy_arms_first():
    p = params.load()
    runs = ablation.runs(p, ["tuned"], BUDGETS, SEEDS)
    assert len(runs) == len(ablation.ARMS) * len(p.datasets) * len(BUDGETS) * len(SEEDS)
    assert len(set(runs)) == len(runs)
    greedy = [run for run in runs if run[0] == "greedy"]
    assert runs[:len(greedy)] == greedy  # the others find the pretraining in the run cache


def test_a_queued_run_sets_its_seed_budget_and_arm(monkeypatch):
    queued = []
    monkeypatch.setattr(experiments, "dvc", lambda *args, **kwargs: queued.append(args))
    ablation.queue(params.load(), ["tuned"], [1000], [4])
    probe = next(args for args in queued if "abl-linear_probe-tuned-mnist-l1000-s4" in args)
    sets = {probe[i + 1] for i, arg in enumerate(probe) if arg == "-S"}
    assert sets == {"common.seed=4", "tuned.finetune_classifier.labels=1000",
                    "tuned.finetune_classifier.train=head"}
    assert probe[-1] == "evaluate@tuned-mnist"


def test_a_run_name_reads_back_as_its_arm_recipe_dataset_budget_and_seed():
    name = ablation.run_name("end_to_end", "tuned", "fashion_mnist", 100, 3)
    data = {"metrics": {"metrics/tuned/fashion_mnist.json": {"data": {"test_accuracy": 0.8}}}}
    row = ablation.row(name, data)
    assert {k: row[k] for k in ("arm", "recipe", "dataset", "labels", "seed", "test_accuracy")} \
        == {"arm": "end_to_end", "recipe": "tuned", "dataset": "fashion_mnist", "labels": 100,
            "seed": 3, "test_accuracy": 0.8}


def test_the_study_writes_its_table_summary_by_budget_and_figure(tmp_path, monkeypatch):
    p = params.load()
    rows = [{"arm": arm, "recipe": "tuned", "dataset": dataset, "labels": labels,
             "seed": seed, "test_accuracy": 0.5 + 0.1 * seed + (labels == 0) * 0.2,
             "test_nll": 1.0}
            for arm, _, dataset, labels, seed in ablation.runs(p, ["tuned"], BUDGETS, SEEDS)]
    monkeypatch.setattr(ablation, "collect", lambda names: pd.DataFrame(rows))
    ablation.main(["--collect-only", "--recipes", "tuned", "--labels", *map(str, BUDGETS),
                   "--out", str(tmp_path)])
    summary = pd.read_csv(tmp_path / "ablation_summary.csv")
    assert len(summary) == len(ablation.ARMS) * len(p.datasets) * len(BUDGETS)
    greedy_all = summary[(summary.arm == "greedy") & (summary["labels"] == 0)].iloc[0]
    assert greedy_all.test_accuracy_mean == pytest.approx(0.8)
    assert greedy_all.test_accuracy_count == 3 and greedy_all.test_accuracy_ci95 > 0
    assert (tmp_path / "ablation.png").read_bytes().startswith(PNG_SIGNATURE)
    assert len(pd.read_csv(tmp_path / "ablation.csv")) == len(rows)


def test_a_recipe_params_yaml_does_not_name_is_one_line(tmp_path):
    with pytest.raises(params.ParamsError, match="expected a list that holds the recipe 'nope'"):
        ablation.main(["--collect-only", "--recipes", "nope", "--out", str(tmp_path)])


def test_arms_narrow_the_study_to_the_ones_named_greedy_first(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(ablation, "collect", lambda names: seen.setdefault("names", names)
                        and pd.DataFrame([{"arm": "greedy", "recipe": "tuned", "dataset": "mnist",
                                           "labels": 0, "seed": 0, "test_accuracy": 0.98,
                                           "test_nll": 0.05}]))
    ablation.main(["--collect-only", "--recipes", "tuned", "--arms", "linear_probe", "greedy",
                   "--seeds", "0", "1", "--out", str(tmp_path)])
    arms = {name.split("-")[1] for name in seen["names"]}
    assert arms == {"greedy", "linear_probe"}
    assert len(seen["names"]) == 2 * len(params.load().datasets) * 2
    runs = ablation.runs(params.load(), ["tuned"], [0], [0], ["greedy", "linear_probe"])
    assert [run[0] for run in runs][:2] == ["greedy", "greedy"]
