"""ASGI entry point for uvicorn (`service.asgi:app`), configured from the environment."""

import threading

from runner.logging_config import configure_logging
from runner.tracing import configure_tracing
from service.app import create_app
from service.gateway.transport import InProcessTransport

configure_logging()
configure_tracing("extgate-gateway")  # only when OTEL_TRACES_EXPORTER names an exporter
app = create_app()


def _warm_embedded_runner() -> None:
    # The embedded runner loads recently used components in the background, so a restart
    # does not make the first calls pay for it (remote runners warm themselves).
    transport = getattr(getattr(app.state.services, "gateway", None), "transport", None)
    if isinstance(transport, InProcessTransport):
        transport.runner.warm()


threading.Thread(target=_warm_embedded_runner, name="extgate-warm", daemon=True).start()
