"""{{name}}: an extgate extension (Python, componentize-py 0.25.1, world runner-ext).

Declare every route in manifest.json too: the gateway only lets declared endpoints through.
"""

from __future__ import annotations

from extgate_sdk import App, HttpError, Request, SecretError
from extgate_sdk.guest import config, context, secrets, world

app = App()


@app.get("/hello")
def hello(req: Request) -> dict[str, object]:
    # Printed lines reach the debug stream (`extgate debug tail`, `extgate dev`): cap:debug.logs.
    print(f"hello called by tenant {context().tenant_id}")
    return {"message": config().get("greeting", "Hello"), "tenant": context().tenant_id}


@app.get("/hello/:name")
def hello_name(req: Request) -> dict[str, object]:
    return {"message": f"{config().get('greeting', 'Hello')}, {req.params['name']}"}


@app.post("/echo")
def echo(req: Request) -> dict[str, object]:
    doc = req.json_object()  # 400 invalid_json for anything else
    if "text" not in doc:
        raise HttpError(422, "text_required", "field 'text' is required")
    return {"echo": doc["text"]}


@app.get("/status")
def status(req: Request) -> dict[str, object]:
    try:
        secrets().get("api-key")  # never return or log the value
        return {"api_key": "present"}
    except SecretError as exc:  # SecretMissing, SecretDenied, SecretExpired, SecretUnavailable
        return {"api_key": exc.code}


WitWorld = world(app)  # componentize-py exports the `WitWorld` class of the app module
