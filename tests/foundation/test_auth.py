import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.auth.tokens import AuthenticationError, TokenVerifier, mint_dev_token
from service.settings import Settings


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path)


def test_dev_token_round_trip(settings):
    tok = mint_dev_token(settings, tenant="acme", subject="u1", roles=["editor", "viewer"], email="a@b.c")
    p = TokenVerifier(settings).verify(tok)
    assert (p.tenant, p.subject, p.roles, p.email) == ("acme", "u1", frozenset({"editor", "viewer"}), "a@b.c")


def test_dev_secret_file_is_private_and_stable(settings):
    first = settings.effective_jwt_hs256_secret
    assert (settings.keys_dir / "jwt-hs256").stat().st_mode & 0o777 == 0o600
    assert Settings(data_dir=settings.data_dir).effective_jwt_hs256_secret == first


def _claims(**kw):
    return {"sub": "u1", "tenant": "acme", "roles": ["admin"], "exp": int(time.time()) + 60} | kw


@pytest.mark.parametrize(
    "claims",
    [
        _claims(exp=int(time.time()) - 3600),  # expired
        {k: v for k, v in _claims().items() if k != "exp"},  # no exp
        {k: v for k, v in _claims().items() if k != "tenant"},  # no tenant
        _claims(tenant="../other"),  # malformed tenant
        _claims(tenant=""),
        _claims(roles="x" * 10, sub=""),
        _claims(roles=[1, 2]),
    ],
)
def test_bad_claims_rejected(settings, claims):
    tok = jwt.encode(claims, settings.effective_jwt_hs256_secret, algorithm="HS256")
    with pytest.raises(AuthenticationError):
        TokenVerifier(settings).verify(tok)


def test_forged_signature_rejected(settings):
    tok = jwt.encode(_claims(), "not-the-secret-not-the-secret-xx", algorithm="HS256")
    with pytest.raises(AuthenticationError):
        TokenVerifier(settings).verify(tok)


def test_alg_none_rejected(settings):
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).rstrip(b"=")
    with pytest.raises(AuthenticationError):
        TokenVerifier(settings).verify((header + b"." + body + b".").decode())


@pytest.mark.parametrize("raw", ["", "garbage", "a.b.c", "x" * 9000])
def test_malformed_and_oversized_rejected(settings, raw):
    with pytest.raises(AuthenticationError):
        TokenVerifier(settings).verify(raw)


def test_unknown_roles_are_dropped_not_trusted(settings):
    tok = jwt.encode(_claims(roles=["superuser", "viewer"]), settings.effective_jwt_hs256_secret, algorithm="HS256")
    assert TokenVerifier(settings).verify(tok).roles == frozenset({"viewer"})


def test_eddsa_public_keys_and_hs256_off_by_default(tmp_path):
    private = Ed25519PrivateKey.generate()
    pem = tmp_path / "idp.pem"
    pem.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    settings = Settings(data_dir=tmp_path, jwt_public_keys=str(pem), jwt_issuer="https://idp")
    verifier = TokenVerifier(settings)
    good = jwt.encode(_claims(iss="https://idp"), private, algorithm="EdDSA")
    assert verifier.verify(good).tenant == "acme"
    with pytest.raises(AuthenticationError):  # wrong issuer
        verifier.verify(jwt.encode(_claims(iss="https://evil"), private, algorithm="EdDSA"))
    with pytest.raises(AuthenticationError):  # HS256 not accepted once public keys are configured
        verifier.verify(jwt.encode(_claims(iss="https://idp"), "s" * 40, algorithm="HS256"))
    with pytest.raises(ValueError):
        mint_dev_token(settings, tenant="acme", subject="u", roles=["viewer"])


