"""Entra ID (Microsoft identity platform) for one tenant: the v2.0 token endpoint with the client-credentials
grant (client secret, or a federated client assertion checked against the app's federated identity
credentials), OIDC metadata, signing keys, MSAL instance discovery, and verification of the access tokens it
issues (``ctx.auth.require``).

Behaviour follows Microsoft's documentation (see api-facts §5 and README "Entra"); every failure is Entra's
OAuth JSON error with its AADSTS code.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import re
import time
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import expression
from .context import Caller
from .errors import ServiceError, arm_error, entra_error, graph_error, method_not_allowed
from .keys import SigningKey, public_key_from_jwk
from .seed import ARM_APP_ID, GRAPH_APP_ID

if TYPE_CHECKING:
    from .context import Sandbox

log = logging.getLogger("oidc_sandbox.entra")

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
_NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
_MAX_JWKS_KEYS = 100
_WORKLOAD_DOC = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

GRAPH_RESOURCES = ("https://graph.microsoft.com", GRAPH_APP_ID)
ARM_RESOURCES = ("https://management.azure.com", "https://management.core.windows.net")
ARM_AUDIENCES = ("https://management.core.windows.net/", "https://management.core.windows.net",
                 "https://management.azure.com/", "https://management.azure.com")


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------

def _ests_time(stamp: float) -> str:
    """Entra's timestamp format in AADSTS700024 (7 fractional digits, ``Z``)."""
    moment = dt.datetime.fromtimestamp(stamp, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWS without checking it; ``ValueError`` when it is not one."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise ValueError("not a compact JWS")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"undecodable JWT: {exc}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("JWT header or payload is not a JSON object")
    return header, claims


def _audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


class _Fail(Exception):
    """Internal: an assertion check failed with an AADSTS code."""

    def __init__(self, code: int, description: str, error: str = "invalid_client", status: int = 400):
        super().__init__(description)
        self.code, self.description, self.error, self.status = code, description, error, status


# --------------------------------------------------------------------------------------------------------------
# Entra: tokens and metadata
# --------------------------------------------------------------------------------------------------------------

class Entra:
    """Token issuance and OIDC metadata of the sandbox tenant (``ctx.entra``)."""

    def __init__(self, ctx: "Sandbox"):
        self.ctx = ctx
        self.signing_key = SigningKey()
        self._oidc_cache: dict[str, tuple[float, dict[str, Any]]] = {}

    def clear_cache(self) -> None:
        self._oidc_cache.clear()

    # --- names ------------------------------------------------------------------------------------------
    @property
    def access_token_issuer(self) -> str:
        """``iss`` of the v1.0 access tokens Graph and ARM receive (as the real service issues them)."""
        return f"https://sts.windows.net/{self.ctx.config.tenant_id}/"

    def resolve_tenant(self, segment: str) -> str | None:
        """The tenant id for a tenant id or verified domain in a URL path (case-insensitive)."""
        cfg = self.ctx.config
        if segment.lower() in (cfg.tenant_id.lower(), cfg.tenant_domain.lower()):
            return cfg.tenant_id
        return None

    def graph_audiences(self) -> tuple[str, ...]:
        base = self.ctx.config.base_url
        return ("https://graph.microsoft.com", "https://graph.microsoft.com/", GRAPH_APP_ID, base, base + "/")

    def resource_service(self, resource: str) -> str | None:
        """``graph``/``arm`` for a resource identifier (scope without ``/.default``), else None."""
        norm = resource.rstrip("/").lower()
        if norm in (r.lower() for r in GRAPH_RESOURCES) or norm == self.ctx.config.base_url.lower():
            return "graph"
        if norm in ARM_RESOURCES or norm == ARM_APP_ID:
            return "arm"
        return None

    # --- discovery documents ----------------------------------------------------------------------------
    def openid_configuration(self, tenant: str, *, v2: bool) -> dict[str, Any]:
        """The tenant's OpenID Connect discovery document (``tenant`` may be ``{tenantid}`` for common)."""
        base = self.ctx.config.base_url
        v = "/v2.0" if v2 else ""
        issuer = f"{base}/{tenant}/v2.0" if v2 else f"https://sts.windows.net/{tenant}/"
        return {
            "token_endpoint": f"{base}/{tenant}/oauth2{v}/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": f"{base}/{tenant}/discovery{v}/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": issuer,
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{base}/{tenant}/oauth2{v}/authorize",
            "device_authorization_endpoint": f"{base}/{tenant}/oauth2{v}/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{tenant}/oauth2{v}/logout",
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
                                 "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username",
                                 "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "kerberos_endpoint": f"{base}/{tenant}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.signing_key.public_jwk(x5t=self.signing_key.kid,
                                                     issuer=f"{self.ctx.config.base_url}/{{tenantid}}/v2.0")]}

    def instance_discovery(self, query: dict[str, str]) -> dict[str, Any]:
        """MSAL instance discovery (``/common/discovery/instance``) for this host."""
        base = self.ctx.config.base_url
        host = urllib.parse.urlsplit(base).netloc
        endpoint = query.get("authorization_endpoint", "")
        tenant = "common"
        if endpoint:
            parsed = urllib.parse.urlsplit(endpoint)
            if parsed.netloc.lower() != host.lower():
                raise entra_error(400, "invalid_instance", 50049, "Unknown or invalid instance.")
            segments = [s for s in parsed.path.split("/") if s]
            if segments:
                tenant = segments[0]
        return {
            "tenant_discovery_endpoint": f"{base}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": query.get("api-version", "1.1"),
            "metadata": [{"preferred_network": host, "preferred_cache": host,
                          "aliases": [host, urllib.parse.urlsplit(base).hostname or host]}],
        }

    # --- access tokens ----------------------------------------------------------------------------------
    def graph_roles_of(self, sp_object_id: str) -> list[str]:
        """Graph application permissions granted to a service principal (its appRoleAssignments)."""
        state = self.ctx.state
        graph_sp = next((sp for sp in state.sps.values() if sp.get("appId") == GRAPH_APP_ID), None)
        if graph_sp is None:
            return []
        names = {role.get("id"): role.get("value") for role in graph_sp.get("appRoles", [])}
        roles = [names.get(a.get("appRoleId")) for a in state.app_role_assignments.values()
                 if a.get("principalId") == sp_object_id and a.get("resourceId") == graph_sp["id"]
                 and not a.get("deletedDateTime")]
        return sorted({r for r in roles if r})

    def mint_access_token(self, *, app_id: str, sp_object_id: str, resource: str, service: str,
                          appidacr: str) -> tuple[str, int]:
        """An RS256 v1.0 access token for ``resource``; returns (token, lifetime seconds)."""
        now = int(self.ctx.clock())
        lifetime = self.ctx.config.access_token_lifetime
        tid = self.ctx.config.tenant_id
        claims: dict[str, Any] = {
            "aud": resource, "iss": self.access_token_issuer, "iat": now, "nbf": now, "exp": now + lifetime,
            "aio": base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode(),
            "app_displayname": None, "appid": app_id, "appidacr": appidacr, "idp": self.access_token_issuer,
            "idtyp": "app", "oid": sp_object_id, "rh": "0.sandbox.", "sub": sp_object_id, "tid": tid,
            "uti": base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode(), "ver": "1.0",
        }
        sp = self.ctx.state.sps.get(sp_object_id)
        claims["app_displayname"] = sp.get("displayName") if sp else None
        if service == "graph":
            roles = self.graph_roles_of(sp_object_id)
            if roles:
                claims["roles"] = roles
        return self.signing_key.sign(claims), lifetime

    # --- token endpoint ---------------------------------------------------------------------------------
    async def token(self, request: Request, tenant_segment: str) -> Response:
        """``POST /{tenant}/oauth2/v2.0/token``."""
        try:
            return await self._token(request, tenant_segment)
        except ServiceError as error:
            codes = error.body.get("error_codes") if isinstance(error.body, dict) else None
            if codes:
                self.ctx.stats.token_failed(codes[0])
            raise

    async def _token(self, request: Request, tenant_segment: str) -> Response:
        tenant = self.resolve_tenant(tenant_segment)
        if tenant is None:
            raise entra_error(400, "invalid_request", 90002,
                              f"Tenant '{tenant_segment}' not found. Check to make sure you have the correct tenant "
                              "ID and are signing into the correct cloud. Check with your subscription "
                              "administrator, this may happen if there are no active subscriptions for the tenant.")
        form = await _form(request)
        basic_id, basic_secret = _basic_auth(request)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise _missing("grant_type")
        if grant_type != "client_credentials":
            raise entra_error(400, "unsupported_grant_type", 70003,
                              f"The app requested an unsupported grant type '{grant_type}'.")
        client_id = form.get("client_id") or basic_id
        if not client_id:
            raise _missing("client_id")
        scope = form.get("scope")
        if not scope:
            raise _missing("scope")
        resource, service = self._resource_of(scope)

        assertion = form.get("client_assertion")
        secret = form.get("client_secret") or basic_secret
        if not assertion and not secret:
            raise entra_error(401, "invalid_client", 7000218,
                              "The request body must contain the following parameter: 'client_assertion' or "
                              "'client_secret'.")
        if assertion:
            assertion_type = form.get("client_assertion_type")
            if not assertion_type:
                raise _missing("client_assertion_type")
            if assertion_type != JWT_BEARER:
                raise entra_error(400, "invalid_request", 50027,
                                  f"Invalid client_assertion_type '{assertion_type}'. It must be '{JWT_BEARER}'.")

        app = self._replicated(self.ctx.directory.app_by_app_id(client_id)) if _GUID.match(client_id) else None
        if app is None:
            raise entra_error(400, "unauthorized_client", 700016,
                              f"Application with identifier '{client_id}' was not found in the directory "
                              f"'{self.ctx.config.tenant_domain}'. This can happen if the application has not "
                              "been installed by the administrator of the tenant or consented to by any user in "
                              "the tenant. You may have sent your authentication request to the wrong tenant.")
        app_id = app["appId"]
        if assertion:
            await self._check_assertion(app, assertion)
            appidacr = "2"
        else:
            self._check_secret(app_id, secret or "")
            appidacr = "1"
        sp = self._replicated(self.ctx.directory.sp_by_app_id(app_id))
        if sp is None:
            raise entra_error(400, "invalid_client", 7000229,
                              f"The client application {app_id} is missing service principal in the tenant "
                              f"{tenant}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119")
        if sp.get("accountEnabled") is False:
            raise entra_error(400, "unauthorized_client", 7000112,
                              f"Application '{app_id}'({sp.get('displayName') or app.get('displayName')}) is "
                              "disabled.")
        token, lifetime = self.mint_access_token(app_id=app_id, sp_object_id=sp["id"], resource=resource,
                                                 service=service, appidacr=appidacr)
        self.ctx.stats.token_issued(service)
        return JSONResponse({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                             "access_token": token}, headers=_NO_STORE)

    def _replicated(self, obj: dict[str, Any] | None) -> dict[str, Any] | None:
        """``obj`` once it has replicated to the token service (None while lagging or deleted)."""
        if obj is None or obj.get("deletedDateTime") or self.ctx.faults.lagging(obj):
            return None
        return obj

    def _resource_of(self, scope: str) -> tuple[str, str]:
        scopes = [s for s in scope.split() if s not in _OIDC_SCOPES]
        if not scopes:
            raise _missing("scope")
        for item in scopes:
            if not item.endswith("/.default"):
                raise entra_error(400, "invalid_scope", 1002012,
                                  f"The provided value for scope {item} is not valid. Client credential flows must "
                                  "have a scope value with /.default suffixed to the resource identifier "
                                  "(application ID URI).")
        resources = {item[: -len("/.default")] for item in scopes}
        if len(resources) > 1:
            raise entra_error(400, "invalid_scope", 70011,
                              f"The provided value for the input parameter 'scope' is not valid. The scope "
                              f"{' '.join(scopes)} is not valid. Only one resource may be requested.")
        resource = resources.pop()
        service = self.resource_service(resource)
        if service is None:
            raise entra_error(400, "invalid_resource", 500011,
                              f"The resource principal named {resource} was not found in the tenant named "
                              f"{self.ctx.config.tenant_domain}. This can happen if the application has not been "
                              "installed by the administrator of the tenant or consented to by any user in the "
                              "tenant. You might have sent your authentication request to the wrong tenant.")
        return resource, service

    def _check_secret(self, app_id: str, secret: str) -> None:
        operator = self.ctx.state.operators.get(app_id) or next(
            (op for cid, op in self.ctx.state.operators.items() if cid.lower() == app_id.lower()), None)
        if operator is None or not _consteq(operator.get("secret", ""), secret):
            raise entra_error(401, "invalid_client", 7000215,
                              "Invalid client secret provided. Ensure the secret being sent in the request is the "
                              f"client secret value, not the client secret ID, for a secret added to app "
                              f"'{app_id}'.")

    # --- federated assertions ---------------------------------------------------------------------------
    async def _check_assertion(self, app: dict[str, Any], assertion: str) -> None:
        try:
            await self.validate_assertion(app, assertion)
        except _Fail as fail:
            raise entra_error(fail.status, fail.error, fail.code, fail.description) from None

    async def validate_assertion(self, app: dict[str, Any], assertion: str) -> dict[str, Any]:
        """Check a federated client assertion against ``app``'s FICs like Entra; return the matching FIC."""
        try:
            header, claims = _unverified(assertion)
        except ValueError:
            raise _Fail(50027, "JWT token is invalid or malformed.", "invalid_request") from None
        iss = claims.get("iss") if isinstance(claims.get("iss"), str) else ""
        sub = claims.get("sub") if isinstance(claims.get("sub"), str) else ""
        auds = _audiences(claims)
        if iss in (self.access_token_issuer, f"{self.ctx.config.base_url}/{self.ctx.config.tenant_id}/v2.0"):
            raise _Fail(700222, "AAD-issued tokens may not be used for federated identity flows.")
        fics = [fic for fic in self.ctx.directory.fics_of(app["id"]) if not self.ctx.faults.lagging(fic)]
        if not fics:
            raise _Fail(70021, "No matching federated identity record found for presented assertion. Assertion "
                               f"Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: "
                               f"'{','.join(auds)}'. {_WORKLOAD_DOC}")
        candidates = [fic for fic in fics if fic.get("issuer") == iss]
        if not candidates:
            raise _Fail(700211, f"No matching federated identity record found for presented assertion issuer "
                                f"'{iss}'. Please check your federated identity credential Subject, Audience and "
                                f"Issuer against the presented assertion. {_WORKLOAD_DOC}")
        keys = await self._issuer_keys(iss)
        self._verify_signature(assertion, header, keys)
        self._check_lifetime(claims)
        candidates = [fic for fic in candidates if any(a in auds for a in fic.get("audiences") or [])]
        if not candidates:
            raise _Fail(700212, f"No matching federated identity record found for presented assertion audience "
                                f"'{','.join(auds)}'. Please check your federated identity credential Subject, "
                                f"Audience and Issuer against the presented assertion. {_WORKLOAD_DOC}")
        for fic in candidates:
            if self._subject_matches(fic, iss, sub, claims):
                return fic
        message = (f"No matching federated identity record found for presented assertion subject '{sub}'. Check "
                   "your federated identity credential Subject, Audience and Issuer against the presented "
                   f"assertion. {_WORKLOAD_DOC}")
        if any(isinstance(f.get("subject"), str) and f["subject"].lower() == sub.lower() for f in candidates):
            raise _Fail(7002138, message + " The subject matches with case-insensitive comparison, but not with "
                                           "case-sensitive comparison. Federated identity credential matching is "
                                           "case-sensitive.")
        raise _Fail(700213, message)

    def _subject_matches(self, fic: dict[str, Any], iss: str, sub: str, claims: dict[str, Any]) -> bool:
        flexible = fic.get("claimsMatchingExpression")
        if isinstance(flexible, dict) and flexible.get("value"):
            if flexible.get("languageVersion") != expression.LANGUAGE_VERSION:
                return False
            try:
                parsed = expression.parse(flexible["value"])
            except expression.ExpressionError:
                return False
            if expression.violation(parsed, self.ctx.flexible_issuer_platform(iss)) is not None:
                return False
            return parsed.matches(claims)
        return isinstance(fic.get("subject"), str) and fic["subject"] == sub

    async def _issuer_keys(self, iss: str) -> dict[str, Any]:
        """kid -> public key from the issuer's discovery document and JWKS (AADSTS501661 on any failure)."""
        ttl = self.ctx.config.jwks_cache_seconds
        cached = self._oidc_cache.get(iss)
        if cached and ttl > 0 and time.monotonic() - cached[0] < ttl:
            return cached[1]
        keys = await self._fetch_keys(iss)
        if ttl > 0:
            self._oidc_cache[iss] = (time.monotonic(), keys)
        return keys

    async def _fetch_keys(self, iss: str) -> dict[str, Any]:
        discovery_url = iss[:-1] if iss.endswith("/") else iss
        discovery_url += "/.well-known/openid-configuration"
        document = await self._fetch_json(discovery_url, "the OpenID configuration")
        if document.get("issuer") != iss:
            raise _oidc_failure(f"the issuer in the OpenID configuration ('{document.get('issuer')}') does not "
                                f"match the assertion issuer '{iss}'")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
            raise _oidc_failure("the OpenID configuration has no https jwks_uri")
        jwks = await self._fetch_json(jwks_uri, "the signing keys")
        entries = jwks.get("keys")
        if not isinstance(entries, list) or not entries:
            raise _oidc_failure("the JWKS document has no keys")
        keys: dict[str, Any] = {}
        for entry in entries[:_MAX_JWKS_KEYS]:
            try:
                keys[str(entry.get("kid", ""))] = public_key_from_jwk(entry)
            except (ValueError, AttributeError):
                continue
        if not keys:
            raise _oidc_failure("the JWKS document has no usable RSA keys")
        return keys

    async def _fetch_json(self, url: str, what: str) -> dict[str, Any]:
        if not url.lower().startswith("https://"):
            raise _oidc_failure(f"{what} URL {url} is not https")
        try:
            response = await self.ctx.http().get(url, timeout=self.ctx.config.oidc_fetch_timeout)
        except httpx.HTTPError as exc:
            raise _oidc_failure(f"could not fetch {what} from {url}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise _oidc_failure(f"fetching {what} from {url} returned HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise _oidc_failure(f"{what} at {url} is not valid JSON") from None
        if not isinstance(body, dict):
            raise _oidc_failure(f"{what} at {url} is not a JSON object")
        return body

    @staticmethod
    def _verify_signature(assertion: str, header: dict[str, Any], keys: dict[str, Any]) -> None:
        if header.get("alg") != "RS256":
            raise _Fail(700027, f"Client assertion failed signature validation. (Reason - the signing algorithm "
                                f"'{header.get('alg')}' is not supported; only RS256 is.)")
        key = keys.get(str(header.get("kid", "")))
        if key is None:
            raise _Fail(700027, "Client assertion failed signature validation. (Reason - The key used to sign the "
                                "assertion was not found in the issuer's signing keys.)")
        try:
            jwt.decode(assertion, key, algorithms=["RS256"],
                       options={"verify_signature": True, "verify_aud": False, "verify_exp": False,
                                "verify_nbf": False, "verify_iat": False, "verify_iss": False})
        except jwt.InvalidTokenError:
            raise _Fail(700027, "Client assertion failed signature validation.") from None

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        now = self.ctx.clock()
        skew = self.ctx.config.assertion_clock_skew
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
        valid_numbers = isinstance(exp, (int, float)) and not isinstance(exp, bool) and (
            nbf is None or (isinstance(nbf, (int, float)) and not isinstance(nbf, bool)))
        if valid_numbers and now <= exp + skew and (nbf is None or now >= nbf - skew):
            return
        start = _ests_time(nbf) if isinstance(nbf, (int, float)) else "(none)"
        end = _ests_time(exp) if isinstance(exp, (int, float)) else "(none)"
        raise _Fail(700024, f"Client assertion is not within its valid time range. Current time: "
                            f"{_ests_time(now)}, assertion valid from {start}, expiry time of assertion {end}. "
                            "Review the documentation at "
                            "https://learn.microsoft.com/entra/identity-platform/certificate-credentials .")


def _oidc_failure(reason: str) -> _Fail:
    log.info("external OIDC request failed: %s", reason)
    return _Fail(501661, f"Request to External OIDC endpoint failed. ({reason})", "invalid_client")


def _missing(name: str) -> ServiceError:
    return entra_error(400, "invalid_request", 900144,
                       f"The request body must contain the following parameter: '{name}'.")


def _consteq(a: str, b: str) -> bool:
    import hmac
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form (first value of each name); anything else reads as an empty form, as Entra does."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    raw = await request.body()
    if ctype != "application/x-www-form-urlencoded" or not raw:
        return {}
    form: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        form.setdefault(key, value)
    return form


def _basic_auth(request: Request) -> tuple[str | None, str | None]:
    """client_secret_basic: ``Authorization: Basic base64(urlencode(id):urlencode(secret))``."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None, None
    return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)


# --------------------------------------------------------------------------------------------------------------
# Auth: access-token verification for Graph and ARM
# --------------------------------------------------------------------------------------------------------------

class Auth:
    """``ctx.auth``: verifies the bearer tokens entra.py issued."""

    _CACHE_MAX = 4096

    def __init__(self, ctx: "Sandbox"):
        self.ctx = ctx
        self._verified: dict[str, dict[str, Any]] = {}

    def clear_cache(self) -> None:
        self._verified.clear()

    @staticmethod
    def _bearer(request: Request) -> str | None:
        header = request.headers.get("authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else ""

    def peek_app_id(self, request: Request) -> str | None:
        """The ``appid`` of the request's bearer token without verifying it (for throttling buckets)."""
        token = self._bearer(request)
        if not token:
            return None
        cached = self._verified.get(token)
        if cached is not None:
            return cached.get("appid")
        try:
            return str(_unverified(token)[1].get("appid") or "") or None
        except ValueError:
            return None

    def require(self, request: Request, audience: str) -> Caller:
        """Verify the request's bearer token for ``audience`` (``graph``/``arm``); 401 in its envelope if bad."""
        token = self._bearer(request)
        if token is None:
            raise _unauthorized(audience, "missing", self.ctx)
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token, audience)
            if len(self._verified) >= self._CACHE_MAX:
                self._verified.clear()
            self._verified[token] = claims
        now = self.ctx.clock()
        if not isinstance(claims.get("exp"), (int, float)) or now >= claims["exp"]:
            raise _unauthorized(audience, "expired", self.ctx, claims=claims)
        if isinstance(claims.get("nbf"), (int, float)) and now < claims["nbf"] - 300:
            raise _unauthorized(audience, "notyet", self.ctx, claims=claims)
        allowed = self.ctx.entra.graph_audiences() if audience == "graph" else ARM_AUDIENCES
        if claims.get("aud") not in allowed:
            raise _unauthorized(audience, "audience", self.ctx, claims=claims)
        if claims.get("tid") != self.ctx.config.tenant_id:
            raise _unauthorized(audience, "tenant", self.ctx, claims=claims)
        roles = claims.get("roles") if audience == "graph" else None
        return Caller(object_id=str(claims.get("oid", "")), app_id=str(claims.get("appid", "")),
                      tenant_id=str(claims.get("tid", "")), roles=tuple(roles or ()), claims=claims)

    def _verify(self, token: str, audience: str) -> dict[str, Any]:
        if not token or token.count(".") != 2:
            raise _unauthorized(audience, "malformed", self.ctx)
        try:
            claims = jwt.decode(token, self.ctx.entra.signing_key.private_key.public_key(), algorithms=["RS256"],
                                options={"verify_aud": False, "verify_exp": False, "verify_nbf": False,
                                         "verify_iat": False, "verify_iss": False})
        except jwt.DecodeError:
            raise _unauthorized(audience, "malformed", self.ctx) from None
        except jwt.InvalidTokenError:
            raise _unauthorized(audience, "signature", self.ctx) from None
        return claims


