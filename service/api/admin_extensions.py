"""Admin API: publish and browse the (global) extension registry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.api.deps import Admin, CurrentPrincipal, Services, require
from service.api.schemas import EndpointOut, ExtensionOut, PublishOut, VersionOut, error_responses
from service.authz import AdminAction
from service.commands import extensions
from service.db.models import Extension, ExtensionVersion
from service.errors import DomainError, InvalidInput, PayloadTooLarge
from service.registry import publishing
from service.registry.bundles import BundleError, BundleLimits, load_bundle_bytes

router = APIRouter(prefix="/api/admin/extensions", tags=["admin: extensions"])


def bundle_error(exc: BundleError) -> DomainError:
    detail = {k: v for k, v in exc.to_dict().items() if k != "error"}
    if exc.code == "bundle_too_large":
        return PayloadTooLarge(detail, code=exc.code)
    return InvalidInput(detail, code=exc.code)


async def read_capped_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing as soon as it passes `limit` (never buffers more)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _version_out(version: ExtensionVersion, content_hash: str | None) -> VersionOut:
    return VersionOut(
        id=version.id,
        version=version.version,
        runtime=version.runtime,
        capabilities=version.capabilities,
        endpoints=[EndpointOut(**e) for e in version.api_endpoints],
        content_hash=content_hash,
        created_at=version.created_at,
    )


def _extension_out(services: Services, ext: Extension, versions: list[ExtensionVersion]) -> ExtensionOut:
    with services.db.session() as session:
        hashes = {v.id: publishing.bundle_for_version(session, v.id).content_hash for v in versions}
    return ExtensionOut(
        id=ext.id,
        slug=ext.slug,
        publisher=ext.publisher,
        name=ext.name,
        versions=[_version_out(v, hashes.get(v.id)) for v in versions],
    )


@router.post(
    "",
    response_model=PublishOut,
    status_code=201,
    summary="Publish a bundle (.tar.zst or .tar.gz body)",
    responses={
        200: {"model": PublishOut, "description": "this exact bundle was already published"},
        **error_responses(401, 403, 409, 413, 422),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def publish(
    request: Request,
    admin: Admin,
    x_bundle_signature: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    admin.require(AdminAction.EXTENSION_PUBLISH, None)
    services = admin.services
    limits = BundleLimits(max_archive_bytes=services.settings.max_bundle_bytes)
    data = await read_capped_body(request, limits.max_archive_bytes)
    if not data:
        raise InvalidInput("the body must be a bundle archive", code="bundle_invalid")
    try:
        bundle = await run_in_threadpool(load_bundle_bytes, data, limits=limits)
    except BundleError as exc:
        raise bundle_error(exc) from exc
    result = await run_in_threadpool(
        extensions.publish, admin.commands, admin.caller, bundle, signature=x_bundle_signature
    )
    body = PublishOut.model_validate(result.as_dict()).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if result.created else 200)


@router.get(
    "", response_model=list[ExtensionOut], summary="List published extensions", responses=error_responses(401, 403)
)
def list_extensions(services: Services, principal: CurrentPrincipal) -> list[ExtensionOut]:
    require(services, principal, AdminAction.EXTENSION_READ, None)
    with services.db.session() as session:
        rows = publishing.list_extensions(session)
    return [_extension_out(services, ext, versions) for ext, versions in rows]


@router.get(
    "/{extension}",
    response_model=ExtensionOut,
    summary="One extension by id or slug",
    responses=error_responses(401, 403, 404),
)
def get_extension(extension: str, services: Services, principal: CurrentPrincipal) -> ExtensionOut:
    require(services, principal, AdminAction.EXTENSION_READ, None)
    with services.db.session() as session:
        ext = publishing.get_extension(session, extension)
        versions = [v for e, vs in publishing.list_extensions(session) if e.id == ext.id for v in vs]
    return _extension_out(services, ext, versions)
