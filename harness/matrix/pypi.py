"""LiteLLM's released versions, from the package index's JSON API (what bisect walks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from packaging.version import InvalidVersion, Version

from harness.errors import HarnessError

PYPI_JSON_URL = "https://pypi.org/pypi/litellm/json"


def fetch_index(url: str = PYPI_JSON_URL, timeout: float = 60.0) -> dict[str, Any]:
    import httpx

    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise HarnessError(f"cannot read LiteLLM's release list from {url}: {exc}",
                           "check the network / package index, or pass --versions-file") from None


def final_releases(index: dict[str, Any]) -> list[str]:
    """Final X.Y.Z releases that still have files on the index (not every file yanked), oldest first."""
    found: list[Version] = []
    for text, files in (index.get("releases") or {}).items():
        try:
            parsed = Version(text)
        except InvalidVersion:
            continue
        if parsed.is_prerelease or parsed.is_postrelease or parsed.is_devrelease or parsed.local:
            continue
        if len(parsed.release) != 3 or str(parsed) != text:
            continue
        if not files or all(f.get("yanked") for f in files):
            continue
        found.append(parsed)
    return [str(v) for v in sorted(found)]


def between(releases: list[str], a: str, b: str,
            accept: Callable[[str], str | None]) -> tuple[list[str], dict[str, str]]:
    """Releases strictly between `a` and `b` (either order), oldest first, and the ones `accept` rejected.

    `accept(version)` returns None when the harness can run the version, else the reason it cannot.
    """
    lo, hi = sorted((Version(a), Version(b)))
    inside: list[str] = []
    rejected: dict[str, str] = {}
    for text in releases:
        if lo < Version(text) < hi:
            why = accept(text)
            if why is None:
                inside.append(text)
            else:
                rejected[text] = why
    return inside, rejected


def harness_accepts(version: str) -> str | None:
    """None when `harness.litellm.versions.resolve` takes the version, else its one-line reason."""
    from harness.litellm.versions import resolve

    try:
        resolve(version)
    except HarnessError as exc:
        return exc.problem
    return None
