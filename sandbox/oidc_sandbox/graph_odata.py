"""OData plumbing for the Graph emulation: entity schemas, request-body type checks and query options.

Kept apart from graph.py (which holds the directory's business rules) so that both stay readable.  Messages follow
what Microsoft Graph / ODataLib answer: malformed OData is ``400 BadRequest``, OData that the directory does not
support is ``400 Request_UnsupportedQuery``, directory validation is ``400 Request_BadRequest``.
"""
from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import json
import re
import uuid
from typing import Any, Callable, Iterable, Mapping

from .errors import ServiceError, graph_error

VERSIONS = ("v1.0", "beta")
MAX_PAGE = 999
DEFAULT_PAGE = 100
# Operators Graph only serves as "advanced queries" (ConsistencyLevel: eventual plus $count=true).
ADVANCED_OPS = frozenset({"ne", "not", "endswith", "eq null"})
_OPERATOR_NAMES = {"endswith": "endsWith", "startswith": "startsWith", "eq null": "eq"}
ADVANCED_QUERIES_DOC = "https://aka.ms/graph-docs/advanced-queries"


# --------------------------------------------------------------------------- schema


_UNSET = object()


@dataclasses.dataclass(frozen=True)
class Field:
    """One declared property of an entity type.

    ``select_only``: Graph returns it only when ``$select`` names it ("Returned only on $select").  ``stream``: an
    ``Edm.Stream`` property (never serialised inline).  ``default``: the value an object carries while the property
    is unset (``None``, or ``[]`` for a collection, unless the documentation shows another value).
    """

    name: str
    edm: str = "Edm.String"
    nullable: bool = True
    max_len: int | None = None
    read_only: bool = False
    filters: frozenset[str] = frozenset()
    versions: tuple[str, ...] = VERSIONS
    members: tuple["Field", ...] | None = None  # declared properties of a complex type checked member by member
    select_only: bool = False
    stream: bool = False
    default: Any = _UNSET
    search: bool = False  # tokenized $search (displayName, description); other string properties: startswith
    orderby: bool = False  # $orderby (advanced queries only)

    @property
    def is_collection(self) -> bool:
        return self.edm.startswith("Collection(")

    @property
    def item_edm(self) -> str:
        return self.edm[len("Collection("):-1] if self.is_collection else self.edm

    @property
    def is_primitive(self) -> bool:
        return self.item_edm.startswith("Edm.")

    def unset_value(self) -> Any:
        """The value Graph shows while the property is unset (a fresh copy)."""
        if self.default is not _UNSET:
            return copy.deepcopy(self.default)
        return [] if self.is_collection else None


@dataclasses.dataclass(frozen=True)
class Resource:
    """An entity type: its OData name, the label Graph uses in messages, and its declared properties."""

    entity: str
    label: str
    fields: tuple[Field, ...]

    @property
    def type_name(self) -> str:
        return f"microsoft.graph.{self.entity}"

    def field(self, name: str, version: str) -> Field | None:
        """Case-insensitive lookup of a property visible in ``version``."""
        lowered = name.lower()
        for fld in self.fields:
            if fld.name.lower() == lowered and version in fld.versions:
                return fld
        return None

    def names(self, version: str) -> list[str]:
        return [f.name for f in self.fields if version in f.versions]

    def default_names(self, version: str) -> list[str]:
        """The properties a response carries without ``$select`` (documented order)."""
        return [f.name for f in self.fields if version in f.versions and not f.select_only and not f.stream]

    def render(self, obj: Mapping[str, Any], version: str, select: Iterable[str] | None = None) -> dict[str, Any]:
        """``obj`` as Graph returns it in ``version``: every default property (or the ``select``ed ones), the stored
        value or the unset value; stream properties are never inlined; values are copies."""
        names = self.default_names(version) if select is None else list(select)
        out: dict[str, Any] = {}
        for name in names:
            fld = self.field(name, version)
            if fld is None or fld.stream:
                continue
            out[fld.name] = copy.deepcopy(obj[fld.name]) if fld.name in obj else fld.unset_value()
        return out


def _f(name: str, edm: str = "Edm.String", **kw: Any) -> Field:
    if "filters" in kw:
        kw["filters"] = frozenset(kw["filters"])
    return Field(name, edm, **kw)


_STRING_FILTERS = ("eq", "ne", "not", "in", "startswith", "endswith")
_KEY_FILTERS = ("eq", "ne", "not", "in")
_LIST_FILTERS = ("any", "not")
_BETA = ("beta",)
_V1 = ("v1.0",)
_UNSET_PUBLISHER = {"displayName": None, "verifiedPublisherId": None, "addedDateTime": None}
_INFO = {"logoUrl": None, "marketingUrl": None, "privacyStatementUrl": None, "supportUrl": None,
         "termsOfServiceUrl": None}

