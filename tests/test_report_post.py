"""`harness report post` against a fake `gh` first on PATH that records each call (argv + stdin) and answers
canned outputs; nothing leaves this machine."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.report_post import Gh, body_without_images, linked_pictures, post_report, strip_posting_section
from tests.conftest import one_error_line

COMMENT_URL = "https://github.com/BerriAI/litellm/issues/27639#issuecomment-1234"
MERMAID = "```mermaid\nxychart-beta\n    title \"Redis counter vs DB spend vs true spend\"\n    line [1, 2, 3]\n```"
REPORT = f"""# Phantom budget: REPRODUCED — LiteLLM 1.84.0, scenario `phantom-budget`

**REPRODUCED** (LiteLLM 1.84.0, 4 replica(s)).

{MERMAID}

*Headline chart.*

![Redis counter vs DB spend vs true spend](inflation.png)

![rejections over time](rejections.png)

![leaked reservation per end user](drain.png)

See also ![remote](https://example.com/x.png).

## Evidence

| | |
|---|---|
| verdict | REPRODUCED |

## Posting this to an issue

`harness report post results/run-1 --repo OWNER/REPO --issue N` posts this text.
"""
PNGS = {"inflation.png": b"\x89PNG inflation", "rejections.png": b"\x89PNG rejections", "drain.png": b"\x89PNG drain"}

FAKE_GH = r'''#!{python}
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
argv = sys.argv[1:]
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps({{"argv": argv, "stdin": sys.stdin.read()}}) + "\n")
with open(os.path.join(here, "answers.json")) as f:
    answers = json.load(f)
joined = " ".join(argv)
for key, out, err, rc in answers:
    if key in joined:
        sys.stdout.write(out)
        sys.stderr.write(err)
        sys.exit(rc)
sys.stderr.write("fake gh: no canned answer for " + joined + "\n")
sys.exit(3)
'''
NOT_FOUND = ("", "gh: Not Found (HTTP 404)\n", 1)


def _answers(extra: list[tuple[str, str, str, int]] | None = None) -> list[tuple[str, str, str, int]]:
    """First match wins: specific lookups before general ones."""
    return [*(extra or []), ("issue comment", COMMENT_URL + "\n", "", 0)]


@pytest.fixture
def fake_gh(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "gh"
    exe.write_text(FAKE_GH.format(python=sys.executable))
    exe.chmod(0o755)
    (bin_dir / "answers.json").write_text(json.dumps(_answers()))
    return bin_dir


def _set_answers(bin_dir: Path, answers: list[tuple[str, str, str, int]]) -> None:
    (bin_dir / "answers.json").write_text(json.dumps(answers))


def _calls(bin_dir: Path) -> list[dict[str, Any]]:
    path = bin_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "results" / "run-1"
    run.mkdir(parents=True)
    (run / "report.md").write_text(REPORT)
    for name, data in PNGS.items():
        (run / name).write_bytes(data)
    return run


def _gh(bin_dir: Path) -> Gh:
    return Gh(str(bin_dir / "gh"))


def test_linked_pictures_are_the_relative_pngs_only() -> None:
    assert linked_pictures(REPORT) == ["inflation.png", "rejections.png", "drain.png"]


def test_posting_section_is_left_out_and_later_sections_kept() -> None:
    text = "# t\n\n## Posting this to an issue\n\nadvice\n\n## After\n\nkept\n"
    assert strip_posting_section(text) == "# t\n\n## After\n\nkept\n"
    assert "Posting this" not in strip_posting_section(REPORT)
    assert strip_posting_section("# no such section\n") == "# no such section\n"


def test_without_images_one_line_replaces_the_links() -> None:
    body = body_without_images(REPORT, "results/run-1")
    assert linked_pictures(body) == []
    note = [line for line in body.splitlines() if "in the run folder `results/run-1/`" in line]
    assert len(note) == 1
    assert all(p in note[0] for p in PNGS)
    assert MERMAID in body
    assert "![remote](https://example.com/x.png)" in body
    assert "\n\n\n" not in body


def test_post_without_images_sends_one_comment(fake_gh: Path, run_dir: Path) -> None:
    url = post_report(run_dir, "BerriAI/litellm", 27639, gh=_gh(fake_gh))
    assert url == COMMENT_URL
    calls = _calls(fake_gh)
    assert [c["argv"] for c in calls] == [
        ["issue", "comment", "27639", "--repo", "BerriAI/litellm", "--body-file", "-"]]
    body = calls[0]["stdin"]
    assert linked_pictures(body) == []
    assert "](inflation.png)" not in body and ".png)" not in body.replace("https://example.com/x.png)", "")
    assert MERMAID in body
    assert "Posting this to an issue" not in body
    assert "in the run folder" in body


def test_push_images_creates_branch_pushes_pngs_and_links_raw_urls(fake_gh: Path, run_dir: Path) -> None:
    fork, branch = "me/litellm", "reports"
    _set_answers(fake_gh, _answers([
        (f"repos/{fork}/git/ref/heads/{branch}", *NOT_FOUND),
        (f"repos/{fork}/git/ref/heads/main", "abc123\n", "", 0),
        (f"repos/{fork}/git/refs", '{"ref": "refs/heads/reports"}', "", 0),
        # drain.png is already on the branch (a re-post): its sha must be sent to update it
        ("contents/harness-reports/run-1/drain.png?ref=reports", "sha-drain\n", "", 0),
        ("?ref=reports", *NOT_FOUND),
        ("--method PUT", '{"content": {}}', "", 0),
        (f"repos/{fork} --jq .default_branch", "main\n", "", 0),
    ]))
    url = post_report(run_dir, "BerriAI/litellm", 27639, push_images=True, fork=fork, branch=branch,
                      gh=_gh(fake_gh))
    assert url == COMMENT_URL
    calls = _calls(fake_gh)
    argvs = [c["argv"] for c in calls]
    expected = [
        ["api", f"repos/{fork}/git/ref/heads/{branch}", "--jq", ".object.sha"],
        ["api", f"repos/{fork}", "--jq", ".default_branch"],
        ["api", f"repos/{fork}/git/ref/heads/main", "--jq", ".object.sha"],
        ["api", "--method", "POST", f"repos/{fork}/git/refs", "-f", f"ref=refs/heads/{branch}", "-f", "sha=abc123"],
    ]
    for name in PNGS:
        path = f"repos/{fork}/contents/harness-reports/run-1/{name}"
        expected += [["api", f"{path}?ref={branch}", "--jq", ".sha"],
                     ["api", "--method", "PUT", path, "--input", "-"]]
    expected.append(["issue", "comment", "27639", "--repo", "BerriAI/litellm", "--body-file", "-"])
    assert argvs == expected

    puts = [json.loads(c["stdin"]) for c in calls if "PUT" in c["argv"]]
    assert [base64.b64decode(p["content"]) for p in puts] == list(PNGS.values())
    assert all(p["branch"] == branch and p["message"] for p in puts)
    assert [p.get("sha") for p in puts] == [None, None, "sha-drain"]

    body = calls[-1]["stdin"]
    assert linked_pictures(body) == []
    for name in PNGS:
        assert f"(https://raw.githubusercontent.com/{fork}/{branch}/harness-reports/run-1/{name})" in body
    assert MERMAID in body


def test_existing_branch_is_not_created(fake_gh: Path, run_dir: Path) -> None:
    _set_answers(fake_gh, _answers([("git/ref/heads/harness-reports", "def456\n", "", 0), ("?ref=", *NOT_FOUND),
                                    ("--method PUT", "{}", "", 0)]))
    post_report(run_dir, "BerriAI/litellm", 1, push_images=True, fork="me/litellm", gh=_gh(fake_gh))
    argvs = [c["argv"] for c in _calls(fake_gh)]
    assert not any("git/refs" in a for argv in argvs for a in argv)
    assert not any("default_branch" in a for argv in argvs for a in argv)
    assert sum("PUT" in argv for argv in argvs) == 3


def test_gh_failure_is_its_last_stderr_line(fake_gh: Path, run_dir: Path) -> None:
    _set_answers(fake_gh, [("issue comment", "", "some detail\nGraphQL: Could not resolve to an issue (repository)\n",
                            1)])
    with pytest.raises(HarnessError) as exc:
        post_report(run_dir, "BerriAI/litellm", 99999999, gh=_gh(fake_gh))
    assert exc.value.line() == "gh issue comment failed: GraphQL: Could not resolve to an issue (repository)"


def test_push_images_without_fork_sends_nothing(fake_gh: Path, run_dir: Path) -> None:
    with pytest.raises(HarnessError, match="--fork"):
        post_report(run_dir, "BerriAI/litellm", 1, push_images=True, gh=_gh(fake_gh))
    assert _calls(fake_gh) == []


# -- the command as a user runs it -----------------------------------------------------------------------------
def _harness(*args: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_cli_posts_and_prints_the_url(fake_gh: Path, run_dir: Path) -> None:
    proc = _harness("report", "post", str(run_dir), "--repo", "BerriAI/litellm", "--issue", "27639",
                    path=f"{fake_gh}{os.pathsep}{os.environ.get('PATH', '')}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == COMMENT_URL
    assert len(_calls(fake_gh)) == 1


def test_cli_gh_failure_is_one_line_exit_2(fake_gh: Path, run_dir: Path) -> None:
    _set_answers(fake_gh, [("issue comment", "", "HTTP 401: Bad credentials (https://api.github.com/graphql)\n", 1)])
    proc = _harness("report", "post", str(run_dir), "--repo", "BerriAI/litellm", "--issue", "1",
                    path=f"{fake_gh}{os.pathsep}{os.environ.get('PATH', '')}")
    assert proc.returncode == 2
    assert "Bad credentials" in one_error_line(proc)


def test_cli_without_report_is_one_line_exit_2(fake_gh: Path, tmp_path: Path) -> None:
    proc = _harness("report", "post", str(tmp_path), "--repo", "BerriAI/litellm", "--issue", "1",
                    path=f"{fake_gh}{os.pathsep}{os.environ.get('PATH', '')}")
    assert proc.returncode == 2
    assert "report.md" in one_error_line(proc)
    assert _calls(fake_gh) == []


def test_cli_without_gh_on_path_is_one_line_exit_2(run_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    proc = _harness("report", "post", str(run_dir), "--repo", "BerriAI/litellm", "--issue", "1", path=str(empty))
    assert proc.returncode == 2
    assert "gh (the GitHub CLI) is not on PATH" in one_error_line(proc)
