"""Hostile text in what GitHub shows (issue 22, cause 2): a param value, an experiment name, a
class name or a metric key that holds Markdown, HTML, line breaks or the report's marker line
reaches every Markdown file the project writes as text, through one escaping function
(scripts.markdown_escape): the pull-request comment, the sweep summary of the job summary,
README.md's results, docs/pipeline.md's parameter tables and the Mermaid charts.

Each check renders the Markdown twice, once with a plain value and once with the hostile one,
with markdown-it (CommonMark with GitHub's tables, raw HTML allowed as GitHub allows it): the
HTML must have the same elements in the same order, and the hostile text must show as it is.
"""
import html
import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from markdown_it import MarkdownIt

from scripts import pr_report, sweep_summary, xychart
from tests import test_sweep
from tests.test_readme import results  # noqa: F401 (a fixture)

MARKER = pr_report.MARKER
HOSTILE = ("a`b``|<b>x</b>|\n## heading\n</details>\n" + MARKER + "\n**bold** _it_ "
           "[link](https://example.com) ![i](x.png) $x^2$ @someone #1 &amp; &#124; \\| ~~s~~ "
           "<!-- open\r\n- item\n```\nend \u2028 \x00")
PLAIN = "plain"


def visible(text):
    """What the reader must see: the text on one line, each line break or other unprintable
    character as its Python escape."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def render(markdown):
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(
        markdown)


def structure(markup):
    """The HTML elements of rendered Markdown, in order (names only)."""
    return re.findall(r"<(/?[a-zA-Z][a-zA-Z0-9]*)", markup)


class Texts(HTMLParser):
    """The text of every element of `names`, tags stripped and entities decoded."""

    def __init__(self, names):
        super().__init__(convert_charrefs=True)
        self.names, self.depth, self.texts = names, 0, []

    def handle_starttag(self, tag, attrs):
        if tag in self.names:
            self.depth += 1
            if self.depth == 1:
                self.texts.append("")

    def handle_endtag(self, tag):
        if tag in self.names:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.texts[-1] += data


def texts(markup, *names):
    parser = Texts(names)
    parser.feed(markup)
    return parser.texts


def assert_inert(make, hostile=HOSTILE):
    """`make(value)` -> Markdown: the hostile value changes no element and shows as text."""
    plain, bad = make(PLAIN), make(hostile)
    plain_html, bad_html = render(plain), render(bad)
    assert structure(bad_html) == structure(plain_html), bad
    cells = texts(bad_html, "td", "th", "p", "li", "h1", "h2", "code")
    assert any(visible(hostile) in cell for cell in cells), (visible(hostile), cells)
    assert MARKER not in bad.replace(MARKER, "", plain.count(MARKER)), "marker forged"
    return bad


def test_the_pr_report_shows_hostile_params_and_metric_keys_as_text(monkeypatch, tmp_path):
    def report(value):
        diffs = {"metrics": {}, "params": {"params.yaml": {
            "download.source_dir": (None, value), f"lecture.{value}": ("x", value)}}}
        monkeypatch.setattr(pr_report, "dvc_diff", lambda kind, base, *options: diffs[kind])
        monkeypatch.setattr(pr_report, "evaluations", lambda: [])
        monkeypatch.setattr(pr_report, "seed_noise", lambda: {})
        return pr_report.build_report(f"origin/{value}", tmp_path, "https://x.invalid/run")
    text = assert_inert(report)
    assert text.splitlines()[0] == MARKER and text.count("<!--") == 1


def test_the_pr_report_metrics_table_shows_a_hostile_metric_key_as_text():
    assert_inert(lambda value: pr_report.metrics_table(
        [], {f"reconstruction_mse.{value}": (0.1, 0.2)}, [None, None]))


def sweep_markdown(value):
    """The sweep summary of test_sweep's runs, one experiment named `value` whose lr and
    metrics file's name are `value`."""
    shown = test_sweep.shown()
    exp = shown[1]["experiments"][0]
    exp["name"] = value
    exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["lecture"]["finetune_classifier"][
        "lr"] = value
    table, swept = sweep_summary.summary_table(shown)
    return sweep_summary.markdown(table, swept, "summary.png")


def test_the_sweep_summary_shows_hostile_names_and_values_as_text():
    assert_inert(sweep_markdown)


def test_a_mermaid_chart_keeps_hostile_labels_inside_their_quotes():
    def chart(value):
        return xychart(f"title {value}", [value, "b"], value, (0, 100),
                       [("line", "#000000", [1, 2])])
    for value in (PLAIN, HOSTILE):
        lines = chart(value).splitlines()
        assert len(lines) == 8 and lines[0] == "```mermaid" and lines[-1] == "```"
        assert not any(re.match(" {0,3}```", line) for line in lines[1:-1]), lines  # no fence
        for line in lines[3:6]:  # title, x-axis, y-axis: quotes in pairs, nothing between
            quoted = re.findall(r'"[^"]*"', line)
            assert "".join(quoted).count('"') == line.count('"') == 2 * len(quoted), line
    assert visible(HOSTILE).replace('"', "'") in chart(HOSTILE).splitlines()[5]


def test_the_readme_shows_a_hostile_class_name_as_text(results):  # noqa: F811
    from scripts import readme_results
    path = results / "plots" / "lecture" / "fashion_mnist" / "per_class.csv"
    original = pd.read_csv(path, dtype=str)

    def readme(value):
        original.replace({"class": {"Pullover": value}}).to_csv(path, index=False)
        return readme_results.render(results)
    assert_inert(readme, HOSTILE.replace("\x00", ""))  # CSV text holds no NUL


def test_the_docs_parameter_tables_show_a_hostile_value_as_text():
    from scripts import params_table
    assert_inert(lambda value: "\n".join([
        "| key | value |", "| --- | --- |", f"| `download.source_dir` | {params_table.cell(value)} |"]))
    assert params_table.cell("lecture") == "`lecture`"  # plain values as before


def test_one_escaping_function_serves_text_code_and_mermaid():
    from scripts import markdown_escape
    assert markdown_escape("lecture.finetune_classifier.lr", "code") == \
        "`lecture.finetune_classifier.lr`"
    assert html.unescape(markdown_escape("a\nb")) == "a\\nb"
    assert "<" not in markdown_escape("<!-- x -->") and "<!--" not in markdown_escape(
        "<!-- x -->", "code")
    assert markdown_escape('say "hi"\n', "mermaid") == "\"say 'hi'\\n\""
    assert html.unescape(markdown_escape("|`*_<>&\\")) == "|`*_<>&\\"
    with pytest.raises(ValueError):
        markdown_escape("x", "nowhere")
    json.dumps(markdown_escape(HOSTILE))  # one line of text
    assert "\n" not in markdown_escape(HOSTILE, "code")