# Property lists: Microsoft Graph's published metadata (msgraph-metadata, schemas/type-mappings and the v1.0 CSDL)
# and the resource pages (learn.microsoft.com/graph/api/resources/application, .../serviceprincipal; "Returned
# only on $select" notes).  Defaults: the create/upsert examples (api, info, parentalControlSettings, web, ...).
APPLICATION = Resource("application", "Application", (
    _f("id", read_only=True, nullable=False, filters=_KEY_FILTERS),
    _f("deletedDateTime", "Edm.DateTimeOffset", read_only=True, orderby=True),
    _f("addIns", "Collection(microsoft.graph.addIn)", nullable=False),
    _f("api", "microsoft.graph.apiApplication",
       default={"acceptMappedClaims": None, "knownClientApplications": [], "requestedAccessTokenVersion": 2,
                "oauth2PermissionScopes": [], "preAuthorizedApplications": []}),
    _f("appId", read_only=True, filters=_KEY_FILTERS),
    _f("applicationTemplateId", read_only=True, filters=_KEY_FILTERS),
    _f("appRoles", "Collection(microsoft.graph.appRole)", nullable=False),
    _f("authenticationBehaviors", "microsoft.graph.authenticationBehaviors", select_only=True),
    _f("certification", "microsoft.graph.certification", read_only=True),
    _f("createdByAppId", read_only=True),
    _f("createdDateTime", "Edm.DateTimeOffset", read_only=True, orderby=True),
    _f("defaultRedirectUri"),
    _f("description", max_len=1024, filters=("eq", "ne", "not", "startswith"), search=True),
    _f("disabledByMicrosoftStatus", read_only=True),
    _f("displayName", max_len=256, filters=_STRING_FILTERS, search=True, orderby=True),
    _f("groupMembershipClaims"),
    _f("identifierUris", "Collection(Edm.String)", nullable=False, filters=_LIST_FILTERS),
    _f("info", "microsoft.graph.informationalUrl", default=_INFO),
    _f("isDeviceOnlyAuthSupported", "Edm.Boolean"),
    _f("isDisabled", "Edm.Boolean"),
    _f("isFallbackPublicClient", "Edm.Boolean"),
    _f("keyCredentials", "Collection(microsoft.graph.keyCredential)", nullable=False),
    _f("logo", "Edm.Stream", nullable=False, stream=True),
    _f("managerApplications", "Collection(Edm.Guid)", nullable=False, select_only=True),
    _f("nativeAuthenticationApisEnabled", default="none"),
    _f("notes"),
    _f("oauth2RequirePostResponse", "Edm.Boolean", nullable=False, default=False),
    _f("onPremisesPublishing", "microsoft.graph.onPremisesPublishing", versions=_BETA, select_only=True),
    _f("optionalClaims", "microsoft.graph.optionalClaims"),
    _f("parentalControlSettings", "microsoft.graph.parentalControlSettings",
       default={"countriesBlockedForMinors": [], "legalAgeGroupRule": "Allow"}),
    _f("passwordCredentials", "Collection(microsoft.graph.passwordCredential)", nullable=False),
    _f("publicClient", "microsoft.graph.publicClientApplication", default={"redirectUris": []}),
    _f("publisherDomain", read_only=True, filters=("eq", "ne", "not", "in", "startswith")),
    _f("requestSignatureVerification", "microsoft.graph.requestSignatureVerification"),
    _f("requiredResourceAccess", "Collection(microsoft.graph.requiredResourceAccess)", nullable=False),
    _f("samlMetadataUrl"),
    _f("serviceManagementReference", filters=("eq", "ne", "not", "in", "startswith")),
    _f("servicePrincipalLockConfiguration", "microsoft.graph.servicePrincipalLockConfiguration"),
    _f("signInAudience", filters=("eq", "ne", "not", "in")),
    _f("signInAudienceRestrictions", "microsoft.graph.signInAudienceRestrictionsBase", nullable=False,
       versions=_BETA, default={"@odata.type": "#microsoft.graph.unrestrictedAudience", "kind": "unrestricted"}),
    _f("spa", "microsoft.graph.spaApplication", default={"redirectUris": []}),
    _f("tags", "Collection(Edm.String)", nullable=False, filters=_LIST_FILTERS),
    _f("tokenEncryptionKeyId", "Edm.Guid"),
    _f("uniqueName", filters=("eq", "ne", "not", "in", "startswith")),
    _f("verifiedPublisher", "microsoft.graph.verifiedPublisher", default=_UNSET_PUBLISHER),
    _f("web", "microsoft.graph.webApplication",
       default={"homePageUrl": None, "logoutUrl": None, "redirectUris": [], "redirectUriSettings": [],
                "implicitGrantSettings": {"enableAccessTokenIssuance": False, "enableIdTokenIssuance": False}}),
    _f("windows", "microsoft.graph.windowsApplication", versions=_BETA),
))

