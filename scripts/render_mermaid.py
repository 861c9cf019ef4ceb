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
