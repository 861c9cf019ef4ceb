"""Command-line tools beside the pipeline, run as `python -m scripts.<name>` from the
repository root (pull-request report, README results, sweeps, ablation, verification), and
the helpers they share: Markdown tables and charts, generated blocks in Markdown files, 95 %
intervals, checks on the data the reports read. Standard library only: the sweep workflow imports this package
before the project is installed."""
import math
import numbers
import sys


def markdown_table(header, rows):
    """A Markdown table of rows whose cells are already formatted; unpadded, so that a table
    costs the README no more bytes than its text."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)


def replace_block(text, block, start, end, name="README.md"):
    """`text` with the block between the markers `start` and `end` replaced by `block` (which
    holds the markers); ValueError naming the file `name` without both markers."""
    begin, finish = text.find(start), text.find(end)
    if begin < 0 or finish < begin:
        raise ValueError(f"{name} has no {start} ... {end} block")
    return text[:begin] + block + text[finish + len(end):]


# ASCII characters that can start or end Markdown or HTML markup (emphasis, code, links,
# images, tags, comments, entities, table cells, GitHub's math, strikethrough, headings,
# mentions and references): outside a code span each is written as its numeric entity, which
# Markdown shows as the character and never reads as markup. An underscore between letters or
# digits (fashion_mnist) starts no emphasis in GitHub's Markdown and stays as it is.
MARKUP = set("\\`*_{}[]()<>#+!|~&\"'@$")
# In a backtick code span only these are not literal: a backtick ends it, a pipe ends a table
# cell, and `<` keeps the marker line of a report (an HTML comment) from appearing in the text.
NOT_IN_CODE = set("`|<")


def markdown_escape(value, context="text"):
    """Any text (a param value, an experiment or class name, a metric key, a path) made inert
    where the Markdown of this project puts it, on one line, as the reader should see it:
    each line break or other unprintable character as its Python escape (`\\n`).
    context "text": running text or a table cell; "code": a whole code span (a plain backtick
    span where that is safe, else <code> with entities); "mermaid": a whole quoted Mermaid
    label (it cannot escape a double quote: one becomes a single quote)."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))
    if context == "mermaid":
        return '"' + text.replace('"', "'") + '"'
    if context == "code" and not NOT_IN_CODE & set(text) and text.strip() == text and text:
        return f"`{text}`"
    entities = "".join(
        c if c not in MARKUP or c == "_" and 0 < i < len(text) - 1 and text[i - 1].isalnum()
        and text[i + 1].isalnum() else f"&#{ord(c)};" for i, c in enumerate(text))
    if context == "code":
        return f"<code>{entities}</code>"
    if context == "text":
        return entities
    raise ValueError(f"no Markdown context {context!r}: text, code or mermaid")


def _quoted(text):
    """A Mermaid string: in double quotes, which it cannot escape inside."""
    return markdown_escape(text, "mermaid")


def xychart(title, x_labels, y_label, y_range, series, x_title=None):
    """A Mermaid `xychart-beta` block, which GitHub draws in comments without any image host.
    `series` holds (kind, colour, values): kind "line" or "bar", values one per x label (a
    shorter list covers the first labels). `x_labels` as a `range` (of integers, step 1) makes
    a numeric x axis, which Mermaid labels with a handful of round ticks (its values must then
    be one per number of the range). xychart-beta has no legend: say in the title or beside
    the chart which colour is which."""
    palette = ", ".join(colour for _, colour, _ in series)
    named = f"{_quoted(x_title)} " if x_title is not None else ""
    axis = (f"{x_labels.start} --> {x_labels.stop - 1}" if isinstance(x_labels, range) else
            f"[{', '.join(map(_quoted, x_labels))}]")
    return "\n".join([
        "```mermaid",
        f'%%{{init: {{"themeVariables": {{"xyChart": {{"plotColorPalette": "{palette}"}}}}}}}}%%',
        "xychart-beta", f"    title {_quoted(title)}",
        f"    x-axis {named}{axis}",
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


# ------------------------------------------------------------------ refusing bad data
# Reports read metrics and tables that a person, a merge or a failed run may have broken: each
# value is checked where it is read, and a bad one ends the report with one line that names
# the file, the value and what is allowed.

def is_number(value):
    """A real number (Python's or numpy's), not a bool, not text."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def bad_data(where, what, value, allowed):
    value = value.item() if hasattr(value, "item") else value  # numpy's, shown as Python's
    sys.exit(f"error: {where}: {what} is {value!r}; {allowed}")


def accuracy(value, where, what="test_accuracy"):
    """`value` if it is an accuracy (a finite number in [0, 1]), else exit with one line."""
    if not (is_number(value) and 0 <= value <= 1):  # NaN fails the comparison too
        bad_data(where, what, value, "an accuracy must be a finite number in [0, 1]")
    return value


def accuracy_columns(table, where):
    """`table` (a DataFrame) if every value of its columns named *accuracy is an accuracy."""
    for column in [c for c in table.columns if c.endswith("accuracy")]:
        for value in table[column]:
            accuracy(value, where, column)
    return table


def non_negative(value, where, what, missing_ok=False):
    """`value` if it is a finite number >= 0 (a spread, a loss, an MSE), or NaN where
    `missing_ok` (e.g. the spread of a single seed); else exit with one line."""
    if missing_ok and is_number(value) and math.isnan(value):
        return value
    if not (is_number(value) and 0 <= value < math.inf):
        bad_data(where, what, value, "it must be a finite number >= 0")
    return value


def read_table(source, columns, where=None, dtype=None):
    """A CSV file (a path, or text read elsewhere from `where`) as a pandas DataFrame that has
    `columns`; one line of error for a file that is empty, garbled or lacks a column."""
    where = source if where is None else where
    import pandas as pd  # here: this package must import without pandas (see above)
    try:
        table = pd.read_csv(source, dtype=dtype)
    except (ValueError, pd.errors.ParserError) as error:  # empty, undecodable, ragged
        sys.exit(f"error: {where} is not a readable CSV table ({' '.join(str(error).split())})")
    missing = [column for column in columns if column not in table.columns]
    if missing:
        sys.exit(f"error: {where} has no column {missing[0]!r}; it needs {', '.join(columns)}")
    return table


SUMMARY_COLUMNS = ("recipe", "dataset", "arm", "test_accuracy_mean", "test_accuracy_std",
                   "test_accuracy_count", "test_accuracy_ci95")


def read_summary(path):
    """An ablation summary (scripts.ablation), each row checked: a mean accuracy, a seed
    count >= 1, and a spread and interval >= 0 (missing only for a single seed)."""
    table = read_table(path, SUMMARY_COLUMNS)
    for i, row in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        where = f"{path}, line {i}"
        count = row["test_accuracy_count"]
        if not (is_number(count) and count >= 1 and count == int(count)):
            bad_data(where, "test_accuracy_count", count, "a seed count must be an integer >= 1")
        accuracy(row["test_accuracy_mean"], where, "test_accuracy_mean")
        for column in ("test_accuracy_std", "test_accuracy_ci95"):
            non_negative(row[column], where, column, missing_ok=count == 1)
    return table
