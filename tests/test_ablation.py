"""The ablation and label-budget study's bookkeeping: which runs it queues, with which
params, how their names read back, and what it writes (without running DVC)."""
import pandas as pd
import pytest

from sae import params
from scripts import ablation, experiments
from tests.test_plots import PNG_SIGNATURE

BUDGETS, SEEDS = [100, 0], [0, 1, 2]


def pretraining(run):
    """What a run's autoencoders depend on: greedy's are shared by three arms."""
    arm, recipe, dataset, _, seed = run
    return arm == "end_to_end", recipe, dataset, seed


def test_every_arm_budget_and_seed_is_one_run_each_pretraining_first():
    p = params.load()
    runs = ablation.runs(p, ["tuned"], BUDGETS, SEEDS)
    assert len(runs) == len(ablation.ARMS) * len(p.datasets) * len(BUDGETS) * len(SEEDS)
    assert len(set(runs)) == len(runs)
    distinct = {pretraining(run) for run in runs}
    leaders = runs[:len(distinct)]
    # Each pretraining is trained once, by its first run; every later run finds it cached,
    # and two workers taking the next two runs never train the same autoencoders.
    assert {pretraining(run) for run in leaders} == distinct
    assert len(distinct) == 2 * len(p.datasets) * len(SEEDS)
    # greedy's leaders first: end to end's then find layer 1 cached
    assert [run[0] == "end_to_end" for run in leaders] == sorted(
        run[0] == "end_to_end" for run in leaders)


def test_a_queued_run_sets_its_seed_budget_and_arm(monkeypatch):
    queued = []
    monkeypatch.setattr(experiments, "dvc", lambda *args, **kwargs: queued.append(args))
    p = params.load()
    ablation.queue(p, ablation.runs(p, ["tuned"], [1000], [4]))
    probe = next(args for args in queued if "abl-linear_probe-tuned-mnist-l1000-s4" in args)
    sets = {probe[i + 1] for i, arg in enumerate(probe) if arg == "-S"}
    assert sets == {"common.seed=4", "tuned.finetune_classifier.labels=1000",
                    "tuned.finetune_classifier.train=head"}
    assert probe[-1] == "evaluate@tuned-mnist"


@pytest.mark.parametrize("labels, epochs", [(100, ablation.MIN_STEPS), (1000, 50), (0, 50)])
def test_early_stopping_keeps_the_best_epoch_of_enough_steps_for_every_arm(
        monkeypatch, labels, epochs):
    """100 labels are one batch of 128 an epoch: MIN_STEPS epochs; larger budgets take at least
    the recipe's 50 epochs. Every arm gets the same fine-tuning settings."""
    queued = []
    monkeypatch.setattr(experiments, "dvc", lambda *args, **kwargs: queued.append(args))
    p = params.load()
    assert p.recipes["tuned"].finetune_classifier.batch_size == 128
    ablation.queue(p, ablation.runs(p, ["tuned"], [labels], [0]), early_stopping=True)
    assert len(queued) == len(ablation.ARMS) * len(p.datasets)
    for args in queued:
        assert args[args.index("-n") + 1].startswith("budget-")  # apart from abl- runs
        sets = {args[i + 1] for i, arg in enumerate(args) if arg == "-S"}
        assert {"tuned.finetune_classifier.keep=best",
                f"tuned.finetune_classifier.epochs={epochs}"} <= sets


def test_resume_runs_only_what_the_table_lacks_and_keeps_the_rest(monkeypatch, tmp_path):
    p = params.load()
    study = ablation.runs(p, ["tuned"], [100], [0, 1], ["greedy"])
    earlier_seed = ("greedy", "tuned", "mnist", 100, 7)  # banked by an earlier call: kept
    old = [dict(zip(ablation.KEY, run), test_accuracy=0.5, test_nll=1.0)
           for run in [*study[:1], earlier_seed]]
    pd.DataFrame(old).to_csv(tmp_path / "ablation.csv", index=False)
    queued = []
    still_running = ablation.run_name(*study[-1], True)  # left by a study that was killed
    monkeypatch.setattr(experiments, "finished", lambda names: {})
    monkeypatch.setattr(experiments, "in_queue", lambda names: {still_running} & set(names))
    monkeypatch.setattr(experiments, "remove_earlier", lambda names: None)
    monkeypatch.setattr(experiments, "run_queue", lambda jobs: None)
    monkeypatch.setattr(experiments, "queue", lambda name, sets, target: queued.append(name))
    monkeypatch.setattr(ablation, "collect", lambda names: pd.DataFrame(
        [dict(zip(ablation.KEY, run), test_accuracy=0.9, test_nll=0.3) for run in study[1:]]))
    ablation.main(["--resume", "--early-stopping", "--recipes", "tuned", "--arms", "greedy",
                   "--labels", "100", "--seeds", "0", "1", "--out", str(tmp_path)])
    assert queued == [ablation.run_name(*run, True) for run in study[1:-1]]  # waited for
    table = pd.read_csv(tmp_path / "ablation.csv")
    assert len(table) == len(study) + 1 and 7 in table.seed.values
    banked = table[(table.dataset == study[0][2]) & (table.seed == study[0][4])]
    assert banked.test_accuracy.tolist() == [0.5]  # kept, not run again


def test_a_run_name_reads_back_as_its_arm_recipe_dataset_budget_and_seed():
    name = ablation.run_name("end_to_end", "tuned", "fashion_mnist", 100, 3)
    data = {"metrics": {"metrics/tuned/fashion_mnist.json": {"data": {"test_accuracy": 0.8}},
                        "plots/tuned/fashion_mnist/finetune_classifier/metrics.json":
                            {"data": {"kept_epoch": 17}}},
            "params": {"params.yaml": {"data": {"tuned": {"finetune_classifier":
                                                          {"epochs": 400}}}}}}
    row = ablation.row(name, data)
    assert {k: row[k] for k in ("arm", "recipe", "dataset", "labels", "seed", "test_accuracy",
                                "epochs", "kept_epoch")} \
        == {"arm": "end_to_end", "recipe": "tuned", "dataset": "fashion_mnist", "labels": 100,
            "seed": 3, "test_accuracy": 0.8, "epochs": 400, "kept_epoch": 17}


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
    gains = pd.read_csv(tmp_path / "gain_summary.csv")  # every arm scored alike: no gain
    assert len(gains) == (len(ablation.ARMS) - 1) * len(p.datasets) * len(BUDGETS)
    assert gains.gain_mean.abs().max() < 1e-12 and gains.gain_count.eq(3).all()


def test_gain_is_paired_by_seed_the_same_labelled_images():
    """Seeds move both arms together (another labelled subset); the gain's interval is that of
    the per-seed differences, not of the arms' spreads."""
    rows = [{"arm": arm, "recipe": "tuned", "dataset": "mnist", "labels": 100, "seed": seed,
             "test_accuracy": base + (0.02 + 0.001 * seed if arm == "greedy" else 0)}
            for seed, base in enumerate([0.70, 0.75, 0.80])
            for arm in ("greedy", "no_pretraining")]
    gain = ablation.gains(pd.DataFrame(rows)).iloc[0]
    assert gain.arm == "greedy" and gain.gain_mean == pytest.approx(0.021)
    # differences 0.020, 0.021, 0.022: std 0.001, t(0.975, 2) = 4.3027
    assert gain.gain_ci95 == pytest.approx(4.3027 * 0.001 / 3 ** 0.5, rel=1e-3)


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
    assert [run[0] for run in runs][:2] == ["greedy", "greedy"]  # they train the autoencoders
