"""Publishing: a validated bundle becomes an extension version with its bundle row.

The bundle's component is checked (exports `handler`, imports only what the runner
serves) and precompiled by the injected `ComponentValidator` before anything is stored,
so a version that exists in the registry can always run. Publishing the same version
again with the same content hash is a no-op; with a different hash it is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from runner.contract.bundle_store import LocalBundleStore
from service.db import Database
from service.db.models import Bundle, Extension, ExtensionVersion
from service.errors import Conflict, InvalidInput, NotFound
from service.registry.manifest import slug_for
from service.registry.signing import SignatureError, verify_content_hash

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from service.registry.bundles import LoadedBundle

# Called with (component bytes, content hash); raises to reject the component. May return
# one line for the publisher about how the component will run (e.g. whether its bodies
# cross the host boundary in bulk: see runner/bulk/).
ComponentValidator = Callable[[bytes, str], str | None]


@dataclass(frozen=True)
class PublishResult:
    extension_id: str
    slug: str
    version_id: str
    version: str
    content_hash: str
    size_bytes: int
    signer_key_id: str | None
    created: bool
    bulk_bodies: str | None = None  # the validator's note, when this call compiled the component

    def as_dict(self) -> dict[str, object]:
        extra: dict[str, object] = {} if self.bulk_bodies is None else {"bulk_bodies": self.bulk_bodies}
        return {
            "extension_id": self.extension_id,
            "slug": self.slug,
            "version_id": self.version_id,
            "version": self.version,
            "content_hash": self.content_hash,
            "size_bytes": self.size_bytes,
            "signer_key_id": self.signer_key_id,
            "created": self.created,
            **extra,
        }


@dataclass(frozen=True)
class SignaturePolicy:
    trusted_keys: dict[str, Ed25519PublicKey]
    require_signed: bool


def _check_signature(bundle: LoadedBundle, signature: str | None, policy: SignaturePolicy) -> str | None:
    if signature is None:
        if policy.require_signed:
            raise InvalidInput("this gateway only accepts signed bundles", code="signature_required")
        return None
    if not policy.trusted_keys:
        raise InvalidInput(
            "a signature was given but no trusted publisher keys are configured", code="signature_invalid"
        )
    try:
        return verify_content_hash(bundle.content_hash, signature, policy.trusted_keys)
    except SignatureError as exc:
        raise InvalidInput(str(exc), code="signature_invalid") from exc


def _existing(
    session: Session, publisher: str, name: str, version: str
) -> tuple[Extension, ExtensionVersion, Bundle] | None:
    row = session.exec(
        select(Extension, ExtensionVersion, Bundle)
        .join(ExtensionVersion, ExtensionVersion.extension_id == Extension.id)  # type: ignore[arg-type]
        .join(Bundle, Bundle.version_id == ExtensionVersion.id)  # type: ignore[arg-type]
        .where(Extension.publisher == publisher, Extension.name == name, ExtensionVersion.version == version)
    ).first()
    return tuple(row) if row else None  # type: ignore[return-value]


def publish_bundle(
    db: Database,
    store: LocalBundleStore,
    bundle: LoadedBundle,
    *,
    signature: str | None,
    signature_policy: SignaturePolicy,
    validate_component: ComponentValidator | None,
    on_created: Callable[[Session, PublishResult], None] | None = None,
) -> PublishResult:
    """Validate, precompile and store a bundle, then register it. `on_created(session,
    result)` runs in the registering transaction (its audit record): raising rolls the
    registration back (the content-addressed archive may stay in the store, unreferenced).
    Republishing identical bytes changes nothing and does not call it."""
    manifest = bundle.manifest
    signer = _check_signature(bundle, signature, signature_policy)
    slug = slug_for(manifest.publisher, manifest.name)

    with db.session() as session:
        found = _existing(session, manifest.publisher, manifest.name, manifest.version)
    if found is not None:
        return _same_or_conflict(found, bundle, slug)

    runtime_note = None
    if validate_component is not None:
        runtime_note = validate_component(bundle.component, bundle.content_hash)
    store.put(bundle.archive, bundle.component)

    try:
        with db.session() as session:
            ext = session.exec(
                select(Extension).where(Extension.publisher == manifest.publisher, Extension.name == manifest.name)
            ).first()
            if ext is None:
                clash = session.exec(select(Extension).where(Extension.slug == slug)).first()
                if clash is not None:
                    raise Conflict(f"slug {slug!r} is taken by publisher {clash.publisher!r}", code="slug_conflict")
                ext = Extension(publisher=manifest.publisher, name=manifest.name, slug=slug)
                session.add(ext)
                session.flush()
            version = ExtensionVersion(
                extension_id=ext.id,
                version=manifest.version,
                runtime=manifest.runtime,
                manifest=manifest.raw,
                api_endpoints=[{"method": e.method, "path": e.path, "handler": e.handler} for e in manifest.endpoints],
                capabilities=list(manifest.capabilities),
            )
            session.add(version)
            session.flush()
            row = Bundle(
                version_id=version.id,
                content_hash=bundle.content_hash,
                size_bytes=len(bundle.archive),
                archive_format=bundle.archive_format,
                signature=signature,
                signer_key_id=signer,
            )
            session.add(row)
            result = PublishResult(
                ext.id, ext.slug, version.id, version.version, row.content_hash, row.size_bytes, signer, True,
                runtime_note,
            )
            if on_created is not None:
                on_created(session, result)
            return result
    except IntegrityError:
        # A concurrent publish of the same version won the race: answer as if it came first.
        with db.session() as session:
            found = _existing(session, manifest.publisher, manifest.name, manifest.version)
        if found is None:
            raise
        return _same_or_conflict(found, bundle, slug)


def _same_or_conflict(
    found: tuple[Extension, ExtensionVersion, Bundle], bundle: LoadedBundle, slug: str
) -> PublishResult:
    ext, version, row = found
    if row.content_hash != bundle.content_hash:
        raise Conflict(
            {
                "message": f"{slug}@{version.version} is already published with another content hash: "
                f"bump \"version\" in manifest.json (published versions never change), rebuild, publish again",
                "published_content_hash": row.content_hash,
                "content_hash": bundle.content_hash,
            },
            code="version_exists",
        )
    return PublishResult(
        ext.id, ext.slug, version.id, version.version, row.content_hash, row.size_bytes, row.signer_key_id, False
    )


# Reads ---------------------------------------------------------------------------------


def get_extension(session: Session, ref: str) -> Extension:
    """By id or slug (case-insensitive)."""
    ext = (
        session.get(Extension, ref)
        or session.exec(select(Extension).where(Extension.slug == ref.strip().lower())).first()
    )
    if ext is None:
        raise NotFound(f"no extension {ref!r}", code="extension_not_found")
    return ext


def get_version(session: Session, extension: Extension, version: str | None) -> ExtensionVersion:
    """A named version, or the highest SemVer when `version` is None or 'latest'."""
    versions = list(session.exec(select(ExtensionVersion).where(ExtensionVersion.extension_id == extension.id)))
    if version in (None, "latest"):
        if not versions:
            raise NotFound(f"{extension.slug} has no versions", code="version_not_found")
        return max(versions, key=lambda v: semver_key(v.version))
    for v in versions:
        if v.version == version:
            return v
    raise NotFound(f"{extension.slug} has no version {version!r}", code="version_not_found")


def semver_key(version: str) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
    """Sort key per SemVer 2.0 precedence (build metadata ignored)."""
    core, _, _build = version.partition("+")
    main, dash, pre = core.partition("-")
    major, minor, patch = (int(p) for p in main.split("."))
    pre_key = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")) if dash else ()
    return (major, minor, patch, 0 if dash else 1, pre_key)


def list_extensions(session: Session) -> list[tuple[Extension, list[ExtensionVersion]]]:
    exts = list(session.exec(select(Extension).order_by(Extension.slug)))
    versions = list(session.exec(select(ExtensionVersion)))
    by_ext: dict[str, list[ExtensionVersion]] = {}
    for v in versions:
        by_ext.setdefault(v.extension_id, []).append(v)
    return [(e, sorted(by_ext.get(e.id, []), key=lambda v: semver_key(v.version))) for e in exts]


def bundle_for_version(session: Session, version_id: str) -> Bundle:
    row = session.exec(select(Bundle).where(Bundle.version_id == version_id)).first()
    if row is None:
        raise NotFound("version has no bundle", code="bundle_not_found")
    return row
