"""The 95 % intervals the reports give (scripts package): Student's t quantile against
published table values, the three half-widths on worked examples, and the ablation summary's
interval column."""
import math

import pandas as pd
import pytest

from scripts import ablation, binomial95, mean_ci95, prediction95, t975


@pytest.mark.parametrize("df, quantile", [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262),
                                          (30, 2.042), (40, 2.021), (60, 2.000), (120, 1.980)])
def test_t_quantile_matches_the_tables(df, quantile):
    assert t975(df) == pytest.approx(quantile, abs=6e-4)


def test_t_quantile_tends_to_the_normal_and_needs_two_samples():
    assert t975(10**6) == pytest.approx(1.96, abs=1e-3)
    with pytest.raises(ValueError, match="df >= 1"):
        t975(0)


def test_half_widths():
    # 3 seeds with std 1: the mean's interval t(2)/sqrt(3), one more run's t(2) sqrt(4/3)
    assert mean_ci95(1.0, 3) == pytest.approx(4.3027 / 3**0.5)
    assert prediction95(1.0, 3) == pytest.approx(4.3027 * (4 / 3)**0.5)
    # the examples: 98.75 % and 90.35 % on 10,000 test images
    assert round(100 * binomial95(0.9875, 10_000), 2) == 0.22
    assert round(100 * binomial95(0.9035, 10_000), 2) == 0.58


def test_ablation_summary_carries_the_mean_s_t_interval_beside_mean_std_and_count():
    table = pd.DataFrame({"recipe": "lecture", "dataset": "mnist", "labels": 0,
                          "arm": ["greedy"] * 3 + ["linear_probe"],
                          "seed": [0, 1, 2, 0], "test_accuracy": [0.90, 0.91, 0.92, 0.5],
                          "test_nll": [0.3, 0.3, 0.3, 1.0]})
    summary = ablation.summarise(table).set_index("arm")
    assert list(summary.columns[-8:]) == [
        "test_accuracy_mean", "test_accuracy_std", "test_accuracy_count", "test_accuracy_ci95",
        "test_nll_mean", "test_nll_std", "test_nll_count", "test_nll_ci95"]
    assert summary.test_accuracy_ci95.greedy == pytest.approx(4.3027 * 0.01 / 3**0.5)
    assert math.isnan(summary.test_accuracy_ci95.linear_probe)  # one seed: no interval
