"""The committed OpenAPI document is exactly what the app generates."""

from service.openapi_doc import DEFAULT_PATH, generate, render


def test_committed_openapi_matches_app():
    assert DEFAULT_PATH.exists(), "run `extgate openapi export`"
    assert DEFAULT_PATH.read_text() == render(generate()), "openapi/openapi.json is stale: run `extgate openapi export`"


def test_every_operation_declares_errors_and_security():
    doc = generate()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path in ("/healthz", "/readyz"):
                continue
            codes = set(op["responses"])
            assert "401" in codes, (method, path)
            assert op.get("security"), (method, path)