SERVICE_PRINCIPAL = Resource("servicePrincipal", "ServicePrincipal", (
    _f("id", read_only=True, nullable=False, filters=_KEY_FILTERS),
    _f("deletedDateTime", "Edm.DateTimeOffset", read_only=True, orderby=True),
    _f("accountEnabled", "Edm.Boolean", filters=("eq", "ne", "not")),
    _f("addIns", "Collection(microsoft.graph.addIn)", nullable=False),
    _f("alternativeNames", "Collection(Edm.String)", nullable=False, filters=_LIST_FILTERS),
    _f("appDescription", read_only=True),
    _f("appDisplayName", read_only=True, filters=("eq", "ne", "not", "startswith")),
    _f("appId", filters=_KEY_FILTERS),
    _f("applicationTemplateId", read_only=True, filters=_KEY_FILTERS),
    _f("appOwnerOrganizationId", "Edm.Guid", read_only=True, filters=_KEY_FILTERS),
    _f("appRoleAssignmentRequired", "Edm.Boolean", nullable=False, filters=("eq", "ne", "not"), default=False),
    _f("appRoles", "Collection(microsoft.graph.appRole)", nullable=False),
    _f("createdByAppId", read_only=True),
    _f("customSecurityAttributes", "microsoft.graph.customSecurityAttributeValue", select_only=True),
    _f("description", max_len=1024, filters=("eq", "ne", "not", "startswith"), search=True),
    _f("disabledByMicrosoftStatus", read_only=True),
    _f("displayName", max_len=256, filters=_STRING_FILTERS, search=True, orderby=True),
    _f("errorUrl", versions=_BETA),
    _f("homepage", filters=("eq", "ne", "not", "startswith")),
    _f("info", "microsoft.graph.informationalUrl", default=_INFO),
    _f("isDisabled", "Edm.Boolean"),
    _f("keyCredentials", "Collection(microsoft.graph.keyCredential)", nullable=False),
    _f("loginUrl"),
    _f("logoutUrl"),
    _f("notes"),
    _f("notificationEmailAddresses", "Collection(Edm.String)", nullable=False),
    _f("oauth2PermissionScopes", "Collection(microsoft.graph.permissionScope)", nullable=False, versions=_V1),
    _f("passwordCredentials", "Collection(microsoft.graph.passwordCredential)", nullable=False),
    _f("passwordSingleSignOnSettings", "microsoft.graph.passwordSingleSignOnSettings", versions=_BETA,
       select_only=True),
    _f("preferredSingleSignOnMode"),
    _f("preferredTokenSigningKeyEndDateTime", "Edm.DateTimeOffset", versions=_BETA),
    _f("preferredTokenSigningKeyThumbprint"),
    _f("publishedPermissionScopes", "Collection(microsoft.graph.permissionScope)", nullable=False, versions=_BETA),
    _f("publisherName", versions=_BETA),
    _f("replyUrls", "Collection(Edm.String)", nullable=False),
    _f("resourceSpecificApplicationPermissions",
       "Collection(microsoft.graph.resourceSpecificPermission)", read_only=True, versions=_V1),
    _f("samlMetadataUrl", versions=_BETA),
    _f("samlSingleSignOnSettings", "microsoft.graph.samlSingleSignOnSettings"),
    _f("servicePrincipalNames", "Collection(Edm.String)", nullable=False, filters=_LIST_FILTERS),
    _f("servicePrincipalType", filters=("eq", "ne", "not", "in")),
    _f("signInAudience", read_only=True, filters=("eq", "ne", "not", "in")),
    _f("tags", "Collection(Edm.String)", nullable=False, filters=_LIST_FILTERS),
    _f("tokenEncryptionKeyId", "Edm.Guid"),
    _f("verifiedPublisher", "microsoft.graph.verifiedPublisher", default=_UNSET_PUBLISHER),
))

FEDERATED_IDENTITY_EXPRESSION = (_f("languageVersion", "Edm.Int32", nullable=False), _f("value", nullable=False))

FEDERATED_IDENTITY_CREDENTIAL = Resource("federatedIdentityCredential", "FederatedIdentityCredential", (
    _f("id", read_only=True, nullable=False),
    _f("audiences", "Collection(Edm.String)", nullable=False),
    _f("claimsMatchingExpression", "microsoft.graph.federatedIdentityExpression", versions=("beta",),
       members=FEDERATED_IDENTITY_EXPRESSION),
    _f("description"),
    _f("issuer", nullable=False),
    _f("name", nullable=False, filters=("eq",)),
    _f("subject", filters=("eq",)),
))


APP_ROLE_ASSIGNMENT = Resource("appRoleAssignment", "AppRoleAssignment", (
    _f("id", read_only=True, nullable=False),
    _f("deletedDateTime", "Edm.DateTimeOffset", read_only=True),
    _f("appRoleId", "Edm.Guid", nullable=False, filters=("eq",)),
    _f("createdDateTime", "Edm.DateTimeOffset", read_only=True),
    _f("principalDisplayName", read_only=True),
    _f("principalId", "Edm.Guid", filters=("eq",)),
    _f("principalType", read_only=True),
    _f("resourceDisplayName"),
    _f("resourceId", "Edm.Guid", filters=("eq",)),
))


# --------------------------------------------------------------------------- helpers for errors and ids


def bad_request(message: str) -> ServiceError:
    """Malformed OData (``400 BadRequest``)."""
    return graph_error(400, "BadRequest", message)


def directory_error(message: str, details: list[dict[str, Any]] | None = None) -> ServiceError:
    """Directory validation failure (``400 Request_BadRequest``)."""
    return graph_error(400, "Request_BadRequest", message, details)


def unsupported(message: str) -> ServiceError:
    return graph_error(400, "Request_UnsupportedQuery", message)


def advanced_required(op: str) -> ServiceError:
    """An operator served only in advanced queries, asked for without ``ConsistencyLevel: eventual`` and
    ``$count=true`` (aad-advanced-queries, "Error handling")."""
    return unsupported(f"Operator '{_OPERATOR_NAMES.get(op, op)}' is not supported because the required parameters "
                       f"might be missing. Try adding $count=true query parameter and ConsistencyLevel:eventual "
                       f"header. Refer to {ADVANCED_QUERIES_DOC} for more information")


def count_not_supported() -> ServiceError:
    """``/$count`` without ``ConsistencyLevel: eventual`` (documented response)."""
    return directory_error("$count is not currently supported.")


def is_guid(value: Any) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def literal_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------- request-body type checks


def _node_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "StartObject"
    if isinstance(value, list):
        return "StartArray"
    return "PrimitiveValue"


def _unexpected_node(value: Any, expected: str) -> ServiceError:
    return bad_request(f"An unexpected '{_node_kind(value)}' node was found when reading from the JSON reader. "
                       f"A '{expected}' node was expected.")


def _null_not_allowed(name: str | None, edm: str) -> ServiceError:
    prefix = f"A null value was found for the property named '{name}', which has" if name else \
        "A null value was found with"
    return bad_request(f"{prefix} the expected type '{edm}[Nullable=False]'. The expected type "
                       f"'{edm}[Nullable=False]' does not allow null values.")


