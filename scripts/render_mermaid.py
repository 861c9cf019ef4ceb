"""Render every Mermaid block of a Markdown file in headless Chromium, as GitHub would draw it.

    python -m scripts.render_mermaid report/report.md [--screenshot charts.png]

prints one line per block ("ok" or Mermaid's parse error) and exits 1 when any block fails.
Needs a Chromium (Debian's `chromium` or `chromium-headless-shell`) and the npm package
`mermaid`: by default node_modules/mermaid/dist/mermaid.min.js (`npm install --no-save
mermaid`), or the file that $MERMAID_JS names. Nothing is fetched from the network.
"""
import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BLOCK = re.compile(r"^```mermaid\n(.*?)^```$", re.MULTILINE | re.DOTALL)
BROWSERS = ("chromium", "chromium-headless-shell", "google-chrome", "chrome")
RESULT = re.compile(r'<pre id="result">([^<]*)</pre>')
# Each chart is rendered by mermaid.render, its SVG appended to the page; the result list
# goes into <pre id="result"> for --dump-dom to print.
PAGE = """<!doctype html><html><body style="width: 900px"><div id="charts"></div>
<pre id="result">pending</pre><script src="{script}"></script><script>
const blocks = {blocks};
mermaid.initialize({{startOnLoad: false}});
(async () => {{
  const results = [];
  for (const [i, text] of blocks.entries()) {{
    try {{
      const {{svg}} = await mermaid.render("chart" + i, text);
      document.getElementById("charts").insertAdjacentHTML("beforeend", svg);
      results.push("ok");
    }} catch (error) {{
      results.push("error: " + String(error.message || error).split("\\n").join(" "));
    }}
  }}
  document.getElementById("result").textContent = JSON.stringify(results);
}})();
</script></body></html>"""


def mermaid_blocks(markdown):
    """The text of each ```mermaid block, in order."""
    return BLOCK.findall(markdown)


def browser():
    """The path of a Chromium, or None."""
    return next(filter(None, map(shutil.which, BROWSERS)), None)


def mermaid_script():
    """The path of mermaid.min.js, or None."""
    path = Path(os.environ.get("MERMAID_JS", "node_modules/mermaid/dist/mermaid.min.js"))
    return path.resolve() if path.is_file() else None


def chromium(page, *mode):
    """Load `page` in headless Chromium (virtual time lets the async rendering finish)."""
    command = [browser(), "--headless", "--no-sandbox", "--disable-gpu",
               "--virtual-time-budget=30000", *mode, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def render(blocks, screenshot=None):
    """["ok" or "error: ..."] per block; with `screenshot`, a PNG of the rendered charts."""
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder, "charts.html")
        page.write_text(PAGE.format(script=mermaid_script().as_uri(), blocks=json.dumps(blocks)))
        found = RESULT.search(chromium(page, "--dump-dom").stdout)
        if screenshot:
            height = 80 + 560 * len(blocks)  # about one chart's height each
            chromium(page, f"--screenshot={Path(screenshot).resolve()}",
                     f"--window-size=920,{height}", "--hide-scrollbars")
    if not found or found.group(1) == "pending":
        return ["error: the page did not finish rendering"] * len(blocks)
    return json.loads(html.unescape(found.group(1)))