def test_verified_tokens_are_cached_until_they_expire(settings, monkeypatch):
    """A verified token is not re-verified on every request, but the cache never outlives
    `exp` (+ leeway), never serves a `nbf` in the future, and never caches a failure."""
    import service.auth.tokens as tokens

    settings = Settings(data_dir=settings.data_dir, jwt_leeway_seconds=0)
    verifier = TokenVerifier(settings)
    decodes = []
    real_decode = jwt.decode
    monkeypatch.setattr(tokens.jwt, "decode", lambda *a, **k: decodes.append(1) or real_decode(*a, **k))
    now = time.time()
    tok = jwt.encode(_claims(exp=int(now) + 30), settings.effective_jwt_hs256_secret, algorithm="HS256")
    first = verifier.verify(tok)
    assert verifier.verify(tok) == first and len(decodes) == 1  # second call from the cache

    # One clock for the cache and for PyJWT's own checks.
    from datetime import datetime as real_datetime

    clock = {"now": now + 31}  # past exp: the cached entry is dropped and PyJWT refuses

    class FrozenDatetime(real_datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
            return real_datetime.fromtimestamp(clock["now"], tz)

    monkeypatch.setattr(tokens.time, "time", lambda: clock["now"])
    monkeypatch.setattr(jwt.api_jwt, "datetime", FrozenDatetime)
    with pytest.raises(AuthenticationError):
        verifier.verify(tok)

    # a tampered copy is a different cache key and fails signature verification
    clock["now"] = now
    head, body, sig = tok.split(".")
    forged_body = base64.urlsafe_b64encode(json.dumps(_claims(roles=["platform-admin"])).encode()).rstrip(b"=")
    with pytest.raises(AuthenticationError):
        verifier.verify(f"{head}.{forged_body.decode()}.{sig}")
    with pytest.raises(AuthenticationError):  # failures are not cached as successes either
        verifier.verify(f"{head}.{forged_body.decode()}.{sig}")

    # not-yet-valid tokens are refused even when a clock skew let them in once
    early = jwt.encode(_claims(nbf=int(now) - 1), settings.effective_jwt_hs256_secret, algorithm="HS256")
    verifier.verify(early)
    clock["now"] = now - 100
    with pytest.raises(AuthenticationError):
        verifier.verify(early)


def test_postgres_deployments_must_configure_keys(tmp_path, monkeypatch):
    """Generated development keys stand in for missing keys on SQLite only: with PostgreSQL
    (several replicas) a missing key is a startup error naming the variable, unless
    explicitly allowed."""
    from runner.settings import DevKeysNotAllowed, RunnerSettings

    for var in ("EXTGATE_SECRET_KEYS", "EXTGATE_JWT_HS256_SECRET", "EXTGATE_JWT_PUBLIC_KEYS",
                "EXTGATE_RUNNER_TOKEN", "EXTGATE_ALLOW_DEV_KEYS"):
        monkeypatch.delenv(var, raising=False)
    pg = "postgresql+psycopg://u@127.0.0.1/x"
    prod = Settings(data_dir=tmp_path, database_url=pg)
    for attr, variable in (("keyring", "EXTGATE_SECRET_KEYS"),
                           ("effective_jwt_hs256_secret", "EXTGATE_JWT_PUBLIC_KEYS"),
                           ("effective_runner_token", "EXTGATE_RUNNER_TOKEN")):
        with pytest.raises(DevKeysNotAllowed, match=variable):
            getattr(prod, attr)
    assert not (tmp_path / "keys").exists()  # nothing generated
    runner = RunnerSettings(data_dir=tmp_path, database_url=pg)
    with pytest.raises(DevKeysNotAllowed):
        runner.keyring()
    with pytest.raises(DevKeysNotAllowed):
        runner.service_token()
    # configured keys, an explicit opt-in, or SQLite: fine
    configured = Settings(data_dir=tmp_path, database_url=pg, jwt_hs256_secret="x" * 48, runner_token="t" * 32)
    assert configured.effective_jwt_hs256_secret == "x" * 48 and configured.effective_runner_token == "t" * 32
    assert Settings(data_dir=tmp_path, database_url=pg, allow_dev_keys=True).keyring is not None
    assert Settings(data_dir=tmp_path / "s").keyring is not None
    assert Settings(data_dir=tmp_path / "f", database_url=f"sqlite:///{tmp_path / 'f.db'}").keyring is not None
