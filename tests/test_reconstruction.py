"""The code-size study: the reference stage's PCA curve at the study's code sizes equals a
direct SVD on real data, the code size set with `-S` reaches the networks the stages train,
and the study's bookkeeping (runs, names, summary, figures) without running DVC."""
from dataclasses import replace
import json

import numpy as np
import pandas as pd
import pytest
import torch

from sae import evaluation, model, params, pca
from sae.datasets import load_split
from scripts import experiments, reconstruction
from tests.conftest import load_stage, registered, write_tiny_idx
from tests.test_plots import PNG_SIGNATURE

pytestmark = pytest.mark.usefixtures("float32_by_default")


# ------------------------------------------------------------ the reference stage's curve

def test_the_reference_curve_equals_a_direct_svd_at_the_study_code_sizes(real_data, tmp_path):
    data = real_data / "mnist"
    load_stage("reference").main(["--dataset", "mnist", "--data", str(data), "--out",
                                  str(tmp_path / "pca.pt"), "--curve", str(tmp_path / "c.csv")])
    curve = pd.read_csv(tmp_path / "c.csv").set_index("code_size").test_mse
    assert list(curve.index) == list(range(785))
    train = load_split(data, train=True)[0].double().numpy()
    test = load_split(data, train=False, limit=2000)[0].double().numpy()
    mean = train.mean(0)
    # The right singular vectors of the centred images are those of their 784 x 784 scatter
    # matrix, by numpy's SVD (the stage uses torch's eigh): seconds, not the minute that an
    # SVD of the 60,000 x 784 images took on 2 cores.
    _, _, vt = np.linalg.svd((train - mean).T @ (train - mean))
    # The curve is over every test image; recompute it on the first 2000 the same way.
    subset = pca.mse_by_code_size(pca.load(tmp_path / "pca.pt"), torch.from_numpy(test))
    for k in reconstruction.CODE_SIZES:
        basis = vt[:k].T
        direct = np.mean(((test - mean) @ basis @ basis.T + mean - test) ** 2)
        assert subset[k] == pytest.approx(direct, rel=1e-6), k
    # PCA-32 on MNIST: 0.0168 (issue 16), as evaluate reports beside the autoencoders.
    assert curve[32] == pytest.approx(0.0168, abs=5e-5)
    assert curve.is_monotonic_decreasing and curve[784] == pytest.approx(0, abs=1e-12)


def test_the_curve_is_the_error_of_each_k_component_reconstruction():
    rng = np.random.default_rng(1)
    fitted = pca.fit(torch.from_numpy(rng.random((300, 784)) ** 2))
    test = torch.from_numpy(rng.random((40, 784)) ** 2)
    curve = pca.mse_by_code_size(fitted, test)
    for k in (0, 1, 16, 200, 784):
        direct = torch.mean((pca.reconstruct(fitted, test, k) - test) ** 2).item()
        assert curve[k] == pytest.approx(direct, rel=1e-9, abs=1e-15)
    assert pca.mse_by_code_size(fitted, test, 16) == pytest.approx(curve[:17], rel=1e-12)


# ------------------------------------------------ the code size reaches the networks

@pytest.fixture
def tuned_project(in_project, tmp_path, monkeypatch):
    """Tiny data and the tuned recipe cut to one short epoch a phase."""
    data = registered(monkeypatch, write_tiny_idx(tmp_path / "tiny", n_train=60))
    folder = in_project(**{"common.device": "cpu", "tuned.split.validation": 20,
                           **{f"tuned.{phase}.epochs": 1 for phase in params.PHASES}})
    return folder, data


def train_stages(folder, data):
    """Run the three training stages of the tuned recipe in this process."""
    common = ["--recipe", "tuned", "--dataset", "mnist", "--data", str(data)]
    load_stage("pretrain_layer1").main([*common, "--model", str(folder / "layer1.pt"),
                                        "--live", str(folder / "live1")])
    load_stage("stack_layer2").main([*common, "--layer1", str(folder / "layer1.pt"),
                                     "--model", str(folder / "stacked.pt"),
                                     "--live", str(folder / "live2")])
    load_stage("finetune_classifier").main([*common, "--stacked", str(folder / "stacked.pt"),
                                            "--model", str(folder / "classifier.pt"),
                                            "--live", str(folder / "live3")])
    return [model.load_checkpoint(folder / name)
            for name in ("layer1.pt", "stacked.pt", "classifier.pt")]


