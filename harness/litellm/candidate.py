"""What `--litellm` names: a PyPI release, or a *candidate build* — a local wheel or a local LiteLLM source tree.

    --litellm 1.84.0                               a release from the package index (kind "pypi")
    --litellm dist/litellm-1.84.0-py3-none-any.whl a wheel file (kind "wheel")
    --litellm ~/src/litellm                        a source tree: a git checkout or an unpacked sdist (kind "tree")

A candidate is keyed by its *content*, never by its path or its declared version, so that building the same
candidate again reuses its environment and two different candidates never share one:

- wheel: the sha256 of the file;
- tree in a git work tree (the tree is the work tree's top level): the HEAD commit, plus — when the work tree
  differs from HEAD — the sha256 of its uncommitted changes (`git diff HEAD --binary` and the untracked,
  not-ignored files' contents);
- any other tree: the sha256 of its files (`tree_digest`; caches and build outputs skipped, see SKIP_DIRS).

The key is the environment's name in `.cache/litellm/`: the declared version with a PEP 440 local label,
`1.84.0+wheel.<sha256:16>`, `1.84.0+git.<commit:12>[.dirty.<sha256:12>]`, `1.84.0+tree.<sha256:16>` (a release
keeps its plain version, so existing environments stay valid). It is also the candidate's *label*: the name of a
matrix cell or a bisect end, and it sorts like a version. Everything that depends on a version's behaviour (the
reservation rule from 1.84.0, `expect_by_version`, extra pins) uses the *declared* version: the wheel's
METADATA, the tree's pyproject.toml.

Within one process a label can stand for its candidate once the candidate was parsed (`parse(label)`): the
matrix and bisect pass cells around by label, and a label is derived from the content, so it cannot name
two different builds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Any, Literal

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from harness.errors import HarnessError
from harness.litellm import versions

Kind = Literal["pypi", "wheel", "tree"]
PROXY_REQUIREMENT = "litellm[proxy]"
USAGE = "pass a release such as 1.84.0, a LiteLLM wheel (.whl) or the folder of a LiteLLM source tree"

# Left out of a tree's digest, anywhere in the tree: version-control data, caches and build outputs. They do not
# change what gets built, and a build writes some of them *into the tree* (uv builds a source tree in place:
# __pycache__, *.egg-info, maturin's cargo `target/` of litellm-rust), so hashing them would change the key of
# the very tree that was just built and nothing would ever be reused. node_modules / .venv are also huge.
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".mypy_cache",
                       ".pytest_cache", ".ruff_cache", ".tox", ".nox", "target", ".idea", ".vscode"})
# ... and at the top of the tree only: where setuptools / `python -m build` put their outputs.
SKIP_TOP_DIRS = frozenset({"build", "dist"})
SKIP_SUFFIXES = (".pyc", ".pyo")     # files; folders ending .egg-info are skipped too
# Candidates parsed in this process, by label (see the module's docstring).
_SEEN: dict[str, Candidate] = {}
# git's own variables that would point `git -C <tree>` at another repository (git bisect run, hooks).
_GIT_REDIRECTS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                  "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX")


@dataclass(frozen=True)
class Candidate:
    """One LiteLLM build the harness can install: a release, a wheel file or a source tree."""

    kind: Kind
    version: str                 # the declared version (a release's own)
    path: Path | None = None     # wheel file / tree folder, absolute
    sha256: str | None = None    # wheel: the file's; tree outside git: tree_digest()
    commit: str | None = None    # tree in a git work tree: HEAD
    dirty: str | None = None     # ... sha256 of its uncommitted changes; None when the work tree is clean

    @property
    def label(self) -> str:
        """The environment's key and the candidate's name in tables: a release's version, else the declared
        version with a local label naming the content (`1.84.0+wheel.3f2a…`)."""
        if self.kind == "pypi":
            return self.version
        if self.kind == "wheel":
            local = f"wheel.{self.sha256[:16] if self.sha256 else ''}"
        elif self.commit:
            local = f"git.{self.commit[:12]}" + (f".dirty.{self.dirty[:12]}" if self.dirty else "")
        else:
            local = f"tree.{self.sha256[:16] if self.sha256 else ''}"
        return f"{self.version}{'.' if '+' in self.version else '+'}{local}"

    @property
    def cli_arg(self) -> str:
        """What to pass to --litellm to get this candidate again."""
        return self.version if self.path is None else str(self.path)

    def traits(self) -> versions.LiteLLMVersion:
        """The declared version's traits (reservations from 1.84.0, extra pins, …)."""
        if self.kind == "pypi":
            return versions.resolve(self.version)
        return versions.traits(self.version, f"LiteLLM build {self.path}")

    def requirement(self) -> str:
        if self.path is None:
            return f"{PROXY_REQUIREMENT}=={self.version}"
        return f"{PROXY_REQUIREMENT} @ {self.path.as_uri()}"

    def requirements(self) -> list[str]:
        """What `uv pip install` gets: litellm[proxy] (from the index, the wheel or the tree), the Prisma
        client every environment pins, and the declared release's extra pins."""
        return [self.requirement(), f"prisma=={versions.PRISMA_VERSION}", *self.traits().extra_pins]

    def uv_options(self) -> list[str]:
        """Extra `uv pip install` options. A candidate is always rebuilt: uv caches the build of a local
        directory by the modification time of its pyproject.toml (and a wheel by path and mtime), which a git
        checkout or an overwritten file does not change. A tree's `tool.uv.sources` is ignored: an unpacked
        sdist lacks the workspace members it names (litellm-proxy-extras, litellm-enterprise), so both kinds of
        tree install what their published metadata pins, from the index."""
        if self.kind == "pypi":
            return []
        return ["--reinstall-package", "litellm"] + (["--no-sources"] if self.kind == "tree" else [])

    def public(self) -> dict[str, Any]:
        """For meta.json and the environment's ready marker: kind, declared version, label, content key, path."""
        out: dict[str, Any] = {"kind": self.kind, "version": self.version, "label": self.label}
        if self.kind == "pypi":
            out["requirement"] = self.requirement()
            return out
        out["path"] = str(self.path)
        if self.kind == "wheel":
            out["sha256"] = self.sha256
        elif self.commit:
            out.update(git_commit=self.commit, git_dirty_sha256=self.dirty)
        else:
            out["files_sha256"] = self.sha256
        return out


