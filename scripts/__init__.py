"""Command-line tools beside the pipeline, run as `python -m scripts.<name>` from the
repository root (pull-request report, README results, sweeps, ablation, verification), and
the one helper the reports share."""


def markdown_table(header, rows):
    """A Markdown table of rows whose cells are already formatted; unpadded, so that a table
    costs the README no more bytes than its text."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)