def _check_primitive(value: Any, edm: str) -> None:
    if isinstance(value, (dict, list)):
        raise _unexpected_node(value, "PrimitiveValue")
    ok = {
        "Edm.String": isinstance(value, str),
        "Edm.Boolean": isinstance(value, bool),
        "Edm.Int32": isinstance(value, int) and not isinstance(value, bool) and -2 ** 31 <= value < 2 ** 31,
        "Edm.Guid": is_guid(value),
        "Edm.DateTimeOffset": isinstance(value, str),
    }.get(edm, True)
    if not ok:
        raise bad_request(f"Cannot convert the literal '{literal_text(value)}' to the expected type '{edm}'.")


def check_value(fld: Field, value: Any) -> None:
    """ODataLib-style type check of one property value (``400 BadRequest`` on a mismatch)."""
    if value is None:
        if not fld.nullable:
            raise _null_not_allowed(fld.name, fld.edm)
        return
    if fld.is_collection:
        if not isinstance(value, list):
            raise _unexpected_node(value, "StartArray")
        for item in value:
            if item is None:
                raise _null_not_allowed(None, fld.item_edm)
            _check_item(fld, item)
        return
    _check_item(fld, value)


def _check_item(fld: Field, value: Any) -> None:
    if fld.is_primitive:
        _check_primitive(value, fld.item_edm)
    elif not isinstance(value, dict):
        raise _unexpected_node(value, "StartObject")
    elif fld.members is not None:
        _check_members(fld, value)


def _check_members(fld: Field, value: dict[str, Any]) -> None:
    """The members of a complex value whose type declares them (ODataLib reads them while deserialising)."""
    declared = {member.name.lower(): member for member in fld.members or ()}
    for key, item in value.items():
        if key.startswith("@"):
            continue
        member = declared.get(key.lower())
        if member is None:
            raise bad_request(f"The property '{key}' does not exist on type '{fld.item_edm}'. Make sure to only use "
                              f"property names that are defined by the type.")
        check_value(member, item)


def read_body(resource: Resource, body: Any, version: str, *, allowed_read_only: Iterable[str] = ()) -> dict[str, Any]:
    """Validate a create/update payload against ``resource``; return it with canonical property names.

    Unknown properties are refused the way the directory does (``Request_BadRequest`` "Property 'x' does not exist as
    a declared property or extension property."); ``@odata.type`` must name the resource's type; other instance
    annotations are ignored.  Lengths are checked too (``Invalid value specified for property ...``).
    """
    if not isinstance(body, dict):
        raise bad_request("Unable to read JSON request payload. Please ensure Content-Type header is set and payload "
                          "is of valid JSON format.")
    allowed_ro = {name.lower() for name in allowed_read_only}
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key.startswith("@"):
            _check_annotation(resource, key, value)
            continue
        fld = resource.field(key, version)
        if fld is None:
            raise directory_error(f"Property '{key}' does not exist as a declared property or extension property.")
        if fld.read_only and fld.name.lower() not in allowed_ro:
            raise directory_error(f"Property '{fld.name}' is read-only and cannot be set.")
        check_value(fld, value)
        if fld.max_len is not None and isinstance(value, str) and len(value) > fld.max_len:
            raise invalid_value(resource, fld.name)
        out[fld.name] = value
    return out


def invalid_value(resource: Resource, prop: str) -> ServiceError:
    return directory_error(f"Invalid value specified for property '{prop}' of resource '{resource.label}'.")


def _check_annotation(resource: Resource, key: str, value: Any) -> None:
    if key.lower() != "@odata.type":
        return
    wanted = resource.type_name.lower()
    if not isinstance(value, str) or value.lstrip("#").lower() != wanted:
        raise bad_request(f"A type named '{literal_text(value).lstrip('#')}' could not be resolved by the model. "
                          f"When a model is available, each type name must resolve to a valid type.")


# --------------------------------------------------------------------------- $filter


@dataclasses.dataclass(frozen=True)
class Token:
    kind: str   # "str", "num", "name", "punct", "end"
    value: Any
    pos: int


_TOKEN_RE = re.compile(r"\s+"
                       r"|(?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})"
                       r"(?![0-9A-Za-z_-])"
                       r"|(?P<num>-?\d+(\.\d+)?)(?![A-Za-z_])"
                       r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*)"
                       r"|(?P<punct>[(),:/])")


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos] == "'":
            start, pos, chars = pos, pos + 1, []
            while True:
                end = text.find("'", pos)
                if end < 0:
                    raise bad_request(f"Invalid filter clause: There is an unterminated string literal at position "
                                      f"{start} in '{text}'.")
                chars.append(text[pos:end])
                if text.startswith("''", end):
                    chars.append("'")
                    pos = end + 2
                    continue
                pos = end + 1
                break
            out.append(Token("str", "".join(chars), start))
            continue
        match = _TOKEN_RE.match(text, pos)
        if not match:
            raise bad_request(f"Invalid filter clause: Syntax error: character '{text[pos]}' is not valid at position "
                              f"{pos} in '{text}'.")
        for kind in ("guid", "num", "name", "punct"):
            if match.group(kind) is not None:
                value: Any = match.group(kind)
                if kind == "num":
                    value = float(value) if "." in value else int(value)
                out.append(Token(kind, value, pos))
        pos = match.end()
    out.append(Token("end", None, len(text)))
    return out


# AST nodes: ("or"|"and", a, b), ("not", e), ("cmp", op, path, literal, pos), ("in", path, [literals], pos),
# ("func", name, path, literal, pos), ("any"|"all", path, var, body, pos).  A path is a tuple of names.
Node = tuple


_COMPARISON_OPS = ("eq", "ne", "gt", "ge", "lt", "le")
_FUNCTIONS = ("startswith", "endswith", "contains")
_KEYWORD_LITERALS = {"true": True, "false": False, "null": None}


MAX_FILTER_DEPTH = 100