def _unauthorized(audience: str, reason: str, ctx: "Sandbox", claims: dict[str, Any] | None = None) -> ServiceError:
    tid = ctx.config.tenant_id
    base = ctx.config.base_url
    if audience == "graph":
        message = {
            "missing": "Access token is empty.",
            "malformed": "IDX14100: JWT is not well formed, there are no dots (.). The token needs to be in JWS or "
                         "JWE Compact Serialization Format.",
            "signature": "Access token validation failure. Invalid signature.",
            "expired": "Lifetime validation failed, the token is expired.",
            "notyet": "Lifetime validation failed, the token is not yet valid.",
            "audience": "Access token validation failure. Invalid audience.",
            "tenant": "Access token validation failure. Invalid tenant.",
        }[reason]
        headers = {"WWW-Authenticate": f'Bearer realm="", authorization_uri="{base}/common/oauth2/authorize", '
                                       f'client_id="{GRAPH_APP_ID}"'}
        return graph_error(401, "InvalidAuthenticationToken", message, headers=headers)
    now = dt.datetime.fromtimestamp(ctx.clock(), dt.timezone.utc)
    if reason == "missing":
        code, message = "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
    elif reason == "expired":
        exp = dt.datetime.fromtimestamp(float((claims or {}).get("exp") or 0), dt.timezone.utc)
        code = "ExpiredAuthenticationToken"
        message = (f"The access token expiry UTC time '{exp:%m/%d/%Y %I:%M:%S %p}' is earlier than current UTC "
                   f"time '{now:%m/%d/%Y %I:%M:%S %p}'.")
    elif reason == "audience":
        code = "InvalidAuthenticationTokenAudience"
        message = (f"The access token has been obtained for wrong audience or resource '{(claims or {}).get('aud')}'. "
                   "It should exactly match with one of the allowed audiences "
                   + ",".join(f"'{a}'" for a in ARM_AUDIENCES) + ".")
    elif reason == "tenant":
        code = "InvalidAuthenticationTokenTenant"
        message = (f"The access token is from the wrong issuer '{(claims or {}).get('iss')}'. It must match the "
                   f"tenant 'https://sts.windows.net/{tid}/' associated with this subscription. Please use the "
                   f"authority (URL) '{base}/{tid}' to get the token.")
    else:
        code, message = "InvalidAuthenticationToken", "The access token is invalid."
    headers = {"WWW-Authenticate": f'Bearer authorization_uri="{base}/{tid}", error="invalid_token", '
                                   f'error_description="{message.replace(chr(34), chr(39))}"'}
    return arm_error(401, code, message, headers=headers)


