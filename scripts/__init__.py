"""Command-line tools beside the pipeline, run as `python -m scripts.<name>` from the
repository root (pull-request report, README results, sweeps, ablation, verification), and
the helpers the reports share. Standard library only: the sweep workflow imports this package
before the project is installed."""


def markdown_table(header, rows):
    """A Markdown table of rows whose cells are already formatted; unpadded, so that a table
    costs the README no more bytes than its text."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)


def _quoted(text):
    """A Mermaid string: in double quotes, which it cannot escape inside."""
    return '"' + str(text).replace('"', "'") + '"'


def xychart(title, x_labels, y_label, y_range, series):
    """A Mermaid `xychart-beta` block, which GitHub draws in comments without any image host.
    `series` holds (kind, colour, values): kind "line" or "bar", values one per x label (a
    shorter list covers the first labels). xychart-beta has no legend: say in the title or
    beside the chart which colour is which."""
    palette = ", ".join(colour for _, colour, _ in series)
    return "\n".join([
        "```mermaid",
        f'%%{{init: {{"themeVariables": {{"xyChart": {{"plotColorPalette": "{palette}"}}}}}}}}%%',
        "xychart-beta", f"    title {_quoted(title)}",
        f"    x-axis [{', '.join(map(_quoted, x_labels))}]",
        f"    y-axis {_quoted(y_label)} {y_range[0]:g} --> {y_range[1]:g}",
        *(f"    {kind} [{', '.join(f'{v:.2f}' for v in values)}]" for kind, _, values in series),
        "```"])


# ------------------------------------------------------------------ 95 % intervals

# Student's t quantile t_{0.975, df} for df = 1..30, to 4 decimals (checked against a numerical
# integration of the t density); beyond 30 the Cornish-Fisher expansion below is as close.
T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
        2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
        2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)
Z975 = 1.959964  # the normal distribution's 0.975 quantile


def t975(df):
    """Student's t 0.975 quantile with `df` degrees of freedom: a two-sided 95 % interval."""
    if df < 1:
        raise ValueError(f"a t interval needs df >= 1 (2 or more samples), not {df}")
    if df <= len(T975):
        return T975[int(df) - 1]
    z = Z975
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def mean_ci95(std, n):
    """Half-width of the 95 % t-interval of a mean over n samples with standard deviation std."""
    return t975(n - 1) * std / n**0.5


def prediction95(std, n):
    """Half-width of the 95 % prediction interval of one more sample (e.g. a re-run with
    another seed) around the mean of n samples with standard deviation std."""
    return t975(n - 1) * std * (1 + 1 / n)**0.5


def binomial95(p, n):
    """Half-width of the 95 % interval of an accuracy p measured on n test images (normal
    approximation to the binomial, good for n p (1 - p) well above 5)."""
    return Z975 * (p * (1 - p) / n)**0.5
