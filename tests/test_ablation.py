"""The ablation and label-budget study's bookkeeping: which runs it queues, with which
params, its grid for the sweep workflow, how finished experiments are found by their params,
and what it writes (without running DVC)."""
import json

import pandas as pd
import pytest
from dvc.utils.serialize import load_yaml

from sae import params
from scripts import ablation, experiments, sweep_keys
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


@pytest.mark.parametrize("protocol, prefix, keep", [("validation", "budget-", "best"),
                                                    ("fixed", "fixed-", "last")])
@pytest.mark.parametrize("labels, epochs", [(100, ablation.MIN_STEPS), (1000, 50), (0, 50)])
def test_both_protocols_fine_tune_every_arm_for_enough_steps_and_differ_in_the_epoch_kept(
        monkeypatch, labels, epochs, protocol, prefix, keep):
    """100 labels are one batch of 128 an epoch: MIN_STEPS epochs; larger budgets take at least
    the recipe's 50 epochs. Every arm gets the same fine-tuning settings; early stopping keeps
    the best epoch on validation, the realistic protocol the last."""
    queued = []
    monkeypatch.setattr(experiments, "dvc", lambda *args, **kwargs: queued.append(args))
    p = params.load()
    assert p.recipes["tuned"].finetune_classifier.batch_size == 128
    ablation.queue(p, ablation.runs(p, ["tuned"], [labels], [0]), protocol=protocol)
    assert len(queued) == len(ablation.ARMS) * len(p.datasets)
    for args in queued:
        assert args[args.index("-n") + 1].startswith(prefix)  # apart from the other studies
        sets = {args[i + 1] for i, arg in enumerate(args) if arg == "-S"}
        assert {f"tuned.finetune_classifier.keep={keep}",
                f"tuned.finetune_classifier.epochs={epochs}"} <= sets


