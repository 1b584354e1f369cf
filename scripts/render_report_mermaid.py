#!/usr/bin/env python3
"""Render a report.md with its Mermaid blocks into one HTML page, for a look in headless Chromium.

    .venv/bin/python scripts/render_report_mermaid.py results/<run-id>/report.md [--out DIR]
        [--mermaid-dir /tmp/mermaid-npm] [--mermaid-version 11.4.1]

GitHub renders ```mermaid fences itself; this is the same check done here: the Markdown becomes HTML
(markdown-it-py, which rich already brings: CommonMark + tables), each ```mermaid fence a <pre class="mermaid">,
and the page loads Mermaid from the npm package `mermaid`, installed with npm into a throwaway folder outside
the repository (`--mermaid-dir`, default /tmp/mermaid-npm; installed on first use). The PNG links resolve
against the run folder (<base href>). After rendering, the page's title says `mermaid: ok (N diagrams)` or
`mermaid: error …`, and a banner at the top says the same, so both a screenshot and `--dump-dom` show it.

The script does not start a browser; it prints the Chromium commands for a screenshot and for the rendered DOM.
Exit codes: 0 written, 2 bad input (no such file, npm missing or failing).
"""

from __future__ import annotations

import argparse
import html
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

DEFAULT_MERMAID_DIR = Path("/tmp/mermaid-npm")
DEFAULT_MERMAID_VERSION = "11.4.1"
MERMAID_JS = Path("node_modules") / "mermaid" / "dist" / "mermaid.min.js"

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mermaid: rendering</title>
<base href="{base}">
<style>
  body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1012px; margin: 24px auto;
         padding: 0 16px; color: #1f2328; line-height: 1.5; }}
  table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #d1d9e0; padding: 4px 10px; }}
  img {{ max-width: 100%; }} pre {{ background: #f6f8fa; padding: 12px; overflow: auto; }}
  pre.mermaid {{ background: none; }}
  #mermaid-status {{ padding: 8px 12px; font-weight: 600; border-radius: 6px; background: #fff8c5; }}
  #mermaid-status.ok {{ background: #dafbe1; }} #mermaid-status.error {{ background: #ffebe9; }}
</style>
</head>
<body>
<div id="mermaid-status">mermaid: rendering (Mermaid {version})</div>
{body}
<script src="{mermaid_js}"></script>
<script>
  const status = document.getElementById("mermaid-status");
  function say(text, cls) {{ status.textContent = text; status.className = cls; document.title = text; }}
  try {{
    mermaid.initialize({{ startOnLoad: false, securityLevel: "strict" }});
    const n = document.querySelectorAll("pre.mermaid").length;
    mermaid.run({{ querySelector: "pre.mermaid" }})
      .then(() => {{
        const svgs = document.querySelectorAll("pre.mermaid svg").length;
        say(svgs === n ? `mermaid: ok (${{n}} diagram(s), Mermaid {version})`
                       : `mermaid: error (${{svgs}} of ${{n}} diagram(s) rendered)`, svgs === n ? "ok" : "error");
      }})
      .catch((err) => say(`mermaid: error ${{err && err.message ? err.message : err}}`, "error"));
  }} catch (err) {{
    say(`mermaid: error ${{err && err.message ? err.message : err}}`, "error");
  }}
</script>
</body>
</html>
"""


def markdown_to_html(text: str) -> tuple[str, int]:
    """The report's HTML with each ```mermaid fence as <pre class="mermaid"> (its text escaped, as Mermaid reads
    textContent); returns (html, number of Mermaid blocks)."""
    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    count = 0

    def fence(renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict,
              env: EnvType) -> str:
        nonlocal count
        token = tokens[idx]
        if token.info.strip() == "mermaid":
            count += 1
            return f'<pre class="mermaid">{html.escape(token.content)}</pre>\n'
        return renderer.fence(tokens, idx, options, env)

    md.add_render_rule("fence", fence)
    return md.render(text), count


def ensure_mermaid(mermaid_dir: Path, version: str) -> Path:
    """mermaid.min.js of the npm package `mermaid@version` under `mermaid_dir` (npm install on first use)."""
    js = mermaid_dir / MERMAID_JS
    installed = mermaid_dir / "node_modules" / "mermaid" / "package.json"
    if js.exists() and installed.exists() and json.loads(installed.read_text()).get("version") == version:
        return js
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("error: npm is not installed — install Node.js and npm (apt-get install npm)")
    mermaid_dir.mkdir(parents=True, exist_ok=True)
    print(f"installing mermaid@{version} into {mermaid_dir} (npm) …", file=sys.stderr)
    proc = subprocess.run([npm, "install", "--prefix", str(mermaid_dir), "--no-audit", "--no-fund",
                           "--loglevel=error", f"mermaid@{version}"], capture_output=True, text=True)
    if proc.returncode != 0 or not js.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"error: npm install mermaid@{version} failed: {tail[0]}")
    return js


def render(report: Path, out_dir: Path, mermaid_js: Path, version: str) -> tuple[Path, int]:
    body, blocks = markdown_to_html(report.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / f"{report.parent.name or 'report'}.html"
    page.write_text(PAGE.format(base=report.parent.resolve().as_uri() + "/", body=body,
                                mermaid_js=mermaid_js.resolve().as_uri(), version=version))
    return page, blocks


def chromium_commands(page: Path, screenshot: Path) -> list[str]:
    common = ("chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --allow-file-access-from-files "
              "--virtual-time-budget=15000")
    return [f"{common} --window-size=1100,2600 --screenshot={screenshot} {page.resolve().as_uri()}",
            f"{common} --dump-dom {page.resolve().as_uri()} | grep -o 'mermaid: [a-z]*[^<]*' | head -n 1"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a report.md (results/<run-id>/report.md)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/report-render"), help="where the HTML goes")
    parser.add_argument("--mermaid-dir", type=Path, default=DEFAULT_MERMAID_DIR,
                        help="throwaway folder for the npm package mermaid (not in the repository)")
    parser.add_argument("--mermaid-version", default=DEFAULT_MERMAID_VERSION)
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"error: {args.report}: no such file — pass a run folder's report.md", file=sys.stderr)
        return 2
    try:
        js = ensure_mermaid(args.mermaid_dir, args.mermaid_version)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    page, blocks = render(args.report, args.out, js, args.mermaid_version)
    print(f"{page}: {blocks} Mermaid block(s), Mermaid {args.mermaid_version} from {js}")
    if not blocks:
        print("warning: the report has no ```mermaid block (a run without sample rounds has none)", file=sys.stderr)
    print("screenshot, then look at it (the banner at the top says whether every diagram rendered):")
    for command in chromium_commands(page, args.out / f"{page.stem}.png"):
        print(f"  {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
