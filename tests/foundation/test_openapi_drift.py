"""The committed OpenAPI document is exactly what the app generates."""

from service.openapi_doc import DEFAULT_PATH, generate, render


def test_committed_openapi_matches_app():
    assert DEFAULT_PATH.exists(), "run `extgate openapi export`"
    assert DEFAULT_PATH.read_text() == render(generate()), "openapi/openapi.json is stale: run `extgate openapi export`"


# Deliberately public: probes, and the key that lets anyone verify audit checkpoints.
PUBLIC = {"/healthz", "/readyz", "/api/audit/public-key"}


def test_every_operation_declares_errors_and_security():
    doc = generate()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path in PUBLIC:
                assert "security" not in op, path
                continue
            codes = set(op["responses"])
            assert "401" in codes, (method, path)
            assert op.get("security"), (method, path)
