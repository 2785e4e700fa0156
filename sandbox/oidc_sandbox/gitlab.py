"""GitLab instances as OIDC issuers: discovery document, signing keys and CI/CD ID tokens.

Each issuer lives under the sandbox's base URL: ``{base}/gitlab/gitlab.com`` stands for ``https://gitlab.com``,
``{base}/gitlab/gitlab.example.com`` for a self-managed instance.  Paths below the issuer are GitLab's:
``/.well-known/openid-configuration``, ``/oauth/discovery/keys`` (and ``/-/jwks``).

ID tokens follow ``lib/gitlab/ci/jwt_v2.rb`` (api-facts §7): header ``{"alg":"RS256","kid":<JWK thumbprint>,
"typ":"JWT"}``, ``nbf = iat - 5``, ``exp = iat + timeout`` (300 s default), string ids, ``sub`` built from the
project's ``ci_id_token_sub_claim_components``.
"""
from __future__ import annotations

import asyncio
import hashlib
import random
import re
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .errors import ServiceError, gitlab_error, method_not_allowed
from .keys import SigningKey

if TYPE_CHECKING:
    from .context import Sandbox

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,62}[a-z0-9])?$")
UNREACHABLE_MODES = ("closed", "503", "timeout")
BROKEN_MODES = ("document", "issuer", "no_jwks_uri", "keys", "empty_keys", "malformed_keys")
DEFAULT_SUB_COMPONENTS = ("project_path", "ref_type", "ref")
# GitLab 18.x: allowed ci_id_token_sub_claim_components; the first must identify the project.
SUB_COMPONENTS = ("project_path", "project_id", "ref_type", "ref", "ref_protected", "environment_protected",
                  "deployment_tier", "job_project_id", "source_project_id")
LEADING_COMPONENTS = ("project_path", "project_id", "job_project_id", "source_project_id")
KEYS_CACHE_CONTROL = "max-age=86400, public, must-revalidate, no-transform"
DISCOVERY_CACHE_CONTROL = "max-age=0, private, must-revalidate"
_SCOPES = ["api", "read_api", "read_user", "create_runner", "manage_runner", "k8s_proxy", "self_rotate",
           "read_repository", "write_repository", "read_registry", "write_registry", "read_virtual_registry",
           "write_virtual_registry", "read_observability", "write_observability", "ai_features", "sudo",
           "admin_mode", "read_service_ping", "openid", "profile", "email"]
_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "sub_legacy", "name", "nickname", "preferred_username", "email",
           "email_verified", "website", "profile", "picture", "groups", "groups_direct",
           "https://gitlab.org/claims/groups/owner", "https://gitlab.org/claims/groups/maintainer",
           "https://gitlab.org/claims/groups/developer", "project_path", "ci_config_ref_uri", "ref_path", "sha",
           "environment", "jti"]
_MINT_KEYS = {"issuer", "project", "project_path", "project_id", "namespace_id", "ref_type", "ref", "ref_protected", "aud",
              "sub_components", "sub", "environment", "environment_protected", "deployment_tier", "claims",
              "lifetime", "iat", "expired", "not_yet_valid", "signing", "typ", "user_login", "pipeline_source"}


class ClosedConnectionResponse(Response):
    """Starts a response and drops the connection mid-body (the server closes it): "connection closed"."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"issuer":', "more_body": True})
        # Returning without finishing makes uvicorn close the transport.


def _stable_project_id(project_path: str) -> str:
    digest = hashlib.sha256(project_path.encode("utf-8")).digest()
    return str(10_000_000 + int.from_bytes(digest[:4], "big") % 80_000_000)


def build_sub(claims: dict[str, Any], components: list[str] | tuple[str, ...]) -> str:
    """GitLab's ``sub``: ``<component>:<value>`` pairs joined by ``:``; components without a value are skipped."""
    parts = []
    for component in components:
        value = claims.get(component)
        if value is None or value == "":
            continue
        parts.append(f"{component}:{value}")
    return ":".join(parts)


def validate_sub_components(components: Any) -> list[str]:
    """Validate ``ci_id_token_sub_claim_components`` like GitLab's Projects API; ``ValueError`` with its wording."""
    if not isinstance(components, list) or not components:
        raise ValueError("ci_id_token_sub_claim_components is too short (minimum is 1 element)")
    for component in components:
        if not isinstance(component, str) or component not in SUB_COMPONENTS:
            raise ValueError(f"{component} is not an allowed sub claim component")
    if components[0] not in LEADING_COMPONENTS:
        raise ValueError("project_path or project_id must be the first element of the sub claim")
    leading = [c for c in components if c in LEADING_COMPONENTS]
    if len(leading) > 1:
        raise ValueError("the sub claim may lead with project_path or project_id, not both")
    if len(set(components)) != len(components):
        raise ValueError("sub claim components must be unique")
    return list(components)


