"""The benchmarks' arithmetic that must never print an impossible figure, and the contention
benchmark's thread settings (no timing here: the figures themselves need a quiet machine)."""
import argparse

import pytest

from benchmarks.contention import environment, table, thread_settings
from benchmarks.train_speed import ImpossibleShare, batch_rows, matmul_share


def test_matmul_share_is_the_products_fraction_of_the_epoch():
    assert matmul_share(0.62, 0.81) == pytest.approx(0.765, abs=1e-3)
    assert matmul_share(1.0, 1.0) == 1.0  # nothing but matrix products: possible, just


def test_a_share_above_100_percent_is_refused_with_the_figures_and_why():
    # issue 17: the products were timed while the machine was busy, the epoch when it was not
    with pytest.raises(ImpossibleShare) as refused:
        matmul_share(2.04, 1.0)
    message = str(refused.value)
    assert "204 %" in message and "2.040 s" in message and "1.000 s" in message
    assert "impossible" in message and "no share printed" in message


def test_the_matmul_reference_counts_the_short_last_batch_at_its_own_size():
    # A reference that counted 300 images as one batch of 1000 gave shares over 300 %.
    assert batch_rows(60000, 1000) == {1000: 60}
    assert batch_rows(60000, 128) == {128: 468, 96: 1}
    assert batch_rows(300, 1000) == {300: 1}


def test_each_thread_setting_runs_with_only_its_own_openmp_variables(monkeypatch):
    """A variable from the caller's shell (or the stages' defaults) must not leak into the
    settings that compare against it: setting a is OpenMP's own default wait policy."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("GOMP_SPINCOUNT", "0")
    settings = thread_settings(cores=4)
    assert [env for _, env in settings.values()] == [
        {"OMP_NUM_THREADS": 4}, {"OMP_NUM_THREADS": 4, "OMP_WAIT_POLICY": "PASSIVE"},
        {"OMP_NUM_THREADS": 4, "GOMP_SPINCOUNT": "10000"}, {"OMP_NUM_THREADS": 3},
        {"OMP_NUM_THREADS": 1}, {"OMP_NUM_THREADS": 4, "GOMP_SPINCOUNT": "1000"}]
    default_wait = environment(settings["a"][1])
    assert default_wait["OMP_NUM_THREADS"] == "4"
    assert "OMP_WAIT_POLICY" not in default_wait and "GOMP_SPINCOUNT" not in default_wait
    assert environment(settings["c"][1])["GOMP_SPINCOUNT"] == "10000"


def test_contention_table_gives_medians_and_ratios_to_the_same_setting_alone():
    args = argparse.Namespace(stages=["finetune_classifier"], settings=["a", "b"])
    epochs = {("a", "alone"): {"finetune_classifier": [1.0, 9.0, 2.0]},  # median 2
              ("a", "busy loop"): {"finetune_classifier": [8.0]},
              ("a", "training"): {"finetune_classifier": [5.0]},
              ("b", "alone"): {"finetune_classifier": [2.1]},
              ("b", "busy loop"): {"finetune_classifier": [3.15]},
              ("b", "training"): {"finetune_classifier": [4.2]}}
    rows = table(args, thread_settings(cores=2), epochs).splitlines()
    assert rows[0].endswith("| alone / a alone |")
    assert rows[2:] == [
        "| finetune_classifier | a: 2 threads, default wait | 2.00 | 8.00 | 4.00 | 5.00 | 2.50 "
        "| 1.000 |",
        "| finetune_classifier | b: 2 threads, OMP_WAIT_POLICY=PASSIVE | 2.10 | 3.15 | 1.50 "
        "| 4.20 | 2.00 | 1.050 |"]