@pytest.mark.parametrize("method", reconstruction.METHODS)
def test_a_runs_code_size_reaches_the_stacked_autoencoder_and_the_classifier(tuned_project,
                                                                            method):
    from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S` calls

    folder, data = tuned_project
    sets = reconstruction.settings(method, 16, params.load().recipe("tuned"))
    apply_overrides(folder / "params.yaml", sets)
    layer1, stacked, classifier = train_stages(folder, data)
    assert evaluation.code_size(layer1) == 400
    assert evaluation.code_size(stacked) == 16
    assert [block.linear.in_features for block in stacked.head] == [16, 400]
    assert classifier.head[-1].linear.in_features == 16
    recipe = params.load().recipe("tuned")
    assert recipe.pretrain_layer1.corruption == recipe.stack_layer2.corruption == 0
    assert recipe.stack_layer2.init == ("random" if method == "end_to_end" else "pretrained")


# ---------------------------------------------------------------- the study's bookkeeping

def test_every_method_code_size_and_seed_is_one_run_greedy_first():
    p = params.load()
    runs = reconstruction.runs(p, reconstruction.CODE_SIZES, [0, 1, 2])
    assert len(set(runs)) == len(runs) == 2 * len(p.datasets) * 5 * 3
    assert [run[0] for run in runs[:len(runs) // 2]] == ["greedy"] * (len(runs) // 2)
    name = reconstruction.run_name("end_to_end", "fashion_mnist", 32, 2)
    assert name == "rec-end_to_end-fashion_mnist-k32-s2"


def fake_table(p):
    rows = [{"method": method, "dataset": dataset, "code_size": k, "seed": seed,
             "test_mse": 0.1 / k * (1 + 0.01 * seed) * (2 if method == "greedy" else 1),
             "pca_test_mse": 0.05, "rev": "0" * 40}
            for method, dataset, k, seed in reconstruction.runs(p, (16, 32), [0, 1, 2])]
    return pd.DataFrame(rows)


def test_the_study_writes_its_table_summary_and_figures(tmp_path, monkeypatch):
    p = params.load()
    curves = {d: pd.Series(np.linspace(0.07, 0.0, 785), index=range(785)) for d in p.datasets}
    monkeypatch.setattr(reconstruction, "collect", lambda p, points, epochs: fake_table(p))
    monkeypatch.setattr(reconstruction, "pca_curves", lambda datasets: curves)
    monkeypatch.setattr(reconstruction, "pipeline_points",
                        lambda datasets: {d: (256, 0.008) for d in datasets})
    width = p.recipe("tuned").pretrain_layer1.layers[1]
    monkeypatch.setattr(reconstruction, "experiment_checkpoint", lambda path, rev, dataset:
                        model.stack(model.autoencoder(784, width, "relu", "sigmoid"), 32,
                                    "relu", "relu"))
    # The pictures read test images and the PCA where dvc.yaml's stages write them.
    data, fitted = write_tiny_idx(tmp_path / "data"), tmp_path / "pca.pt"
    pca.save(pca.fit(torch.rand(50, 784)), fitted)
    outputs = {"download": [str(data)], "reference": [str(fitted)],
               "stack_layer2": ["models/tuned/d/stacked.pt"]}
    monkeypatch.setattr(reconstruction.experiments, "stage_paths",
                        lambda name: ([], outputs[name.split("@")[0]]))
    reconstruction.main(["--collect-only", "--code-sizes", "16", "32", "--out", str(tmp_path)])
    summary = pd.read_csv(tmp_path / "reconstruction_summary.csv")
    assert len(summary) == 2 * len(p.datasets) * 2
    row = summary[(summary.dataset == "mnist") & (summary.code_size == 32)
                  & (summary.method == "end_to_end")].iloc[0]
    assert row.test_mse_mean == pytest.approx(0.1 / 32 * 1.01)
    assert row.test_mse_count == 3 and row.test_mse_ci95 > 0
    assert row.pca_test_mse == pytest.approx(curves["mnist"][32])
    assert row.ratio_to_pca == pytest.approx(row.test_mse_mean / row.pca_test_mse)
    assert "rev" not in pd.read_csv(tmp_path / "reconstruction.csv").columns
    for figure in ("reconstruction.png", "reconstructions.png"):
        assert (tmp_path / figure).read_bytes().startswith(PNG_SIGNATURE)


def test_the_crossing_is_where_the_ratio_to_pca_meets_one_in_log_log():
    summary = pd.DataFrame({"dataset": "mnist", "method": "greedy", "code_size": [64, 128, 256],
                            "ratio_to_pca": [0.5, 0.5, 2.0]})
    # ratio 0.5 at 128 and 2 at 256: log-linear in k, it is 1 half-way, at 128 * sqrt(2).
    assert reconstruction.crossings(summary) == {("mnist", "greedy"): 181}
    summary["ratio_to_pca"] = [0.5, 0.6, 0.9]
    assert reconstruction.crossings(summary) == {("mnist", "greedy"): None}


@pytest.mark.parametrize("method, stacked_epochs", [("greedy", 30), ("end_to_end", 60)])
def test_longer_runs_set_each_phase_once_and_carry_their_epochs_in_the_name(method,
                                                                           stacked_epochs):
    sets = reconstruction.settings(method, 32, params.load().recipe("tuned"), epochs=30)
    keys = [s.split("=")[0] for s in sets]
    assert len(keys) == len(set(keys))  # DVC refuses a key set twice
    assert "tuned.pretrain_layer1.epochs=30" in sets
    assert f"tuned.stack_layer2.epochs={stacked_epochs}" in sets
    assert reconstruction.run_name(method, "mnist", 32, 1, 30) == f"rec30-{method}-mnist-k32-s1"


def test_the_study_trains_its_own_epochs_whatever_the_recipes_pretraining(tmp_path):
    """Selecting the recipe's pretraining (noise, epochs) leaves the study's runs, and so its
    committed results, as they were: each of its runs sets both itself. They were made while
    the recipe pretrained with noise 0.25 for 10 epochs a phase."""
    p = params.load()
    recipe = p.recipe("tuned")
    longer = replace(recipe, pretrain_layer1=replace(recipe.pretrain_layer1, epochs=30,
                                                     corruption=0.4),
                     stack_layer2=replace(recipe.stack_layer2, epochs=30, corruption=0.4))
    pretraining = {}  # params.yaml as the study was made, and with another pretraining
    for noise, epochs in ((0.25, 10), (0.4, 30)):
        path = pretraining[noise] = tmp_path / f"noise{noise}" / "params.yaml"
        path.parent.mkdir()
        path.write_text(json.dumps(experiments.expected_params(  # JSON is YAML
            [f"tuned.{phase}.{key}={value}" for phase in ("pretrain_layer1", "stack_layer2")
             for key, value in (("epochs", epochs), ("corruption", noise))])))
    for method in reconstruction.METHODS:
        sets = reconstruction.settings(method, 32, recipe, reconstruction.EPOCHS)
        assert sets == reconstruction.settings(method, 32, longer, reconstruction.EPOCHS)
        assert "tuned.pretrain_layer1.epochs=10" in sets
        point = reconstruction.point_settings(p, method, 32, 0, reconstruction.EPOCHS)
        made, other = (experiments.identity(experiments.expected_params(point, path), "tuned")
                       for path in pretraining.values())
        assert made == other
    assert reconstruction.run_name("greedy", "mnist", 32, 0, reconstruction.EPOCHS) \
        == "rec-greedy-mnist-k32-s0"


# ------------------------------------------------ on many machines: the sweep workflow's grid

def test_print_grid_is_one_point_per_method_code_size_and_seed_that_sweep_keys_takes(capsys):
    from scripts import sweep_keys

    reconstruction.main(["--print-grid", "--code-sizes", "16", "32", "--seeds", "0", "1"])
    grid = json.loads(capsys.readouterr().out)
    assert len(grid) == 2 * 2 * 2  # every dataset in each point: a sweep point runs them all
    assert "tuned.stack_layer2.layers=[400,32]" in grid[-1] and "common.seed=1" in grid[-1]
    sweep_keys.main(["--grid", json.dumps(grid)])  # what the workflow's grid job runs
    assert json.loads(capsys.readouterr().out) == grid


def test_runs_are_found_by_their_params_with_their_commit(monkeypatch):
    """A sweep's experiment (a random name, every dataset run) gives a row a dataset; one of
    another code size is none of the study's."""
    p = params.load()
    point = ("end_to_end", 32, 1)

    def experiment(k, mse):
        changed = experiments.expected_params(reconstruction.point_settings(p, "end_to_end", k, 1))
        data = {"params": {"params.yaml": {"data": changed}}, "metrics": {
            f"metrics/tuned/{d}.json": {"data": {"reconstruction_mse": {"stacked": mse}}}
            for d in p.datasets}}
        lock = {"stages": {f"evaluate@tuned-{d}": {"params": {"params.yaml": {
            "common": changed["common"], "tuned.split": changed["tuned"]["split"]}}}
            for d in p.datasets}}
        return data, lock
    made = {"ours": experiment(32, 0.01), "other size": experiment(64, 0.02)}
    monkeypatch.setattr(experiments, "finished",
                        lambda: [(rev, data) for rev, (data, _) in made.items()])
    monkeypatch.setattr(experiments, "dvc_lock", lambda rev: made[rev][1])
    table = reconstruction.collect(p, [point])
    assert sorted(table.dataset) == sorted(p.datasets)
    assert set(table.rev) == {"ours"} and set(table.test_mse) == {0.01}
    assert set(table.code_size) == {32} and set(table.seed) == {1}