class GitLab:
    """The sandbox's GitLab issuers (``ctx.gitlab``)."""

    def __init__(self, ctx: "Sandbox"):
        self.ctx = ctx
        self._base_keys: dict[str, tuple[SigningKey, SigningKey]] = {}
        self._keys: dict[str, list[SigningKey]] = {}
        self._foreign: SigningKey | None = None
        self.rng = random.Random(0)

    validate_sub_components = staticmethod(validate_sub_components)

    # --- issuers ----------------------------------------------------------------------------------------
    def issuer_url(self, name: str) -> str:
        return f"{self.ctx.config.base_url}/gitlab/{name}"

    def seed(self) -> None:
        """(Re)create the configured issuers with their original keys; reseed the token id generator."""
        self.rng = random.Random(f"gitlab:{self.ctx.faults.seed}")
        self._keys.clear()
        for name in self.ctx.config.gitlab_issuers:
            self.configure_issuer({"name": name})

    def default_issuer(self) -> str:
        return self.issuer_url(self.ctx.config.gitlab_issuers[0])

    def configure_issuer(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Create or alter an issuer (``name``, ``unreachable``, ``broken``, ``rotate_keys``); ``ValueError`` if bad."""
        if not isinstance(spec, dict):
            raise ValueError("the issuer must be a JSON object")
        unknown = set(spec) - {"name", "unreachable", "broken", "rotate_keys"}
        if unknown:
            raise ValueError(f"unknown issuer keys: {', '.join(sorted(unknown))}")
        name = spec.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ValueError("name must be a lower-case host name such as 'gitlab.example.com'")
        unreachable = spec.get("unreachable")
        if unreachable is True:
            unreachable = "closed"
        if unreachable not in (None, False) and unreachable not in UNREACHABLE_MODES:
            raise ValueError(f"unreachable must be false, true or one of {', '.join(UNREACHABLE_MODES)}")
        broken = spec.get("broken")
        if broken not in (None, False) and broken not in BROKEN_MODES:
            raise ValueError(f"broken must be null or one of {', '.join(BROKEN_MODES)}")
        rotate = spec.get("rotate_keys", False)
        if not isinstance(rotate, bool):
            raise ValueError("rotate_keys must be true or false")

        entry = self.ctx.state.issuers.get(name)
        if entry is None:
            if name not in self._base_keys:
                self._base_keys[name] = (SigningKey(), SigningKey())
            self._keys[name] = list(self._base_keys[name])
            entry = {"name": name, "path": f"/gitlab/{name}", "issuer": self.issuer_url(name),
                     "unreachable": None, "broken": None, "keys": []}
            self.ctx.state.issuers[name] = entry
        if "unreachable" in spec:
            entry["unreachable"] = unreachable or None
        if "broken" in spec:
            entry["broken"] = broken or None
        if rotate:
            self._keys[name].append(SigningKey())
        entry["keys"] = [key.public_jwk() for key in self._keys[name]]
        return entry

    def issuer_by_url_or_name(self, value: str | None) -> dict[str, Any]:
        if value is None:
            value = self.ctx.config.gitlab_issuers[0]
        for entry in self.ctx.state.issuers.values():
            if value in (entry["name"], entry["issuer"]):
                return entry
        raise ValueError(f"unknown issuer '{value}'")

    def signing_key(self, name: str) -> SigningKey:
        """The CI JWT signing key (the newest key of the issuer)."""
        return self._keys[name][-1]

    def foreign_key(self) -> SigningKey:
        if self._foreign is None:
            self._foreign = SigningKey()
        return self._foreign

    # --- documents --------------------------------------------------------------------------------------
    def discovery(self, entry: dict[str, Any]) -> dict[str, Any]:
        base = entry["issuer"]
        document = {
            "issuer": base + "/" if entry.get("broken") == "issuer" else base,
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "introspection_endpoint": f"{base}/oauth/introspect",
            "userinfo_endpoint": f"{base}/oauth/userinfo",
            "jwks_uri": f"{base}/oauth/discovery/keys",
            "scopes_supported": _SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "grant_types_supported": ["authorization_code", "password", "client_credentials", "device_code",
                                      "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claim_types_supported": ["normal"],
            "claims_supported": _CLAIMS,
            "code_challenge_methods_supported": ["plain", "S256"],
        }
        if entry.get("broken") == "no_jwks_uri":
            del document["jwks_uri"]
        return document

    def jwks(self, entry: dict[str, Any]) -> dict[str, Any]:
        if entry.get("broken") == "empty_keys":
            return {"keys": []}
        if entry.get("broken") == "malformed_keys":
            return {"keys": [{"kty": "RSA", "kid": key["kid"], "use": "sig", "alg": "RS256"}
                             for key in entry["keys"]]}
        return {"keys": entry["keys"]}

    # --- ID tokens --------------------------------------------------------------------------------------
    def mint(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A CI/CD ID token as GitLab issues it (see README, ``POST /_sandbox/gitlab/token``); ``ValueError``."""
        if not isinstance(spec, dict):
            raise ValueError("the token request must be a JSON object")
        unknown = set(spec) - _MINT_KEYS
        if unknown:
            raise ValueError(f"unknown token keys: {', '.join(sorted(unknown))}")
        entry = self.issuer_by_url_or_name(spec.get("issuer"))
        claims = self._claims(entry, spec)
        signing = spec.get("signing", "issuer")
        if signing == "issuer":
            key, kid = self.signing_key(entry["name"]), None
        elif signing == "foreign":
            key, kid = self.foreign_key(), self.signing_key(entry["name"]).kid
        elif signing == "unknown_kid":
            key, kid = self.foreign_key(), None
        else:
            raise ValueError("signing must be 'issuer', 'foreign' (issuer's kid, other key) or 'unknown_kid'")
        typ = spec.get("typ", "JWT")
        if typ is not None and not isinstance(typ, str):
            raise ValueError("typ must be a string or null")
        token = key.sign(claims, kid=kid, typ=typ)
        header = {"alg": "RS256", "kid": kid or key.kid, **({"typ": typ} if typ is not None else {})}
        return {"token": token, "claims": claims, "header": header, "issuer": entry["issuer"]}

    def _seeded_project(self, entry: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
        """The instance's project (gitlab_api data in ``state.gitlab``) the token is for: ``project`` (id or full
        path, must exist), else a seeded project whose id or path equals ``project_id`` / ``project_path``."""
        data = self.ctx.state.gitlab.get(entry["name"]) or {"projects": {}, "groups": {}}
        projects, groups = data["projects"], data["groups"]

        def path_of(project: dict[str, Any]) -> str:
            return f"{groups[project['namespace_id']]['full_path']}/{project['path']}"

        def by(ref: Any) -> dict[str, Any] | None:
            if isinstance(ref, int) and not isinstance(ref, bool) or isinstance(ref, str) and ref.isdigit():
                return projects.get(int(ref))
            if isinstance(ref, str):
                return next((p for p in projects.values() if path_of(p).lower() == ref.strip("/").lower()), None)
            return None

        if "project" in spec:
            found = by(spec["project"])
            if found is None:
                raise ValueError(f"no project {spec['project']!r} on the GitLab instance {entry['name']} "
                                 "(create it with POST /_sandbox/gitlab/projects)")
        elif "project_id" in spec:
            found = by(str(spec["project_id"]))
        elif "project_path" in spec:
            found = by(spec["project_path"])
        else:
            found = None
        if found is None:
            return None
        return {"project_path": path_of(found), "project_id": str(found["id"]),
                "namespace_path": groups[found["namespace_id"]]["full_path"],
                "namespace_id": str(found["namespace_id"]),
                "sub_components": list(found.get("ci_id_token_sub_claim_components") or DEFAULT_SUB_COMPONENTS),
                "visibility": found.get("visibility", "private")}

    def _claims(self, entry: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        seeded = self._seeded_project(entry, spec)
        if seeded is not None:
            spec = {**spec, "project_path": seeded["project_path"], "project_id": seeded["project_id"],
                    "namespace_id": spec.get("namespace_id", seeded["namespace_id"]),
                    "sub_components": spec.get("sub_components", seeded["sub_components"])}
        project_path = _string(spec, "project_path", "sandbox-group/sandbox-project")
        if "/" not in project_path.strip("/"):
            raise ValueError("project_path must be 'namespace/project'")
        namespace_path = project_path.rsplit("/", 1)[0]
        project_id = _string(spec, "project_id", _stable_project_id(project_path))
        namespace_id = _string(spec, "namespace_id", _stable_project_id(namespace_path))
        ref_type = _string(spec, "ref_type", "branch")
        if ref_type not in ("branch", "tag"):
            raise ValueError("ref_type must be 'branch' or 'tag'")
        ref = _string(spec, "ref", "main")
        ref_protected = spec.get("ref_protected", ref in ("main", "master") or ref_type == "tag")
        if not isinstance(ref_protected, bool):
            raise ValueError("ref_protected must be true or false")
        lifetime = spec.get("lifetime", 300)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int) or not 1 <= lifetime <= 86400:
            raise ValueError("lifetime must be an integer number of seconds between 1 and 86400")
        now = int(self.ctx.clock())
        iat = spec.get("iat")
        if iat is None:
            iat = now
            if spec.get("expired"):
                iat = now - lifetime - 900
            elif spec.get("not_yet_valid"):
                iat = now + 900
        elif isinstance(iat, bool) or not isinstance(iat, int):
            raise ValueError("iat must be an integer (seconds since the epoch)")
        aud = spec.get("aud", "api://AzureADTokenExchange")
        if not (isinstance(aud, str) or (isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud))):
            raise ValueError("aud must be a string or a non-empty list of strings")
        components = validate_sub_components(list(spec.get("sub_components", DEFAULT_SUB_COMPONENTS)))
        user_login = _string(spec, "user_login", "sandbox-user")
        host_path = entry["issuer"].split("://", 1)[-1]
        sha = "%040x" % rng.getrandbits(160)
        job_id = str(rng.randint(10**9, 10**10))
        claims: dict[str, Any] = {
            "namespace_id": namespace_id, "namespace_path": namespace_path,
            "project_id": project_id, "project_path": project_path,
            "user_id": str(rng.randint(1000, 10**7)), "user_login": user_login,
            "user_email": f"{user_login}@example.com", "user_access_level": "maintainer",
            "pipeline_id": str(rng.randint(10**8, 10**9)),
            "pipeline_source": _string(spec, "pipeline_source", "push"), "job_id": job_id,
            "ref": ref, "ref_type": ref_type,
            "ref_path": f"refs/heads/{ref}" if ref_type == "branch" else f"refs/tags/{ref}",
            "ref_protected": "true" if ref_protected else "false",
        }
        environment = spec.get("environment")
        if environment is not None:
            if not isinstance(environment, str) or not environment:
                raise ValueError("environment must be a non-empty string")
            claims["environment"] = environment
            claims["environment_protected"] = "true" if spec.get("environment_protected", False) else "false"
            claims["deployment_tier"] = _string(spec, "deployment_tier", "production"
                                                if environment == "production" else "other")
            claims["environment_action"] = "start"
        claims.update({
            "runner_id": rng.randint(1, 10**8), "runner_environment": "gitlab-hosted", "sha": sha,
            "ci_config_ref_uri": f"{host_path}/{project_path}//.gitlab-ci.yml@{claims['ref_path']}",
            "ci_config_sha": sha, "project_visibility": seeded["visibility"] if seeded else "private",
            "job_project_id": project_id, "job_project_path": project_path,
            "job_namespace_id": namespace_id, "job_namespace_path": namespace_path,
            "job_source": "pipeline",
            "jti": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "iss": entry["issuer"], "iat": iat, "nbf": iat - 5, "exp": iat + lifetime,
        })
        sub = spec.get("sub")
        if sub is not None and not isinstance(sub, str):
            raise ValueError("sub must be a string")
        claims["sub"] = sub if sub is not None else build_sub(claims, components)
        claims["aud"] = aud
        extra = spec.get("claims", {})
        if not isinstance(extra, dict):
            raise ValueError("claims must be an object of extra or overriding claims")
        claims.update(extra)
        return claims


def _string(spec: dict[str, Any], key: str, default: str) -> str:
    value = spec.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


_ROUTE = re.compile(r"^/gitlab/([^/]+)(/.*)?$")


async def handle(ctx: "Sandbox", request: Request, path: str) -> Response | None:
    """Serve an issuer's discovery document and keys, honouring its ``unreachable``/``broken`` switches."""
    match = _ROUTE.match(path)
    if match is None:
        return None
    entry = ctx.state.issuers.get(match.group(1))
    if entry is None:
        return None
    sub = match.group(2) or "/"
    if sub not in ("/.well-known/openid-configuration", "/oauth/discovery/keys", "/-/jwks"):
        return None
    if request.method not in ("GET", "HEAD"):
        raise method_not_allowed("gitlab", request.method, "GET")
    mode = entry.get("unreachable")
    if mode == "closed":
        return ClosedConnectionResponse()
    if mode == "503":
        raise ServiceError(503, "<html><body><h1>503 Service Unavailable</h1></body></html>",
                           {"Content-Type": "text/html"})
    if mode == "timeout":
        await asyncio.sleep(ctx.config.oidc_fetch_timeout + 1.0)
        raise gitlab_error(504, "504 Gateway Timeout")
    broken = entry.get("broken")
    if sub == "/.well-known/openid-configuration":
        if broken == "document":
            return Response("<!DOCTYPE html><html><body>Sign in · GitLab</body></html>", 200,
                            media_type="text/html")
        return JSONResponse(ctx.gitlab.discovery(entry), headers={"Cache-Control": DISCOVERY_CACHE_CONTROL})
    if broken == "keys":
        return None
    return JSONResponse(ctx.gitlab.jwks(entry), headers={"Cache-Control": KEYS_CACHE_CONTROL})
