"""The newcomer demo behind `make run`: a demo tenant with the example extension installed.

Idempotent: publishing the same bundle again is a no-op and an existing install is reused,
so `make run` can be repeated on the same data directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from audit.records import Actor
from service.auth.tokens import mint_dev_token
from service.commands import Caller, CommandContext, extensions, install_data
from service.commands import installs as install_commands
from service.container import ServiceContainer
from service.errors import Conflict
from service.registry import installs
from service.registry.bundles import load_bundle_path

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "examples" / "demo"
DEMO_TENANT = "demo"
DEMO_ROLES = {"admin": ["admin"], "editor": ["editor"], "viewer": ["viewer"], "operator": ["operator"]}


@dataclass(frozen=True)
class DemoInfo:
    tenant: str
    slug: str
    install_id: str
    content_hash: str
    tokens: dict[str, str]


def build_demo_bundle(target: Path) -> Path:
    """Build the example component (cached by source hash) and lay out a bundle directory."""
    if not (EXAMPLE / "manifest.json").is_file():
        raise SystemExit("the demo needs a source checkout (examples/demo is missing)")
    out = subprocess.run(  # noqa: S603 - fixed interpreter and script
        [sys.executable, str(REPO_ROOT / "examples" / "build_guest.py"), "demo"],
        check=True,
        capture_output=True,
        text=True,
    )
    wasm = Path(out.stdout.strip().splitlines()[-1])
    if target.exists():
        shutil.rmtree(target)
    (target / "dist").mkdir(parents=True)
    shutil.copy(EXAMPLE / "manifest.json", target / "manifest.json")
    shutil.copy(wasm, target / "dist" / "main.wasm")
    return target


def prepare_demo(c: ServiceContainer) -> DemoInfo:
    # The demo's changes go through the same commands as everyone's, recorded as system:demo.
    ctx, caller = CommandContext(c), Caller(Actor.system("demo"))
    bundle = load_bundle_path(build_demo_bundle(c.settings.data_dir / "demo-bundle"))
    published = extensions.publish(ctx, caller, bundle, signature=None)
    try:
        install_id = install_commands.create_install(
            ctx, caller, DEMO_TENANT, published.slug, version=published.version,
            granted_capabilities=list(bundle.manifest.capabilities), egress_allowlist=[],
        ).id
    except Conflict:  # a demo run before this one installed it
        with c.db.session() as session:
            install_id = next(
                i for i in installs.list_installs(session, DEMO_TENANT) if i.extension_id == published.extension_id
            ).id
    install_data.set_config(ctx, caller, DEMO_TENANT, install_id, {"greeting": "Hello from extgate", "region": "eu"})
    install_data.set_secrets(ctx, caller, DEMO_TENANT, install_id, {"api-key": "demo-secret-value"})
    tokens = {
        name: mint_dev_token(
            c.settings,
            tenant=DEMO_TENANT,
            subject=f"demo-{name}",
            roles=roles,
            name=f"Demo {name.title()}",
            email=f"{name}@demo.invalid",
        )
        for name, roles in DEMO_ROLES.items()
    }
    tokens["platform-admin"] = mint_dev_token(
        c.settings, tenant="platform", subject="demo-platform", roles=["platform-admin"]
    )
    return DemoInfo(DEMO_TENANT, published.slug, install_id, published.content_hash, tokens)


def token_variable(role: str) -> str:
    """The shell variable the banner exports a role's token as: `platform-admin` → `PLATFORM_ADMIN`."""
    return role.upper().replace("-", "_")


def describe(info: DemoInfo, base_url: str, data_dir: str | None = None) -> str:
    """The `make run` banner: every token exported first, then the calls that use them, so the
    whole block can be pasted into a shell in order."""
    ext = f"{base_url}/api/ext/{info.slug}"
    admin = f"{base_url}/api/admin/tenants/{info.tenant}/installs"
    lines = [
        "",
        "extgate demo ready",
        f"  tenant:     {info.tenant}",
        f"  extension:  {info.slug}  (install {info.install_id})",
        f"  bundle:     {info.content_hash}",
    ]
    if data_dir:
        lines.append(f"  {data_dir}")
    lines += ["", "Tokens (development only, valid 12 h), as shell variables:"]
    lines += [f"  export {token_variable(role)}={tok}" for role, tok in info.tokens.items()]
    lines += [
        "",
        "Then try:",
        f'  curl -s -H "authorization: Bearer $VIEWER" {ext}/hello',
        f'  curl -s -X PUT -H "authorization: Bearer $EDITOR" -H "x-idempotency-key: k1" --data v {ext}/kv/notes/first',
        f'  curl -s -H "authorization: Bearer $ADMIN" {admin}',
        f'  curl -s -H "authorization: Bearer $ADMIN" {admin}/{info.install_id}/secrets',
        f'  EXTGATE_TOKEN=$OPERATOR .venv/bin/extgate debug tail {info.slug} --justification "trying extgate"',
        "",
    ]
    return "\n".join(lines)


def demo_json(info: DemoInfo) -> str:
    return json.dumps(info.__dict__, indent=2)