def test_a_study_takes_one_protocol_at_most(capsys):
    with pytest.raises(SystemExit):
        ablation.main(["--early-stopping", "--fixed-length", "--print-grid"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_resume_runs_only_what_the_table_lacks_and_keeps_the_rest(monkeypatch, tmp_path):
    p = params.load()
    study = ablation.runs(p, ["tuned"], [100], [0, 1], ["greedy"])
    earlier_seed = ("greedy", "tuned", "mnist", 100, 7)  # banked by an earlier call: kept
    digest = ablation.digests(["tuned"], "validation")["tuned"]
    old = [dict(zip(ablation.KEY, run), test_accuracy=0.5, test_nll=1.0, params_digest=digest)
           for run in [*study[:1], earlier_seed]]
    pd.DataFrame(old).to_csv(tmp_path / "ablation.csv", index=False)
    queued, ran = [], []
    still_running = ablation.run_name(*study[-1], "validation")  # left by a study that was killed
    monkeypatch.setattr(experiments, "in_queue", lambda names: {still_running} & set(names))
    monkeypatch.setattr(experiments, "remove_earlier", lambda names: None)
    monkeypatch.setattr(experiments, "run_queue", lambda jobs: ran.append(jobs))
    monkeypatch.setattr(experiments, "queue", lambda name, sets, target: queued.append(name))
    # Nothing finished before the queue ran; afterwards, every run but the banked one.
    monkeypatch.setattr(ablation, "collect", lambda p, runs, protocol, extra=(): pd.DataFrame(
        [dict(zip(ablation.KEY, run), test_accuracy=0.9, test_nll=0.3)
         for run in (study[1:] if ran else [])], columns=ablation.KEY))
    ablation.main(["--resume", "--early-stopping", "--recipes", "tuned", "--arms", "greedy",
                   "--labels", "100", "--seeds", "0", "1", "--out", str(tmp_path)])
    assert queued == [ablation.run_name(*run, "validation") for run in study[1:-1]]  # waited for
    table = pd.read_csv(tmp_path / "ablation.csv")
    assert len(table) == len(study) + 1 and 7 in table.seed.values
    banked = table[(table.dataset == study[0][2]) & (table.seed == study[0][4])]
    assert banked.test_accuracy.tolist() == [0.5]  # kept, not run again
    assert table.params_digest.eq(digest).all()  # the new rows: made as the study runs now


def test_resume_runs_again_the_rows_made_with_other_params(tmp_path, capsys):
    """A bank made before params.yaml changed is not this study's: its rows of the recipe
    are run again (and said so); another protocol, --set or recipe counts as other params."""
    now = ablation.digests(["tuned"], "fixed")["tuned"]
    assert now != ablation.digests(["tuned"], "validation")["tuned"]
    assert now != ablation.digests(["tuned"], "fixed", ["tuned.pretrain_layer1.epochs=20"])[
        "tuned"]
    rows = [("greedy", "tuned", "mnist", 100, 0, now), ("greedy", "tuned", "mnist", 100, 1,
             "0123456789ab"), ("greedy", "tuned", "mnist", 100, 2, None),
            ("greedy", "lecture", "mnist", 100, 0, "0123456789ab")]  # not this study's recipe
    pd.DataFrame(rows, columns=[*ablation.KEY, "params_digest"]).to_csv(
        tmp_path / "ablation.csv", index=False)
    kept = ablation.banked(tmp_path / "ablation.csv", {"tuned": now})
    assert sorted(zip(kept.recipe, kept.seed)) == [("lecture", 0), ("tuned", 0)]
    assert "2 of 4 rows were made with other params of tuned" in capsys.readouterr().out


def test_a_variant_run_with_set_is_banked_as_the_recipe_that_makes_its_edit(
        tmp_path, monkeypatch):
    """A study of a variant (--set) is the study of the recipe once params.yaml makes the
    same edit: its bank carries over, and nothing is run twice."""
    variant = ["tuned.pretrain_layer1.corruption=0.4", "tuned.stack_layer2.epochs=30"]
    before = ablation.digests(["tuned"], "fixed", variant)
    edited = experiments.expected_params(variant)
    (tmp_path / "params.yaml").write_text(json.dumps(edited))  # JSON is YAML
    monkeypatch.chdir(tmp_path)
    assert ablation.digests(["tuned"], "fixed") == before


def test_a_row_holds_its_point_dataset_metrics_and_fine_tuning_epochs():
    data = {"metrics": {"metrics/tuned/fashion_mnist.json": {"data": {"test_accuracy": 0.8}},
                        "plots/tuned/fashion_mnist/finetune_classifier/metrics.json":
                            {"data": {"kept_epoch": 17}}},
            "params": {"params.yaml": {"data": {"tuned": {"finetune_classifier":
                                                          {"epochs": 400}}}}}}
    row = ablation.row(("end_to_end", "tuned", 100, 3), "fashion_mnist", data)
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
    monkeypatch.setattr(ablation, "collect", lambda p, runs, protocol, extra=(): pd.DataFrame(rows))
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
    monkeypatch.setattr(ablation, "collect", lambda p, runs, protocol, extra=():
                        seen.setdefault("runs", runs)
                        and pd.DataFrame([{"arm": "greedy", "recipe": "tuned", "dataset": "mnist",
                                           "labels": 0, "seed": 0, "test_accuracy": 0.98,
                                           "test_nll": 0.05}]))
    ablation.main(["--collect-only", "--recipes", "tuned", "--arms", "linear_probe", "greedy",
                   "--seeds", "0", "1", "--out", str(tmp_path)])
    arms = {run[0] for run in seen["runs"]}
    assert arms == {"greedy", "linear_probe"}
    assert len(seen["runs"]) == 2 * len(params.load().datasets) * 2
    runs = ablation.runs(params.load(), ["tuned"], [0], [0], ["greedy", "linear_probe"])
    assert [run[0] for run in runs][:2] == ["greedy", "greedy"]  # they train the autoencoders


# ------------------------------------------------ on many machines: the sweep workflow's grid

STUDY = ["--recipes", "tuned", "--labels", "100", "0", "--early-stopping", "--seeds", "0", "1",
         "--arms", "no_pretraining", "greedy"]


def test_print_grid_is_one_point_per_arm_budget_and_seed_that_sweep_keys_takes(
        monkeypatch, capsys):
    monkeypatch.setattr(experiments, "dvc", lambda *args, **kwargs: pytest.fail("ran DVC"))
    ablation.main([*STUDY, "--print-grid"])
    grid = json.loads(capsys.readouterr().out)  # one JSON list, nothing else on stdout
    assert len(grid) == 2 * 2 * 2  # every dataset in each point: a sweep point runs them all
    p = params.load()
    assert sorted(map(sorted, grid)) == sorted(
        sorted(ablation.settings(p, arm, "tuned", labels, seed, "validation"))
        for arm in ("greedy", "no_pretraining") for labels in (100, 0) for seed in (0, 1))
    sweep_keys.main(["--grid", json.dumps(grid)])  # what the workflow's grid job runs
    assert json.loads(capsys.readouterr().out) == grid


def test_print_grid_with_collect_only_is_one_line(capsys):
    with pytest.raises(SystemExit, match="^error: --print-grid prints the whole study"):
        ablation.main([*STUDY, "--print-grid", "--collect-only"])


def fake_experiment(point, ran, accuracy, extra=()):
    """(data, lock) of a finished experiment of the label-budget study's `point`: its params
    as `dvc exp run -S` writes them (with `extra` assignments), a metrics file of every
    dataset, and a dvc.lock whose stages ran with its params for the datasets in `ran` and
    are its baseline's for the others (a run queued with one dataset as its target)."""
    p = params.load()
    sets = [*ablation.settings(p, *point, protocol="validation"), *extra]
    changed, baseline = experiments.expected_params(sets), load_yaml("params.yaml")
    data = {"params": {"params.yaml": {"data": changed}}, "metrics": {
        f"metrics/tuned/{dataset}.json": {"data": {"test_accuracy": accuracy}}
        for dataset in p.datasets}}
    lock = {"stages": {f"{stage}@tuned-{dataset}": {"params": {"params.yaml": {
        "common": run["common"], "tuned.finetune_classifier": run["tuned"]["finetune_classifier"]}}}
        for dataset in p.datasets for run in [changed if dataset in ran else baseline]
        for stage in ("finetune_classifier", "evaluate")}}
    return data, lock


def test_runs_are_found_by_their_params_once_each_with_the_datasets_they_ran(monkeypatch):
    p = params.load()
    greedy, scratch = ("greedy", "tuned", 100, 0), ("no_pretraining", "tuned", 100, 1)
    everything = list(p.datasets)
    made = {"sweep": fake_experiment(greedy, everything, 0.8),  # a random name: no matter
            "again": fake_experiment(greedy, everything, 0.8),  # pulled twice: one row
            "local": fake_experiment(scratch, ["mnist"], 0.7),  # queued for MNIST alone
            "other": fake_experiment(scratch, ["fashion_mnist"], 0.6,  # another recipe's
                                     ["lecture.finetune_classifier.lr=0.2"]),  # change
            "not ours": fake_experiment(greedy, everything, 0.1,
                                        ["tuned.finetune_classifier.lr=0.01"])}
    monkeypatch.setattr(experiments, "finished",
                        lambda: [(rev, data) for rev, (data, _) in made.items()])
    monkeypatch.setattr(experiments, "dvc_lock", lambda rev: made[rev][1])
    study = ablation.runs(p, ["tuned"], [100], [0, 1], ["greedy", "no_pretraining"])
    table = ablation.collect(p, study, protocol="validation")
    found = {(row.arm, row.dataset, row.seed): row.test_accuracy for row in table.itertuples()}
    assert found == {("greedy", "mnist", 0): 0.8, ("greedy", "fashion_mnist", 0): 0.8,
                     ("no_pretraining", "mnist", 1): 0.7,
                     ("no_pretraining", "fashion_mnist", 1): 0.6}
    assert len(table) == len(found)
    assert set(table["labels"]) == {100} and set(table.epochs) == {ablation.MIN_STEPS}


VARIANT = ["tuned.finetune_classifier.lr=0.01"]  # --set: every run of a variant of the recipe


def test_a_variant_adds_its_assignments_to_every_run_under_names_of_its_own(monkeypatch):
    queued = []
    monkeypatch.setattr(experiments, "dvc", lambda *args, **kwargs: queued.append(args))
    p = params.load()
    study = ablation.runs(p, ["tuned"], [0], [1], ["greedy"])
    ablation.queue(p, study, extra=VARIANT)
    names = [args[args.index("-n") + 1] for args in queued]
    assert len(names) == len(p.datasets)
    for args, run in zip(queued, study):
        assert "tuned.finetune_classifier.lr=0.01" in args and "common.seed=1" in args
        assert ablation.run_name(*run) not in names  # never the plain study's runs
    assert all(name.startswith("abl-v") for name in names)


def test_a_variant_collects_its_own_runs_only(monkeypatch):
    p = params.load()
    point = ("greedy", "tuned", 100, 0)
    made = {"plain": fake_experiment(point, list(p.datasets), 0.8),
            "variant": fake_experiment(point, list(p.datasets), 0.9, VARIANT)}
    monkeypatch.setattr(experiments, "finished",
                        lambda: [(rev, data) for rev, (data, _) in made.items()])
    monkeypatch.setattr(experiments, "dvc_lock", lambda rev: made[rev][1])
    study = ablation.runs(p, ["tuned"], [100], [0], ["greedy"])
    plain = ablation.collect(p, study, protocol="validation")
    variant = ablation.collect(p, study, protocol="validation", extra=VARIANT)
    assert set(plain.test_accuracy) == {0.8} and set(variant.test_accuracy) == {0.9}


def test_a_variant_key_that_is_no_param_is_one_line(monkeypatch):
    monkeypatch.setattr(experiments, "dvc", lambda *args, **kwargs: pytest.fail("ran DVC"))
    with pytest.raises(SystemExit, match="^error: --set: the key 'tuned.lr' of 'tuned.lr=1' is no "
                                         "param of params.yaml"):
        ablation.main(["--recipes", "tuned", "--set", "tuned.lr=1"])
