"""`harness report post`: put a run's report.md into a GitHub issue comment with the `gh` CLI.

The comment is report.md itself — its headline chart is a Mermaid block GitHub renders — with the pictures'
relative links dealt with (GitHub cannot show an image that lives only in the local run folder):

- by default each relative PNG link is dropped and one line says the pictures are in the run folder;
- with `push_images`, each linked PNG is committed to a branch of the user's fork through the contents API
  (the branch is created from the fork's default branch when it does not exist) and the links point at
  `https://raw.githubusercontent.com/<fork>/<branch>/<path>`.

The report's own "Posting this to an issue" section is advice for the reader of the file, so it is left out of
the comment. Every failure — no report.md, no `gh`, `gh` failing — is a `HarnessError` (one line, exit 2).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from harness.errors import HarnessError
from harness.run.runfolder import REPORT_FILE

POSTING_HEADING = "## Posting this to an issue"
DEFAULT_BRANCH = "harness-reports"
# ![alt](target.png) where target is relative (no scheme, not absolute)
_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<target>(?![a-zA-Z][a-zA-Z0-9+.-]*:|/)[^)\s]+\.png)\)")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class GhNotFound(HarnessError):
    """`gh api` answered HTTP 404 (a branch or file that does not exist yet)."""


@dataclass
class Gh:
    """Runs the `gh` executable found on PATH; a non-zero exit is a HarnessError with gh's last stderr line."""

    exe: str = field(default_factory=lambda: _find_gh())

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        try:
            proc = subprocess.run([self.exe, *args], input=stdin if stdin is not None else "", capture_output=True,
                                  text=True, timeout=300, check=False)
        except OSError as exc:
            raise HarnessError(f"could not run gh: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"gh {args[0] if args else ''} did not answer in 300 s") from exc
        if proc.returncode != 0:
            lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
            last = lines[-1] if lines else f"exit code {proc.returncode}"
            err = GhNotFound if "HTTP 404" in proc.stderr else HarnessError
            raise err(f"gh {' '.join(args[:2])} failed: {last}")
        return proc.stdout.strip()


def _find_gh() -> str:
    exe = shutil.which("gh")
    if exe is None:
        raise HarnessError("gh (the GitHub CLI) is not on PATH",
                           "install it (Debian: apt-get install gh) and run `gh auth login`")
    return exe


def linked_pictures(report: str) -> list[str]:
    """The relative PNG paths the report links, in order, without duplicates."""
    return list(dict.fromkeys(m["target"] for m in _IMAGE.finditer(report)))


def strip_posting_section(report: str) -> str:
    """Drop the report's "Posting this to an issue" section (to the next `## ` heading or the end)."""
    start = report.find(POSTING_HEADING)
    if start < 0:
        return report
    nxt = report.find("\n## ", start + len(POSTING_HEADING))
    return report[:start].rstrip() + "\n" + (report[nxt:] if nxt >= 0 else "")


def body_without_images(report: str, run_dir_display: str) -> str:
    """The first relative PNG link becomes one line naming the pictures and the run folder; the others go."""
    pictures = linked_pictures(report)
    if not pictures:
        return report
    note = (f"*Pictures ({', '.join(f'`{p}`' for p in pictures)}): in the run folder `{run_dir_display}/` — "
            "GitHub cannot show images that live only on the machine that ran the harness.*")
    said = False

    def repl(_: re.Match[str]) -> str:
        nonlocal said
        if said:
            return ""
        said = True
        return note

    out = _IMAGE.sub(repl, report)
    return re.sub(r"\n{3,}", "\n\n", out)


def body_with_urls(report: str, urls: dict[str, str]) -> str:
    return _IMAGE.sub(lambda m: f"![{m['alt']}]({urls.get(m['target'], m['target'])})", report)


def check_repo(value: str, option: str) -> str:
    if not _REPO.match(value):
        raise HarnessError(f"{option} {value!r} is not OWNER/REPO", f"e.g. {option} BerriAI/litellm")
    return value


def ensure_branch(gh: Gh, fork: str, branch: str) -> None:
    """Create `branch` on `fork` from the tip of the fork's default branch unless it exists."""
    try:
        gh("api", f"repos/{fork}/git/ref/heads/{quote(branch)}", "--jq", ".object.sha")
        return
    except GhNotFound:
        pass
    default = gh("api", f"repos/{fork}", "--jq", ".default_branch")
    sha = gh("api", f"repos/{fork}/git/ref/heads/{quote(default)}", "--jq", ".object.sha")
    gh("api", "--method", "POST", f"repos/{fork}/git/refs", "-f", f"ref=refs/heads/{branch}", "-f", f"sha={sha}")


def push_picture(gh: Gh, fork: str, branch: str, local: Path, dest: str) -> str:
    """Commit `local` to `dest` on the branch (updating it if there); its raw.githubusercontent.com URL.

    The JSON body goes on stdin (`--input -`): a picture's base64 is far longer than one argv string may be.
    """
    endpoint = f"repos/{fork}/contents/{quote(dest)}"
    payload: dict[str, str] = {"message": f"harness report: {dest}",
                               "content": base64.b64encode(local.read_bytes()).decode("ascii"), "branch": branch}
    try:
        payload["sha"] = gh("api", f"{endpoint}?ref={quote(branch)}", "--jq", ".sha")
    except GhNotFound:
        pass
    gh("api", "--method", "PUT", endpoint, "--input", "-", stdin=json.dumps(payload))
    return f"https://raw.githubusercontent.com/{fork}/{branch}/{dest}"


def post_report(run_dir: Path, repo: str, issue: int, *, push_images: bool = False, fork: str | None = None,
                branch: str = DEFAULT_BRANCH, gh: Gh | None = None) -> str:
    """Post the run's report as a comment on `repo`#`issue`; the comment URL gh prints."""
    report_path = run_dir / REPORT_FILE
    if not report_path.is_file():
        raise HarnessError(f"{run_dir} has no {REPORT_FILE}", f"run `harness analyze {run_dir}` first")
    check_repo(repo, "--repo")
    if push_images and fork is None:
        raise HarnessError("--push-images needs --fork OWNER/REPO", "a repository of yours to commit the PNGs to")
    report = strip_posting_section(report_path.read_text())
    pictures = linked_pictures(report)
    missing = [p for p in pictures if not (run_dir / p).is_file()] if push_images else []
    if missing:
        raise HarnessError(f"{run_dir} lacks the picture(s) its report links: {', '.join(missing)}",
                           f"re-run `harness analyze {run_dir}`")
    gh = gh or Gh()
    if push_images and pictures:
        assert fork is not None
        check_repo(fork, "--fork")
        ensure_branch(gh, fork, branch)
        prefix = f"harness-reports/{run_dir.resolve().name}"
        urls = {p: push_picture(gh, fork, branch, run_dir / p, f"{prefix}/{p}") for p in pictures}
        body = body_with_urls(report, urls)
    else:
        body = body_without_images(report, str(run_dir))
    out = gh("issue", "comment", str(issue), "--repo", repo, "--body-file", "-", stdin=body)
    urls_out = [line for line in out.splitlines() if line.startswith("https://")]
    return urls_out[-1] if urls_out else out
