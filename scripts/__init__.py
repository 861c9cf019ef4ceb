"""Command-line tools beside the pipeline, run as `python -m scripts.<name>` from the
repository root (pull-request report, README results, sweeps, ablation, verification), and
the helpers they share: Markdown tables, and generated blocks in Markdown files."""


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
