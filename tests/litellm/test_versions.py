import pytest

from harness.errors import HarnessError
from harness.litellm.versions import SUPPORTED, resolve


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
    ("1.104.9", "cannot be installed"),
    ("1.107.2", "pulled"),
    ("1.110.0", "newer than"),
    ("1.50.0", "older than"),
])
def test_bad_versions_give_one_clear_line(version: str, words: str) -> None:
    with pytest.raises(HarnessError) as info:
        resolve(version)
    line = info.value.line()
    assert words in line
    assert "\n" not in line
    assert info.value.exit_code == 2
