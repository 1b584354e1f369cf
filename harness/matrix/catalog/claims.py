"""Outcome claims in hand-written Markdown, checked against the rows and runs that back them.

    check_file(path) -> list[str]        # one line per problem; [] when every claim is backed and agrees

A *claim* is a sentence of prose (code, tables, HTML comments and headings are not prose) that names a
LiteLLM version (`1.84.0`, `1.93.x`) and an outcome word (reproduced, leak, clean, phantom, deflation, fixed,
inconclusive). It is backed by the evidence links in the same sentence:

- a row: `[text](#<anchor>)` or `[text](other.md#<anchor>)`, where a table row of the target file carries
  `<a id="<anchor>"></a>`. The outcome table's rows carry `#<scenario>-<version>` and `#<run-id>`
  (rows.render_table); hand-written tables in docs/ carry their own;
- a run folder: `[text](docs/runs/<run-id>/)` (or a file in it), any folder with a verdict.json (e.g. a
  test fixture): its verdict.json summary is the row;
- a declared gap: a link to a heading named "Runs still needed": a claim no run in the repository backs
  yet, listed under that heading with the run that would back it.

Rules: every evidence link of the prose must resolve and its text must agree with its row (in any
sentence); a claim needs at least one evidence link or a declared gap, and each version it names must be the
version of one of its evidence links (a range `1.93.x`: any `1.93.` one) unless it declares a gap. A link
text says only what its row can confirm, and is checked: REPRODUCED / NOT REPRODUCED / INCONCLUSIVE (the
row's verdict), `clean` / `reproduced` (the row's outcome column, else its verdict), `N phantom…` (phantom
rejections), `$X` (one of the row's dollar figures, rounded as written), `N users` (one of its user counts),
`at T s` (first phantom s), a version (the row's). Any other number in a link text is a problem.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.paths import REPO_ROOT
from harness.run.runfolder import VERDICT_FILE

GAP_HEADING = "runs-still-needed"

VERSION_RE = re.compile(r"(?<![\w.])1\.\d{2,3}\.(?:\d+|x)(?![\w])")
OUTCOME_RE = re.compile(r"reproduc|leak|\bclean\b|phantom|deflat|\bfix(?:ed|es)?\b|inconclusive", re.IGNORECASE)
LINK_RE = re.compile(r"(?<!!)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]*)\)")
IMAGE_RE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
CODE_RE = re.compile(r"`[^`]*`")
ANCHOR_RE = re.compile(r'<a id="(?P<id>[^"]*)"></a>')
SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9*(\[\x00])")

NUM = r"\d[\d,]*(?:\.\d+)?"
VERDICT_WORDS = ("NOT REPRODUCED", "REPRODUCED", "INCONCLUSIVE")


@dataclass
class Row:
    """What a piece of evidence says: the cells of a table row (heading → text) or a run's summary."""

    where: str
    cells: dict[str, str]

    def get(self, *names: str) -> str | None:
        for name in names:
            if name in self.cells and self.cells[name] != "":
                return self.cells[name]
        return None

    def numbers(self, *fragments: str) -> list[float]:
        out = []
        for heading, value in self.cells.items():
            if any(f in heading for f in fragments):
                number = _number(value)
                if number is not None:
                    out.append(number)
        return out

    @property
    def version(self) -> str | None:
        return self.get("version", "litellm")


@dataclass
class Claim:
    """A sentence of prose with its links; `is_claim`: it states an outcome (a version and an outcome word)."""

    file: Path
    line: int
    text: str                                   # the sentence, code spans blanked
    links: list[tuple[str, str]] = field(default_factory=list)   # (text, target)
    is_claim: bool = True


def _number(text: str) -> float | None:
    m = re.search(NUM, text.replace("$", ""))
    if not m:
        return None
    try:
        return float(m.group(0).replace(",", ""))
    except ValueError:
        return None


def _clean_cell(cell: str) -> str:
    cell = ANCHOR_RE.sub("", cell).replace("**", "").replace("✅", "").replace("❌", "")
    cell = LINK_RE.sub(lambda m: m.group("text"), cell)
    return cell.replace("\\|", "|").strip()


def _split_row(line: str) -> list[str]:
    from harness.matrix.catalog.rows import _split_row as split

    return split(line)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


