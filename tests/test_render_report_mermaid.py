"""scripts/render_report_mermaid.py: report.md → one HTML page that renders its Mermaid blocks in a browser (the
lead's headless-Chromium check). No npm and no browser here: the page itself is checked."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "render_report_mermaid.py"
REPORT = """# Phantom budget: REPRODUCED

Summary with <id> & more.

```mermaid
xychart-beta
    title "Redis counter vs DB spend"
    x-axis "seconds since load start" 0.0 --> 10.0
    line "Redis counter" [1.00, 2.00, 3.00]
```

*Lines, in order: 1. red: Redis counter.*

![Redis counter vs DB spend vs true spend over time](inflation.png)

| | |
|---|---|
| verdict | REPRODUCED |

```sh
harness run scenarios/phantom-budget.yaml --litellm 1.84.0 --> x
```
"""


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_report_mermaid", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_mermaid_fences_become_mermaid_pres_and_the_rest_stays_markdown(script: ModuleType) -> None:
    body, blocks = script.markdown_to_html(REPORT)
    assert blocks == 1 and body.count('<pre class="mermaid">') == 1
    assert '<pre class="mermaid">xychart-beta\n    title &quot;Redis counter vs DB spend&quot;' in body
    assert "0.0 --&gt; 10.0" in body                       # escaped: Mermaid reads the text content
    assert '<pre><code class="language-sh">' in body         # other fences stay code
    assert "<table>" in body and '<img src="inflation.png"' in body


def test_the_page_loads_mermaid_from_the_throwaway_folder_and_resolves_pngs_in_the_run_folder(
        script: ModuleType, tmp_path: Path) -> None:
    run = tmp_path / "results" / "20261130-0000-phantom-budget-1.84.0"
    run.mkdir(parents=True)
    (run / "report.md").write_text(REPORT)
    js = tmp_path / "npm" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
    js.parent.mkdir(parents=True)
    js.write_text("// stand-in")
    page, blocks = script.render(run / "report.md", tmp_path / "out", js, "11.4.1")
    text = page.read_text()
    assert blocks == 1 and page.parent == tmp_path / "out" and page.name == f"{run.name}.html"
    assert f'<base href="{run.resolve().as_uri()}/">' in text
    assert f'<script src="{js.resolve().as_uri()}"></script>' in text
    assert 'mermaid.run({ querySelector: "pre.mermaid" })' in text and "document.title = text" in text
    commands = script.chromium_commands(page, tmp_path / "out" / "shot.png")
    assert commands[0].startswith("chromium --headless=new ") and f"--screenshot={tmp_path}/out/shot.png" in commands[0]
    assert commands[0].endswith(page.resolve().as_uri()) and "--dump-dom" in commands[1]


def test_without_npm_it_says_so_in_one_line(script: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.md"
    report.write_text(REPORT)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert script.main([str(report), "--mermaid-dir", str(tmp_path / "npm"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == ("error: npm is not installed — install Node.js and npm "
                                               "(apt-get install npm)")
    assert script.main([str(tmp_path / "missing.md")]) == 2
