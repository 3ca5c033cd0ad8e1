"""extgate guest SDK for Python components (componentize-py, world `runner-ext`).

Pure-Python helpers (routing, JSON, request bodies, typed config/secret errors) plus
`extgate_sdk.guest`, the only module that touches the generated `wit_world` bindings.

    from extgate_sdk import App, Request, json_response
    from extgate_sdk.guest import config, secrets, world

    app = App()

    @app.get("/hello/:name")
    def hello(req: Request):
        return {"hello": req.params["name"], "greeting": config().get("greeting", "hi")}

    WitWorld = world(app)      # componentize-py looks up `WitWorld` in the app module
"""

from .errors import (
    ConfigError,
    ConfigInvalid,
    ConfigMissing,
    ExtgateError,
    HttpError,
    SecretDenied,
    SecretError,
    SecretExpired,
    SecretMissing,
    SecretUnavailable,
)
from .http import (
    Context,
    Request,
    Response,
    empty_response,
    error_response,
    json_response,
    text_response,
)
from .routing import App, Route
from .values import Config, Secrets

__version__ = "0.1.0"

__all__ = [
    "App",
    "Config",
    "ConfigError",
    "ConfigInvalid",
    "ConfigMissing",
    "Context",
    "ExtgateError",
    "HttpError",
    "Request",
    "Response",
    "Route",
    "SecretDenied",
    "SecretError",
    "SecretExpired",
    "SecretMissing",
    "SecretUnavailable",
    "Secrets",
    "empty_response",
    "error_response",
    "json_response",
    "text_response",
]