class Docs:
    """Reads and caches the files evidence links point into."""

    def __init__(self) -> None:
        self._text: dict[Path, str | None] = {}

    def text(self, path: Path) -> str | None:
        path = path.resolve()
        if path not in self._text:
            self._text[path] = path.read_text() if path.is_file() else None
        return self._text[path]

    def row(self, path: Path, anchor: str) -> Row | None:
        """The table row of `path` carrying `<a id="anchor">`, as heading → cell."""
        text = self.text(path)
        if text is None:
            return None
        lines = text.splitlines()
        tag = f'<a id="{anchor}"></a>'
        for i, line in enumerate(lines):
            if tag not in line or not line.lstrip().startswith("|"):
                continue
            top = i
            while top > 0 and lines[top - 1].lstrip().startswith("|"):
                top -= 1
            headings = [_clean_cell(h).lower() for h in _split_row(lines[top].strip())]
            cells = [_clean_cell(c) for c in _split_row(line.strip())]
            if len(cells) != len(headings):
                return None
            return Row(f"{path.name}#{anchor}", dict(zip(headings, cells, strict=True)))
        return None

    def heading(self, path: Path, anchor: str) -> bool:
        text = self.text(path)
        return text is not None and any(slug(ln.lstrip("#")) == anchor for ln in text.splitlines()
                                        if ln.startswith("#"))


def run_row(folder: Path) -> Row | None:
    """A run folder's verdict.json summary as a row."""
    from harness.analyze.summary import read_summary

    if not (folder / VERDICT_FILE).is_file():
        return None
    s = read_summary(folder)
    if s is None:
        return None
    try:
        expected = json.loads((folder / VERDICT_FILE).read_text()).get("expected")
    except ValueError:
        expected = None
    cells = {"version": s.litellm_version, "verdict": s.verdict, "expected": expected,
             "phantom rejections": s.phantoms, "phantom users": s.phantom_users,
             "first phantom s": s.first_phantom_s, "leaked $": s.leaked_usd, "leaked users": s.leaked_users,
             "deflated $": s.deflated_usd, "deflated users": s.deflated_users,
             "max inflation $": s.max_inflation_usd, "user max inflation $": s.user_max_inflation_usd,
             "counter total $": s.counter_total_usd, "db total $": s.db_total_usd,
             "true spend low $": s.true_low_total_usd, "true spend high $": s.true_high_total_usd,
             "orphaned $": getattr(s, "orphaned_usd", None), "orphaned users": getattr(s, "orphaned_users", None),
             "requests": s.requests}
    return Row(str(folder.name), {k: "" if v is None else str(v) for k, v in cells.items()})


def _prose(text: str) -> list[tuple[int, str]]:
    """(first line number, paragraph) of the prose: no code blocks, tables, comments or headings, nothing under
    the "Runs still needed" heading (the list of declared gaps); a list item or a blank line starts a new
    paragraph."""
    text = re.sub(r"<!--.*?-->", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.DOTALL)
    out: list[tuple[int, str]] = []
    cur: list[str] = []
    start = 0
    fenced = skipping = False

    def flush() -> None:
        if cur:
            out.append((start, " ".join(s.strip() for s in cur)))
            cur.clear()

    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
            flush()
            continue
        if stripped.startswith("#") and not fenced:
            skipping = slug(stripped.lstrip("#")) == GAP_HEADING
        if fenced or skipping or not stripped or stripped.startswith(("|", "#")):
            flush()
            continue
        if re.match(r"^([-*]|\d+\.)\s", stripped):
            flush()
        if not cur:
            start = n
        cur.append(line)
    flush()
    return out


def _hold_links(para: str) -> tuple[str, list[tuple[str, str]]]:
    """`para` with each link replaced by a placeholder (so that sentences split around it), and the links."""
    links: list[tuple[str, str]] = []

    def hold(m: re.Match[str]) -> str:
        links.append((m.group("text"), m.group("target")))
        return f"\x00{len(links) - 1}\x00"

    return LINK_RE.sub(hold, para), links


def sentences(path: Path) -> list[Claim]:
    """The sentences of a Markdown file's prose that state an outcome or link something."""
    found = []
    for line, para in _prose(path.read_text()):
        held, links = _hold_links(CODE_RE.sub("`…`", IMAGE_RE.sub("", para)))
        for sentence in SENTENCE_END_RE.split(held):
            idx = [int(i) for i in re.findall(r"\x00(\d+)\x00", sentence)]
            plain = sentence
            for i in idx:
                plain = plain.replace(f"\x00{i}\x00", links[i][0])
            is_claim = bool(VERSION_RE.search(plain) and OUTCOME_RE.search(plain))
            if is_claim or idx:
                found.append(Claim(path, line, plain, [links[i] for i in idx], is_claim))
    return found


def claims(path: Path) -> list[Claim]:
    """The outcome claims of a Markdown file (see the module docstring)."""
    return [c for c in sentences(path) if c.is_claim]