class _FilterParser:
    def __init__(self, text: str, type_name: str):
        self.text = text
        self.type_name = type_name
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0
        self.predicates = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def syntax_error(self) -> ServiceError:
        return bad_request(f"Invalid filter clause: Syntax error at position {self.tok.pos} in '{self.text}'.")

    def word(self, *words: str) -> str | None:
        if self.tok.kind == "name" and self.tok.value.lower() in words:
            value = self.tok.value.lower()
            self.i += 1
            return value
        return None

    def punct(self, char: str) -> bool:
        if self.tok.kind == "punct" and self.tok.value == char:
            self.i += 1
            return True
        return False

    def expect(self, char: str) -> None:
        if not self.punct(char):
            raise self.syntax_error()

    def parse(self) -> Node:
        node = self.or_expr()
        if self.tok.kind != "end":
            raise self.syntax_error()
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.word("or"):
            node = ("or", node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.unary()
        while self.word("and"):
            node = ("and", node, self.unary())
        return node

    def unary(self) -> Node:
        self.depth += 1
        if self.depth > MAX_FILTER_DEPTH:
            raise bad_request("Invalid filter clause: The recursion limit has been exceeded.")
        try:
            if self.word("not"):
                return ("not", self.unary())
            if self.punct("("):
                node = self.or_expr()
                self.expect(")")
                return node
            return self.predicate()
        finally:
            self.depth -= 1

    def predicate(self) -> Node:
        self.predicates += 1
        if self.predicates > MAX_FILTER_DEPTH:  # the AST is left-deep: bound its size like its nesting
            raise bad_request("Invalid filter clause: The recursion limit has been exceeded.")
        pos = self.tok.pos
        if self.tok.kind == "name" and self.tok.value.lower() in _FUNCTIONS \
                and self.toks[self.i + 1].kind == "punct" and self.toks[self.i + 1].value == "(":
            name = self.word(*_FUNCTIONS)
            self.expect("(")
            path = self.path()
            self.expect(",")
            value = self.literal()
            self.expect(")")
            return ("func", name, path, value, pos)
        path = self.path()
        if self.punct("/"):
            kind = self.word("any", "all")
            if kind is None:
                raise self.syntax_error()
            self.expect("(")
            if self.tok.kind != "name":
                raise self.syntax_error()
            var = self.tok.value
            self.i += 1
            self.expect(":")
            body = self.or_expr()
            self.expect(")")
            return (kind, path, var, body, pos)
        if self.word("in"):
            self.expect("(")
            values = [self.literal()]
            while self.punct(","):
                values.append(self.literal())
            self.expect(")")
            return ("in", path, values, pos)
        op = self.word(*_COMPARISON_OPS)
        if op is None:
            raise self.syntax_error()
        return ("cmp", op, path, self.literal(), pos)

    def path(self) -> tuple[str, ...]:
        if self.tok.kind != "name" or self.tok.value.lower() in _KEYWORD_LITERALS:
            raise self.syntax_error()
        parts = [self.tok.value]
        self.i += 1
        # a/b navigation (but not a/any(...), which the caller handles)
        while self.tok.kind == "punct" and self.tok.value == "/" and self.toks[self.i + 1].kind == "name" \
                and self.toks[self.i + 1].value.lower() not in ("any", "all"):
            self.i += 1
            parts.append(self.tok.value)
            self.i += 1
        return tuple(parts)

    def literal(self) -> Any:
        tok = self.tok
        if tok.kind in ("str", "num"):
            self.i += 1
            return tok.value
        if tok.kind == "guid":
            self.i += 1
            return GuidLiteral(tok.value)
        if tok.kind == "name" and tok.value.lower() in _KEYWORD_LITERALS:
            self.i += 1
            return _KEYWORD_LITERALS[tok.value.lower()]
        if tok.kind == "name":
            raise bad_request(f"Invalid filter clause: Could not find a property named '{tok.value}' on type "
                              f"'{self.type_name}'.")
        raise self.syntax_error()


class GuidLiteral(str):
    """An unquoted GUID literal in ``$filter`` (compares like the string form)."""


def _edm_of_literal(value: Any) -> str:
    if isinstance(value, GuidLiteral):
        return "Edm.Guid"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "Edm.Boolean"
    if isinstance(value, int):
        return "Edm.Int32"
    if isinstance(value, float):
        return "Edm.Double"
    return "Edm.String"


_OP_KIND = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual", "lt": "LessThan",
            "le": "LessThanOrEqual"}


