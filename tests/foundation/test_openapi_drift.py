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


def test_error_responses_have_examples_and_retry_after() -> None:
    doc = generate()
    schemas = doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "431" in op["responses"], (method, path)  # the header-size guard answers before routing
            for status, resp in op["responses"].items():
                media = resp.get("content", {}).get("application/json", {})
                if media.get("schema", {}).get("$ref", "").endswith("/ErrorBody"):
                    assert media.get("example", {}).get("error"), (method, path, status)
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
                assert schemas[ref].get("examples"), (method, path, ref)
            if path.startswith("/api/ext/"):
                assert op["responses"]["429"]["headers"]["retry-after"]["required"] is True
