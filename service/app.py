"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from runner.contract.observability import ObservabilitySettings
from service.api import admin_extensions, admin_installs, audit, console, debug, gateway, health, policy
from service.api.api_docs import install_api_docs
from service.api.errors import install_error_handlers
from service.api.gateway import GatewayDispatchMiddleware
from service.api.limits import HeaderLimitMiddleware
from service.api.request_id import RequestIdMiddleware
from service.api.schemas import APP_RESPONSES
from service.container import ServiceContainer, build_container
from service.gateway.cors import install_cors
from service.observability.logs import install_request_log_context
from service.observability.metrics import HttpMetricsMiddleware
from service.observability.routes import metrics_router
from service.settings import Settings

API_TITLE = "extgate"
API_VERSION = "0.1.0"


def create_app(settings: Settings | None = None, *, container: ServiceContainer | None = None) -> FastAPI:
    # Whoever builds the container closes it: a container handed in outlives this app's lifespan.
    owns_container = container is None
    services = container or build_container(settings or Settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if services.policy is not None:
            services.policy.start_watching(2.0)  # picks up CLI reloads and other replicas
        try:
            yield
        finally:
            if services.gateway is not None:
                await services.gateway.aclose()  # pooled runner/Redis connections of this loop
            if services.debug is not None:
                await services.debug.stop()  # debug stream readers of this loop
            if owns_container:
                services.close()

    app = FastAPI(
        title=API_TITLE,
        version=API_VERSION,
        description="Policy-as-code gateway, audit and sandboxed runner for multi-tenant WebAssembly extensions.",
        lifespan=lifespan,
        responses=APP_RESPONSES,
        docs_url=None,  # install_api_docs: the same pages, with packaged assets instead of a CDN
        redoc_url=None,
    )
    app.state.services = services
    install_error_handlers(app)

    # Innermost first: gateway calls leave the stack here, after the request id and limits.
    app.add_middleware(GatewayDispatchMiddleware, services=services)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(HeaderLimitMiddleware)
    app.include_router(health.router)
    app.include_router(admin_extensions.router)
    app.include_router(admin_installs.router)
    app.include_router(policy.router)
    app.include_router(audit.router)
    app.include_router(gateway.router)
    app.include_router(debug.router)
    app.include_router(console.router)  # /console: the web console (not in the OpenAPI document)
    install_api_docs(app)
    install_request_log_context()
    observability = ObservabilitySettings()
    if observability.metrics_enabled:
        app.include_router(metrics_router(observability))
    if services.gateway is not None:
        # Added last, so outermost: preflights are answered before (and without) authentication.
        install_cors(app, services.gateway.settings)
    if observability.metrics_enabled:
        # Outermost of all: counts every answer, CORS preflights and refusals included.
        app.add_middleware(HttpMetricsMiddleware, tenants=observability.tenant_allowlist)
    return app