class Filter:
    """A parsed, validated ``$filter`` bound to a resource; ``matches(obj)`` evaluates it (case-insensitively)."""

    def __init__(self, text: str, resource: Resource, version: str, advanced: bool):
        self.text = text
        self.resource = resource
        self.version = version
        self.advanced = advanced
        self.node = _FilterParser(text, resource.type_name).parse()
        self._validate(self.node, None)

    # ---- validation
    def _field(self, path: tuple[str, ...], var: str | None) -> Field | None:
        """The property a path names; None for the lambda variable."""
        if var is not None and len(path) == 1 and path[0] == var:
            return None
        if len(path) != 1:
            raise unsupported(f"Unsupported or invalid query filter clause specified for property "
                              f"'{'/'.join(path)}' of resource '{self.resource.label}'.")
        fld = self.resource.field(path[0], self.version)
        if fld is None:
            raise bad_request(f"Invalid filter clause: Could not find a property named '{path[0]}' on type "
                              f"'{self.resource.type_name}'.")
        return fld

    def _allow(self, fld: Field, op: str) -> None:
        if op not in fld.filters:
            raise unsupported(f"Unsupported or invalid query filter clause specified for property '{fld.name}' of "
                              f"resource '{self.resource.label}'.")
        self._advanced(op)

    def _advanced(self, op: str) -> None:
        if op in ADVANCED_OPS and not self.advanced:
            raise advanced_required(op)

    def _typecheck(self, fld: Field | None, op: str, value: Any) -> None:
        expected = "Edm.String" if fld is None else fld.item_edm
        got = _edm_of_literal(value)
        if expected in ("Edm.Guid", "Edm.DateTimeOffset") and got == "Edm.String":
            got = expected  # the directory also accepts the quoted form
        if got == "null" and op in ("eq", "ne"):
            return
        if got != expected:
            raise bad_request(f"Invalid filter clause: A binary operator with incompatible types was detected. Found "
                              f"operand types '{expected}' and '{got}' for operator kind '{_OP_KIND.get(op, op)}'.")

    def _validate(self, node: Node, var: str | None) -> None:
        kind = node[0]
        if kind in ("and", "or"):
            self._validate(node[1], var)
            self._validate(node[2], var)
        elif kind == "not":
            self._advanced("not")
            self._validate(node[1], var)
        elif kind in ("any", "all"):
            self._validate_lambda(node, var)
        else:
            self._validate_predicate(node, var)

    def _validate_lambda(self, node: Node, outer_var: str | None) -> None:
        _, path, var, body, _ = node
        if outer_var is not None:
            raise unsupported("Unsupported Query.")
        fld = self._field(path, None)
        assert fld is not None
        if not fld.is_collection or not fld.is_primitive:
            raise bad_request(f"Invalid filter clause: The Any/All query expression can only be applied to a "
                              f"collection; '{fld.name}' is not a collection of primitive values.")
        if node[0] == "all":
            raise unsupported(f"Unsupported or invalid query filter clause specified for property '{fld.name}' of "
                              f"resource '{self.resource.label}'.")
        self._allow(fld, "any")
        if body[0] not in ("cmp", "func", "in", "or") or not self._lambda_body_ok(body, var):
            raise unsupported(f"Unsupported or invalid query filter clause specified for property '{fld.name}' of "
                              f"resource '{self.resource.label}'.")
        self._validate(body, var)

    def _lambda_body_ok(self, body: Node, var: str) -> bool:
        if body[0] == "or":
            return self._lambda_body_ok(body[1], var) and self._lambda_body_ok(body[2], var)
        if body[0] == "cmp":
            return body[2] == (var,) and body[1] in ("eq", "ne")
        if body[0] == "func":
            return body[2] == (var,) and body[1] in ("startswith", "endswith")
        if body[0] == "in":
            return body[1] == (var,)
        return False

    def _validate_predicate(self, node: Node, var: str | None) -> None:
        kind = node[0]
        path = node[2] if kind in ("cmp", "func") else node[1]
        fld = self._field(path, var)
        if kind == "cmp":
            op, value = node[1], node[3]
            self._typecheck(fld, op, value)
            if op == "eq" and value is None:
                self._advanced("eq null")
        elif kind == "func":
            op, value = node[1], node[3]
            self._typecheck(fld, "eq", value)
            if value is None:
                raise bad_request(f"Invalid filter clause: No function signature for the function with name "
                                  f"'{op}' matches the specified arguments.")
        else:
            op = "in"
            for value in node[2]:
                self._typecheck(fld, "eq", value)
        if fld is None:
            self._advanced(op)
            return
        if fld.is_collection:
            raise bad_request(f"Invalid filter clause: A binary operator with incompatible types was detected. "
                              f"Found operand types '{fld.edm}' and 'Edm.String' for operator kind 'Equal'.")
        self._allow(fld, op)

    # ---- evaluation
    def matches(self, obj: Mapping[str, Any]) -> bool:
        return self._eval(self.node, obj, None, None)

    def _eval(self, node: Node, obj: Mapping[str, Any], var: str | None, var_value: Any) -> bool:
        kind = node[0]
        if kind == "and":
            return self._eval(node[1], obj, var, var_value) and self._eval(node[2], obj, var, var_value)
        if kind == "or":
            return self._eval(node[1], obj, var, var_value) or self._eval(node[2], obj, var, var_value)
        if kind == "not":
            return not self._eval(node[1], obj, var, var_value)
        if kind == "any":
            fld = self.resource.field(node[1][0], self.version)
            items = obj.get(fld.name) or [] if fld else []
            return any(self._eval(node[3], obj, node[2], item) for item in items)

        def value_of(path: tuple[str, ...]) -> Any:
            if var is not None and path == (var,):
                return var_value
            fld = self.resource.field(path[0], self.version)
            return obj.get(fld.name) if fld else None

        if kind == "cmp":
            return _compare(node[1], value_of(node[2]), node[3])
        if kind == "in":
            actual = value_of(node[1])
            return any(_compare("eq", actual, v) for v in node[2])
        actual = value_of(node[2])
        if not isinstance(actual, str):
            return False
        want = str(node[3]).lower()
        return actual.lower().startswith(want) if node[1] == "startswith" else \
            actual.lower().endswith(want) if node[1] == "endswith" else want in actual.lower()


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _compare(op: str, actual: Any, wanted: Any) -> bool:
    equal = _fold(actual) == _fold(wanted)
    return equal if op == "eq" else not equal


# --------------------------------------------------------------------------- query options


