import pytest

from harness.errors import HarnessError
from harness.litellm.versions import SUPPORTED, install_hint, resolve


@pytest.mark.parametrize("version", SUPPORTED)
def test_supported_versions_resolve(version: str) -> None:
    assert resolve(version).version == version


def test_reservation_traits() -> None:
    assert not resolve("1.83.14").has_budget_reservation
    assert resolve("1.84.0").has_budget_reservation
    assert not resolve("1.84.0").has_disable_budget_reservation
    assert resolve("1.89.1").has_disable_budget_reservation
    assert resolve("1.95.1").pip_requirements()[-1] == "fastapi==0.140.0"


@pytest.mark.parametrize(("version", "words"), [
    ("banana", "is not a LiteLLM version"),
    ("1.84", "not an exact LiteLLM release"),
    ("1.84.0rc1", "not an exact LiteLLM release"),
    (" 1.84.0.1", "not an exact LiteLLM release"),
    ("1.50.0", "older than"),
])
def test_bad_versions_give_one_clear_line(version: str, words: str) -> None:
    with pytest.raises(HarnessError) as info:
        resolve(version)
    line = info.value.line()
    assert words in line
    assert "\n" not in line
    assert info.value.exit_code == 2


@pytest.mark.parametrize("version", ["1.104.9", "1.107.2", "1.110.0", "9.9.9"])
def test_versions_newer_or_once_uninstallable_are_not_refused_up_front(version: str) -> None:
    """Whether the index can install a release is found out by installing it, not decided here."""
    assert resolve(version).pip_requirements()[0] == f"litellm[proxy]=={version}"


def test_known_install_problems_are_hints_only() -> None:
    assert "litellm-proxy-extras" in (install_hint("1.104.9") or "")
    assert "pulled" in (install_hint("1.107.2") or "")
    assert install_hint("1.110.0") is None
    assert install_hint("1.84.0") is None
