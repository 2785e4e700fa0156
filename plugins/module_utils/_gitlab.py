# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""GitLab ID token ``sub`` claims and the federated identity credentials that trust them.

Pure logic, standard library only.

GitLab builds ``sub`` from the project's ``ci_id_token_sub_claim_components`` (default
``["project_path", "ref_type", "ref"]``) as ``<component>:<value>`` pairs joined by ``:``, in the listed
order, skipping components whose value is empty: ``project_path:mygroup/myproject:ref_type:branch:ref:main``
or, led by the immutable id, ``project_id:57382910:ref_type:branch:ref:main``.

Wildcards and escaping. ``matches`` has no escape for ``*`` and ``?``, so a literal part of a pattern must
not contain them. Here that never happens: project paths only allow letters, digits, ``_``, ``-`` and
``.``; git forbids ``*``, ``?``, ``[``, ``:``, spaces and control characters in ref names (git
check-ref-format, enforced by ``validate_ref``); the other component values are fixed words. So a ``*``
or ``?`` in a requested ref can only be meant as a wildcard: ``release/*`` is a pattern, ``main`` is a
literal. Quotes are legal in ref names and are escaped by doubling (``''``) in expressions.

Exact or flexible, deterministically (``SubjectBuilder`` and ``plan_project_credentials``):

1. A literal ref (one branch, one tag, each entry of a list) is an exact ``subject``: GA API, no preview.
2. A pattern, "all branches", "all tags" and "any ref" are one flexible credential each
   (``claims['sub'] matches '...'``), unless the sub claim components make them exact (e.g. without
   ``ref``, "all branches" is the exact subject ``project_path:g/p:ref_type:branch``).
3. An entry covered by another entry of the same request is dropped (``release/1.0`` next to
   ``release/*``, anything next to "any ref"). Nothing is ever widened automatically: the language has no
   ``or``, so N listed refs need N credentials; when they do not fit in the application's budget (20 minus
   its other credentials) the plan is refused with suggested patterns, and the user decides.

Names: ``<prefix>-<project slug>-<ref part>-<hash8>``, e.g. ``gitlab-mygroup-myproject-branch-main-1a2b3c4d``.
The slug is lossy (``a/b-c`` and ``a-b/c`` both give ``a-b-c``), so the name always ends with 8 hex digits
of SHA-256 over the issuer and the subject or expression: names are stable across runs, URL safe, at most
120 characters (the slug is truncated first), and unique exactly when issuer+subject is. Do not infer
ownership from a name prefix, for the same reason.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ansible_collections.oidc_federation.azure.plugins.module_utils._fic import (
    DEFAULT_AUDIENCE,
    LANGUAGE_VERSION,
    MAX_CREDENTIALS_PER_APP,
    MAX_FIELD_LENGTH,
    NAME_MAX_LENGTH,
    OP_MATCHES,
    TRUST_PROJECT,
    FicValidationError,
    analyze_gitlab_trust,
    evaluate_expression,
    has_wildcards,
    is_gitlab_issuer,
    render_condition,
    validate_credential,
    validate_credential_set,
    wildcard_match,
)

DEFAULT_SUB_CLAIM_COMPONENTS = ("project_path", "ref_type", "ref")
LEADING_SUB_CLAIM_COMPONENTS = ("project_path", "project_id")
REF_SUB_CLAIM_COMPONENTS = ("ref_type", "ref")
EXTRA_SUB_CLAIM_COMPONENTS = ("ref_protected", "environment_protected", "deployment_tier")
ALLOWED_SUB_CLAIM_COMPONENTS = LEADING_SUB_CLAIM_COMPONENTS + REF_SUB_CLAIM_COMPONENTS + EXTRA_SUB_CLAIM_COMPONENTS
REF_TYPE_BRANCH = "branch"
REF_TYPE_TAG = "tag"
REF_TYPES = (REF_TYPE_BRANCH, REF_TYPE_TAG)
DEPLOYMENT_TIERS = ("production", "staging", "testing", "development", "other")
FIELD_COMPONENTS = "ci_id_token_sub_claim_components"
MANAGED_MARKER = "managed by oidc_federation.azure"

KIND_ANY_REF = "any_ref"
KIND_ALL_BRANCHES = "all_branches"
KIND_BRANCH_PATTERN = "branch_pattern"
KIND_BRANCH = "branch"
KIND_ALL_TAGS = "all_tags"
KIND_TAG_PATTERN = "tag_pattern"
KIND_TAG = "tag"
_KIND_ORDER = (KIND_ANY_REF, KIND_ALL_BRANCHES, KIND_BRANCH_PATTERN, KIND_BRANCH, KIND_ALL_TAGS, KIND_TAG_PATTERN, KIND_TAG)

_PATH_SEGMENT_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\Z")
_PROJECT_ID_RE = re.compile(r"[1-9][0-9]*\Z")
_NAME_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}\Z")
_SLUG_RE = re.compile(r"[^A-Za-z0-9_-]+")
_REF_FORBIDDEN = frozenset(" ~^:?*[\\")
_FULL_REF_PREFIXES = ("refs/heads/", "refs/tags/")
_HASH_LENGTH = 8

# Application uniqueName derived from a GitLab project (see ``app_unique_name``). Graph's uniqueName: letters, digits,
# '.', '_', '-' and '~', starting with a letter or digit, at most 256 characters (the same rule as _graph.py checks).
APP_UNIQUE_NAME_PREFIX = "gitlab-oidc-"
APP_UNIQUE_NAME_MAX_LENGTH = 256
APP_UNIQUE_NAME_PREFIX_MAX_LENGTH = 64
_APP_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*\Z")
_APP_SEPARATOR = "~"  # stands for '/', which GitLab paths contain and uniqueName does not allow; never in a path segment
_APP_TRUNCATION_MARK = "~-"  # never in a derived name that fits: a GitLab path segment cannot start with '-'
_APP_HASH_LENGTH = 32


def _field_for(ref_type: str | None) -> str:
    return {REF_TYPE_BRANCH: "branches", REF_TYPE_TAG: "tags"}.get(ref_type or "", "any_ref")


# --------------------------------------------------------------------------------------------
# Validation of GitLab inputs
# --------------------------------------------------------------------------------------------

def validate_sub_claim_components(components: Sequence[str] | None) -> tuple[str, ...]:
    """Validate a project's ``ci_id_token_sub_claim_components`` like GitLab does; None means GitLab's default.

    Leads with ``project_path`` or ``project_id`` (never both); every component in
    ``ALLOWED_SUB_CLAIM_COMPONENTS``; at least one. Messages use GitLab's wording where it has one.
    """
    if components is None:
        return DEFAULT_SUB_CLAIM_COMPONENTS
    fix = "use GitLab's default [\"project_path\", \"ref_type\", \"ref\"], or [\"project_id\", \"ref_type\", \"ref\"] (GitLab 18.x)"
    if isinstance(components, str) or not isinstance(components, Sequence):
        raise FicValidationError(FIELD_COMPONENTS, "must be a list of claim names", fix)
    items = list(components)
    if not items:
        raise FicValidationError(FIELD_COMPONENTS, "is too short (minimum is 1 character)", fix)
    problems = []
    if items[0] not in LEADING_SUB_CLAIM_COMPONENTS:
        problems.append("project_path must be the first element of the sub claim (or project_id, on GitLab 18.x)")
    for item in items:
        if item not in ALLOWED_SUB_CLAIM_COMPONENTS:
            problems.append("%s is not an allowed sub claim component" % (item,))
    if all(lead in items for lead in LEADING_SUB_CLAIM_COMPONENTS):
        problems.append("the sub claim must lead with project_path or project_id, not contain both")
    if problems:
        raise FicValidationError(FIELD_COMPONENTS, "; ".join(problems), fix)
    return tuple(items)


def validate_project_path(path: Any, *, field: str = "project_path") -> str:
    """Validate a GitLab project full path (``group/subgroup/project``: letters, digits, ``_``, ``-``, ``.``)."""
    fix = "give the project's full path as shown in GitLab, e.g. mygroup/mysubgroup/myproject"
    if not isinstance(path, str) or not path:
        raise FicValidationError(field, "a project path is required", fix)
    if "://" in path:
        raise FicValidationError(field, "%r is a URL, not a project path" % path, fix)
    if path != path.strip("/"):
        raise FicValidationError(field, "project path %r starts or ends with '/'" % path, fix)
    segments = path.split("/")
    if len(segments) < 2:
        raise FicValidationError(field, "project path %r has no namespace; a project lives in a group or user namespace" % path, fix)
    for segment in segments:
        if not _PATH_SEGMENT_RE.match(segment) or segment.endswith((".", ".git", ".atom")):
            raise FicValidationError(
                field, "%r is not a valid GitLab path segment in %r (letters, digits, '_', '-' and '.', not ending with '.', '.git' or '.atom')"
                % (segment, path), fix)
    return path


def validate_project_id(project_id: Any, *, field: str = "project_id") -> str:
    """Validate a numeric GitLab project id (int or digit string); return it as the string GitLab puts in tokens."""
    if isinstance(project_id, int) and not isinstance(project_id, bool) and project_id > 0:
        return str(project_id)
    if isinstance(project_id, str) and _PROJECT_ID_RE.match(project_id):
        return project_id
    raise FicValidationError(field, "%r is not a GitLab project id (a positive number without leading zeros)" % (project_id,),
                             "use the number shown under the project's name in GitLab (Settings > General)")


def _ref_problem(ref: str) -> str | None:
    problem = None
    if not ref:
        problem = "is empty"
    elif ref.startswith(_FULL_REF_PREFIXES):
        problem = "is a full ref; the ref claim holds the short name (%r)" % ref.split("/", 2)[2]
    elif any(ord(char) < 0x20 or ord(char) == 0x7F for char in ref):
        problem = "contains a control character"
    elif any(char in _REF_FORBIDDEN for char in ref):
        problem = "contains %r, which git does not allow in ref names" % next(char for char in ref if char in _REF_FORBIDDEN)
    elif ref == "@" or ".." in ref or "@{" in ref:
        problem = "contains '..' or '@{' or is '@', which git does not allow"
    elif ref.startswith(("/", "-")) or ref.endswith(("/", ".")) or "//" in ref:
        problem = "starts with '/' or '-', ends with '/' or '.', or contains '//', which git does not allow"
    elif any(part.startswith(".") or part.endswith(".lock") for part in ref.split("/")):
        problem = "has a path component starting with '.' or ending with '.lock', which git does not allow"
    return problem


def validate_ref(ref: Any, ref_type: str, *, field: str | None = None) -> str:
    """Validate a literal branch or tag short name with git's check-ref-format rules (so it has no ``*``, ``?`` or ``:``)."""
    field = field or _field_for(ref_type)
    _check_ref_type(ref_type, field)
    if not isinstance(ref, str):
        raise FicValidationError(field, "%s name %r must be a string" % (ref_type, ref), "quote the name in YAML")
    problem = _ref_problem(ref)
    if problem:
        raise FicValidationError(field, "%s name %r %s" % (ref_type, ref, problem), "give the %s name exactly as git shows it" % ref_type)
    return ref


def validate_ref_pattern(pattern: Any, ref_type: str, *, field: str | None = None) -> str:
    """Validate a ref pattern (``*``/``?`` wildcards, otherwise a valid ref name); ``*`` alone means every ref of the type."""
    field = field or _field_for(ref_type)
    _check_ref_type(ref_type, field)
    if not isinstance(pattern, str):
        raise FicValidationError(field, "%s pattern %r must be a string" % (ref_type, pattern), "quote the pattern in YAML")
    problem = _ref_problem(pattern.replace("*", "x").replace("?", "x"))
    if problem:
        raise FicValidationError(field, "%s pattern %r %s" % (ref_type, pattern, problem), "use a ref name with * (any run) and ? (one character)")
    return pattern


def _check_ref_type(ref_type: Any, field: str) -> None:
    if ref_type not in REF_TYPES:
        raise FicValidationError(field, "ref type %r is not 'branch' or 'tag'" % (ref_type,), "use branch or tag")


def validate_issuer(issuer: Any, *, field: str = "issuer") -> str:
    """Validate a GitLab issuer URL: https, no trailing '/', no whitespace, query or fragment (it must equal the token's ``iss``)."""
    fix = "use the GitLab instance URL exactly as configured, e.g. https://gitlab.com or https://gitlab.example.com (no trailing '/')"
    if not isinstance(issuer, str) or not issuer.startswith("https://") or len(issuer) <= len("https://"):
        raise FicValidationError(field, "issuer %r is not an https URL" % (issuer,), fix)
    if issuer.endswith("/") or any(char.isspace() for char in issuer) or "?" in issuer or "#" in issuer:
        raise FicValidationError(field, "issuer %r must not end with '/' or contain whitespace, '?' or '#'; GitLab's iss has none" % issuer, fix)
    return issuer


def _truth(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value in ("true", "false"):
        return value
    return None


def _extra_value(component: str, values: Mapping[str, Any]) -> str:
    field = "claim_values.%s" % component
    if component not in values:
        if component == "ref_protected":
            fix = "set claim_values.ref_protected to true (only protected refs) or false"
        elif component == "environment_protected":
            fix = "set claim_values.environment_protected to true or false, or to '' for jobs without an environment"
        else:
            fix = "set claim_values.deployment_tier to one of %s, or to '' for jobs without an environment" % ", ".join(DEPLOYMENT_TIERS)
        raise FicValidationError(field, "the project's sub claim includes %s, so its value must be given" % component, fix)
    value = values[component]
    if component != "ref_protected" and value in (None, ""):
        return ""
    if component == "deployment_tier":
        if value not in DEPLOYMENT_TIERS:
            raise FicValidationError(field, "%r is not a GitLab deployment tier" % (value,), "use one of %s" % ", ".join(DEPLOYMENT_TIERS))
        return value
    text = _truth(value)
    if text is None:
        raise FicValidationError(field, "%r is not true or false" % (value,), "use true or false")
    return text


def _check_claim_values(components: Sequence[str], claim_values: Mapping[str, Any] | None) -> dict[str, str]:
    values = dict(claim_values or {})
    for key in values:
        if key not in EXTRA_SUB_CLAIM_COMPONENTS:
            raise FicValidationError("claim_values.%s" % key, "%r is not a sub claim component this collection can pin" % key,
                                     "use only %s" % ", ".join(EXTRA_SUB_CLAIM_COMPONENTS))
        if key not in components:
            raise FicValidationError(
                "claim_values.%s" % key, "the project's sub claim does not include %s, so this value would restrict nothing" % key,
                "add %s to the project's %s, or remove claim_values.%s" % (key, FIELD_COMPONENTS, key))
    return {component: _extra_value(component, values) for component in components if component in EXTRA_SUB_CLAIM_COMPONENTS}


# --------------------------------------------------------------------------------------------
# Application uniqueName for a GitLab project
# --------------------------------------------------------------------------------------------

def app_unique_name(*, project_path: str | None = None, project_id: int | str | None = None, prefix: str = APP_UNIQUE_NAME_PREFIX,
                    field: str | None = None) -> str:
    """The application ``uniqueName`` for one GitLab project: ``<prefix><path with '/' as '~'>`` or ``<prefix>id-<id>``.

    Exactly one of ``project_path`` and ``project_id``. Collision-free: ``'~'`` never occurs in a GitLab path, so
    ``a/b-c`` and ``a-b/c`` give ``gitlab-oidc-a~b-c`` and ``gitlab-oidc-a-b~c``; a name derived from a path always
    contains ``'~'`` (a path has a namespace) and one derived from an id never does. GitLab paths are unique
    regardless of case, like uniqueNames. A name longer than 256 characters is cut and ends with ``'~-'`` and 32 hex
    digits of SHA-256 over the full name; no name that fits contains ``'~-'`` (a path segment never starts with
    ``'-'``), so cut names cannot collide with the others, and among themselves only through a SHA-256 collision.
    Raises ``FicValidationError`` naming ``field`` (or ``project_path``/``project_id``/``prefix``) for bad input.
    """
    given_path, given_id = project_path not in (None, ""), project_id not in (None, "")
    if given_path == given_id:
        raise FicValidationError(field or "project_path", "give exactly one of a project path and a project id",
                                 "give the project's full path (mygroup/myproject), or its numeric id for a name that survives renames")
    if not isinstance(prefix, str) or not prefix or len(prefix) > APP_UNIQUE_NAME_PREFIX_MAX_LENGTH or not _APP_PREFIX_RE.match(prefix):
        raise FicValidationError("prefix", "%r is not a valid uniqueName prefix" % (prefix,),
                                 "use 1 to %d letters, digits, '.', '_', '-' or '~', starting with a letter or digit (default %s)"
                                 % (APP_UNIQUE_NAME_PREFIX_MAX_LENGTH, APP_UNIQUE_NAME_PREFIX))
    if given_path:
        body = validate_project_path(project_path, field=field or "project_path").replace("/", _APP_SEPARATOR)
    else:
        body = "id-" + validate_project_id(project_id, field=field or "project_id")
    name = prefix + body
    if len(name) <= APP_UNIQUE_NAME_MAX_LENGTH:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_APP_HASH_LENGTH]
    head = name[:APP_UNIQUE_NAME_MAX_LENGTH - len(_APP_TRUNCATION_MARK) - _APP_HASH_LENGTH]
    return head + _APP_TRUNCATION_MARK + digest


# --------------------------------------------------------------------------------------------
# Subjects and patterns
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SubjectMatch:
    """What one credential trusts: an exact ``subject`` or a flexible ``expression`` (exactly one is set)."""

    kind: str
    ref_type: str | None
    ref: str | None
    subject: str | None = None
    expression: str | None = None

    @property
    def flexible(self) -> bool:
        """True for a flexible credential (claimsMatchingExpression, Graph /beta)."""
        return self.expression is not None

    def fic_fields(self) -> dict[str, Any]:
        """The Graph credential fields: ``{"subject": ...}`` or ``{"claimsMatchingExpression": {...}}``."""
        if self.expression is not None:
            return {"claimsMatchingExpression": {"value": self.expression, "languageVersion": LANGUAGE_VERSION}}
        return {"subject": self.subject}

    def matches(self, claims: Mapping[str, Any]) -> bool:
        """True if a token with these ``claims`` satisfies the subject or expression (issuer and audience are not checked)."""
        if self.expression is not None:
            return evaluate_expression(self.expression, claims)
        return claims.get("sub") == self.subject

    def describe(self) -> str:
        """Human wording, e.g. 'branch main', 'branches matching release/*', 'all tags', 'any branch or tag'."""
        return {
            KIND_ANY_REF: "any branch or tag",
            KIND_ALL_BRANCHES: "all branches",
            KIND_ALL_TAGS: "all tags",
            KIND_BRANCH_PATTERN: "branches matching %s" % self.ref,
            KIND_TAG_PATTERN: "tags matching %s" % self.ref,
            KIND_BRANCH: "branch %s" % self.ref,
            KIND_TAG: "tag %s" % self.ref,
        }[self.kind]

    def sort_key(self) -> tuple[int, str]:
        """Deterministic order: any ref, branches (all, patterns, literals), then tags likewise."""
        return (_KIND_ORDER.index(self.kind), self.ref or "")


class SubjectBuilder:
    """Builds GitLab ``sub`` claims and the subjects/expressions that trust them, for one project.

    ``components`` is the project's ``ci_id_token_sub_claim_components`` (None: GitLab's default). The
    leading component's value must be given (``project_path`` or ``project_id``); the other may be given
    too (it labels names and enables trust checks). ``claim_values`` pins the extra components
    (``ref_protected``, ``environment_protected``, ``deployment_tier``) the project's sub includes.
    """

    def __init__(self, *, project_path: str | None = None, project_id: int | str | None = None, components: Sequence[str] | None = None,
                 claim_values: Mapping[str, Any] | None = None) -> None:
        self.components = validate_sub_claim_components(components)
        self.project_path = validate_project_path(project_path) if project_path not in (None, "") else None
        self.project_id = validate_project_id(project_id) if project_id not in (None, "") else None
        if "project_path" in self.components and self.project_path is None:
            raise FicValidationError("project_path", "the project's sub claim contains project_path, so the project path is required",
                                     "give project_path (e.g. mygroup/myproject)")
        if "project_id" in self.components and self.project_id is None:
            raise FicValidationError("project_id", "the project's sub claim contains project_id, so the project id is required",
                                     "give project_id (the number in the project's Settings > General)")
        self.claim_values = _check_claim_values(self.components, claim_values)

    @property
    def label(self) -> str:
        """The project as shown to people: its path if known, else ``project id N``."""
        return self.project_path if self.project_path else "project id %s" % self.project_id

    def _render(self, ref_type: str | None, ref: str | None) -> str:
        """The sub (or sub pattern) for ``ref_type``/``ref``; None stands for any value (``*``)."""
        values = {"project_path": self.project_path, "project_id": self.project_id, "ref_type": ref_type, "ref": ref}
        values.update(self.claim_values)
        pairs = [(name, values[name]) for name in self.components if values[name] != ""]
        literal = len(pairs)
        while literal > 0 and pairs[literal - 1][1] is None:
            literal -= 1
        if len(pairs) - literal >= 2:
            # Several trailing "any value" components collapse into one '*' (project_id:42:* rather than ref_type:*:ref:*).
            return ":".join("%s:%s" % (name, "*" if value is None else value) for name, value in pairs[:literal]) + ":*"
        return ":".join("%s:%s" % (name, "*" if value is None else value) for name, value in pairs)

    def sub(self, ref_type: str, ref: str) -> str:
        """The exact ``sub`` GitLab puts in the ID token of a job running for ``ref_type``/``ref``."""
        _check_ref_type(ref_type, _field_for(ref_type))
        validate_ref(ref, ref_type)
        return self._render(ref_type, ref)

    def claims(self, ref_type: str, ref: str, *, issuer: str | None = None, audience: str | Sequence[str] | None = None) -> dict[str, Any]:
        """The claims relevant to matching in a job's ID token for ``ref_type``/``ref`` (``sub``, project and ref claims)."""
        ref_path = ("refs/heads/" if ref_type == REF_TYPE_BRANCH else "refs/tags/") + ref
        claims: dict[str, Any] = {"sub": self.sub(ref_type, ref), "ref": ref, "ref_type": ref_type, "ref_path": ref_path}
        if self.project_path:
            claims["project_path"] = self.project_path
            claims["namespace_path"] = self.project_path.rsplit("/", 1)[0]
        if self.project_id:
            claims["project_id"] = self.project_id
        claims.update({name: value for name, value in self.claim_values.items() if value})
        if issuer is not None:
            claims["iss"] = issuer
        if audience is not None:
            claims["aud"] = audience
        return claims

    def _match(self, kind: str, ref_type: str | None, ref: str | None) -> SubjectMatch:
        field = _field_for(ref_type)
        if ref_type is not None and "ref_type" not in self.components:
            raise FicValidationError(
                field, "the project's sub claim has no ref_type, so a branch cannot be told from a tag of the same name",
                "add ref_type to the project's %s, or trust any ref" % FIELD_COMPONENTS)
        if ref is not None and "ref" not in self.components:
            raise FicValidationError(
                field, "the project's sub claim has no ref, so one %s cannot be told from another" % ref_type,
                "add ref to the project's %s, or trust all %ss" % (FIELD_COMPONENTS, ref_type))
        text = self._render(ref_type, ref)
        if has_wildcards(text):
            # Literal values never contain '*' or '?' (validated above), so every wildcard here is meant as one.
            return SubjectMatch(kind, ref_type, ref, expression=render_condition("sub", OP_MATCHES, text))
        if len(text) > MAX_FIELD_LENGTH:
            raise FicValidationError(field, "the subject for %s would have %d characters; Entra ID allows %d" % (ref, len(text), MAX_FIELD_LENGTH),
                                     "use a shorter ref name, or a pattern")
        return SubjectMatch(kind, ref_type, ref, subject=text)

    def branch(self, name: str) -> SubjectMatch:
        """Trust one branch (exact subject)."""
        return self._match(KIND_BRANCH, REF_TYPE_BRANCH, validate_ref(name, REF_TYPE_BRANCH))

    def tag(self, name: str) -> SubjectMatch:
        """Trust one tag (exact subject); tag names may contain '/'."""
        return self._match(KIND_TAG, REF_TYPE_TAG, validate_ref(name, REF_TYPE_TAG))

    def all_branches(self) -> SubjectMatch:
        """Trust every branch of the project (flexible, or exact when the sub claim has no ref)."""
        return self._match(KIND_ALL_BRANCHES, REF_TYPE_BRANCH, None)

    def all_tags(self) -> SubjectMatch:
        """Trust every tag of the project (flexible, or exact when the sub claim has no ref)."""
        return self._match(KIND_ALL_TAGS, REF_TYPE_TAG, None)

    def any_ref(self) -> SubjectMatch:
        """Trust every branch and tag of the project (flexible ``<lead>:<value>:*``, or exact without ref components)."""
        return self._match(KIND_ANY_REF, None, None)

    def ref_pattern(self, ref_type: str, pattern: str) -> SubjectMatch:
        """Trust refs matching ``pattern`` (``*``/``?``); a pattern without wildcards is one ref, ``*`` is all of them."""
        validate_ref_pattern(pattern, ref_type)
        if pattern == "*":
            return self.all_branches() if ref_type == REF_TYPE_BRANCH else self.all_tags()
        if not has_wildcards(pattern):
            return self.branch(pattern) if ref_type == REF_TYPE_BRANCH else self.tag(pattern)
        return self._match(KIND_BRANCH_PATTERN if ref_type == REF_TYPE_BRANCH else KIND_TAG_PATTERN, ref_type, pattern)

    def refs(self, ref_type: str, names: Iterable[str]) -> list[SubjectMatch]:
        """Trust listed refs (literals, patterns, ``*``), one match each; entries covered by another entry are dropped; sorted."""
        if isinstance(names, str):
            names = [names]
        matches: dict[tuple[str, str], SubjectMatch] = {}
        for name in names:
            match = self.ref_pattern(ref_type, name)
            matches.setdefault((match.kind, match.ref or ""), match)
        return sorted(_drop_covered(list(matches.values())), key=SubjectMatch.sort_key)

    def branches(self, names: Iterable[str]) -> list[SubjectMatch]:
        """Trust listed branches (see ``refs``)."""
        return self.refs(REF_TYPE_BRANCH, names)

    def tags(self, names: Iterable[str]) -> list[SubjectMatch]:
        """Trust listed tags (see ``refs``)."""
        return self.refs(REF_TYPE_TAG, names)


def _covers(wide: SubjectMatch, narrow: SubjectMatch) -> bool:
    if wide is narrow:
        return False
    if wide.kind == KIND_ANY_REF:
        return True
    if wide.ref_type != narrow.ref_type or narrow.kind in (KIND_ALL_BRANCHES, KIND_ALL_TAGS):
        return False
    if wide.kind in (KIND_ALL_BRANCHES, KIND_ALL_TAGS):
        return True
    return wide.kind in (KIND_BRANCH_PATTERN, KIND_TAG_PATTERN) and narrow.kind in (KIND_BRANCH, KIND_TAG) and wildcard_match(wide.ref, narrow.ref)


def _drop_covered(matches: list[SubjectMatch]) -> list[SubjectMatch]:
    return [match for match in matches if not any(_covers(other, match) for other in matches)]


def build_sub(*, ref_type: str, ref: str, project_path: str | None = None, project_id: int | str | None = None,
              components: Sequence[str] | None = None, claim_values: Mapping[str, Any] | None = None) -> str:
    """The exact ``sub`` of a job's ID token (shortcut for ``SubjectBuilder(...).sub(ref_type, ref)``)."""
    builder = SubjectBuilder(project_path=project_path, project_id=project_id, components=components, claim_values=claim_values)
    return builder.sub(ref_type, ref)


# --------------------------------------------------------------------------------------------
# Credential planning for one project
# --------------------------------------------------------------------------------------------

_REF_PART = {
    KIND_ANY_REF: "any-ref",
    KIND_ALL_BRANCHES: "all-branches",
    KIND_ALL_TAGS: "all-tags",
    KIND_BRANCH_PATTERN: "branches-%s",
    KIND_TAG_PATTERN: "tags-%s",
    KIND_BRANCH: "branch-%s",
    KIND_TAG: "tag-%s",
}


def _slug(text: str) -> str:
    return re.sub(r"-{2,}", "-", _SLUG_RE.sub("-", text)).strip("-_")


def credential_name(match: SubjectMatch, *, issuer: str, project_label: str, prefix: str = "gitlab") -> str:
    """Deterministic credential name: ``<prefix>-<project slug>-<ref part>-<8 hex of sha256(issuer, subject/expression)>`` (<= 120)."""
    if not _NAME_PREFIX_RE.match(prefix or ""):
        raise FicValidationError("name_prefix", "%r is not a valid name prefix" % (prefix,),
                                 "use 1 to 40 letters, digits, '-' or '_', starting with a letter or digit")
    target = match.subject if match.subject is not None else match.expression
    digest = hashlib.sha256(("%s\n%s" % (issuer, target)).encode("utf-8")).hexdigest()[:_HASH_LENGTH]
    ref_part = _REF_PART[match.kind] % match.ref if "%s" in _REF_PART[match.kind] else _REF_PART[match.kind]
    base = _slug("%s-%s-%s" % (prefix, project_label, ref_part))
    base = base[:NAME_MAX_LENGTH - _HASH_LENGTH - 1].rstrip("-_")
    return "%s-%s" % (base, digest)


def project_id_label(project_id: int | str) -> str:
    """How a credential's description names the project's id (``project id 4711``), so that the credentials made for a
    project can be told apart by id after a rename (``describes_project``)."""
    return "project id %s" % project_id


def describes_project(description: Any, project_id: int | str | None) -> bool:
    """True when ``description`` is one this collection wrote for the project with ``project_id``."""
    if project_id in (None, "") or not isinstance(description, str) or MANAGED_MARKER not in description:
        return False
    label = project_id_label(project_id)
    return ("(%s)" % label) in description or description.startswith("GitLab CI/CD of %s:" % label)


def _description(builder: SubjectBuilder, match: SubjectMatch) -> str:
    label = builder.label
    if builder.project_path and builder.project_id:
        label = "%s (%s)" % (builder.project_path, project_id_label(builder.project_id))
    text = "GitLab CI/CD of %s: %s (%s)" % (label, match.describe(), MANAGED_MARKER)
    if len(text) <= MAX_FIELD_LENGTH:
        return text
    tail = "... (%s)" % MANAGED_MARKER
    return text[:MAX_FIELD_LENGTH - len(tail)] + tail


def _suggest_patterns(matches: Sequence[SubjectMatch]) -> list[str]:
    groups: dict[tuple[str, str], int] = {}
    for match in matches:
        if match.kind in (KIND_BRANCH, KIND_TAG) and "/" in match.ref:
            key = (match.ref_type, match.ref.rsplit("/", 1)[0])
            groups[key] = groups.get(key, 0) + 1
    return ["%s %s/*" % (ref_type, prefix) for (ref_type, prefix), count in sorted(groups.items()) if count >= 2]


def plan_matches(builder: SubjectBuilder, *, branches: Iterable[str] = (), tags: Iterable[str] = (), any_ref: bool = False) -> list[SubjectMatch]:
    """The subjects/expressions for a trust request: ``any_ref``, or listed ``branches``/``tags`` (literals, patterns, '*')."""
    branches = [branches] if isinstance(branches, str) else list(branches or ())
    tags = [tags] if isinstance(tags, str) else list(tags or ())
    if any_ref:
        return [builder.any_ref()]
    if not branches and not tags:
        raise FicValidationError("branches", "no branch, tag or any_ref was requested, so nothing would be trusted",
                                 "list branches (e.g. [main]) and/or tags (e.g. ['v*']), or set any_ref")
    return builder.branches(branches) + builder.tags(tags)


def _check_budget(builder: SubjectBuilder, matches: Sequence[SubjectMatch], available: int) -> None:
    if len(matches) <= available:
        return
    branch_count = sum(1 for match in matches if match.ref_type == REF_TYPE_BRANCH)
    field = "branches" if branch_count >= len(matches) - branch_count else "tags"
    suggestions = _suggest_patterns(matches)
    example = ", ".join(suggestions) if suggestions else "branch release/*"
    raise FicValidationError(
        field, "%s needs %d credentials but only %d are available on the application (at most %d per application, minus its other "
        "credentials); every listed ref needs its own credential, because the expression language has no 'or'"
        % (builder.label, len(matches), available, MAX_CREDENTIALS_PER_APP),
        "replace listed refs by patterns (e.g. %s) or '*' for all of them; a pattern also trusts refs created later, so this is your "
        "choice and is never made automatically" % example)


def plan_project_credentials(builder: SubjectBuilder, *, issuer: str, branches: Iterable[str] = (), tags: Iterable[str] = (), any_ref: bool = False,
                             audience: str = DEFAULT_AUDIENCE, name_prefix: str = "gitlab", available: int = MAX_CREDENTIALS_PER_APP,
                             gitlab_issuers: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Graph-shaped credential dicts (name, issuer, audiences, description, subject or claimsMatchingExpression) for one project.

    ``branches``/``tags`` hold literal refs, patterns or ``'*'``; ``any_ref`` trusts every ref. Literal refs
    become exact subjects, the rest flexible expressions; covered entries are dropped; the result is sorted.
    ``available`` is how many credentials the application can still take (20 minus the credentials this plan
    does not manage). Raises ``FicValidationError`` when the request does not fit, when a flexible credential
    is needed for an issuer Entra ID does not treat as GitLab, or when any credential breaks a Graph rule.
    """
    issuer = validate_issuer(issuer)
    if isinstance(available, bool) or not isinstance(available, int) or not 0 <= available <= MAX_CREDENTIALS_PER_APP:
        raise ValueError("available must be an integer from 0 to %d" % MAX_CREDENTIALS_PER_APP)
    matches = plan_matches(builder, branches=branches, tags=tags, any_ref=any_ref)
    flexible = [match for match in matches if match.flexible]
    if flexible and not is_gitlab_issuer(issuer, gitlab_issuers):
        raise FicValidationError(
            "issuer", "%s needs a flexible credential, which Entra ID allows only for GitLab issuers on its allow-list (https://gitlab.com, "
            "https://gitlab.<name>.<tld>), and %r is not one" % (flexible[0].describe(), issuer),
            "if %s is a self-managed GitLab, declare it in gitlab_issuers; otherwise list literal refs only" % issuer)
    _check_budget(builder, matches, available)
    credentials = []
    for match in matches:
        target = {"subject": match.subject} if match.subject is not None else {"expression": match.expression}
        analysis = analyze_gitlab_trust(project_path=builder.project_path, project_id=builder.project_id, **target)
        if analysis.level != TRUST_PROJECT:
            raise FicValidationError(_field_for(match.ref_type), "internal check failed: %s" % analysis.explanation, "report this as a bug")
        credential = {
            "name": credential_name(match, issuer=issuer, project_label=builder.label, prefix=name_prefix),
            "issuer": issuer,
            "audiences": [audience],
            "description": _description(builder, match),
        }
        credential.update(match.fic_fields())
        validate_credential(credential, gitlab_issuers=gitlab_issuers)
        credentials.append(credential)
    validate_credential_set(credentials, max_credentials=available, field=_field_for(matches[0].ref_type))
    return credentials
