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