@dataclasses.dataclass
class Query:
    """Parsed system query options of one request.

    ``eventual``: the request carries ``ConsistencyLevel: eventual``; ``advanced``: it also asks ``$count=true``
    (or is a ``/$count`` request), which unlocks the advanced-only operators and ``$orderby``.
    """

    filter: Filter | None = None
    select: list[str] | None = None
    top: int = DEFAULT_PAGE
    skiptoken: str | None = None
    count: bool = False
    search: "Search | None" = None
    orderby: list[tuple[Field, bool]] | None = None  # (property, descending)
    eventual: bool = False
    advanced: bool = False

    def project(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Apply ``$select`` (annotations such as ``@odata.type`` are kept)."""
        if self.select is None:
            return obj
        return {k: v for k, v in obj.items() if k.startswith("@") or k in self.select}

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """``$filter`` and ``$search`` (a logical AND of both)."""
        return (self.filter is None or self.filter.matches(obj)) and (self.search is None or self.search.matches(obj))

    def sort_key(self, obj: Mapping[str, Any]) -> list[Any]:
        """The page order: the ``$orderby`` properties (case-insensitive, unset first), then the object id."""
        key: list[Any] = []
        for fld, _ in self.orderby or ():
            value = obj.get(fld.name)
            key.append("" if value is None else str(value).lower())
        key.append(str(obj.get("id", "")).lower())
        return key

    @property
    def descending(self) -> bool:
        return bool(self.orderby) and self.orderby[0][1]


SUPPORTED_OPTIONS = ("$filter", "$select", "$top", "$skiptoken", "$count", "$search", "$orderby")


def parse_query(params: Mapping[str, str], headers: Mapping[str, str], resource: Resource, version: str, *,
                collection: bool, count_segment: bool = False) -> Query:
    """Read ``$filter``, ``$select``, ``$top``, ``$skiptoken``, ``$count``, ``$search`` and ``$orderby`` (option
    names case-insensitive) with Graph's advanced-query rules (graph/aad-advanced-queries)."""
    opts: dict[str, str] = {}
    for key, value in params.items():
        lowered = key.lower()
        if not lowered.startswith("$"):
            continue  # e.g. api-version: Graph ignores non-system query parameters
        if lowered not in SUPPORTED_OPTIONS:
            raise unsupported(f"The query option '{key}' is not supported by this sandbox.")
        if not collection and lowered != "$select":
            raise bad_request(f"Query option '{key}' is not allowed on a single entity; it is allowed only on "
                              f"collections.")
        opts[lowered] = value
    query = Query()
    query.eventual = headers.get("consistencylevel", "").strip().lower() == "eventual"
    if count_segment and not query.eventual:
        raise count_not_supported()
    if "$count" in opts:
        # Without ConsistencyLevel: eventual, Graph silently ignores ?$count=true (no @odata.count).
        query.count = _parse_count(opts["$count"]) and query.eventual
    query.advanced = query.eventual and (query.count or count_segment)
    if "$search" in opts:
        if not query.eventual:
            raise unsupported("Request with $search query parameter only works through MSGraph with a special "
                              "request header: 'ConsistencyLevel: eventual'")
        query.search = Search(opts["$search"], resource, version)
    if "$filter" in opts:
        query.filter = Filter(opts["$filter"], resource, version, query.advanced)
    if "$orderby" in opts:
        query.orderby = parse_orderby(opts["$orderby"], resource, version)
        if not query.advanced:
            raise unsupported("Sorting not supported for current query.")
    if "$select" in opts:
        query.select = parse_select(opts["$select"], resource, version)
    if "$top" in opts:
        query.top = parse_top(opts["$top"])
    if "$skiptoken" in opts:
        query.skiptoken = opts["$skiptoken"]
    return query


def _parse_count(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise bad_request(f"Invalid value '{value}' for $count query option found. Valid values are 'true' and "
                          f"'false'.")
    return value.lower() == "true"


def parse_orderby(value: str, resource: Resource, version: str) -> list[tuple[Field, bool]]:
    """``prop [asc|desc], ...``: properties Graph sorts (``displayName``, ``createdDateTime``, ``deletedDateTime``
    of applications and service principals)."""
    result: list[tuple[Field, bool]] = []
    for raw in value.split(","):
        parts = raw.split()
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
            raise bad_request(f"Syntax error at position {len(value)} in '{value}'.")
        fld = resource.field(parts[0], version)
        if fld is None:
            raise bad_request(f"Could not find a property named '{parts[0]}' on type '{resource.type_name}'.")
        if not fld.orderby:
            raise unsupported("An unsupported property was specified.")
        result.append((fld, len(parts) == 2 and parts[1].lower() == "desc"))
    return result


# --------------------------------------------------------------------------- $search


_SEARCH_TOKEN = re.compile(r'\s*(?:(?P<clause>"(?:[^"\\]|\\.)*")|(?P<op>AND|OR)(?=[\s("])|(?P<paren>[()]))',
                           re.DOTALL)
_WORD_RE = re.compile(r"[^\W\d_]+|\d+|[^\w\s]|_", re.UNICODE)


def search_tokens(text: str) -> set[str]:
    """Graph's directory tokenization (search-query-parameter, "Using $search on directory object collections"):
    split on spaces, on a lower-to-upper case change, between letters and digits and at symbols (each symbol a
    token); words joined only by symbols also form one combined token.  Lower-cased."""
    tokens: set[str] = set()
    for chunk in text.split():
        words: list[str] = []
        run: list[str] = []  # letter/digit words of this chunk joined by symbols only
        for match in _WORD_RE.finditer(chunk):
            piece = match.group(0)
            if piece.isalpha():
                parts = _split_case(piece)
                words.extend(parts)
                run.append(piece)
            elif piece.isdigit():
                words.append(piece)
                run.append(piece)
            else:
                words.append(piece)
        tokens.update(w.lower() for w in words)
        if len(run) > 1:
            tokens.add("".join(run).lower())
    return tokens


def _split_case(word: str) -> list[str]:
    """``HelloWorld``/``helloWORLD`` -> hello, world; ``HELLOworld`` stays one token (only a lower-to-upper change
    splits, as documented)."""
    parts, start = [], 0
    for i in range(1, len(word)):
        if word[i - 1].islower() and word[i].isupper():
            parts.append(word[start:i])
            start = i
    parts.append(word[start:])
    return parts


class Search:
    """A ``$search`` expression: ``"property:text"`` clauses joined by ``AND``/``OR`` (upper case), parentheses.

    ``displayName`` and ``description`` match by tokens (every search token is a prefix of one of the value's
    tokens, in any order, case-insensitively); other string properties that ``$filter`` supports match like
    ``startswith``.
    """

    def __init__(self, text: str, resource: Resource, version: str):
        self.text = text
        self.resource = resource
        self.version = version
        self.pos = 0
        self.toks = self._lex(text)
        self.i = 0
        self.node = self._or()
        if self.i != len(self.toks):
            raise self._error()

    def _error(self) -> ServiceError:
        return bad_request(f"Syntax error: invalid $search expression '{self.text}'. Each clause is "
                           f"\"property:text\" in double quotes; join clauses with AND or OR.")

    def _lex(self, text: str) -> list[tuple[str, str]]:
        toks, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _SEARCH_TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise self._error()
            if match.group("clause"):
                toks.append(("clause", match.group("clause")[1:-1]))
            elif match.group("op"):
                toks.append(("op", match.group("op")))
            else:
                toks.append(("paren", match.group("paren")))
            pos = match.end()
        if not toks:
            raise self._error()
        return toks

    def _peek(self, kind: str, value: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        tok = self.toks[self.i]
        return tok[0] == kind and (value is None or tok[1] == value)

    def _or(self) -> Node:
        node = self._and()
        while self._peek("op", "OR"):
            self.i += 1
            node = ("or", node, self._and())
        return node

    def _and(self) -> Node:
        node = self._primary()
        while self._peek("op", "AND"):
            self.i += 1
            node = ("and", node, self._primary())
        return node

    def _primary(self) -> Node:
        if self._peek("paren", "("):
            self.i += 1
            node = self._or()
            if not self._peek("paren", ")"):
                raise self._error()
            self.i += 1
            return node
        if not self._peek("clause"):
            raise self._error()
        body = self.toks[self.i][1]
        self.i += 1
        prop, sep, value = body.partition(":")
        if not sep or not prop.strip():
            raise self._error()
        value = re.sub(r"\\(.)", r"\1", value)
        fld = self.resource.field(prop.strip(), self.version)
        if fld is None or fld.item_edm != "Edm.String" or fld.is_collection or not (fld.search or fld.filters):
            raise unsupported(f"Unsupported or invalid search clause specified for property '{prop.strip()}' of "
                              f"resource '{self.resource.label}'.")
        return ("clause", fld, value)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return self._eval(self.node, obj)

    def _eval(self, node: Node, obj: Mapping[str, Any]) -> bool:
        if node[0] == "and":
            return self._eval(node[1], obj) and self._eval(node[2], obj)
        if node[0] == "or":
            return self._eval(node[1], obj) or self._eval(node[2], obj)
        fld, wanted = node[1], node[2]
        actual = obj.get(fld.name)
        if not isinstance(actual, str):
            return False
        if not fld.search:
            return actual.lower().startswith(wanted.lower())
        have = search_tokens(actual)
        want = search_tokens(wanted)
        return bool(want) and all(any(token.startswith(w) for token in have) for w in want)


def parse_select(value: str, resource: Resource, version: str) -> list[str]:
    names = []
    for raw in value.split(","):
        name = raw.strip()
        if name == "*":
            names.extend(resource.default_names(version))
            continue
        fld = resource.field(name, version)
        if fld is None:
            raise bad_request(f"Parsing OData Select and Expand failed: Could not find a property named '{name}' "
                              f"on type '{resource.type_name}'.")
        names.append(fld.name)
    return names


def parse_top(value: str) -> int:
    if not re.fullmatch(r"\d+", value.strip()):
        raise bad_request(f"Invalid value '{value}' for $top query option found. The $top query option requires a "
                          f"non-negative integer value.")
    top = int(value)
    if not 1 <= top <= MAX_PAGE:
        raise directory_error(f"Invalid page size specified: '{top}'. Must be between 1 and {MAX_PAGE} inclusive.")
    return top


# --------------------------------------------------------------------------- paging


_TOKEN_PREFIX = "RFNwdAIAAQAAA"


def encode_skiptoken(after: list[str]) -> str:
    raw = json.dumps({"after": after}, separators=(",", ":")).encode()
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_skiptoken(token: str) -> list[str]:
    expired = graph_error(400, "Directory_ExpiredPageToken", "The specified page token value has expired and can no "
                          "longer be included in your request.")
    if not token.startswith(_TOKEN_PREFIX):
        raise expired
    payload = token[len(_TOKEN_PREFIX):]
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        after = data["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise expired from None
    if not isinstance(after, list) or not all(isinstance(part, str) for part in after):
        raise expired
    return after


def paginate(items: list[dict[str, Any]], query: Query) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``items`` (already filtered) in ``query``'s order (``$orderby``, then object id); returns the page
    and the next skiptoken (the position after the page's last item)."""
    ordered = sorted(items, key=query.sort_key, reverse=query.descending)
    if query.skiptoken is not None:
        after = decode_skiptoken(query.skiptoken)
        if query.descending:
            ordered = [o for o in ordered if query.sort_key(o) < after]
        else:
            ordered = [o for o in ordered if query.sort_key(o) > after]
    page = ordered[:query.top]
    token = encode_skiptoken(query.sort_key(page[-1])) if len(ordered) > query.top else None
    return page, token
