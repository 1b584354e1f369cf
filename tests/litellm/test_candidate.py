"""harness.litellm.candidate: what --litellm names (release, wheel, source tree), its content key, its declared
version and the one-line errors for bad paths. No package index, no build: wheels and trees are made here."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from harness.errors import HarnessError
from harness.litellm import candidate as cand
from harness.litellm.candidate import Candidate, check_backend, describe_build, parse

PYPROJECT = '[project]\nname = "litellm"\nversion = "{version}"\n\n[project.optional-dependencies]\nproxy = []\n'


def make_wheel(path: Path, version: str = "1.84.0", name: str = "litellm", payload: bytes = b"x = 1\n",
               metadata: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("litellm/__init__.py", payload)
        zf.writestr(f"{name}-{version}.dist-info/METADATA",
                    metadata if metadata is not None else f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{name}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return path


def make_tree(root: Path, version: str = "1.84.0", pyproject: str | None = None) -> Path:
    (root / "litellm" / "proxy").mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(pyproject if pyproject is not None else PYPROJECT.format(version=version))
    (root / "litellm" / "__init__.py").write_text("VERSION = 1\n")
    (root / "litellm" / "proxy" / "schema.prisma").write_text("generator client {}\n")
    return root


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.org",
                           "-c", "commit.gpgsign=false", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def git_tree(root: Path, version: str = "1.84.0") -> Path:
    make_tree(root, version)
    (root / ".gitignore").write_text("ignored/\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "one")
    return root


def one_line(exc: pytest.ExceptionInfo[HarnessError]) -> str:
    line = exc.value.line()
    assert "\n" not in line and exc.value.exit_code == 2 and exc.value.fix
    return line


# -- releases ----------------------------------------------------------------------------------------
def test_a_release_is_a_pypi_candidate_keyed_by_its_version() -> None:
    c = parse("1.84.0")
    assert (c.kind, c.version, c.label, c.path) == ("pypi", "1.84.0", "1.84.0", None)
    assert c.requirements() == ["litellm[proxy]==1.84.0", "prisma==0.11.0"] and c.uv_options() == []
    assert parse("1.95.1").requirements()[-1] == "fastapi==0.140.0"
    assert describe_build(c.public()) == "PyPI release (litellm[proxy]==1.84.0)"
    assert parse(c) is c


@pytest.mark.parametrize("text", ["banana", "1.84", "1.2.3"])
def test_a_bad_release_is_the_releases_own_error(text: str) -> None:
    with pytest.raises(HarnessError) as info:
        parse(text)
    assert "LiteLLM" in one_line(info)


# -- wheels ------------------------------------------------------------------------------------------
def test_the_same_wheel_is_the_same_key_anywhere_and_one_byte_changes_it(tmp_path: Path) -> None:
    a = make_wheel(tmp_path / "a" / "litellm-1.84.0-py3-none-any.whl")
    b = tmp_path / "b" / "litellm-1.84.0-py3-none-any.whl"
    b.parent.mkdir()
    shutil.copy(a, b)
    ca, cb = parse(str(a)), parse(str(b))
    assert ca.kind == "wheel" and ca.version == "1.84.0" and ca.path == a.resolve()
    assert ca.label == cb.label and ca.sha256 == cb.sha256 == cand.file_sha256(a)      # content, not path
    assert ca.label == f"1.84.0+wheel.{ca.sha256[:16]}" and Version(ca.label) > Version("1.84.0")
    data = bytearray(b.read_bytes())
    data[-1] ^= 1                                                   # one byte of the archive
    b.write_bytes(bytes(data))
    assert parse(str(b)).label != ca.label


def test_a_wheels_version_is_read_from_its_metadata(tmp_path: Path) -> None:
    whl = make_wheel(tmp_path / "litellm-1.84.0-py3-none-any.whl",
                     metadata="Metadata-Version: 2.4\nName: LiteLLM\nVersion: 1.89.1.dev3\n")
    c = parse(str(whl))
    assert c.version == "1.89.1.dev3" and c.traits().has_disable_budget_reservation
    assert c.requirements() == [f"litellm[proxy] @ {whl.resolve().as_uri()}", "prisma==0.11.0"]
    assert c.uv_options() == ["--reinstall-package", "litellm"]
    assert parse(str(make_wheel(tmp_path / "p" / "litellm-1.95.1-py3-none-any.whl", "1.95.1"))).requirements()[
        -1] == "fastapi==0.140.0"                                    # the declared release's extra pins
    info = c.public()
    assert info == {"kind": "wheel", "version": "1.89.1.dev3", "label": c.label, "path": str(whl.resolve()),
                    "sha256": c.sha256}
    assert describe_build(info) == f"wheel declaring 1.89.1.dev3, sha256 {c.sha256}, {whl.resolve()}"


@pytest.mark.parametrize(("make", "words"), [
    (lambda d: d / "missing.whl", ["missing.whl: no such file or folder", "release such as 1.84.0"]),
    (lambda d: d / "nothere" / "litellm", ["no such file or folder"]),
    (lambda d: _file(d / "litellm-1.84.0.tar.gz"), ["is a source archive", "tar xzf litellm-1.84.0.tar.gz"]),
    (lambda d: _file(d / "notes.txt"), ["notes.txt is not a wheel (.whl) or a folder"]),
    (lambda d: _file(d / "litellm-1.84.0-py3-none-any.whl", b"not a zip"), ["is not a wheel: File is not a zip"]),
    (lambda d: make_wheel(d / "candidate.whl"), ["its name is not <name>-<version>-<tags>.whl"]),
    (lambda d: make_wheel(d / "openai-1.0.0-py3-none-any.whl", "1.0.0", "openai"), ["a wheel of 'openai'"]),
    (lambda d: make_wheel(d / "litellm-1.84.0-py3-none-any.whl", metadata="Name: openai\nVersion: 1.0\n"),
     ["METADATA names the package 'openai'"]),
    (lambda d: make_wheel(d / "litellm-1.50.0-py3-none-any.whl", "1.50.0"), ["declares LiteLLM 1.50.0, older"]),
    (lambda d: _dir(d / "empty"), ["folder without pyproject.toml", "root of a LiteLLM checkout"]),
    (lambda d: make_tree(d / "extras", pyproject='[project]\nname = "litellm-proxy-extras"\nversion = "0.4.72"\n'),
     ["pyproject.toml is for 'litellm-proxy-extras', not litellm"]),
    (lambda d: make_tree(d / "nover", pyproject='[project]\nname = "litellm"\ndynamic = ["version"]\n'),
     ["declares no version"]),
    (lambda d: make_tree(d / "broken", pyproject='[project\nname = "litellm"\n'), ["pyproject.toml cannot be read"]),
    (lambda d: make_tree(d / "bad", "one.two"), ["declares the version 'one.two'"]),
])
def test_bad_paths_are_one_line_naming_the_problem_and_the_fix(tmp_path: Path, make, words: list[str]) -> None:
    path = make(tmp_path)
    with pytest.raises(HarnessError) as info:
        parse(str(path))
    line = one_line(info)
    for word in words:
        assert word in line, line


def _file(path: Path, data: bytes = b"x") -> Path:
    path.write_bytes(data)
    return path


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


# -- trees ---------------------------------------------------------------------------------------------
def test_a_tree_outside_git_is_keyed_by_its_files_without_caches_and_build_outputs(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "litellm-1.84.0")
    c = parse(str(tree))
    assert (c.kind, c.version, c.commit) == ("tree", "1.84.0", None)
    assert c.label == f"1.84.0+tree.{c.sha256[:16]}" and c.sha256 == cand.tree_digest(tree)
    assert c.uv_options() == ["--reinstall-package", "litellm", "--no-sources"]
    assert c.requirement() == f"litellm[proxy] @ {tree.resolve().as_uri()}"
    assert describe_build(c.public()).startswith("source tree declaring 1.84.0 (not a git work tree), files sha256 ")
    # what a build or an editor leaves in the tree does not change the key ...
    for junk in ("litellm/__pycache__/x.cpython-311.pyc", "node_modules/a/index.js", "litellm-rust/target/x.o",
                 "litellm.egg-info/PKG-INFO", "build/lib/x.py", ".venv/bin/python", "litellm/y.pyc"):
        (tree / junk).parent.mkdir(parents=True, exist_ok=True)
        (tree / junk).write_text("junk")
    assert parse(str(tree)).label == c.label
    # ... a source file does, and so does its executable bit
    (tree / "litellm" / "__init__.py").write_text("VERSION = 2\n")
    changed = parse(str(tree)).label
    assert changed != c.label
    (tree / "litellm" / "__init__.py").chmod(0o755)
    assert parse(str(tree)).label not in (c.label, changed)
    # a copy elsewhere is the same candidate
    (tree / "litellm" / "__init__.py").chmod(0o644)
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy)
    assert parse(str(copy)).label == changed


def test_a_poetry_tree_and_an_sdist_with_a_dynamic_version_are_read(tmp_path: Path) -> None:
    poetry = make_tree(tmp_path / "old", pyproject='[tool.poetry]\nname = "litellm"\nversion = "1.83.14"\n')
    assert parse(str(poetry)).version == "1.83.14"
    sdist = make_tree(tmp_path / "sdist", pyproject='[project]\nname = "litellm"\ndynamic = ["version"]\n')
    (sdist / "PKG-INFO").write_text("Metadata-Version: 2.4\nName: litellm\nVersion: 1.94.0\n")
    assert parse(str(sdist)).version == "1.94.0"


def test_a_git_tree_is_keyed_by_its_commit_and_the_hash_of_its_uncommitted_changes(tmp_path: Path) -> None:
    tree = git_tree(tmp_path / "checkout")
    head = git(tree, "rev-parse", "HEAD")
    clean = parse(str(tree))
    assert (clean.commit, clean.dirty, clean.sha256) == (head, None, None)
    assert clean.label == f"1.84.0+git.{head[:12]}" and Version(clean.label)
    assert describe_build(clean.public()) == (f"source tree declaring 1.84.0, git commit {head} (clean work tree), "
                                              f"{tree.resolve()}")
    # ignored files and build outputs leave it clean
    (tree / "ignored").mkdir()
    (tree / "ignored" / "x").write_text("x")
    (tree / "litellm" / "__pycache__").mkdir()
    (tree / "litellm" / "__pycache__" / "a.pyc").write_bytes(b"\0")
    assert parse(str(tree)).label == clean.label
    # a tracked change: same commit, a dirty hash; another change: another hash
    (tree / "litellm" / "__init__.py").write_text("VERSION = 2\n")
    dirty1 = parse(str(tree))
    assert dirty1.commit == head and dirty1.dirty and dirty1.label == f"{clean.label}.dirty.{dirty1.dirty[:12]}"
    assert "uncommitted changes (sha256 " in describe_build(dirty1.public())
    (tree / "litellm" / "__init__.py").write_text("VERSION = 3\n")
    dirty2 = parse(str(tree))
    assert dirty2.dirty != dirty1.dirty
    # staged or not, the same content is the same key
    git(tree, "add", "litellm/__init__.py")
    assert parse(str(tree)).label == dirty2.label
    # an untracked (not ignored) file counts
    (tree / "litellm" / "new.py").write_text("NEW = 1\n")
    assert parse(str(tree)).dirty not in (None, dirty2.dirty)
    # committing it all: a new commit, clean again
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", "two")
    after = parse(str(tree))
    assert after.commit != head and after.dirty is None and after.label != clean.label


def test_a_tree_inside_another_repository_is_keyed_by_its_files(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    outer.mkdir()
    git(outer, "init", "-q")
    tree = make_tree(outer / "vendor" / "litellm-1.84.0")
    c = parse(str(tree))
    assert c.commit is None and c.sha256 == cand.tree_digest(tree)


def test_a_git_tree_without_commits_is_keyed_by_its_files(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "fresh")
    git(tree, "init", "-q")
    c = parse(str(tree))
    assert c.commit is None and c.sha256 == cand.tree_digest(tree)


def test_git_variables_of_a_surrounding_git_command_do_not_redirect_the_key(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    tree = git_tree(tmp_path / "checkout")
    other = git_tree(tmp_path / "other", "1.89.1")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    assert parse(str(tree)).commit == git(tree, "--git-dir", str(tree / ".git"), "rev-parse", "HEAD")


def test_is_path_tells_paths_from_releases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkout").mkdir()
    assert [cand.is_path(t) for t in ("1.84.0", "./x", "/abs", "~/src", "a.whl", "x.tar.gz", "checkout", "banana",
                                      "")] == [False, True, True, True, True, True, True, False, False]


def test_candidates_run_on_the_local_backend_only(tmp_path: Path) -> None:
    whl = parse(str(make_wheel(tmp_path / "litellm-1.84.0-py3-none-any.whl")))
    check_backend(whl, "local")
    check_backend(parse("1.84.0"), "compose")
    with pytest.raises(HarnessError) as info:
        check_backend(whl, "compose")
    line = one_line(info)
    assert "compose backend runs released LiteLLM images only" in line and "out of scope" in line
    assert "--backend local" in line


def test_two_different_candidates_of_one_version_never_share_a_label(tmp_path: Path) -> None:
    labels = {parse("1.84.0").label,
              parse(str(make_wheel(tmp_path / "w1" / "litellm-1.84.0-py3-none-any.whl"))).label,
              parse(str(make_wheel(tmp_path / "w2" / "litellm-1.84.0-py3-none-any.whl", payload=b"y"))).label,
              parse(str(make_tree(tmp_path / "t1"))).label,
              parse(str(git_tree(tmp_path / "g1"))).label}
    assert len(labels) == 5
    assert all(isinstance(Candidate, type) and Version(label).public == "1.84.0" for label in labels)
