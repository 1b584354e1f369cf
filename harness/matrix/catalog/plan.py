"""Which cells a catalog run has: the catalog scenarios (scenarios/*.yaml) and the versions each names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.paths import REPO_ROOT
from harness.scenario.model import Scenario, load_scenario

SCENARIOS_DIR = REPO_ROOT / "scenarios"


@dataclass
class Entry:
    """One catalog scenario file."""

    path: Path
    scenario: Scenario

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def issue(self) -> str:
        return self.scenario.issue or ""

    @property
    def versions(self) -> list[str]:
        return self.scenario.catalog_versions()


def discover(directory: Path = SCENARIOS_DIR, names: Sequence[str] | None = None) -> list[Entry]:
    """The catalog scenarios in `directory` (every *.yaml), sorted by file name; `names` (scenario names or
    file stems) keeps those, in the order given. An unknown name is an error naming the known ones."""
    entries = [Entry(path, load_scenario(path)) for path in sorted(directory.glob("*.yaml"))]
    if not names:
        return entries
    by_key: dict[str, Entry] = {}
    for entry in entries:
        by_key.setdefault(entry.name, entry)
        by_key.setdefault(entry.path.stem, entry)
    unknown = [n for n in names if n not in by_key]
    if unknown:
        raise HarnessError(f"no catalog scenario named {', '.join(unknown)} in {directory}",
                           f"pick from: {', '.join(e.name for e in entries)}")
    picked: list[Entry] = []
    for n in names:
        if all(by_key[n] is not e for e in picked):
            picked.append(by_key[n])
    return picked


def plan(entries: Iterable[Entry], versions: Sequence[str] | None = None) -> list[tuple[Entry, str]]:
    """(scenario, version) cells in catalog order; `versions` keeps only those versions."""
    keep = set(versions) if versions else None
    return [(e, v) for e in entries for v in e.versions if keep is None or v in keep]