# A Markdown file as GitHub shows it: the Markdown as HTML, each ```mermaid block replaced
# by its chart; the results go into <pre id="result"> as above.
MARKDOWN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body {{font-family: sans-serif; width: 880px; margin: 16px; font-size: 14px}}
table {{border-collapse: collapse}} td, th {{border: 1px solid #d0d7de; padding: 3px 8px}}
code {{background: #f0f0f0}} .mermaid svg {{max-width: 880px}}
</style></head><body>{body}
<pre id="result">pending</pre><script src="{script}"></script><script>
mermaid.initialize({{startOnLoad: false}});
(async () => {{
  const results = [];
  for (const [i, node] of [...document.querySelectorAll("pre.mermaid")].entries()) {{
    try {{
      const {{svg}} = await mermaid.render("chart" + i, node.textContent);
      node.outerHTML = '<div class="mermaid">' + svg + "</div>";
      results.push("ok");
    }} catch (error) {{
      results.push("error: " + String(error.message || error).split("\\n").join(" "));
    }}
  }}
  document.getElementById("result").textContent = JSON.stringify(results);
}})();
</script></body></html>"""
FENCE = re.compile(r'<pre><code class="language-mermaid">(.*?)</code></pre>', re.DOTALL)


def markdown_html(markdown):
    """The HTML of Markdown as GitHub renders a comment (CommonMark with tables), each
    ```mermaid block a <pre class="mermaid"> holding its text."""
    from markdown_it import MarkdownIt  # DVC's rich brings it
    body = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)
    return FENCE.sub(r'<pre class="mermaid">\1</pre>', body)


def render_markdown(markdown, screenshot):
    """Render a Markdown file's text as a page, its Mermaid blocks drawn; ["ok" or
    "error: ..."] per block, and a PNG of the whole page at `screenshot`."""
    blocks = mermaid_blocks(markdown)
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder, "comment.html")
        page.write_text(MARKDOWN_PAGE.format(body=markdown_html(markdown),
                                             script=mermaid_script().as_uri()), "utf-8")
        found = RESULT.search(chromium(page, "--dump-dom").stdout)
        lines = markdown.count("\n") - sum(block.count("\n") for block in blocks)
        chromium(page, f"--screenshot={Path(screenshot).resolve()}",
                 f"--window-size=920,{200 + 24 * lines + 520 * len(blocks)}", "--hide-scrollbars")
    if not found or found.group(1) == "pending":
        return ["error: the page did not finish rendering"] * len(blocks)
    return json.loads(html.unescape(found.group(1)))


# `dvc plots show` and `dvc plots diff` pages load Vega from a CDN; offline, the npm
# packages vega, vega-lite and vega-embed (node_modules/<name>/build/<name>.min.js) stand in.
VEGA = ("vega", "vega-lite", "vega-embed")
CDN_SCRIPT = re.compile(r'<script src="https://cdn\.jsdelivr\.net/npm/(vega(?:-lite|-embed)?)@'
                        r'[^"]*"></script>')
# After the page's own scripts: how many plot divs hold a drawn chart (an SVG or canvas)
# and the first errors that Vega-Embed showed, in <pre id="result">.
VEGA_CHECK = """<pre id="result">pending</pre><script>
setTimeout(() => {
  const drawn = [...document.querySelectorAll(".vega-embed")].filter(
    d => d.querySelector("svg, canvas")).length;
  const errors = [...document.querySelectorAll(".vega-embed .error, .error")].map(
    e => e.textContent).slice(0, 3);
  document.getElementById("result").textContent = JSON.stringify(
    {drawn: drawn, errors: errors});
}, 5000);
</script>"""


def vega_scripts():
    """{name: path} of the local Vega scripts, or None where one is missing."""
    paths = {name: Path(f"node_modules/{name}/build/{name}.min.js").resolve() for name in VEGA}
    return paths if all(path.is_file() for path in paths.values()) else None


def render_plots_page(page, screenshot, width=1500, height=9000):
    """Open a `dvc plots` HTML page with local Vega scripts: {charts, drawn, errors}, and a
    PNG of the page at `screenshot`."""
    scripts = vega_scripts()
    text = CDN_SCRIPT.sub(lambda m: f'<script src="{scripts[m.group(1)].as_uri()}"></script>',
                          Path(page).read_text("utf-8"))
    text = text.replace("</body>", VEGA_CHECK + "</body>")
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder, "index.html")
        local.write_text(text, "utf-8")
        found = RESULT.search(chromium(local, "--dump-dom").stdout)
        chromium(local, f"--screenshot={Path(screenshot).resolve()}",
                 f"--window-size={width},{height}", "--hide-scrollbars")
    charts = text.count("vegaEmbed(")
    if not found or found.group(1) == "pending":
        return {"charts": charts, "drawn": 0, "errors": ["the page did not finish rendering"]}
    return {"charts": charts, **json.loads(html.unescape(found.group(1)))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("markdown", type=Path, help="the Markdown file to check")
    parser.add_argument("--screenshot", type=Path, help="also write a PNG of the charts")
    args = parser.parse_args(argv)
    if browser() is None or mermaid_script() is None:
        sys.exit("error: needs a Chromium on PATH and mermaid.min.js (npm install --no-save "
                 "mermaid, or set MERMAID_JS)")
    blocks = mermaid_blocks(args.markdown.read_text())
    results = render(blocks, args.screenshot)
    for i, result in enumerate(results, 1):
        print(f"block {i}: {result}")
    if not blocks or any(r != "ok" for r in results):
        sys.exit(f"error: {args.markdown}: {len(blocks)} Mermaid blocks, "
                 f"{results.count('ok')} rendered")


if __name__ == "__main__":
    main()
