"""What the harness knows about each LiteLLM release it can run.

Facts here were confirmed in the installed `site-packages/litellm` of each version (see README).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.version import InvalidVersion, Version

from harness.errors import HarnessError

# Versions the harness is tested against (CI builds each of them).
SUPPORTED = ("1.83.14", "1.84.0", "1.89.1", "1.90.0", "1.108.7")
DEFAULT_VERSION = "1.84.0"

# Prisma Client Python release that works with LiteLLM 1.83 – 1.108 (0.15.0 breaks 1.108.7).
PRISMA_VERSION = "0.11.0"

# Install failures seen on some package indexes, and why. Only a hint added to the resolver's own reason when an
# install actually fails: another index (a maintainer's PyPI) may well install them.
KNOWN_INSTALL_PROBLEMS: dict[str, str] = {
    "1.104.9": "it pins a litellm-proxy-extras release some indexes lack",
}
KNOWN_INSTALL_PROBLEM_PREFIXES: dict[str, str] = {
    "1.107.": "the 1.107.x releases were pulled from PyPI (compromised release)",
}

# Extra pins some releases need next to them to import at all.
EXTRA_PINS: dict[str, list[str]] = {
    "1.95.1": ["fastapi==0.140.0"],
    "1.96.2": ["fastapi==0.140.0"],   # fastapi 0.165 dropped dependencies.utils.get_flat_dependant (2026-11-30)
}


@dataclass(frozen=True)
class LiteLLMVersion:
    """One LiteLLM release and the traits of it the harness depends on."""

    version: str
    extra_pins: list[str] = field(default_factory=list)

    @property
    def parsed(self) -> Version:
        """The release X.Y.Z the traits are decided on: a candidate build declaring 1.84.0.dev1 or 1.84.0rc1 is a
        1.84.0 code base (for a release, its own version)."""
        return Version(Version(self.version).base_version)

    @property
    def has_budget_reservation(self) -> bool:
        """`spend:end_user:<id>` counters and auth-time reservations first ship in 1.84.0."""
        return self.parsed >= Version("1.84.0")

    @property
    def has_disable_budget_reservation(self) -> bool:
        return self.parsed >= Version("1.89.1")

    @property
    def refuses_well_known_master_key(self) -> bool:
        return self.parsed >= Version("1.104.0")

    def pip_requirements(self) -> list[str]:
        return [f"litellm[proxy]=={self.version}", f"prisma=={PRISMA_VERSION}", *self.extra_pins]


def install_hint(version: str) -> str | None:
    """What is known about `version` failing to install somewhere, or None."""
    if version in KNOWN_INSTALL_PROBLEMS:
        return KNOWN_INSTALL_PROBLEMS[version]
    for prefix, why in KNOWN_INSTALL_PROBLEM_PREFIXES.items():
        if version.startswith(prefix):
            return why
    return None


def resolve(version: str) -> LiteLLMVersion:
    """Validate a version string's syntax (one clear HarnessError otherwise). Whether the package index can
    install it is found out by installing it (`harness.litellm.env.ensure`), not decided here."""
    text = version.strip()
    try:
        parsed = Version(text)
    except InvalidVersion:
        raise HarnessError(
            f"'{version}' is not a LiteLLM version",
            f"pass an exact release such as {DEFAULT_VERSION} (supported: {', '.join(SUPPORTED)})",
        ) from None
    if str(parsed) != text or parsed.pre or parsed.dev or len(parsed.release) != 3:
        raise HarnessError(
            f"'{version}' is not an exact LiteLLM release",
            f"pin an exact X.Y.Z release such as {DEFAULT_VERSION}",
        )
    if parsed < Version("1.83.0"):
        raise HarnessError(f"LiteLLM {text} is older than the harness can drive",
                           "use 1.83.0 or newer")
    return LiteLLMVersion(text, list(EXTRA_PINS.get(text, [])))


def traits(declared: str, what: str) -> LiteLLMVersion:
    """The traits of the version a candidate build (a wheel, a source tree) *declares*: any PEP 440 version
    (a checkout may say 1.84.0.dev1), 1.83.0 or newer. Its extra pins are those of its release (X.Y.Z).
    `what` names the build in the error line."""
    try:
        parsed = Version(declared)
    except InvalidVersion:
        raise HarnessError(f"{what} declares the version '{declared}', which is not a PEP 440 version",
                           "fix the version in its metadata / pyproject.toml") from None
    if Version(parsed.base_version) < Version("1.83.0"):
        raise HarnessError(f"{what} declares LiteLLM {declared}, older than the harness can drive",
                           "use a build of 1.83.0 or newer")
    return LiteLLMVersion(declared, list(EXTRA_PINS.get(parsed.base_version, [])))