def _resolve(claim: Claim, target: str, docs: Docs) -> tuple[str, Row | None, str | None]:
    """('row', Row, None) / ('gap', None, None) / ('other', None, None) / ('broken', None, why)."""
    if re.match(r"^[a-z]+:", target):
        return "other", None, None
    path_part, _, fragment = target.partition("#")
    path = (claim.file.parent / path_part).resolve() if path_part else claim.file.resolve()
    if fragment:
        if fragment == GAP_HEADING:
            if docs.heading(path, fragment):
                return "gap", None, None
            return "broken", None, f"no heading 'Runs still needed' in {path_part or claim.file.name}"
        row = docs.row(path, fragment)
        if row is not None:
            return "row", row, None
        if docs.heading(path, fragment):
            return "other", None, None
        return "broken", None, f"{target}: no row or heading with that anchor"
    if not path.exists():
        return "broken", None, f"{target}: no such file or folder"
    folder = path if path.is_dir() else path.parent
    if (folder / VERDICT_FILE).is_file():
        return "row", run_row(folder), None
    return "other", None, None


def _matches(value: float, written: str) -> bool:
    """Is `written` (e.g. "2,277.81", "155") `value` rounded to as many decimals as it shows?"""
    decimals = len(written.split(".")[1]) if "." in written else 0
    return abs(value - float(written.replace(",", ""))) <= 0.5 * 10 ** -decimals + 1e-9


def check_link_text(text: str, row: Row) -> list[str]:
    """What `text` says that `row` does not confirm."""
    problems: list[str] = []
    rest = CODE_RE.sub(" ", text)
    verdict = row.get("verdict")
    outcome = row.get("outcome")
    for word in VERDICT_WORDS:
        if re.search(rf"\b{word}\b", rest):
            if verdict != word:
                problems.append(f"says {word}, the row's verdict is {verdict or 'missing'}")
            rest = re.sub(rf"\b{word}\b", " ", rest)
    for word, means in (("clean", "NOT REPRODUCED"), ("reproduced", "REPRODUCED")):
        if re.search(rf"\b{word}\b", rest):
            ok = outcome == word if outcome else verdict == means
            if not ok:
                problems.append(f"says {word}, the row's {'outcome' if outcome else 'verdict'} is "
                                f"{outcome or verdict or 'missing'}")
    for m in list(VERSION_RE.finditer(rest)):
        v = m.group(0)
        if row.version is None or not (row.version == v or (v.endswith(".x") and row.version.startswith(v[:-1]))):
            problems.append(f"names {v}, the row is {row.version or 'of no version'}")
    rest = VERSION_RE.sub(" ", rest)

    def take(pattern: str, check: str) -> None:
        nonlocal rest
        for m in list(re.finditer(pattern, rest)):
            written = m.group("n")
            if check == "phantoms":
                values = row.numbers("phantom rejections") or row.numbers("phantoms")
                label = "phantom rejections"
            elif check == "usd":
                values = row.numbers("$", "inflation")
                label = "dollar figures"
            elif check == "users":
                values = row.numbers("users")
                label = "user counts"
            else:
                values = row.numbers("first phantom")
                label = "first phantom s"
            if not any(_matches(v, written) for v in values):
                shown = ", ".join(f"{v:g}" for v in values) or "none"
                problems.append(f"says {m.group(0).strip()!r}, the row's {label}: {shown}")
        rest = re.sub(pattern, " ", rest)

    take(rf"(?P<n>{NUM}) phantom", "phantoms")
    take(rf"\$(?P<n>{NUM})", "usd")
    take(rf"(?P<n>{NUM}) (?:end )?users?\b", "users")
    take(rf"at (?P<n>{NUM}) ?s\b", "seconds")
    left = re.findall(NUM, rest)
    if left:
        problems.append(f"numbers the row cannot confirm: {', '.join(left)} (keep them outside the link text)")
    return problems


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return path.name


def check_claims(found: list[Claim], docs: Docs | None = None) -> list[str]:
    docs = docs or Docs()
    problems: list[str] = []
    for claim in found:
        where = f"{_shown(claim.file)}:{claim.line}"
        versions: set[str] = set()
        backed = gap = False
        for text, target in claim.links:
            kind, row, why = _resolve(claim, target, docs)
            if kind == "broken":
                problems.append(f"{where}: [{text}]({target}): {why}")
            elif kind == "gap":
                gap = True
            elif kind == "row" and row is not None:
                backed = True
                if row.version:
                    versions.add(row.version)
                problems += [f"{where}: [{text}]({target}): {p}" for p in check_link_text(text, row)]
        short = claim.text if len(claim.text) <= 110 else claim.text[:107] + "…"
        if not claim.is_claim:
            continue
        if not backed and not gap:
            problems.append(f"{where}: an outcome claim with no run or row linked: {short!r}")
            continue
        if gap:
            continue
        for v in sorted(set(VERSION_RE.findall(claim.text))):
            covered = v in versions or (v.endswith(".x") and any(x.startswith(v[:-1]) for x in versions))
            if not covered:
                problems.append(f"{where}: names {v} but links no run or row of {v}: {short!r}")
    return problems


def check_file(path: Path) -> list[str]:
    """Every problem of the outcome claims in `path`, and of every evidence link in its prose, claim or not
    (see the module docstring)."""
    return check_claims(sentences(path))