def describe_build(info: Mapping[str, Any]) -> str:
    """One line naming a build exactly, from `Candidate.public()` (meta.json's `litellm_build`)."""
    kind, version = info.get("kind"), info.get("version")
    if kind == "pypi":
        return f"PyPI release ({info.get('requirement') or f'{PROXY_REQUIREMENT}=={version}'})"
    path = info.get("path")
    if kind == "wheel":
        return f"wheel declaring {version}, sha256 {info.get('sha256')}, {path}"
    if info.get("git_commit"):
        dirty = info.get("git_dirty_sha256")
        state = f" + uncommitted changes (sha256 {dirty})" if dirty else " (clean work tree)"
        return f"source tree declaring {version}, git commit {info['git_commit']}{state}, {path}"
    return f"source tree declaring {version} (not a git work tree), files sha256 {info.get('files_sha256')}, {path}"


# -- parsing ---------------------------------------------------------------------------------------
def is_path(text: str) -> bool:
    """Does `text` name a file or folder rather than a release? Releases never contain '/'."""
    t = text.strip()
    if not t:
        return False
    if "/" in t or t.startswith(("~", ".")) or t.endswith((".whl", ".tar.gz", ".tgz", ".zip")):
        return True
    return not _is_version(t) and Path(t).exists()


def parse(build: str | Candidate) -> Candidate:
    """The candidate `build` names (a Candidate is returned as is). HarnessError (one line, exit 2) for a
    malformed release, a path that does not exist, a file that is not a LiteLLM wheel, a folder that is not a
    LiteLLM source tree."""
    if isinstance(build, Candidate):
        return build
    raw = build.strip()
    if raw in _SEEN:
        return _SEEN[raw]
    if not is_path(raw):
        if "+" in raw and _is_version(raw):
            raise HarnessError(f"'{raw}' names a LiteLLM candidate build by its label",
                               "pass the wheel or source tree it was built from")
        return Candidate("pypi", versions.resolve(raw).version)
    path = Path(raw).expanduser()
    if not path.exists():
        raise HarnessError(f"LiteLLM build {raw}: no such file or folder", USAGE)
    path = path.resolve()
    if path.is_dir():
        return _remember(_tree(path, raw))
    if path.name.endswith(".whl"):
        return _remember(_wheel(path, raw))
    if path.name.endswith((".tar.gz", ".tgz", ".zip")):
        raise HarnessError(f"LiteLLM build {raw} is a source archive, not a wheel or a folder",
                           f"unpack it (tar xzf {path.name}) and pass the folder with pyproject.toml, or pass a .whl")
    raise HarnessError(f"LiteLLM build {raw} is not a wheel (.whl) or a folder", USAGE)


