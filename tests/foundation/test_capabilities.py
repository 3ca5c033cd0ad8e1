import pytest

from runner.contract.capabilities import (
    ALWAYS_GRANTED,
    UnknownCapabilityError,
    effective_grant,
    normalize_capabilities,
)


def test_normalize_trims_lowercases_dedupes():
    assert normalize_capabilities([" CAP:Secrets.Get ", "cap:secrets.get", ""]) == ["cap:secrets.get"]


def test_unknown_capability_named():
    with pytest.raises(UnknownCapabilityError) as err:
        normalize_capabilities(["cap:secrets.get", "cap:root.shell", "storage"])
    assert err.value.unknown == ["cap:root.shell", "storage"]


def test_effective_grant_is_intersection_plus_defaults():
    declared = ["cap:secrets.get", "cap:http.fetch"]
    granted = ["cap:secrets.get", "cap:storage.kv"]
    assert effective_grant(declared, granted) == sorted({"cap:secrets.get"} | ALWAYS_GRANTED)


def test_manifest_cannot_widen_itself():
    assert "cap:http.fetch" not in effective_grant(["cap:http.fetch"], [])
