# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""The federation doctor: predicts what Microsoft Entra ID answers when a CI job exchanges its ID token.

Given an application and what a pipeline presents (a GitLab ID token, or the claims such a token would carry),
it evaluates them the way Entra ID's token endpoint does and explains the outcome: the AADSTS code, the
credential that came closest, the field that differs (both values, and whether only case or a trailing slash
differ) and the concrete fix. It only reads: Microsoft Graph (application, federated identity credentials,
service principal), ARM (role assignments at a scope), the issuer's OpenID Connect discovery document and keys,
and the pipeline tenant's discovery document.

Order of the checks (the first failing one decides the code), as Entra ID documents its checks (api-facts §5)
and as observed codes imply: tenant (90002), application (700016), an Entra-issued assertion (700222), any
credential at all (70021), issuer (700211: exact, case-sensitive, trailing slash included), the issuer's
discovery document and keys (501661), signature (700027), lifetime (700024), audience (700212), subject or
expression (7002138 when only the case differs, else 700213), service principal (7000229; 7000112 when it is
disabled). Entra only fetches the discovery document of an issuer one of the app's credentials names, which is
why the issuer is matched before it is fetched. Microsoft publishes no order among signature, lifetime and
audience; the order here is the one the codes are observed in.

Matching uses the collection's own rules (``_fic.py``: expression parser and evaluator, issuer allow-lists),
never the sandbox's code.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import ssl
import time
from dataclasses import dataclass, field as dc_field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from ansible_collections.oidc_federation.azure.plugins.module_utils._arm import (
    RoleRef,
    Scope,
    assignment_scope_key,
    list_principal_assignments,
    role_definition_cache,
    role_guid_of,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import load_sdk
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import AzureApiError, ValidationError, register_secret
from ansible_collections.oidc_federation.azure.plugins.module_utils._fic import (
    FicValidationError,
    validate_expression,
    wildcard_match,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._gitlab import REF_TYPE_BRANCH, SubjectBuilder
from ansible_collections.oidc_federation.azure.plugins.module_utils._graph import (
    get_service_principal,
    resolve_application,
    tenant_id_of,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._graph_fic import credential_result, list_credentials
from ansible_collections.oidc_federation.azure.plugins.module_utils._module import gather_limited

CLOCK_SKEW = 300  # seconds; Microsoft.IdentityModel's default (Entra ID publishes no value)
MAX_JWKS_KEYS = 100  # Entra ID uses the first 100 keys of an issuer's JWKS
FETCH_TIMEOUT = 10.0
GITLAB_COM = 'https://gitlab.com'
DISCOVERY_SUFFIX = '/.well-known/openid-configuration'
WORKLOAD_DOC = 'https://learn.microsoft.com/entra/workload-id/workload-identity-federation'

NOTE_CASE = 'differs only in upper/lower case'
NOTE_SLASH = 'differs only by a trailing slash'
NOTE_CASE_SLASH = 'differs only in upper/lower case and a trailing slash'
NOTE_SPACE = 'differs only by leading or trailing whitespace'

# The OAuth error string Entra ID sends with each code.
ERRORS = {
    90002: 'invalid_request', 700016: 'unauthorized_client', 700222: 'invalid_client', 70021: 'invalid_client',
    700211: 'invalid_client', 501661: 'invalid_client', 700027: 'invalid_client', 700024: 'invalid_client',
    700212: 'invalid_client', 7002138: 'invalid_client', 700213: 'invalid_client', 7000229: 'invalid_client',
    7000112: 'unauthorized_client',
}

_SUB_KEYS = frozenset(('project_path', 'project_id', 'ref_type', 'ref', 'ref_protected', 'environment_protected',
                       'deployment_tier', 'job_project_id', 'source_project_id'))
# Claims worth showing (what matching and troubleshooting need; no user names or e-mail addresses).
SHOWN_CLAIMS = ('iss', 'sub', 'aud', 'iat', 'nbf', 'exp', 'project_path', 'project_id', 'namespace_path', 'ref',
                'ref_type', 'ref_path', 'ref_protected', 'environment', 'environment_protected', 'deployment_tier',
                'pipeline_source')


def _invalid(field_name: str, message: str, fix: str) -> FicValidationError:
    """Bad input: ``field: message. Fix: fix.`` (the collection's wording for errors naming an option)."""
    return FicValidationError(field_name, message, fix)


# --------------------------------------------------------------------------------------------------------------
# What the pipeline presents: an ID token, or the claims one would carry
# --------------------------------------------------------------------------------------------------------------

def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url (JWT segments, JWK members); ``ValueError`` when it is not."""
    if not isinstance(text, str) or any(c in text for c in '+/= \t\r\n'):
        raise ValueError('not base64url')
    try:
        return base64.urlsafe_b64decode(text + '=' * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError('not base64url') from None


@dataclass(frozen=True)
class Jwt:
    """A compact JWS, split but not verified."""

    header: Dict[str, Any]
    claims: Dict[str, Any]
    signing_input: bytes = dc_field(repr=False)
    signature: bytes = dc_field(repr=False)


def parse_jwt(token: Any, field_name: str = 'id_token') -> Jwt:
    """Split a compact JWS into header, claims, signing input and signature (``ValidationError`` naming the option)."""
    fix = 'pass the ID token itself (three base64url parts joined by dots), e.g. the value of the CI job\'s id_tokens variable'
    if not isinstance(token, str) or not token.strip():
        raise _invalid(field_name, 'the ID token is empty', fix)
    token = token.strip()
    register_secret(token)
    parts = token.split('.')
    if len(parts) != 3 or not all(parts):
        raise _invalid(field_name, 'this is not a JWT: it has {0} dot-separated parts instead of 3 (Entra ID would answer AADSTS50027)'.format(
            len(parts)), fix)
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise _invalid(field_name, 'this is not a JWT: a part is not base64url-encoded JSON (Entra ID would answer AADSTS50027)', fix) from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _invalid(field_name, 'this is not a JWT: its header or payload is not a JSON object', fix)
    return Jwt(header, claims, (parts[0] + '.' + parts[1]).encode('ascii'), signature)


def audiences_of(claims: Mapping[str, Any]) -> List[str]:
    """The ``aud`` claim as a list of strings (a token may carry one string or a list)."""
    aud = claims.get('aud')
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


@dataclass
class Presented:
    """What the pipeline sends to Entra ID: ``claims`` (and the token itself, from ``id_token``)."""

    source: str  # 'id_token' or 'claims'
    claims: Dict[str, Any]
    jwt: Optional[Jwt] = None

    @property
    def issuer(self) -> str:
        """The ``iss`` claim ('' when missing)."""
        value = self.claims.get('iss')
        return value if isinstance(value, str) else ''

    @property
    def subject(self) -> str:
        """The ``sub`` claim ('' when missing)."""
        value = self.claims.get('sub')
        return value if isinstance(value, str) else ''

    @property
    def audiences(self) -> List[str]:
        """The ``aud`` claim as a list."""
        return audiences_of(self.claims)

    def shown_claims(self) -> Dict[str, Any]:
        """The claims relevant to the diagnosis (never the token)."""
        return {name: self.claims[name] for name in SHOWN_CLAIMS if name in self.claims}


def presented_from_token(token: str) -> Presented:
    """The pipeline's ID token, parsed (not verified: verification needs the issuer's keys)."""
    jwt = parse_jwt(token)
    return Presented('id_token', dict(jwt.claims), jwt)


def check_issuer_url(issuer: Any, field_name: str = 'issuer') -> str:
    """An issuer Entra ID can fetch: an https URL (a trailing slash is allowed here, since it is what is diagnosed)."""
    if not isinstance(issuer, str) or not issuer.startswith('https://') or not urlsplit(issuer).hostname:
        raise _invalid(field_name, 'issuer {0!r} is not an https URL; Entra ID fetches {{issuer}}{1} over HTTPS'.format(issuer, DISCOVERY_SUFFIX),
                       'give the GitLab instance URL exactly as in the token\'s iss claim, e.g. https://gitlab.com')
    return issuer


def presented_from_claims(*, issuer: Optional[str] = None, audiences: Optional[Sequence[str]] = None, subject: Optional[str] = None,
                          project_path: Optional[str] = None, project_id: Optional[str] = None, ref_type: Optional[str] = None,
                          ref: Optional[str] = None, sub_claim_components: Optional[Sequence[str]] = None,
                          claim_values: Optional[Mapping[str, Any]] = None) -> Presented:
    """The claims a GitLab job would present: ``sub`` built by ``SubjectBuilder`` from the project, ref type and ref
    (honouring the project's ``ci_id_token_sub_claim_components``), or given as ``subject``.

    ``issuer`` defaults to https://gitlab.com, ``audiences`` to the issuer (GitLab's Azure tutorial).
    """
    issuer = check_issuer_url(issuer if issuer is not None else GITLAB_COM)
    auds = [a for a in (audiences or []) if a not in (None, '')] or [issuer]
    aud: Any = auds[0] if len(auds) == 1 else auds
    if subject not in (None, ''):
        return Presented('claims', {'iss': issuer, 'sub': subject, 'aud': aud})
    if ref in (None, ''):
        raise _invalid('ref', 'the branch or tag the job runs for is required (or give subject, or id_token)',
                       'set ref (e.g. main) and ref_type (branch or tag), with project_path or project_id')
    if project_path in (None, '') and project_id in (None, ''):
        raise _invalid('project_path', 'the project is required to build the sub claim (or give subject, or id_token)',
                       'set project_path (e.g. mygroup/myproject) or, for project_id-led subjects, project_id')
    builder = SubjectBuilder(project_path=project_path, project_id=project_id, components=sub_claim_components,
                             claim_values=claim_values)
    claims = builder.claims(ref_type or REF_TYPE_BRANCH, ref, issuer=issuer, audience=aud)
    return Presented('claims', claims)


# --------------------------------------------------------------------------------------------------------------
# Comparing one credential with what is presented
# --------------------------------------------------------------------------------------------------------------

def near_miss(expected: Any, actual: Any) -> Optional[str]:
    """How two different strings differ when it is easy to miss (case, trailing slash, whitespace); None otherwise."""
    if not isinstance(expected, str) or not isinstance(actual, str) or expected == actual:
        return None
    if expected.strip() == actual.strip():
        return NOTE_SPACE
    bare_e, bare_a = expected.rstrip('/'), actual.rstrip('/')
    if bare_e == bare_a:
        return NOTE_SLASH
    if expected.lower() == actual.lower():
        return NOTE_CASE
    if bare_e.lower() == bare_a.lower():
        return NOTE_CASE_SLASH
    return None


def sub_components(sub: Any) -> Optional[List[Tuple[str, str]]]:
    """A GitLab ``sub`` as (component, value) pairs, or None when it is not one (values never contain ':')."""
    if not isinstance(sub, str) or not sub:
        return None
    parts = sub.split(':')
    if len(parts) % 2:
        return None
    pairs = list(zip(parts[0::2], parts[1::2]))
    if any(key not in _SUB_KEYS for key, _value in pairs):
        return None
    return pairs


def sub_differences(expected: str, actual: str) -> List[str]:
    """Which components of two GitLab subjects differ, e.g. ``["ref: credential 'main', token 'develop'"]``."""
    want, got = sub_components(expected), sub_components(actual)
    if want is None or got is None:
        return []
    if [k for k, _v in want] != [k for k, _v in got]:
        return ["the credential's subject is made of {0}, the token's of {1}: the project's ci_id_token_sub_claim_components "
                "are not what the credential was written for".format(':'.join(k for k, _v in want), ':'.join(k for k, _v in got))]
    out = []
    for (key, value), (_key, other) in zip(want, got):
        if value != other:
            note = ' ({0})'.format(NOTE_CASE) if value.lower() == other.lower() else ''
            out.append('{0}: credential {1!r}, token {2!r}{3}'.format(key, value, other, note))
    return out


@dataclass
class Difference:
    """One field of a credential that does not accept what is presented."""

    field: str  # issuer | audience | subject | claims_matching_expression
    credential: Any
    token: Any
    note: Optional[str] = None
    details: List[str] = dc_field(default_factory=list)

    def to_result(self) -> dict:
        """The module's return shape."""
        return {'field': self.field, 'credential': self.credential, 'token': self.token, 'note': self.note,
                'details': list(self.details)}


@dataclass
class CredentialCheck:
    """One federated identity credential evaluated against the presented claims."""

    credential: Dict[str, Any]
    issuer_ok: bool
    audience_ok: bool
    subject_ok: bool
    subject_case_only: bool = False
    differences: List[Difference] = dc_field(default_factory=list)
    similarity: float = 0.0

    @property
    def name(self) -> str:
        """The credential's name."""
        return self.credential.get('name') or ''

    @property
    def flexible(self) -> bool:
        """True for a credential with a claims matching expression."""
        return self.credential.get('claimsMatchingExpression') is not None

    def closeness(self) -> Tuple[float, bool, bool, float]:
        """Sort key: fields accepted (an easy-to-miss difference counts half), then issuer, audience, subject likeness."""
        accepted = int(self.issuer_ok) + int(self.audience_ok) + int(self.subject_ok)
        near = sum(1 for d in self.differences if d.note)
        return (accepted + 0.5 * near, self.issuer_ok, self.audience_ok, self.similarity)

    def to_result(self) -> dict:
        """The credential (module shape) with what it accepts."""
        out = dict(credential_result(self.credential) or {})
        out.update(issuer_matches=self.issuer_ok, audience_matches=self.audience_ok, subject_matches=self.subject_ok)
        return out


def _check_audience(credential: Mapping[str, Any], audiences: Sequence[str]) -> Tuple[bool, Optional[Difference]]:
    wanted = list(credential.get('audiences') or [])
    if any(a in audiences for a in wanted):
        return True, None
    shown_token: Any = audiences[0] if len(audiences) == 1 else list(audiences)
    note = next((n for n in (near_miss(w, a) for w in wanted for a in audiences) if n), None)
    return False, Difference('audience', wanted[0] if len(wanted) == 1 else wanted, shown_token, note)


def _failed_conditions(expression: Any, claims: Mapping[str, Any]) -> List[str]:
    out = []
    for condition in expression.conditions:
        if condition.evaluate(claims):
            continue
        value = claims.get(condition.claim)
        text = '{0} is false for {1!r}'.format(condition.render(), value)
        if isinstance(value, str):
            if condition.operator == 'eq' and value.lower() == condition.comparand.lower():
                text += ' ({0}; matching is case-sensitive)'.format(NOTE_CASE)
            elif condition.operator == 'matches' and wildcard_match(condition.comparand.lower(), value.lower()):
                text += ' (it would match ignoring case; matching is case-sensitive)'
        out.append(text)
    return out


def _check_expression(credential: Mapping[str, Any], presented: Presented,
                      gitlab_issuers: Sequence[str]) -> Tuple[bool, Optional[Difference], str]:
    spec = credential.get('claimsMatchingExpression') or {}
    value = spec.get('value')
    try:
        expression = validate_expression(value, credential.get('issuer') or '', language_version=spec.get('languageVersion'),
                                         gitlab_issuers=gitlab_issuers)
    except FicValidationError as exc:
        note = 'this expression can never match: {0}'.format(exc.message)
        return False, Difference('claims_matching_expression', value, presented.subject, note), str(value)
    if expression.evaluate(presented.claims):
        return True, None, str(value)
    literal = ' '.join(c.comparand for c in expression.conditions if c.claim == 'sub') or str(value)
    return False, Difference('claims_matching_expression', value, presented.subject, None,
                             _failed_conditions(expression, presented.claims)), literal


def check_credential(credential: Mapping[str, Any], presented: Presented, gitlab_issuers: Sequence[str] = ()) -> CredentialCheck:
    """Evaluate one credential (Graph shape) against the presented claims, as Entra ID compares them.

    Issuer and audience: exact, case-sensitive string comparison (a trailing slash counts). Subject: exact
    comparison; or the claims matching expression, evaluated by the collection's ``_fic`` evaluator and valid only
    for issuers on the flexible-credential allow-list (plus ``gitlab_issuers``).
    """
    differences: List[Difference] = []
    issuer = credential.get('issuer')
    issuer_ok = issuer == presented.issuer
    if not issuer_ok:
        differences.append(Difference('issuer', issuer, presented.issuer, near_miss(issuer, presented.issuer)))
    audience_ok, difference = _check_audience(credential, presented.audiences)
    if difference is not None:
        differences.append(difference)
    case_only = False
    if credential.get('claimsMatchingExpression') is not None:
        subject_ok, difference, compared = _check_expression(credential, presented, gitlab_issuers)
        if difference is not None:
            differences.append(difference)
    else:
        compared = credential.get('subject') or ''
        subject_ok = compared == presented.subject and compared != ''
        if not subject_ok:
            case_only = bool(compared) and compared.lower() == presented.subject.lower()
            differences.append(Difference('subject', compared or None, presented.subject, NOTE_CASE if case_only else near_miss(compared, presented.subject),
                                          sub_differences(compared, presented.subject)))
    similarity = difflib.SequenceMatcher(None, compared, presented.subject).ratio() if compared and presented.subject else 0.0
    return CredentialCheck(dict(credential), issuer_ok, audience_ok, subject_ok, case_only, differences, similarity)


def closest(checks: Sequence[CredentialCheck]) -> Optional[CredentialCheck]:
    """The credential that came closest to accepting (most fields accepted; ties: issuer, audience, subject likeness)."""
    return max(checks, key=CredentialCheck.closeness) if checks else None


# --------------------------------------------------------------------------------------------------------------
# The issuer: discovery document, keys; the token's signature and lifetime
# --------------------------------------------------------------------------------------------------------------

def discovery_url(issuer: str) -> str:
    """Where Entra ID reads the issuer's OpenID Connect configuration: ``{issuer}/.well-known/openid-configuration``."""
    return (issuer[:-1] if issuer.endswith('/') else issuer) + DISCOVERY_SUFFIX


def rsa_key_numbers(jwk: Any) -> Optional[Tuple[int, int]]:
    """``(n, e)`` of a usable RSA JWK, else None."""
    if not isinstance(jwk, Mapping) or jwk.get('kty') != 'RSA':
        return None
    try:
        n = int.from_bytes(b64url_decode(jwk.get('n')), 'big')
        e = int.from_bytes(b64url_decode(jwk.get('e')), 'big')
    except ValueError:
        return None
    return (n, e) if n > 0 and e > 0 else None


@dataclass
class IssuerReport:
    """What Entra ID would find at the issuer (``problem`` set: it answers AADSTS501661)."""

    issuer: str
    discovery_url: str
    reachable: bool = False
    problem: Optional[str] = None
    document_issuer: Optional[str] = None
    jwks_uri: Optional[str] = None
    keys: Dict[str, Dict[str, Any]] = dc_field(default_factory=dict)
    key_count: int = 0
    warnings: List[str] = dc_field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when Entra ID could use the issuer's keys."""
        return self.problem is None

    def to_result(self) -> dict:
        """The module's return shape."""
        return {'issuer': self.issuer, 'discovery_url': self.discovery_url, 'reachable': self.reachable, 'ok': self.ok,
                'problem': self.problem, 'document_issuer': self.document_issuer, 'jwks_uri': self.jwks_uri,
                'keys': self.key_count, 'rsa_keys': sorted(self.keys), 'warnings': list(self.warnings)}


def _http_client(ca_bundle: Optional[str], *, verify_default: bool = False) -> Any:
    """An httpx client for the issuer and the tenant discovery (no Azure token is ever sent through it)."""
    httpx = load_sdk('httpx')
    verify: Any = True
    if ca_bundle and not verify_default:
        verify = ssl.create_default_context(cafile=ca_bundle)
    return httpx.AsyncClient(verify=verify, timeout=FETCH_TIMEOUT, follow_redirects=False,
                             headers={'User-Agent': 'oidc_federation.azure federation_doctor', 'Accept': 'application/json'})


async def _fetch_json(http: Any, url: str, what: str) -> Tuple[Optional[dict], Optional[str]]:
    """GET ``url``; ``(document, None)`` or ``(None, why Entra ID could not use it)``."""
    if not url.lower().startswith('https://'):
        return None, '{0} URL {1} is not https'.format(what, url)
    try:
        response = await http.get(url)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        return None, 'could not fetch {0} from {1}: {2}'.format(what, url, _connection_problem(exc))
    if response.status_code != 200:
        return None, 'fetching {0} from {1} returned HTTP {2}'.format(what, url, response.status_code)
    try:
        body = response.json()
    except ValueError:
        return None, '{0} at {1} is not JSON ({2})'.format(what, url, response.headers.get('content-type') or 'no content type')
    if not isinstance(body, dict):
        return None, '{0} at {1} is not a JSON object'.format(what, url)
    return body, None


def _connection_problem(exc: BaseException) -> str:
    chain, seen = [], exc
    while seen is not None and len(chain) < 6:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if any(isinstance(e, ssl.SSLCertVerificationError) or 'CERTIFICATE_VERIFY_FAILED' in str(e) for e in chain):
        return 'the TLS certificate is not trusted ({0})'.format(type(exc).__name__)
    text = str(exc).strip()
    return '{0}{1}'.format(type(exc).__name__, ': ' + text[:200] if text else '')


async def fetch_issuer(http: Any, issuer: str) -> IssuerReport:
    """Read ``{issuer}/.well-known/openid-configuration`` and its ``jwks_uri`` as Entra ID does (no retries)."""
    report = IssuerReport(issuer, discovery_url(issuer))
    document, problem = await _fetch_json(http, report.discovery_url, 'the OpenID configuration')
    if document is None:
        report.problem = problem
        return report
    report.reachable = True
    report.document_issuer = document.get('issuer') if isinstance(document.get('issuer'), str) else None
    if document.get('issuer') != issuer:
        report.problem = "the issuer in the OpenID configuration ({0!r}) is not the token's iss {1!r}{2}".format(
            document.get('issuer'), issuer, _note(near_miss(document.get('issuer'), issuer)))
        return report
    jwks_uri = document.get('jwks_uri')
    report.jwks_uri = jwks_uri if isinstance(jwks_uri, str) else None
    if not isinstance(jwks_uri, str) or not jwks_uri.startswith('https://'):
        report.problem = 'the OpenID configuration has no https jwks_uri'
        return report
    jwks, problem = await _fetch_json(http, jwks_uri, 'the signing keys')
    if jwks is None:
        report.problem = problem
        return report
    entries = jwks.get('keys')
    if not isinstance(entries, list) or not entries:
        report.problem = 'the JWKS document at {0} has no keys'.format(jwks_uri)
        return report
    report.key_count = len(entries)
    for entry in entries[:MAX_JWKS_KEYS]:
        if rsa_key_numbers(entry) is not None and entry.get('alg') in (None, 'RS256'):
            report.keys[str(entry.get('kid', ''))] = dict(entry)
    if not report.keys:
        report.problem = 'the JWKS document at {0} has no usable RS256 (RSA) key'.format(jwks_uri)
    return report


def _note(note: Optional[str]) -> str:
    return ' ({0})'.format(note) if note else ''


async def check_public_trust(issuer_url: str) -> Optional[str]:
    """A warning when the issuer's certificate is trusted only through ``ca_bundle`` (Entra ID uses public roots)."""
    http = _http_client(None, verify_default=True)
    try:
        await http.get(issuer_url)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        problem = _connection_problem(exc)
        if 'TLS certificate' in problem:
            return ('the issuer\'s TLS certificate is trusted only through ca_bundle; Entra ID fetches the issuer from the internet '
                    'and trusts publicly trusted certificates only, so it may answer AADSTS501661')
    finally:
        await http.aclose()
    return None


def verify_rs256(jwk: Mapping[str, Any], signing_input: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid RS256 signature of ``signing_input`` by the RSA JWK (``cryptography``)."""
    numbers = rsa_key_numbers(jwk)
    if numbers is None:
        return False
    rsa = load_sdk('cryptography.hazmat.primitives.asymmetric.rsa')
    padding = load_sdk('cryptography.hazmat.primitives.asymmetric.padding')
    hashes = load_sdk('cryptography.hazmat.primitives.hashes')
    invalid = load_sdk('cryptography.exceptions').InvalidSignature
    try:
        key = rsa.RSAPublicNumbers(numbers[1], numbers[0]).public_key()
        key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    except (invalid, ValueError):
        return False
    return True


def _utc(stamp: Any) -> Optional[str]:
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
        return None
    try:
        return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(stamp))
    except (OverflowError, ValueError, OSError):
        return None


@dataclass
class TokenReport:
    """The ID token's signature and lifetime, checked like Entra ID does."""

    alg: Any
    kid: Any
    typ: Any
    signature: str = 'not_checked'  # valid | invalid | unknown_key | unsupported_alg | not_checked
    signature_problem: Optional[str] = None
    lifetime_problem: Optional[str] = None
    expires_at: Optional[str] = None
    not_before: Optional[str] = None
    issued_at: Optional[str] = None

    def to_result(self) -> dict:
        """The module's return shape (header fields, no token)."""
        return {'alg': self.alg, 'kid': self.kid, 'typ': self.typ, 'signature': self.signature,
                'signature_problem': self.signature_problem, 'lifetime_ok': self.lifetime_problem is None,
                'lifetime_problem': self.lifetime_problem, 'expires_at': self.expires_at, 'not_before': self.not_before,
                'issued_at': self.issued_at}


def check_signature(jwt: Jwt, keys: Optional[Mapping[str, Mapping[str, Any]]]) -> Tuple[str, Optional[str]]:
    """``(status, problem)`` of the token's signature against the issuer's keys (None: keys unknown)."""
    if jwt.header.get('alg') != 'RS256':
        return 'unsupported_alg', 'the token is signed with {0!r}; Entra ID supports RS256 only'.format(jwt.header.get('alg'))
    if keys is None:
        return 'not_checked', None
    key = keys.get(str(jwt.header.get('kid', '')))
    if key is None:
        return 'unknown_key', ("the token's key id {0!r} is not among the issuer's signing keys (the token comes from another "
                               "GitLab instance, or the issuer rotated its keys)".format(jwt.header.get('kid')))
    if not verify_rs256(key, jwt.signing_input, jwt.signature):
        return 'invalid', 'the signature does not verify with the issuer\'s key {0!r} (the token was altered or truncated)'.format(jwt.header.get('kid'))
    return 'valid', None


def check_lifetime(claims: Mapping[str, Any], now: float, skew: int = CLOCK_SKEW) -> Optional[str]:
    """Why the token is outside its validity (``exp``, ``nbf`` or else ``iat``, with ``skew`` seconds of clock skew), or None."""
    exp = claims.get('exp')
    nbf = claims.get('nbf', claims.get('iat'))

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not number(exp):
        return 'the token has no numeric exp claim'
    if nbf is not None and not number(nbf):
        return 'the token\'s nbf claim is not a number'
    if now > exp + skew:
        return 'the token expired at {0}, {1:.0f} s ago (GitLab ID tokens live as long as the job\'s timeout, 5 minutes by default)'.format(
            _utc(exp), now - exp)
    if nbf is not None and now < nbf - skew:
        return 'the token is not valid before {0}, {1:.0f} s from now (check the clocks)'.format(_utc(nbf), nbf - now)
    return None


def check_token(jwt: Jwt, keys: Optional[Mapping[str, Mapping[str, Any]]], now: float) -> TokenReport:
    """Signature (when the keys are known) and lifetime of the ID token."""
    report = TokenReport(jwt.header.get('alg'), jwt.header.get('kid'), jwt.header.get('typ'))
    report.signature, report.signature_problem = check_signature(jwt, keys)
    report.lifetime_problem = check_lifetime(jwt.claims, now)
    report.expires_at, report.not_before, report.issued_at = (_utc(jwt.claims.get('exp')), _utc(jwt.claims.get('nbf')),
                                                              _utc(jwt.claims.get('iat')))
    return report


# --------------------------------------------------------------------------------------------------------------
# The pipeline's tenant
# --------------------------------------------------------------------------------------------------------------

@dataclass
class TenantReport:
    """Whether the tenant the pipeline logs in to exists (``status``: found, not_found, unknown) and its id."""

    tenant: str
    status: str
    tenant_id: Optional[str] = None
    detail: Optional[str] = None


async def check_tenant(http: Any, authority_host: str, tenant: str) -> TenantReport:
    """Read ``{authority}/{tenant}/v2.0/.well-known/openid-configuration``: 400 AADSTS90002 means no such tenant."""
    url = '{0}/{1}/v2.0{2}'.format(authority_host.rstrip('/'), tenant, DISCOVERY_SUFFIX)
    try:
        response = await http.get(url)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        return TenantReport(tenant, 'unknown', detail='could not read {0}: {1}'.format(url, _connection_problem(exc)))
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    if response.status_code == 200:
        parts = [p for p in urlsplit(str(body.get('issuer') or '')).path.split('/') if p]
        return TenantReport(tenant, 'found', tenant_id=parts[0] if parts else None)
    codes = body.get('error_codes') if isinstance(body.get('error_codes'), list) else []
    if response.status_code == 400 and (90002 in codes or body.get('error') == 'invalid_tenant'):
        return TenantReport(tenant, 'not_found', detail=str(body.get('error_description') or '').split('\r\n', maxsplit=1)[0] or None)
    return TenantReport(tenant, 'unknown', detail='{0} answered HTTP {1}'.format(url, response.status_code))


# --------------------------------------------------------------------------------------------------------------
# Role assignments the service principal holds at a scope (ARM)
# --------------------------------------------------------------------------------------------------------------

async def role_assignments_at_scope(clients: Any, scope: Scope, principal_id: str) -> List[dict]:
    """The role assignments that apply to ``principal_id`` at ``scope``: at the scope and inherited from above it.

    Role names are resolved at the scope; a role that cannot be read is shown by its GUID.
    """
    mine = await list_principal_assignments(clients, scope, principal_id, inherited=True)
    cache = role_definition_cache(clients)

    async def describe(assignment: Mapping[str, Any]) -> dict:
        props = assignment.get('properties') or {}
        guid = role_guid_of(props.get('roleDefinitionId'))
        try:
            role = (await cache.get(clients, scope, RoleRef(guid, guid=guid))).name
        except (ValidationError, AzureApiError):
            role = guid
        where = props.get('scope') or assignment_scope_key(assignment)
        return {'role': role, 'role_definition_guid': guid, 'scope': where, 'inherited': assignment_scope_key(assignment) != scope.key,
                'id': assignment.get('id'), 'condition': props.get('condition')}

    described = await gather_limited([lambda a=a: describe(a) for a in mine], 4)
    return sorted(described, key=lambda a: (len(a['scope'] or ''), str(a['role']).lower()))


# --------------------------------------------------------------------------------------------------------------
# The verdict
# --------------------------------------------------------------------------------------------------------------

@dataclass
class Facts:
    """Everything read, ready for ``diagnose`` (pure)."""

    presented: Presented
    client_id: str
    tenant: str
    application: Optional[Dict[str, Any]] = None
    tenant_report: Optional[TenantReport] = None
    app_tenant_id: Optional[str] = None
    checks: List[CredentialCheck] = dc_field(default_factory=list)
    issuer_report: Optional[IssuerReport] = None
    token_report: Optional[TokenReport] = None
    service_principal: Optional[Dict[str, Any]] = None
    entra_issuers: Tuple[str, ...] = ()


@dataclass
class Diagnosis:
    """The predicted answer of Entra ID and what to do about it."""

    code: Optional[int]
    message: Optional[str]
    explanation: str
    fixes: List[str]
    matched: Optional[CredentialCheck] = None
    closest: Optional[CredentialCheck] = None

    @property
    def error(self) -> Optional[str]:
        """The OAuth ``error`` Entra ID sends with the code."""
        return ERRORS.get(self.code) if self.code else None


def _aud_text(presented: Presented) -> str:
    return ','.join(presented.audiences)


def entra_message(code: int, facts: Facts, reason: Optional[str] = None) -> str:
    """The ``error_description`` Entra ID gives for ``code`` (its documented/observed wording, without trace ids)."""
    p = facts.presented
    check = ' Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. ' + WORKLOAD_DOC
    texts = {
        90002: "Tenant '{0}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.".format(facts.tenant),
        700016: ("Application with identifier '{0}' was not found in the directory '{1}'. This can happen if the application has not been "
                 "installed by the administrator of the tenant or consented to by any user in the tenant.".format(facts.client_id, facts.tenant)),
        700222: 'AAD-issued tokens may not be used for federated identity flows.',
        70021: ("No matching federated identity record found for presented assertion. Assertion Issuer: '{0}'. Assertion Subject: '{1}'. "
                "Assertion Audience: '{2}'.".format(p.issuer, p.subject, _aud_text(p))),
        700211: "No matching federated identity record found for presented assertion issuer '{0}'.{1}".format(p.issuer, check),
        501661: 'Request to External OIDC endpoint failed.',
        700027: 'Client assertion failed signature validation.',
        700024: 'Client assertion is not within its valid time range.',
        700212: "No matching federated identity record found for presented assertion audience '{0}'.{1}".format(_aud_text(p), check),
        700213: "No matching federated identity record found for presented assertion subject '{0}'.{1}".format(p.subject, check),
        7000229: 'The client application {0} is missing service principal in the tenant {1}.'.format(facts.client_id, facts.tenant),
        7000112: "Application '{0}'({1}) is disabled.".format(facts.client_id, (facts.service_principal or {}).get('displayName') or ''),
    }
    texts[7002138] = texts[700213] + (' The subject matches with case-insensitive comparison, but not with case-sensitive comparison. '
                                      'Federated identity credential matching is case-sensitive.')
    text = 'AADSTS{0}: {1}'.format(code, texts[code])
    return text + ' ({0})'.format(reason) if reason else text


def _credential_fixes(check: CredentialCheck, facts: Facts) -> List[str]:
    """Concrete changes that make ``check``'s credential accept what is presented (or the pipeline match it)."""
    p, name, fixes = facts.presented, check.name, []
    for diff in check.differences:
        if diff.field == 'issuer':
            fixes.append("set the issuer of credential {0!r} to {1!r} exactly (the token's iss){2}, or run the job on the GitLab instance "
                         "{3!r}".format(name, p.issuer, _note(diff.note), diff.credential))
        elif diff.field == 'audience':
            fixes.append("request the credential's audience in .gitlab-ci.yml (id_tokens: <NAME>: aud: {0}), or set the audience of credential "
                         "{1!r} to {2!r}{3}".format(diff.credential, name, p.audiences[0] if p.audiences else '', _note(diff.note)))
        elif diff.field == 'subject':
            fixes.append(_subject_fix(name, diff, p))
        else:
            why = diff.note or '; '.join(diff.details)
            fixes.append("the claims matching expression of credential {0!r} does not match the token's sub {1!r} ({2}): widen it or add a "
                         "credential for this subject (see suggested_credential)".format(name, p.subject, why))
    return fixes


def _subject_fix(name: str, diff: Difference, presented: Presented) -> str:
    """The fix for an exact subject that differs, worded after what differs (case, ref, project, components)."""
    detail = '; '.join(diff.details) if diff.details else 'credential {0!r}, token {1!r}'.format(diff.credential, presented.subject)
    keys = {item.split(':', 1)[0] for item in diff.details}
    if diff.note:
        return ("set the subject of credential {0!r} to {1!r} exactly: subjects are compared case-sensitively ({2}; {3})".format(
            name, presented.subject, diff.note, detail))
    if any(item.startswith("the credential's subject is made of") for item in diff.details):
        return ("{0}: write the credential for the project's current sub claim components (suggested_credential; the gitlab option "
                "sub_claim_components of oidc_federation.azure.federated_identity_credential), or restore the project's setting".format(detail))
    if keys and keys <= {'ref', 'ref_type'}:
        return ("credential {0!r} trusts another ref ({1}): add a credential for this ref (see suggested_credential), or run the job on "
                "the ref the credential trusts".format(name, detail))
    if keys & {'project_path', 'project_id'}:
        return ("credential {0!r} trusts another project ({1}): if this project should deploy with this application, add a credential "
                "for it (see suggested_credential); otherwise use the application meant for this project".format(name, detail))
    return ("the subject of credential {0!r} differs ({1}): add a credential for {2!r} (see suggested_credential), or change the "
            "credential's subject to it".format(name, detail, presented.subject))


def _no_credential_text(facts: Facts) -> str:
    p = facts.presented
    return ("add a federated identity credential with issuer {0!r}, audience {1!r} and subject {2!r} (see suggested_credential; "
            "oidc_federation.azure.federated_identity_credential writes it)".format(p.issuer, p.audiences[0] if p.audiences else '', p.subject))


def _fic_verdict(facts: Facts, code: int, explanation: str, best: Optional[CredentialCheck], reason: Optional[str] = None) -> Diagnosis:
    fixes = _credential_fixes(best, facts) if best is not None else []
    if best is None:
        fixes.append(_no_credential_text(facts))
    return Diagnosis(code, entra_message(code, facts, reason), explanation, fixes, closest=best)


def _issuer_match_verdict(facts: Facts, best: Optional[CredentialCheck]) -> Optional[Diagnosis]:
    """No credential with the token's issuer (700211)."""
    checks, p = facts.checks, facts.presented
    if not any(c.issuer_ok for c in checks):
        explanation = ("none of the application's {0} credential(s) has the token's issuer {1!r} (issuers are compared exactly and "
                       "case-sensitively; a trailing slash counts)".format(len(checks), p.issuer))
        return _fic_verdict(facts, 700211, explanation, best)
    return None


def _after_keys_verdict(facts: Facts, best: Optional[CredentialCheck]) -> Optional[Diagnosis]:
    """Audience and subject (checked after the issuer's keys)."""
    p = facts.presented
    by_issuer = [c for c in facts.checks if c.issuer_ok]
    by_audience = [c for c in by_issuer if c.audience_ok]
    if not by_audience:
        wanted = sorted({a for c in by_issuer for a in (c.credential.get('audiences') or [])})
        explanation = ("the token's audience {0!r} is not the audience of any credential with its issuer ({1}); the job must request "
                       "exactly the credential's audience in id_tokens".format(_aud_text(p), ', '.join(repr(a) for a in wanted)))
        return _fic_verdict(facts, 700212, explanation, best)
    if any(c.subject_ok for c in by_audience):
        return None
    code = 7002138 if any(c.subject_case_only for c in by_audience) else 700213
    flexible = any(c.flexible for c in by_audience)
    explanation = ("no credential with the token's issuer and audience accepts its subject {0!r}{1}{2}".format(
        p.subject, ' (it matches one only when case is ignored; matching is case-sensitive)' if code == 7002138 else '',
        '; some tenants report a flexible credential that did not match as AADSTS7002131, which means the same' if flexible else ''))
    return _fic_verdict(facts, code, explanation, best)


def _prerequisite_verdict(facts: Facts) -> Optional[Diagnosis]:
    """Tenant, application, Entra-issued token, no credential at all."""
    p, tenant = facts.presented, facts.tenant_report
    if tenant is not None and tenant.status == 'not_found':
        return Diagnosis(90002, entra_message(90002, facts), 'the tenant {0!r} the pipeline logs in to does not exist'.format(facts.tenant),
                         ['set AZURE_TENANT_ID in the job to the directory (tenant) ID shown on the application\'s overview page'])
    if facts.application is None:
        return Diagnosis(700016, entra_message(700016, facts), 'no application {0!r} exists in the tenant'.format(facts.client_id),
                         ['set AZURE_CLIENT_ID in the job to the application (client) ID of the app registration, or create the application '
                          '(oidc_federation.azure.azure_ad_app)'])
    if tenant is not None and tenant.tenant_id and facts.app_tenant_id and tenant.tenant_id.lower() != facts.app_tenant_id.lower():
        return Diagnosis(700016, entra_message(700016, facts), 'the application lives in tenant {0}, but the pipeline logs in to tenant {1}'.format(
            facts.app_tenant_id, tenant.tenant_id), ['set AZURE_TENANT_ID in the job to {0}'.format(facts.app_tenant_id)])
    if p.issuer in facts.entra_issuers or p.issuer.startswith('https://sts.windows.net/'):
        return Diagnosis(700222, entra_message(700222, facts), 'the assertion was issued by Entra ID itself, not by GitLab',
                         ['pass the GitLab ID token (the variable named in the job\'s id_tokens), not an Azure access token'])
    if not facts.checks:
        return _fic_verdict(facts, 70021, 'the application has no federated identity credential (or the last change has not replicated yet)', None)
    return None


def _issuer_verdict(facts: Facts, best: Optional[CredentialCheck]) -> Optional[Diagnosis]:
    """The issuer's discovery document and keys (501661), then signature (700027) and lifetime (700024)."""
    report, token = facts.issuer_report, facts.token_report
    if report is not None and not report.ok:
        return Diagnosis(501661, entra_message(501661, facts, report.problem),
                         'Entra ID fetches {0} and the keys it names before it trusts a token; {1}'.format(report.discovery_url, report.problem),
                         _issuer_fixes(report), closest=best)
    if token is not None and token.signature in ('invalid', 'unknown_key', 'unsupported_alg'):
        return Diagnosis(700027, entra_message(700027, facts, token.signature_problem), token.signature_problem or '',
                         ['use an ID token minted by the issuer for this job, passed unchanged (no quotes, line breaks or truncation)'],
                         closest=best)
    if token is not None and token.lifetime_problem:
        return Diagnosis(700024, entra_message(700024, facts, token.lifetime_problem), token.lifetime_problem,
                         ['exchange the ID token while it is valid (right after the job starts, or raise the job timeout); '
                          'run the doctor with a fresh token'], closest=best)
    return None


def _issuer_fixes(report: IssuerReport) -> List[str]:
    if not report.reachable:
        return ['make {0} reachable from the internet over HTTPS with a publicly trusted certificate (Entra ID fetches it on every '
                'token exchange)'.format(report.discovery_url)]
    if report.document_issuer != report.issuer:
        return ["make GitLab's external_url produce issuer {0!r} exactly (the discovery document says {1!r}), or use the URL the "
                "document names everywhere (token iss and credential issuer)".format(report.issuer, report.document_issuer)]
    return ['publish the RS256 signing keys at the jwks_uri of the discovery document (GitLab serves them at /oauth/discovery/keys)']


def diagnose(facts: Facts) -> Diagnosis:
    """Predict Entra ID's answer from the facts read (pure)."""
    verdict = _prerequisite_verdict(facts)
    if verdict is not None:
        return verdict
    best = closest(facts.checks)
    for step in (_issuer_match_verdict, _issuer_verdict, _after_keys_verdict):
        verdict = step(facts, best)
        if verdict is not None:
            return verdict
    matched = next(c for c in facts.checks if c.issuer_ok and c.audience_ok and c.subject_ok)
    sp = facts.service_principal
    if sp is None:
        return Diagnosis(7000229, entra_message(7000229, facts), 'credential {0!r} matches, but the application has no service principal in the '
                         'tenant, so Entra ID has no identity to issue the token for'.format(matched.name),
                         ['create the service principal: oidc_federation.azure.azure_ad_app creates it, or az ad sp create --id {0}'.format(
                             facts.application.get('appId'))], matched=matched, closest=matched)
    if sp.get('accountEnabled') is False:
        return Diagnosis(7000112, entra_message(7000112, facts), 'credential {0!r} matches, but the service principal is disabled'.format(matched.name),
                         ['enable the service principal: az ad sp update --id {0} --set accountEnabled=true (or Enterprise applications > '
                          'Properties > Enabled for users to sign-in)'.format(sp.get('id'))],
                         matched=matched, closest=matched)
    return Diagnosis(None, None, 'Entra ID would issue a token: credential {0!r} matches the issuer, audience and subject'.format(matched.name),
                     [], matched=matched, closest=matched)


def suggested_credential(presented: Presented) -> dict:
    """The credential (module options) that accepts exactly what is presented."""
    return {'issuer': presented.issuer, 'audiences': presented.audiences[:1], 'subject': presented.subject}


# --------------------------------------------------------------------------------------------------------------
# Reading everything and the result
# --------------------------------------------------------------------------------------------------------------

@dataclass
class DoctorRequest:
    """The doctor's input: which application, what is presented, and what to check."""

    presented: Presented
    app_id: Optional[str] = None
    app_unique_name: Optional[str] = None
    gitlab_issuers: Tuple[str, ...] = ()
    pipeline_tenant: Optional[str] = None
    scope: Optional[Scope] = None
    check_issuer: bool = True
    now: Optional[float] = None


@dataclass
class Check:
    """One line of the checklist: ``status`` ok, fail, warn or skipped."""

    name: str
    status: str
    detail: str

    def to_result(self) -> dict:
        """The module's return shape."""
        return {'name': self.name, 'status': self.status, 'detail': self.detail}


async def _read_issuer(http: Any, issuer: str, ca_bundle: Optional[str]) -> IssuerReport:
    report = await fetch_issuer(http, issuer)
    if report.reachable and ca_bundle:
        warning = await check_public_trust(report.discovery_url)
        if warning:
            report.warnings.append(warning)
    return report


SP_FIELDS = ('id', 'appId', 'displayName', 'appOwnerOrganizationId', 'accountEnabled')


async def read_service_principal(clients: Any, app_id: str) -> Optional[dict]:
    """The service principal of ``app_id`` with ``accountEnabled`` (to tell a disabled one, AADSTS7000112), or None."""
    return await get_service_principal(clients, app_id, select=SP_FIELDS)


async def _read_app_side(clients: Any, app: Mapping[str, Any]) -> Tuple[list, Optional[dict]]:
    credentials, sp = await gather_limited([lambda: list_credentials(clients, app['id']), lambda: read_service_principal(clients, app['appId'])])
    return credentials, sp


def _pipeline_tenant(request: DoctorRequest, clients: Any) -> Tuple[str, bool]:
    """The tenant the pipeline logs in to, and whether it must be looked up (it is not the doctor's own)."""
    own = getattr(clients.settings, 'tenant_id', None) or ''
    if not request.pipeline_tenant or request.pipeline_tenant.lower() == own.lower():
        return own or "the doctor's tenant", False
    return request.pipeline_tenant, True


async def gather_facts(clients: Any, request: DoctorRequest) -> Facts:
    """Read the application, its credentials and service principal, the issuer and the tenant (concurrently)."""
    presented = request.presented
    tenant, lookup_tenant = _pipeline_tenant(request, clients)
    http = _http_client(clients.settings.ca_bundle)
    try:
        app_task = resolve_application(clients, app_id=request.app_id, unique_name=request.app_unique_name)
        issuer_task = _read_issuer(http, presented.issuer, clients.settings.ca_bundle) if request.check_issuer and presented.issuer else None
        tenant_task = check_tenant(http, clients.settings.cloud.authority_host, tenant) if lookup_tenant else None
        results = await gather_limited([t for t in (app_task, issuer_task, tenant_task) if t is not None], 3)
    finally:
        await http.aclose()
    app = results.pop(0)
    issuer_report = results.pop(0) if issuer_task is not None else None
    tenant_report = results.pop(0) if tenant_task is not None else None
    facts = Facts(presented, request.app_id or (app or {}).get('appId') or request.app_unique_name or '', tenant, app, tenant_report,
                  issuer_report=issuer_report, entra_issuers=(clients.settings.cloud.authority_host.rstrip('/') + '/' + tenant + '/v2.0',))
    if app is None:
        return facts
    facts.client_id = app.get('appId') or facts.client_id
    credentials, facts.service_principal = await _read_app_side(clients, app)
    facts.checks = [check_credential(c, presented, request.gitlab_issuers) for c in credentials]
    if tenant_report is not None and tenant_report.status == 'found':
        facts.app_tenant_id = await tenant_id_of(clients, facts.service_principal)
    if presented.jwt is not None:
        keys = issuer_report.keys if issuer_report is not None and issuer_report.ok else None
        facts.token_report = check_token(presented.jwt, keys, request.now if request.now is not None else time.time())
    return facts


def checklist(facts: Facts, diagnosis: Diagnosis) -> List[Check]:
    """Every check with its outcome, in Entra ID's order."""
    out = [_tenant_check(facts), _app_check(facts)]
    if facts.application is not None:
        out.append(Check('credentials', 'ok' if facts.checks else 'fail', '{0} federated identity credential(s)'.format(len(facts.checks))))
        out.append(_match_check('issuer', [c.issuer_ok for c in facts.checks], facts.presented.issuer))
    out.append(_issuer_check(facts.issuer_report))
    out.extend(_token_checks(facts.token_report))
    if facts.application is not None:
        out.append(_match_check('audience', [c.issuer_ok and c.audience_ok for c in facts.checks], ','.join(facts.presented.audiences)))
        out.append(_match_check('subject', [c.issuer_ok and c.audience_ok and c.subject_ok for c in facts.checks], facts.presented.subject))
        sp = facts.service_principal
        out.append(Check('service_principal', 'fail' if sp is None or sp.get('accountEnabled') is False else 'ok',
                         'none' if sp is None else 'object id {0}{1}'.format(sp.get('id'), ' (disabled)' if sp.get('accountEnabled') is False else '')))
    return out


def _tenant_check(facts: Facts) -> Check:
    report = facts.tenant_report
    if report is None:
        return Check('tenant', 'skipped', "the pipeline's tenant is the doctor's own ({0})".format(facts.tenant))
    status = {'found': 'ok', 'not_found': 'fail'}.get(report.status, 'warn')
    return Check('tenant', status, report.detail or 'tenant {0} ({1})'.format(report.tenant, report.tenant_id or report.status))


def _app_check(facts: Facts) -> Check:
    app = facts.application
    if app is None:
        return Check('application', 'fail', 'no application {0!r}'.format(facts.client_id))
    return Check('application', 'ok', '{0} ({1})'.format(app.get('appId'), app.get('uniqueName') or app.get('displayName')))


def _match_check(name: str, oks: Sequence[bool], value: str) -> Check:
    count = sum(1 for ok in oks if ok)
    return Check(name, 'ok' if count else 'fail', '{0} credential(s) accept {1} {2!r}'.format(count, name, value))


def _issuer_check(report: Optional[IssuerReport]) -> Check:
    if report is None:
        return Check('issuer_discovery', 'skipped', 'not checked (check_issuer is false)')
    if not report.ok:
        return Check('issuer_discovery', 'fail', report.problem or '')
    detail = '{0} usable RS256 key(s) at {1}'.format(len(report.keys), report.jwks_uri)
    return Check('issuer_discovery', 'warn' if report.warnings else 'ok', '; '.join([detail] + report.warnings))


def _token_checks(report: Optional[TokenReport]) -> List[Check]:
    if report is None:
        return []
    signature = {'valid': 'ok', 'not_checked': 'skipped'}.get(report.signature, 'fail')
    return [Check('signature', signature, report.signature_problem or report.signature),
            Check('lifetime', 'fail' if report.lifetime_problem else 'ok', report.lifetime_problem or 'valid until {0}'.format(report.expires_at))]


def application_summary(app: Optional[Mapping[str, Any]]) -> Optional[dict]:
    """The application in the module's return shape."""
    if app is None:
        return None
    return {'app_id': app.get('appId'), 'object_id': app.get('id'), 'unique_name': app.get('uniqueName'),
            'display_name': app.get('displayName')}


def doctor_result(facts: Facts, diagnosis: Diagnosis, role_assignments: Optional[List[dict]]) -> dict:
    """Everything the module returns (never the token)."""
    sp = facts.service_principal
    best = diagnosis.closest
    fic_codes = (70021, 700211, 700212, 7002138, 700213)
    return {
        'would_succeed': diagnosis.code is None,
        'aadsts': diagnosis.code,
        'error': diagnosis.error,
        'entra_message': diagnosis.message,
        'explanation': diagnosis.explanation,
        'fixes': diagnosis.fixes,
        'matched_credential': diagnosis.matched.to_result() if diagnosis.matched else None,
        'closest_credential': best.to_result() if best else None,
        'differences': [d.to_result() for d in best.differences] if best and not diagnosis.matched else [],
        'suggested_credential': suggested_credential(facts.presented) if diagnosis.code in fic_codes else None,
        'presented': {'source': facts.presented.source, 'claims': facts.presented.shown_claims()},
        'application': application_summary(facts.application),
        'service_principal': None if sp is None else {'id': sp.get('id'), 'display_name': sp.get('displayName'),
                                                      'enabled': sp.get('accountEnabled', True) is not False},
        'credentials': [c.to_result() for c in sorted(facts.checks, key=lambda c: c.name)],
        'checks': [c.to_result() for c in checklist(facts, diagnosis)],
        'issuer_metadata': facts.issuer_report.to_result() if facts.issuer_report else None,
        'token': facts.token_report.to_result() if facts.token_report else None,
        'role_assignments': role_assignments,
    }


async def _roles_at(clients: Any, scope: Scope, facts: Facts, diagnosis: Diagnosis) -> Tuple[Optional[List[dict]], Check]:
    """The service principal's role assignments at ``scope`` and the checklist line; a read failure is reported, not raised."""
    sp = facts.service_principal
    if not sp or not sp.get('id'):
        return [], Check('role_assignments', 'skipped', 'no service principal, so no role at {0}'.format(scope.id))
    try:
        roles = await role_assignments_at_scope(clients, scope, sp['id'])
    except AzureApiError as err:
        return None, Check('role_assignments', 'warn', 'could not list the role assignments at {0}: {1}'.format(scope.id, err))
    if roles:
        return roles, Check('role_assignments', 'ok', ', '.join('{0} at {1}'.format(r['role'], r['scope']) for r in roles))
    if diagnosis.code is None:
        diagnosis.fixes.append('the login would succeed, but the service principal holds no role at {0}: every request there will be '
                               'refused (AuthorizationFailed); assign one with oidc_federation.azure.role_assignment'.format(scope.id))
    return roles, Check('role_assignments', 'warn', 'no role assignment applies at {0}'.format(scope.id))


async def run_doctor(clients: Any, request: DoctorRequest) -> dict:
    """Read, diagnose, and list the role assignments at ``request.scope`` (when given)."""
    facts = await gather_facts(clients, request)
    diagnosis = diagnose(facts)
    roles, role_check = None, None
    if request.scope is not None:
        roles, role_check = await _roles_at(clients, request.scope, facts, diagnosis)
    result = doctor_result(facts, diagnosis, roles)
    if role_check is not None:
        result['checks'].append(role_check.to_result())
    return result