def _remember(found: Candidate) -> Candidate:
    _SEEN[found.label] = found
    return found


def _is_version(text: str) -> bool:
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


def check_backend(candidate: Candidate, backend: str) -> None:
    """Candidate builds run on the local backend only (HarnessError, exit 2, otherwise)."""
    if candidate.kind != "pypi" and backend != "local":
        raise HarnessError(f"LiteLLM build {candidate.path}: the {backend} backend runs released LiteLLM images "
                           f"only; building an image from a {candidate.kind} is out of scope",
                           "run the candidate on the local backend (--backend local)")


def _wheel(path: Path, raw: str) -> Candidate:
    try:
        name, _, _, _ = parse_wheel_filename(path.name)
    except InvalidWheelFilename:
        raise HarnessError(f"LiteLLM build {raw} is not a wheel: its name is not <name>-<version>-<tags>.whl",
                           "pass the file under the name the build gave it, e.g. litellm-1.84.0-py3-none-any.whl"
                           ) from None
    if canonicalize_name(name) != "litellm":
        raise HarnessError(f"LiteLLM build {raw} is a wheel of '{name}', not of litellm",
                           "pass a litellm-<version>-….whl")
    try:
        with zipfile.ZipFile(path) as zf:
            metadata = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
                        and canonicalize_name(n.split("-", 1)[0]) == "litellm"]
            if len(metadata) != 1:
                raise HarnessError(f"LiteLLM build {raw} is not a wheel: no litellm-*.dist-info/METADATA in it",
                                   "rebuild or download it again")
            headers = HeaderParser().parsestr(zf.read(metadata[0]).decode("utf-8", "replace"))
    except (zipfile.BadZipFile, OSError) as exc:
        raise HarnessError(f"LiteLLM build {raw} is not a wheel: {exc}", "rebuild or download it again") from None
    if canonicalize_name(headers.get("Name") or "") != "litellm":
        raise HarnessError(f"LiteLLM build {raw}: its METADATA names the package '{headers.get('Name')}', "
                           "not litellm", "pass a wheel of litellm")
    declared = (headers.get("Version") or "").strip()
    versions.traits(declared, f"LiteLLM build {raw}")
    return Candidate("wheel", declared, path, sha256=file_sha256(path))


