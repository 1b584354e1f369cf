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

# Releases that cannot be installed from the package index, and why.
UNINSTALLABLE: dict[str, str] = {
    "1.104.9": "it pins a litellm-proxy-extras release the package index lacks",
}
UNINSTALLABLE_PREFIXES: dict[str, str] = {
    "1.107.": "the 1.107.x releases were pulled from the index (compromised release)",
}
NEWEST_INSTALLABLE = Version("1.108.7")

# Extra pins some releases need next to them to import at all.
EXTRA_PINS: dict[str, list[str]] = {
    "1.95.1": ["fastapi==0.140.0"],
}


@dataclass(frozen=True)
class LiteLLMVersion:
    """One LiteLLM release and the traits of it the harness depends on."""

    version: str
    extra_pins: list[str] = field(default_factory=list)

    @property
    def parsed(self) -> Version:
        return Version(self.version)

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


def resolve(version: str) -> LiteLLMVersion:
    """Validate a version string; unknown or uninstallable versions raise one clear HarnessError."""
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
    if text in UNINSTALLABLE:
        raise HarnessError(f"LiteLLM {text} cannot be installed: {UNINSTALLABLE[text]}",
                           f"pick another release (supported: {', '.join(SUPPORTED)})")
    for prefix, why in UNINSTALLABLE_PREFIXES.items():
        if text.startswith(prefix):
            raise HarnessError(f"LiteLLM {text} cannot be installed: {why}",
                               f"pick another release (supported: {', '.join(SUPPORTED)})")
    if parsed < Version("1.83.0"):
        raise HarnessError(f"LiteLLM {text} is older than the harness can drive",
                           "use 1.83.0 or newer")
    if parsed > NEWEST_INSTALLABLE:
        raise HarnessError(
            f"LiteLLM {text} is newer than {NEWEST_INSTALLABLE}, the newest release installable with the "
            "proxy extra here", f"use {NEWEST_INSTALLABLE} or older")
    return LiteLLMVersion(text, list(EXTRA_PINS.get(text, [])))