# --------------------------------------------------------------------------------------------------------------
# routing
# --------------------------------------------------------------------------------------------------------------

_ROUTES = (
    (re.compile(r"^/([^/]+)/oauth2/v2\.0/token/?$", re.I), "token"),
    (re.compile(r"^/([^/]+)/v2\.0/\.well-known/openid-configuration/?$", re.I), "oidc2"),
    (re.compile(r"^/([^/]+)/\.well-known/openid-configuration/?$", re.I), "oidc1"),
    (re.compile(r"^/([^/]+)/discovery/v2\.0/keys/?$", re.I), "keys"),
    (re.compile(r"^/([^/]+)/discovery/keys/?$", re.I), "keys"),
    (re.compile(r"^/common/discovery/instance/?$", re.I), "instance"),
)
_MULTI_TENANT = ("common", "organizations", "consumers")


async def handle(ctx: "Sandbox", request: Request, path: str) -> Response | None:
    """Entra routes (tenant-prefixed paths and ``/common/discovery/instance``)."""
    for pattern, name in _ROUTES:
        match = pattern.match(path)
        if match is None:
            continue
        if name == "token":
            if request.method != "POST":
                raise method_not_allowed("entra", request.method, "POST, OPTIONS")
            return await ctx.entra.token(request, match.group(1))
        if request.method not in ("GET", "HEAD"):
            raise method_not_allowed("entra", request.method, "GET")
        if name == "instance":
            return JSONResponse(ctx.entra.instance_discovery(dict(request.query_params)))
        segment = match.group(1)
        tenant = "{tenantid}" if segment.lower() in _MULTI_TENANT else ctx.entra.resolve_tenant(segment)
        if tenant is None:
            raise entra_error(400, "invalid_tenant", 90002,
                              f"Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and "
                              "are signing into the correct cloud.")
        if name == "keys":
            return JSONResponse(ctx.entra.jwks())
        return JSONResponse(ctx.entra.openid_configuration(tenant, v2=(name == "oidc2")))
    return None