def _tree(path: Path, raw: str) -> Candidate:
    pyproject = path / "pyproject.toml"
    if not pyproject.is_file():
        raise HarnessError(f"LiteLLM build {raw} is a folder without pyproject.toml",
                           "pass the root of a LiteLLM checkout or of an unpacked sdist (the folder with "
                           "pyproject.toml)")
    try:
        data = tomllib.loads(pyproject.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HarnessError(f"LiteLLM build {raw}: pyproject.toml cannot be read: {exc}",
                           "fix the file or pass another tree") from None
    project = data.get("project") or {}
    poetry = (data.get("tool") or {}).get("poetry") or {}     # releases before the move to [project]
    name = project.get("name") or poetry.get("name")
    if canonicalize_name(str(name or "")) != "litellm":
        raise HarnessError(f"LiteLLM build {raw}: its pyproject.toml is for "
                           f"{repr(name) if name else 'no named package'}, not litellm",
                           "pass the root of a LiteLLM checkout or unpacked sdist (whose pyproject.toml names "
                           "litellm)")
    declared = str(project.get("version") or poetry.get("version") or "").strip()
    if not declared and "version" in (project.get("dynamic") or []):
        declared = _pkg_info_version(path)
    if not declared:
        raise HarnessError(f"LiteLLM build {raw}: its pyproject.toml declares no version",
                           "set [project] version (an unpacked sdist's PKG-INFO is read when it is dynamic)")
    versions.traits(declared, f"LiteLLM build {raw}")
    git = git_state(path)
    if git is not None:
        commit, dirty = git
        return Candidate("tree", declared, path, commit=commit, dirty=dirty)
    return Candidate("tree", declared, path, sha256=tree_digest(path))


def _pkg_info_version(path: Path) -> str:
    try:
        return (HeaderParser().parsestr((path / "PKG-INFO").read_text()).get("Version") or "").strip()
    except OSError:
        return ""


# -- content keys ----------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _skipped(parts: tuple[str, ...], is_dir: bool = False) -> bool:
    """Is the path `parts` (relative to the tree) left out of its digest? Yes when one of its folders is in
    SKIP_DIRS or ends with .egg-info, its top folder is in SKIP_TOP_DIRS, or it is a .pyc / .pyo file."""
    folders = parts if is_dir else parts[:-1]
    if folders and folders[0] in SKIP_TOP_DIRS:
        return True
    if any(f in SKIP_DIRS or f.endswith(".egg-info") for f in folders):
        return True
    return not is_dir and bool(parts) and parts[-1].endswith(SKIP_SUFFIXES)


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    """(posix path relative to root, path) of every file and symlink kept, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).parts
        dirnames[:] = sorted(d for d in dirnames if not _skipped((*rel_dir, d), is_dir=True))
        for name in sorted(filenames):
            if not _skipped((*rel_dir, name)):
                yield "/".join((*rel_dir, name)), base / name


def _entry(rel: str, path: Path) -> bytes:
    """One file's line in a digest: its path, what it is (link / executable / file) and its content's sha256."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        kind, content = "l", hashlib.sha256(os.readlink(path).encode()).hexdigest()
    else:
        kind, content = ("x" if st.st_mode & 0o111 else "f"), file_sha256(path)
    return f"{rel}\0{kind}\0{content}\n".encode()


def tree_digest(root: Path) -> str:
    """sha256 over every kept file of `root` (path, kind, content); SKIP_DIRS / SKIP_TOP_DIRS / SKIP_SUFFIXES
    left out."""
    digest = hashlib.sha256()
    for rel, path in _files(root):
        digest.update(_entry(rel, path))
    return digest.hexdigest()


def _git(tree: Path, *args: str) -> bytes | None:
    git = shutil.which("git")
    if git is None:
        return None
    env = {k: v for k, v in os.environ.items() if k not in _GIT_REDIRECTS}
    env["GIT_OPTIONAL_LOCKS"] = "0"      # `git status` must not take the index lock of someone's checkout
    try:
        proc = subprocess.run([git, "-C", str(tree), *args], capture_output=True, timeout=300, env=env,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(tree: Path) -> tuple[str, str | None] | None:
    """(HEAD commit, sha256 of the uncommitted changes or None when clean) when `tree` is the top level of a git
    work tree with a commit, else None (the caller then hashes the files).

    A tree *inside* someone else's repository (an sdist unpacked in a checkout) is not its own work tree: its
    top level differs, and the files are hashed. A repository git refuses to read (`safe.directory`: owned by
    another user) is hashed as files too — overriding that check would let the repository's config run commands.
    Changes = `git diff HEAD --binary` (staged and unstaged, tracked files) + the untracked, not-ignored files'
    paths and contents (the same skip rules as tree_digest)."""
    top = _git(tree, "rev-parse", "--show-toplevel")
    if top is None or Path(top.decode().strip()).resolve() != tree.resolve():
        return None
    head = _git(tree, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    diff = _git(tree, "diff", "HEAD", "--binary", "--full-index", "--no-ext-diff", "--no-textconv", "--no-color")
    others = _git(tree, "ls-files", "--others", "--exclude-standard", "-z")
    if head is None or diff is None or others is None:
        return None
    untracked = sorted(p for p in others.decode("utf-8", "surrogateescape").split("\0")
                       if p and not _skipped(tuple(p.split("/"))))
    if not diff and not untracked:
        return head.decode().strip(), None
    digest = hashlib.sha256(diff)
    digest.update(b"\0untracked\0")
    for rel in untracked:
        path = tree / rel
        if path.is_symlink() or path.is_file():
            digest.update(_entry(rel, path))
    return head.decode().strip(), digest.hexdigest()
