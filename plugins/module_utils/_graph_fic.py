# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""Federated identity credentials (FICs) of one application, or of many: options -> desired set -> plan -> Graph.

Three layers, each usable on its own:

1. **Specs (pure).** ``specs_from_item(item, defaults=..., field=..., index=...)`` turns one item as a user writes it
   (``name``, ``issuer``, ``audiences``, ``description``, ``subject`` | ``claims_matching_expression`` | ``gitlab``
   builder, ``state``, ``allow_broad_trust``) into ``CredentialSpec`` objects holding Graph-shaped credentials: one,
   or, for a project request (``gitlab.branches``/``gitlab.tags``), one per credential ``_gitlab.plan_project_credentials``
   plans. ``spec_from_options`` is the one-credential form. Every per-credential rule is checked here, before any
   request: Graph's rules (``_fic.validate_credential``), the flexible expression grammar and issuer allow-list, and
   how widely a GitLab subject/expression trusts (``_fic.check_gitlab_trust``).
2. **Plan (pure).** ``plan_application(existing, specs, exclusive=..., exclusive_scope=...)`` resolves derived names
   against what exists (a credential whose name was not given adopts the existing credential with the same issuer
   and subject or expression), limits what ``exclusive`` deletes to an ``ExclusiveScope`` (the whole application, the
   credentials confined to listed GitLab projects, or those marked as made by this collection), re-checks each
   project request against the room the application has for it, checks the application's final set (20 per
   application, with a suggestion of flexible credentials per GitLab project; unique names; unique issuer+subject;
   immutable names) and returns an ``ApplicationPlan``. ``plan_without_application`` plans against an empty set (an
   application check mode only predicts); ``item_results`` maps a report back to the requested items.
3. **Graph (async, every call through ``clients.call``).** ``list_credentials`` reads through ``/beta`` (``/v1.0``
   fails with HTTP 500 on a flexible credential); a create is
   ``PATCH .../federatedIdentityCredentials(name='...')`` with ``Prefer: create-if-missing`` (``/beta`` for a
   flexible credential); an update PATCHes only the drifted fields; a delete counts an already gone credential as
   done. Each request is built once, as a ``_batch.GraphCall``
   (``credentials_list_call``, ``credential_create_call``, ``credential_update_call``, ``credential_delete_call``;
   ``plan_calls`` for a whole plan), and sent one by one here (``send_graph_call``) or in ``$batch``es by the bulk
   engine (``_onboarding.py``), with the answers read by the same helpers (``credentials_of``, ``created_credential``,
   ``applied_credentials``). ``reconcile_application`` = read + plan + apply for one application;
   ``reconcile_applications`` does the same for many concurrently, planning (and so validating) all of them before
   the first write.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field as dataclass_field, replace as dataclass_replace
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

from ansible_collections.oidc_federation.azure.plugins.module_utils._batch import GraphCall, not_found, send_graph_call
from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import ApiResponse
from ansible_collections.oidc_federation.azure.plugins.module_utils._fic import (
    GITLAB_COM_ISSUER,
    LANGUAGE_VERSION,
    MAX_CREDENTIALS_PER_APP,
    TRUST_PROJECT,
    FicValidationError,
    analyze_gitlab_trust,
    check_gitlab_trust,
    credential_differences,
    is_gitlab_issuer,
    plan_credential_changes,
    validate_credential,
    validate_credential_set,
    validate_name,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._gitlab import (
    MANAGED_MARKER,
    REF_TYPE_BRANCH,
    REF_TYPE_TAG,
    SubjectBuilder,
    describes_project,
    plan_matches,
    plan_project_credentials,
    validate_project_id,
    validate_project_path,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._module import gather_limited

STATE_PRESENT = "present"
STATE_ABSENT = "absent"
STATES = (STATE_PRESENT, STATE_ABSENT)
DEFAULT_ISSUER = GITLAB_COM_ISSUER
DEFAULT_NAME_PREFIX = "gitlab"
GRAPH_FIELDS = ("id", "name", "issuer", "subject", "claimsMatchingExpression", "audiences", "description")

# What ``exclusive`` may delete (see ``ExclusiveScope``).
SCOPE_APPLICATION = "application"
SCOPE_GITLAB_PROJECT = "gitlab_project"
SCOPE_MANAGED = "managed"
EXCLUSIVE_SCOPES = (SCOPE_APPLICATION, SCOPE_GITLAB_PROJECT, SCOPE_MANAGED)

# Per-item result actions (``item_results``).
ACTION_CREATED = "created"
ACTION_UPDATED = "updated"
ACTION_UNCHANGED = "unchanged"
ACTION_DELETED = "deleted"
ACTION_ABSENT = "absent"

# Graph property names (as used in _fic errors) -> this collection's option names.
_OPTION_NAMES = {
    "claimsMatchingExpression": "claims_matching_expression",
    "claimsMatchingExpression.value": "claims_matching_expression",
    "claimsMatchingExpression.languageVersion": "claims_matching_expression",
}
# Fields named by _gitlab's builders -> the ``gitlab`` suboption that holds the value.
_GITLAB_OPTION_NAMES = {
    "branches": "gitlab.ref",
    "tags": "gitlab.ref",
    "any_ref": "gitlab.any_ref",
    "project_path": "gitlab.project_path",
    "project_id": "gitlab.project_id",
    "ci_id_token_sub_claim_components": "gitlab.sub_claim_components",
    "name_prefix": "gitlab.name_prefix",
    "issuer": "issuer",
}
# The same for a project request (gitlab.branches / gitlab.tags): errors name the list.
_PROJECT_OPTION_NAMES = dict(_GITLAB_OPTION_NAMES, branches="gitlab.branches", tags="gitlab.tags")
_GITLAB_SELECTORS = ("ref", "all_branches", "all_tags", "any_ref")
_GITLAB_LISTS = ("branches", "tags")


# --------------------------------------------------------------------------------------------
# Specs: one credential as the user wrote it -> Graph shape, validated
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CredentialDefaults:
    """Module-level values that list items inherit.

    ``audiences`` None means "the credential's issuer" (what GitLab's Azure tutorial configures: the GitLab URL as
    audience). ``project_path``/``project_id`` name the GitLab project that hand-written subjects and expressions
    are meant for (trust checks); ``gitlab_issuers`` are extra issuer URLs treated as GitLab.
    """

    issuer: str = DEFAULT_ISSUER
    audiences: Optional[Sequence[str]] = None
    state: str = STATE_PRESENT
    allow_broad_trust: bool = False
    project_path: Optional[str] = None
    project_id: Optional[str] = None
    gitlab_issuers: Sequence[str] = ()


@dataclass
class CredentialSpec:
    """One desired (``state: present``) or unwanted (``state: absent``) credential of an application.

    ``credential`` is Graph-shaped; its ``name`` may be None for an absent credential identified by issuer and
    subject/expression. ``name_given`` is False when the name was derived (gitlab builder): such a credential
    adopts the name of an existing credential with the same issuer and subject/expression instead of duplicating it.
    ``field`` is the option path for errors (``credentials[2].``); ``project`` the GitLab project label, if known, and
    ``project_path``/``project_id`` the project itself (built credentials, or the intended project of a hand-written
    one); ``index`` the position of the item in ``credentials`` (None for the single form); ``request`` the
    ``ProjectRequest`` the credential is part of (``gitlab.branches``/``gitlab.tags``), if any.
    """

    credential: dict
    state: str = STATE_PRESENT
    field: str = ""
    name_given: bool = True
    project: Optional[str] = None
    ref_type: Optional[str] = None
    project_path: Optional[str] = None
    project_id: Optional[str] = None
    index: Optional[int] = None
    request: Optional["ProjectRequest"] = None


@dataclass(frozen=True, eq=False)
class ProjectRequest:
    """A project-level trust request (``gitlab: {project_path, branches, tags, any_ref}``) expanded into ``size`` credentials.

    Kept on each of its specs, so that the plan can re-check it against the room the application really has
    (20 minus the credentials this request does not manage) with ``check_budget``.
    """

    builder: SubjectBuilder
    issuer: str
    branches: tuple
    tags: tuple
    any_ref: bool
    audience: str
    name_prefix: str
    gitlab_issuers: tuple
    field: str
    size: int

    def check_budget(self, available: int) -> None:
        """Raise the planner's refusal (with suggested patterns) when the request needs more than ``available`` credentials."""
        if self.size <= available:
            return
        with _option_fields(self.field, _PROJECT_OPTION_NAMES):
            plan_project_credentials(self.builder, issuer=self.issuer, branches=self.branches, tags=self.tags, any_ref=self.any_ref,
                                     audience=self.audience, name_prefix=self.name_prefix, available=max(0, available),
                                     gitlab_issuers=self.gitlab_issuers)


def _rename_field(name: str, prefix: str, mapping: Mapping[str, str]) -> str:
    bare = name[len(prefix):] if prefix and name.startswith(prefix) else name
    if bare in mapping:
        bare = mapping[bare]
    elif bare.startswith("claim_values."):
        bare = "gitlab." + bare
    return prefix + bare


@contextlib.contextmanager
def _option_fields(prefix: str, mapping: Optional[Mapping[str, str]] = None) -> Iterator[None]:
    """Re-raise ``FicValidationError`` with the field renamed to the module option path (``credentials[1].subject``)."""
    try:
        yield
    except FicValidationError as exc:
        renamed = _rename_field(exc.field, prefix, _OPTION_NAMES if mapping is None else mapping)
        if renamed == exc.field:
            raise
        raise FicValidationError(renamed, exc.message, exc.fix) from None


def _given(value: Any) -> bool:
    return value not in (None, "")


_GITLAB_KEYS = ("project_path", "project_id", "ref_type", "ref", "all_branches", "all_tags", "any_ref", "sub_claim_components",
                "claim_values", "branches", "tags")


def _meaningful(gitlab: Optional[Mapping[str, Any]]) -> dict:
    """The gitlab suboption, or {} when it sets nothing (Ansible fills every suboption with None/False)."""
    if not gitlab or not any(_given(gitlab.get(key)) and gitlab.get(key) is not False for key in _GITLAB_KEYS):
        return {}
    return dict(gitlab)


def _audiences(item: Mapping[str, Any], defaults: CredentialDefaults, issuer: str) -> list:
    audiences = item.get("audiences")
    if audiences is None:
        audiences = defaults.audiences
    if audiences is None:
        return [issuer]
    return [audiences] if isinstance(audiences, str) else list(audiences)


def _selector_count(gitlab: Mapping[str, Any]) -> int:
    return sum(1 for key in _GITLAB_SELECTORS if (gitlab.get(key) if key != "ref" else _given(gitlab.get("ref"))))


def is_project_request(gitlab: Optional[Mapping[str, Any]]) -> bool:
    """True if the gitlab suboption lists ``branches`` and/or ``tags`` (a project request: several credentials)."""
    return bool(gitlab) and any(gitlab.get(key) is not None for key in _GITLAB_LISTS)


def _check_project_request(gitlab: Mapping[str, Any], prefix: str) -> None:
    for key in ("ref", "ref_type", "all_branches", "all_tags"):
        if _given(gitlab.get(key)) and gitlab.get(key) is not False:
            raise FicValidationError(
                prefix + "gitlab." + key, "%s cannot be combined with branches/tags: the lists already select the refs" % key,
                "list every ref in branches/tags ('*' stands for all branches or all tags), or use %s without the lists" % key)
    for key in _GITLAB_LISTS:
        value = gitlab.get(key)
        if value is not None and (isinstance(value, str) or not isinstance(value, Sequence)):
            raise FicValidationError(prefix + "gitlab." + key, "%s must be a list of ref names or patterns" % key,
                                     "write %s: [main, 'release/*']" % key)


def _check_gitlab_selectors(gitlab: Mapping[str, Any], prefix: str) -> bool:
    """True if the gitlab suboption selects refs (so it builds the subject); validates the combination."""
    if is_project_request(gitlab):
        _check_project_request(gitlab, prefix)
        return True
    count = _selector_count(gitlab)
    if count > 1:
        raise FicValidationError(prefix + "gitlab", "give only one of ref, all_branches, all_tags and any_ref",
                                 "use one credential (list item) per selection")
    if _given(gitlab.get("ref_type")) and not _given(gitlab.get("ref")):
        raise FicValidationError(prefix + "gitlab.ref_type", "ref_type is set but ref is not",
                                 "give ref (a branch or tag name, or a pattern with *), or use all_branches/all_tags")
    return count == 1


def _builder(gitlab: Mapping[str, Any], prefix: str) -> SubjectBuilder:
    with _option_fields(prefix, _GITLAB_OPTION_NAMES):
        return SubjectBuilder(project_path=gitlab.get("project_path"), project_id=gitlab.get("project_id"),
                              components=gitlab.get("sub_claim_components"), claim_values=gitlab.get("claim_values"))


def _built_credential(gitlab: Mapping[str, Any], issuer: str, audiences: list, prefix: str,
                      gitlab_issuers: Sequence[str]) -> tuple[dict, SubjectBuilder, Optional[str]]:
    """The credential the gitlab suboption describes (subject or expression, derived name, description)."""
    builder = _builder(gitlab, prefix)
    if len(audiences) != 1:
        raise FicValidationError(prefix + "audiences", "a credential must have exactly one audience, not %d" % len(audiences),
                                 "keep one audience and make the CI job request the same aud")
    ref_type = None
    request: dict[str, Any] = {}
    if gitlab.get("any_ref"):
        request["any_ref"] = True
    elif gitlab.get("all_branches"):
        request["branches"], ref_type = ["*"], REF_TYPE_BRANCH
    elif gitlab.get("all_tags"):
        request["tags"], ref_type = ["*"], REF_TYPE_TAG
    else:
        ref_type = gitlab.get("ref_type") or REF_TYPE_BRANCH
        request["branches" if ref_type == REF_TYPE_BRANCH else "tags"] = [gitlab["ref"]]
    with _option_fields(prefix, _GITLAB_OPTION_NAMES):
        credentials = plan_project_credentials(
            builder, issuer=issuer, audience=audiences[0], name_prefix=gitlab.get("name_prefix") or DEFAULT_NAME_PREFIX,
            gitlab_issuers=gitlab_issuers, **request)
    return credentials[0], builder, ref_type


def _written_credential(item: Mapping[str, Any], issuer: str, audiences: list, prefix: str, state: str) -> dict:
    subject, expression = item.get("subject"), item.get("claims_matching_expression")
    if _given(subject) and _given(expression):
        raise FicValidationError(prefix + "subject", "subject and claims_matching_expression are mutually exclusive",
                                 "keep subject for an exact match, or claims_matching_expression for a flexible one, not both")
    credential: dict[str, Any] = {"name": item.get("name") or None, "issuer": issuer, "audiences": audiences}
    if _given(subject):
        credential["subject"] = subject
    elif _given(expression):
        credential["claimsMatchingExpression"] = {"value": expression, "languageVersion": LANGUAGE_VERSION}
    elif state == STATE_PRESENT:
        raise FicValidationError(prefix + "subject", "the credential trusts nothing: no subject, claims_matching_expression or gitlab ref",
                                 "set subject (exact), claims_matching_expression (flexible), or gitlab with ref/all_branches/all_tags/"
                                 "any_ref to build them")
    elif not _given(item.get("name")):
        raise FicValidationError(prefix + "name", "an absent credential needs its name, or its subject/expression, or a gitlab selection",
                                 "set name")
    if state == STATE_PRESENT and not _given(item.get("name")):
        raise FicValidationError(prefix + "name", "a hand-written credential needs a name (only the gitlab builder derives one)",
                                 "set name (3 to 120 letters, digits, '-' or '_'), or describe the trust with the gitlab suboption")
    return credential


def _check_trust(credential: Mapping[str, Any], *, prefix: str, project_path: Optional[str], project_id: Optional[str],
                 allow_broad_trust: bool, gitlab_issuers: Sequence[str]) -> None:
    """Refuse a hand-written GitLab subject/expression that trusts more than one project (unless allowed) or another project.

    Applies when the issuer is GitLab (Microsoft's allow-list or ``gitlab_issuers``) or an intended project was named.
    Without an intended project, the project spelled literally in the subject/expression is taken as intended:
    wildcards after ``project_path:<path>:`` / ``project_id:<id>:`` are fine, a wildcard reaching into other
    projects of a namespace needs ``allow_broad_trust``, one reaching into other namespaces is always refused.
    """
    intended = _given(project_path) or _given(project_id)
    if not intended and not is_gitlab_issuer(credential["issuer"], gitlab_issuers):
        return
    expression = credential.get("claimsMatchingExpression")
    if expression is not None:
        check_gitlab_trust(expression=expression["value"], project_path=project_path or None, project_id=project_id or None,
                           allow_broad_trust=allow_broad_trust, field=prefix + "claims_matching_expression")
    else:
        check_gitlab_trust(subject=credential["subject"], project_path=project_path or None, project_id=project_id or None,
                           allow_broad_trust=allow_broad_trust, field=prefix + "subject")


def spec_from_options(item: Mapping[str, Any], *, defaults: CredentialDefaults = CredentialDefaults(),
                      field: str = "") -> CredentialSpec:
    """Build and validate one ``CredentialSpec`` from module-style options (see the module's ``credentials`` suboptions).

    ``field`` prefixes error fields (``credentials[3].``). Raises ``FicValidationError`` naming the option and the fix.
    Pure: no request is made. An item that describes several credentials (``gitlab.branches``/``gitlab.tags``) is
    refused here; ``specs_from_item`` expands it.
    """
    specs = specs_from_item(item, defaults=defaults, field=field)
    if len(specs) != 1:
        raise FicValidationError(field + "gitlab", "the request describes %d credentials, not one" % len(specs),
                                 "expand it with specs_from_item (the module does)")
    return specs[0]


def specs_from_item(item: Mapping[str, Any], *, defaults: CredentialDefaults = CredentialDefaults(), field: str = "",
                    index: Optional[int] = None) -> list:
    """The ``CredentialSpec`` list one item describes: one credential, or one per planned credential of a project request.

    A project request (``gitlab: {project_path, branches: [...], tags: [...], any_ref}``) goes through
    ``_gitlab.plan_project_credentials``: literal refs become exact subjects, patterns and ``'*'`` flexible expressions,
    entries covered by another one are dropped, more than 20 is refused with suggested patterns (the plan re-checks
    the request against the application's real room). ``index`` is recorded on every spec (``credentials[index]``).
    """
    prefix = field
    state = item.get("state") or defaults.state
    if state not in STATES:
        raise FicValidationError(prefix + "state", "state %r is not present or absent" % (state,), "use present or absent")
    issuer = item.get("issuer") or defaults.issuer
    audiences = _audiences(item, defaults, issuer)
    allow_broad = defaults.allow_broad_trust if item.get("allow_broad_trust") is None else bool(item["allow_broad_trust"])
    gitlab_issuers = tuple(defaults.gitlab_issuers or ())
    gitlab = _meaningful(item.get("gitlab"))
    if _given(item.get("name")):
        with _option_fields(prefix):
            validate_name(item["name"], field=prefix + "name")
    context = _ItemContext(prefix, state, issuer, audiences, allow_broad, gitlab_issuers, gitlab)
    if gitlab and _check_gitlab_selectors(gitlab, prefix):
        specs = _request_specs(item, context) if is_project_request(gitlab) else [_built_spec(item, context)]
    else:
        specs = [_written_spec(item, context, defaults)]
    for spec in specs:
        spec.index = index
    return specs


@dataclass(frozen=True)
class _ItemContext:
    """What ``spec_from_options`` resolved for one item before building its credential."""

    prefix: str
    state: str
    issuer: str
    audiences: list
    allow_broad_trust: bool
    gitlab_issuers: tuple
    gitlab: dict


def _built_spec(item: Mapping[str, Any], ctx: _ItemContext) -> CredentialSpec:
    """A credential built by the gitlab suboption (name derived unless given)."""
    for option in ("subject", "claims_matching_expression"):
        if _given(item.get(option)):
            raise FicValidationError(ctx.prefix + option, "%s and a gitlab ref selection are mutually exclusive: the gitlab suboption builds "
                                     "the subject or expression" % option,
                                     "remove %s, or remove ref/all_branches/all_tags/any_ref from gitlab" % option)
    credential, builder, ref_type = _built_credential(ctx.gitlab, ctx.issuer, ctx.audiences, ctx.prefix, ctx.gitlab_issuers)
    name_given = _given(item.get("name"))
    if name_given:
        credential["name"] = item["name"]
    if item.get("description") is not None:
        credential["description"] = item["description"]
    with _option_fields(ctx.prefix):
        validate_credential(credential, gitlab_issuers=ctx.gitlab_issuers, field_prefix=ctx.prefix)
    return CredentialSpec(credential, ctx.state, ctx.prefix, name_given, builder.label, ref_type, builder.project_path, builder.project_id)


def _request_specs(item: Mapping[str, Any], ctx: _ItemContext) -> list:
    """The credentials of a project request (``gitlab.branches``/``gitlab.tags``/``gitlab.any_ref``), names derived."""
    for option in ("name", "subject", "claims_matching_expression"):
        if _given(item.get(option)):
            raise FicValidationError(ctx.prefix + option, "%s cannot be combined with gitlab.branches/gitlab.tags: the request derives one "
                                     "credential, with its subject or expression and name, per listed ref" % option,
                                     "remove %s, or describe a single credential (gitlab.ref, or subject/claims_matching_expression)" % option)
    if len(ctx.audiences) != 1:
        raise FicValidationError(ctx.prefix + "audiences", "a credential must have exactly one audience, not %d" % len(ctx.audiences),
                                 "keep one audience and make the CI job request the same aud")
    gitlab = ctx.gitlab
    builder = _builder(gitlab, ctx.prefix)
    request = ProjectRequest(builder=builder, issuer=ctx.issuer, branches=tuple(gitlab.get("branches") or ()), tags=tuple(gitlab.get("tags") or ()),
                             any_ref=bool(gitlab.get("any_ref")), audience=ctx.audiences[0],
                             name_prefix=gitlab.get("name_prefix") or DEFAULT_NAME_PREFIX, gitlab_issuers=ctx.gitlab_issuers, field=ctx.prefix,
                             size=0)
    with _option_fields(ctx.prefix, _PROJECT_OPTION_NAMES):
        matches = plan_matches(builder, branches=request.branches, tags=request.tags, any_ref=request.any_ref)
        credentials = plan_project_credentials(builder, issuer=request.issuer, branches=request.branches, tags=request.tags,
                                               any_ref=request.any_ref, audience=request.audience, name_prefix=request.name_prefix,
                                               gitlab_issuers=request.gitlab_issuers)
    request = dataclass_replace(request, size=len(credentials))
    specs = []
    for match, credential in zip(matches, credentials):
        if item.get("description") is not None:
            credential["description"] = item["description"]
            with _option_fields(ctx.prefix):
                validate_credential(credential, gitlab_issuers=ctx.gitlab_issuers, field_prefix=ctx.prefix)
        specs.append(CredentialSpec(credential, ctx.state, ctx.prefix, False, builder.label, match.ref_type, builder.project_path,
                                    builder.project_id, request=request))
    return specs


def _written_spec(item: Mapping[str, Any], ctx: _ItemContext, defaults: CredentialDefaults) -> CredentialSpec:
    """A hand-written credential (subject or expression), checked against the intended GitLab project when present."""
    credential = _written_credential(item, ctx.issuer, ctx.audiences, ctx.prefix, ctx.state)
    if item.get("description") is not None:
        credential["description"] = item["description"]
    project_path, project_id = _intended_project(ctx.gitlab, defaults, ctx.prefix)
    if ctx.state == STATE_PRESENT:
        with _option_fields(ctx.prefix):
            validate_credential(credential, gitlab_issuers=ctx.gitlab_issuers, field_prefix=ctx.prefix)
            _check_trust(credential, prefix=ctx.prefix, project_path=project_path, project_id=project_id,
                         allow_broad_trust=ctx.allow_broad_trust, gitlab_issuers=ctx.gitlab_issuers)
    label = project_path or ("project id %s" % project_id if project_id else None)
    return CredentialSpec(credential, ctx.state, ctx.prefix, _given(item.get("name")), label, None, project_path, project_id)


def _intended_project(gitlab: Mapping[str, Any], defaults: CredentialDefaults, prefix: str) -> tuple:
    """The GitLab project a hand-written subject/expression is meant for: the item's gitlab suboption, else the defaults."""
    if not gitlab:
        return defaults.project_path or None, defaults.project_id or None
    path, ident = gitlab.get("project_path"), gitlab.get("project_id")
    if not _given(path) and not _given(ident):
        raise FicValidationError(prefix + "gitlab", "the gitlab suboption names no project and selects no ref",
                                 "set gitlab.project_path (or project_id) and a ref selection (ref, all_branches, all_tags, any_ref) to "
                                 "build the subject, or only the project to check a hand-written subject against it")
    path = validate_project_path(path, field=prefix + "gitlab.project_path") if _given(path) else None
    ident = validate_project_id(ident, field=prefix + "gitlab.project_id") if _given(ident) else None
    return path, ident


def specs_from_options(items: Sequence[Mapping[str, Any]], *, defaults: CredentialDefaults = CredentialDefaults(),
                       field: str = "credentials") -> list:
    """``specs_from_item`` for every item of a list (flattened, in item order), then ``check_specs``.

    Errors name ``<field>[<index>].<option>``; every spec records its item's ``index``.
    """
    specs = [spec for index, item in enumerate(items)
             for spec in specs_from_item(item, defaults=defaults, field="%s[%d]." % (field, index), index=index)]
    check_specs(specs, field=field)
    return specs


def check_specs(specs: Sequence[CredentialSpec], *, field: str = "credentials") -> None:
    """The set rules that need no request: at most 20 desired credentials, unique names, unique issuer+subject."""
    desired = [spec.credential for spec in specs if spec.state == STATE_PRESENT]
    _check_capacity([], specs, [spec.credential.get("name") for spec in specs], False, field)
    validate_credential_set(desired, field=field)


# --------------------------------------------------------------------------------------------
# Plan: desired specs against an application's existing credentials
# --------------------------------------------------------------------------------------------

def target_key(credential: Mapping[str, Any]) -> Optional[tuple]:
    """What a credential trusts: ``(issuer, 'subject', s)`` or ``(issuer, 'expression', value)``; None if neither is set."""
    expression = credential.get("claimsMatchingExpression")
    if expression is not None:
        return (credential.get("issuer"), "expression", expression.get("value"))
    if _given(credential.get("subject")):
        return (credential.get("issuer"), "subject", credential["subject"])
    return None


def is_flexible(credential: Optional[Mapping[str, Any]]) -> bool:
    """True for a credential with a ``claimsMatchingExpression`` (Graph /beta)."""
    return bool(credential) and credential.get("claimsMatchingExpression") is not None


@dataclass
class ApplicationPlan:
    """The changes for one application: ``changes`` (a ``_fic.CredentialPlan``) plus the spec -> final name mapping."""

    changes: Any
    names: list  # per spec: the name it resolved to (None: absent and not found)
    before: list

    @property
    def changed(self) -> bool:
        """True if anything would be written."""
        return self.changes.changed


def _resolve_names(existing: Sequence[Mapping[str, Any]], specs: Sequence[CredentialSpec]) -> list:
    by_target: dict[tuple, list] = {}
    for item in existing:
        key = target_key(item)
        if key is not None:
            by_target.setdefault(key, []).append(item.get("name"))
    names = []
    for spec in specs:
        name = spec.credential.get("name")
        if not spec.name_given:
            matches = by_target.get(target_key(spec.credential) or (), [])
            if len(matches) == 1:
                name = matches[0]
        names.append(name)
    return names


def _capacity_fix(specs: Sequence[CredentialSpec]) -> str:
    per_project: dict[tuple, int] = {}
    for spec in specs:
        if spec.state == STATE_PRESENT and spec.project and not is_flexible(spec.credential):
            key = (spec.project, spec.ref_type)
            per_project[key] = per_project.get(key, 0) + 1
    hints = []
    for (project, ref_type), count in sorted(per_project.items(), key=lambda kv: -kv[1]):
        if count < 2:
            continue
        selector = {REF_TYPE_BRANCH: "all_branches: true", REF_TYPE_TAG: "all_tags: true"}.get(ref_type or "", "any_ref: true")
        kind = {REF_TYPE_BRANCH: "branch", REF_TYPE_TAG: "tag"}.get(ref_type or "", "ref")
        key = "project_path: %s" % project if "/" in project else "project_id: %s" % project.replace("project id ", "")
        hints.append("%s has %d exact %s credentials: replace them by one flexible credential, e.g. gitlab: {%s, %s} or a pattern "
                     "such as ref: 'release/*'" % (project, count, kind, key, selector))
    generic = "remove credentials you no longer need (exclusive: true removes every credential not listed; with exclusive_scope: " \
        "gitlab_project only those of the listed projects)"
    if hints:
        return "; ".join(hints + [generic])
    return generic + ", or replace a project's exact credentials by one flexible credential (gitlab: {project_path: mygroup/myproject, " \
        "all_branches: true})"


def _final_names(existing: Sequence[Mapping[str, Any]], specs: Sequence[CredentialSpec], names: Sequence[Optional[str]],
                 exclusive: bool, removed: Iterable[str] = ()) -> tuple:
    """(desired names, names of existing credentials kept without being desired), case-folded."""
    desired = {name.casefold() for spec, name in zip(specs, names) if spec.state == STATE_PRESENT and name}
    absent = {name.casefold() for spec, name in zip(specs, names) if spec.state == STATE_ABSENT and name}
    absent |= {name.casefold() for name in removed}
    kept = {(item.get("name") or "").casefold() for item in existing
            if (item.get("name") or "").casefold() not in desired | absent and not exclusive}
    return desired, kept


def _check_capacity(existing: Sequence[Mapping[str, Any]], specs: Sequence[CredentialSpec], names: Sequence[Optional[str]],
                    exclusive: bool, field: str, removed: Iterable[str] = ()) -> None:
    desired, kept = _final_names(existing, specs, names, exclusive, removed)
    total = len(kept) + len(desired)
    if total > MAX_CREDENTIALS_PER_APP:
        raise FicValidationError(
            field, "%d federated identity credentials would exist on the application (%d requested, %d others kept); Entra ID allows at most %d "
            "per application" % (total, len(desired), len(kept), MAX_CREDENTIALS_PER_APP),
            _capacity_fix(specs))


def _check_requests(existing: Sequence[Mapping[str, Any]], specs: Sequence[CredentialSpec], names: Sequence[Optional[str]],
                    exclusive: bool, removed: Iterable[str]) -> None:
    """Re-check each project request against the room it really has: 20 minus the final credentials it does not manage."""
    desired, kept = _final_names(existing, specs, names, exclusive, removed)
    final = desired | kept
    requests: list = []
    for spec in specs:
        if spec.state == STATE_PRESENT and spec.request is not None and not any(spec.request is seen for seen in requests):
            requests.append(spec.request)
    for request in requests:
        own = {name.casefold() for spec, name in zip(specs, names) if spec.request is request and spec.state == STATE_PRESENT and name}
        request.check_budget(MAX_CREDENTIALS_PER_APP - len(final - own))


def plan_application(existing: Sequence[Mapping[str, Any]], specs: Sequence[CredentialSpec], *, exclusive: bool = False,
                     gitlab_issuers: Iterable[str] = (), field: str = "credentials",
                     exclusive_scope: Optional["ExclusiveScope"] = None) -> ApplicationPlan:
    """Plan one application's changes from its ``existing`` credentials (Graph shape) and the ``specs``.

    Pure. Validates the final set before returning (at most 20, unique names, unique issuer+subject, no rename; each
    project request within the room the application has for it). ``exclusive`` deletes the existing credentials that
    are not listed and that ``exclusive_scope`` covers (None or ``application``: every one). Apply: deletes, then
    updates, then creates.
    """
    existing = [normalize_credential(item) for item in existing]
    names = _resolve_names(existing, specs)
    desired, absent = [], []
    for spec, name in zip(specs, names):
        if spec.state == STATE_ABSENT:
            if name:
                absent.append(name)
            continue
        desired.append(dict(spec.credential, name=name))
    removed: list = []
    if exclusive and exclusive_scope is not None and exclusive_scope.kind != SCOPE_APPLICATION:
        listed = {name.casefold() for name in names if name}
        removed = [item["name"] for item in existing if (item.get("name") or "").casefold() not in listed and exclusive_scope.covers(item)]
        absent.extend(removed)
        exclusive = False
    _check_requests(existing, specs, names, exclusive, removed)
    _check_capacity(existing, specs, names, exclusive, field, removed)
    changes = plan_credential_changes(existing, desired, absent=absent, exclusive=exclusive, gitlab_issuers=gitlab_issuers, field=field)
    return ApplicationPlan(changes=changes, names=names, before=existing)


# --------------------------------------------------------------------------------------------
# Exclusivity scope: which unlisted credentials ``exclusive`` may delete
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProjectTarget:
    """One GitLab project (path and/or id) of one issuer, whose credentials a ``gitlab_project`` scope covers."""

    issuer: str
    project_path: Optional[str] = None
    project_id: Optional[str] = None

    def scopes(self) -> set:
        """The ``TrustAnalysis.scope`` values that name this project."""
        found = set()
        if self.project_path:
            found.add("project_path:%s" % self.project_path)
        if self.project_id:
            found.add("project_id:%s" % self.project_id)
        return found

    def confines(self, credential: Mapping[str, Any]) -> bool:
        """True if ``credential`` has this issuer and trusts this project and nothing else (``_fic.analyze_gitlab_trust``).

        A credential that cannot be analysed (no subject or expression, an expression that does not parse) is never covered.
        With a project id, a credential this collection made for that project (its description names the id) is covered
        too, whatever path it trusts: the credentials of a project renamed since they were made.
        """
        if credential.get("issuer") != self.issuer:
            return False
        if self.project_id and describes_project(credential.get("description"), self.project_id):
            return True
        expression = credential.get("claimsMatchingExpression")
        if expression is not None:
            target = {"expression": expression.get("value")}
        elif _given(credential.get("subject")):
            target = {"subject": credential["subject"]}
        else:
            return False
        try:
            analysis = analyze_gitlab_trust(project_path=self.project_path, project_id=self.project_id, **target)
        except (ValueError, TypeError):  # FicValidationError is a ValueError: an expression Graph holds but we cannot parse
            return False
        return analysis.level == TRUST_PROJECT and analysis.scope in self.scopes()


@dataclass(frozen=True)
class ExclusiveScope:
    """Which existing credentials that are not listed ``exclusive`` deletes.

    * ``application``: every one (the application holds exactly the listed credentials).
    * ``gitlab_project``: only those whose issuer is the issuer of one of ``projects`` and whose subject or expression
      trusts that project and nothing else (per ``_fic.analyze_gitlab_trust``): the credentials of other projects on a
      shared application, group-wide ones and hand-made ones of other issuers are kept.
    * ``managed``: only those whose description carries ``MANAGED_MARKER`` (made by this collection's builders).
    """

    kind: str = SCOPE_APPLICATION
    projects: tuple = ()

    def covers(self, credential: Mapping[str, Any]) -> bool:
        """True if ``exclusive`` may delete ``credential`` when it is not listed."""
        if self.kind == SCOPE_GITLAB_PROJECT:
            return any(project.confines(credential) for project in self.projects)
        if self.kind == SCOPE_MANAGED:
            return MANAGED_MARKER in (credential.get("description") or "")
        return True


def exclusive_scope_for(kind: str, specs: Sequence[CredentialSpec], *, defaults: CredentialDefaults = CredentialDefaults(),
                        field: str = "exclusive_scope") -> ExclusiveScope:
    """The ``ExclusiveScope`` of ``kind`` for a request: for ``gitlab_project``, the projects its specs name (gitlab suboptions,
    intended projects) plus ``defaults.project_path``/``project_id`` (issuer ``defaults.issuer``). Pure; raises
    ``FicValidationError`` naming ``field`` for an unknown kind, or a ``gitlab_project`` scope that names no project.
    """
    if kind not in EXCLUSIVE_SCOPES:
        raise FicValidationError(field, "%r is not one of %s" % (kind, ", ".join(EXCLUSIVE_SCOPES)), "use %s" % " or ".join(EXCLUSIVE_SCOPES))
    if kind != SCOPE_GITLAB_PROJECT:
        return ExclusiveScope(kind)
    projects: list = []
    candidates = [(spec.credential.get("issuer"), spec.project_path, spec.project_id) for spec in specs]
    candidates.append((defaults.issuer, defaults.project_path, defaults.project_id))
    for issuer, path, ident in candidates:
        target = ProjectTarget(issuer, path or None, str(ident) if _given(ident) else None)
        if issuer and target.scopes() and target not in projects:
            projects.append(target)
    if not projects:
        raise FicValidationError(field, "gitlab_project limits exclusive to the credentials of the listed GitLab project, but no project is named",
                                 "name it with gitlab_project_path (or gitlab_project_id), or with gitlab.project_path in the credentials")
    return ExclusiveScope(kind, tuple(projects))


# --------------------------------------------------------------------------------------------
# Graph operations
# --------------------------------------------------------------------------------------------

def normalize_credential(item: Mapping[str, Any]) -> dict:
    """A credential as Graph returns it, reduced to its properties (``subject``/expression None when unset)."""
    out = {key: item.get(key) for key in GRAPH_FIELDS}
    if out["subject"] == "":
        out["subject"] = None
    expression = out["claimsMatchingExpression"]
    if expression is not None:
        out["claimsMatchingExpression"] = {"value": expression.get("value"), "languageVersion": expression.get("languageVersion")}
    out["audiences"] = list(out["audiences"] or [])
    return out


def _collection(app_object_id: str) -> str:
    return "/applications/%s/federatedIdentityCredentials" % app_object_id


def _by_name(app_object_id: str, name: str) -> str:
    return "%s(name='%s')" % (_collection(app_object_id), name.replace("'", "''"))


def _item_path(app_object_id: str, credential: Mapping[str, Any]) -> str:
    if credential.get("id"):
        return "%s/%s" % (_collection(app_object_id), credential["id"])
    return _by_name(app_object_id, credential["name"])


def _target(app_object_id: str, name: Optional[str] = None) -> str:
    text = "application %s" % app_object_id
    return text + " credential %s" % name if name else text


def _write_body(credential: Mapping[str, Any], fields: Iterable[str]) -> dict:
    body = {}
    for key in fields:
        value = credential.get(key)
        if key == "audiences":
            value = list(value or [])
        body[key] = value
    return body


# Requests: ONE builder per kind, returning a ``_batch.GraphCall``. The functions below send them one by one
# (``send_graph_call``, the federated_identity_credential module); the bulk engine sends the same calls in ``$batch``.

def credentials_list_call(app_object_id: str) -> GraphCall:
    """GET every credential of the application through ``/beta`` (``/v1.0`` fails on flexible credentials), every page;
    a 404 is replication lag (a new application)."""
    return GraphCall("GET", _collection(app_object_id), version="beta", operation="list federated identity credentials",
                     target=_target(app_object_id), retry_not_found=True, all_pages=True)


def credentials_of(response: ApiResponse) -> list:
    """The credentials a ``credentials_list_call`` returned, normalized."""
    data = response.data if isinstance(response.data, dict) else {}
    return [normalize_credential(item) for item in data.get("value") or () if isinstance(item, dict)]


def credential_create_call(app_object_id: str, credential: Mapping[str, Any]) -> GraphCall:
    """Create (or overwrite) a credential by name: ``PATCH ...(name='...')`` with ``Prefer: create-if-missing``;
    ``/beta`` for a flexible credential, ``/v1.0`` otherwise."""
    flexible = is_flexible(credential)
    fields = ["name", "issuer", "audiences"] + (["description"] if credential.get("description") is not None else [])
    fields += ["subject", "claimsMatchingExpression"] if flexible else ["subject"]
    return GraphCall("PATCH", _by_name(app_object_id, credential["name"]), version="beta" if flexible else "v1.0",
                     body=_write_body(credential, fields), headers={"Prefer": "create-if-missing"},
                     operation="create federated identity credential", target=_target(app_object_id, credential["name"]),
                     retry_not_found=True)


def created_credential(response: ApiResponse, credential: Mapping[str, Any]) -> dict:
    """The credential a ``credential_create_call`` made (201), or the credential as sent when it existed (204)."""
    if isinstance(response.data, dict) and response.data.get("name"):
        return normalize_credential(response.data)
    return normalize_credential(credential)


def credential_update_call(app_object_id: str, existing: Mapping[str, Any], desired: Mapping[str, Any]) -> Optional[GraphCall]:
    """The PATCH sending the fields of ``existing`` that differ from ``desired`` (the name never changes); None when
    nothing differs. Switching between subject and expression sends both (one null) through ``/beta``."""
    fields = credential_differences(existing, desired)
    if not fields:
        return None
    merged = dict(existing, **{key: desired.get(key) for key in fields})
    flexible = is_flexible(existing) or is_flexible(merged)
    body_fields = list(fields)
    if flexible and ("subject" in fields or "claimsMatchingExpression" in fields):
        body_fields = sorted(set(body_fields) | {"subject", "claimsMatchingExpression"})
    return GraphCall("PATCH", _item_path(app_object_id, existing), version="beta" if flexible else "v1.0",
                     body=_write_body(merged, body_fields), operation="update federated identity credential",
                     target=_target(app_object_id, existing.get("name")), retry_not_found=True)


def credential_delete_call(app_object_id: str, credential: Mapping[str, Any]) -> GraphCall:
    """DELETE a credential; already gone (404) counts as done (the answer's status is then 404)."""
    return GraphCall("DELETE", _item_path(app_object_id, credential), version="beta" if is_flexible(credential) else "v1.0",
                     operation="delete federated identity credential", target=_target(app_object_id, credential.get("name")),
                     accept=not_found)


def plan_calls(app_object_id: str, plan: "ApplicationPlan") -> list:
    """The writes of ``plan`` in order: deletes, then updates, then creates (the 20-per-application limit makes deletes
    go first). The creates come last, one per ``plan.changes.create`` (see ``applied_credentials``)."""
    changes = plan.changes
    calls = [credential_delete_call(app_object_id, credential) for credential in changes.delete]
    for existing, merged in changes.update:
        call = credential_update_call(app_object_id, existing, merged)
        if call is not None:
            calls.append(call)
    calls += [credential_create_call(app_object_id, credential) for credential in changes.create]
    return calls


def applied_credentials(plan: "ApplicationPlan", responses: Sequence[ApiResponse]) -> list:
    """The application's credentials once ``plan_calls`` succeeded with ``responses`` (one per call, in order)."""
    creates = plan.changes.create
    answers = list(responses)[len(responses) - len(creates):] if creates else []
    created = {credential["name"].casefold(): created_credential(response, credential)
               for credential, response in zip(creates, answers)}
    return [created.get((item.get("name") or "").casefold(), item) for item in plan.changes.final]


async def list_credentials(clients: Any, app_object_id: str) -> list:
    """Every credential of the application, read through ``/beta`` (so flexible credentials can be read)."""
    return credentials_of(await send_graph_call(clients, credentials_list_call(app_object_id)))


@dataclass
class CredentialReport:
    """What happened (or, in check mode, would happen) to one application's credentials."""

    application: dict
    before: list
    after: list
    created: list = dataclass_field(default_factory=list)
    updated: list = dataclass_field(default_factory=list)  # [{"name": ..., "fields": [...]}]
    deleted: list = dataclass_field(default_factory=list)
    names: list = dataclass_field(default_factory=list)  # per spec: resolved name

    @property
    def changed(self) -> bool:
        """True if anything was (or would be) written."""
        return bool(self.created or self.updated or self.deleted)


def _report(application: Mapping[str, Any], plan: ApplicationPlan, after: Sequence[Mapping[str, Any]]) -> CredentialReport:
    changes = plan.changes
    return CredentialReport(
        application=dict(application), before=sort_credentials(plan.before), after=sort_credentials(after),
        created=[item["name"] for item in changes.create],
        updated=[{"name": new["name"], "fields": credential_differences(old, new)} for old, new in changes.update],
        deleted=[item["name"] for item in changes.delete], names=list(plan.names))


def sort_credentials(credentials: Iterable[Mapping[str, Any]]) -> list:
    """Credentials ordered by name (case-insensitive), normalized."""
    return sorted((normalize_credential(item) for item in credentials), key=lambda item: (item.get("name") or "").casefold())


async def apply_plan(clients: Any, app_object_id: str, plan: ApplicationPlan) -> list:
    """Write ``plan`` (deletes, then updates, then creates, one at a time per application); return the final credentials.

    Writes to one application run sequentially (the 20-per-application limit makes deletes go first, and Entra ID
    serialises writes to one object anyway); different applications can be applied concurrently. The bulk engine
    sends the same ``plan_calls`` as one ``$batch`` lane.
    """
    responses = []
    for call in plan_calls(app_object_id, plan):
        responses.append(await send_graph_call(clients, call))
    return applied_credentials(plan, responses)


async def plan_for_application(clients: Any, application: Mapping[str, Any], specs: Sequence[CredentialSpec], *, exclusive: bool = False,
                               gitlab_issuers: Iterable[str] = (), field: str = "credentials",
                               exclusive_scope: Optional[ExclusiveScope] = None) -> ApplicationPlan:
    """Read the application's credentials and plan (validate) the changes; no write."""
    existing = await list_credentials(clients, application["id"])
    return plan_application(existing, specs, exclusive=exclusive, gitlab_issuers=gitlab_issuers, field=field, exclusive_scope=exclusive_scope)


def plan_without_application(specs: Sequence[CredentialSpec], *, exclusive: bool = False, gitlab_issuers: Iterable[str] = (),
                             field: str = "credentials", exclusive_scope: Optional[ExclusiveScope] = None) -> CredentialReport:
    """The report for an application that does not exist yet (check mode, its creation predicted by an earlier task).

    Plans against an empty credential set, so every rule is still checked and ``created``/``after`` are what a real
    run would create once the application exists. ``application`` is empty. Pure.
    """
    plan = plan_application([], specs, exclusive=exclusive, gitlab_issuers=gitlab_issuers, field=field, exclusive_scope=exclusive_scope)
    return _report({}, plan, plan.changes.final)


async def reconcile_application(clients: Any, application: Mapping[str, Any], specs: Sequence[CredentialSpec], *, exclusive: bool = False,
                                gitlab_issuers: Iterable[str] = (), check_mode: bool = False, field: str = "credentials",
                                exclusive_scope: Optional[ExclusiveScope] = None) -> CredentialReport:
    """Bring one application's credentials to ``specs``: read, plan (every rule checked), then write unless ``check_mode``.

    ``application`` needs ``id`` (the object id). Safe to gather for many applications: no shared state.
    ``exclusive_scope`` limits what ``exclusive`` deletes (see ``ExclusiveScope``).
    """
    plan = await plan_for_application(clients, application, specs, exclusive=exclusive, gitlab_issuers=gitlab_issuers, field=field,
                                      exclusive_scope=exclusive_scope)
    if check_mode or not plan.changed:
        return _report(application, plan, plan.changes.final)
    after = await apply_plan(clients, application["id"], plan)
    return _report(application, plan, after)


@dataclass
class ApplicationRequest:
    """One application's desired credentials, for ``reconcile_applications``."""

    application: dict
    specs: list
    exclusive: bool = False
    field: str = "credentials"
    exclusive_scope: Optional[ExclusiveScope] = None


async def reconcile_applications(clients: Any, requests: Sequence[ApplicationRequest], *, gitlab_issuers: Iterable[str] = (),
                                 check_mode: bool = False, limit: int = 4) -> list:
    """``reconcile_application`` for many applications, at most ``limit`` at a time.

    Plans every application first (reads, all rules checked); a validation or read error stops everything before
    the first write. Then applies the plans concurrently (sequential within one application). Results keep the
    order of ``requests``.
    """
    issuers = tuple(gitlab_issuers)
    plans = await gather_limited([
        (lambda req=req: plan_for_application(clients, req.application, req.specs, exclusive=req.exclusive, gitlab_issuers=issuers,
                                              field=req.field, exclusive_scope=req.exclusive_scope)) for req in requests], limit=limit)
    if check_mode:
        return [_report(req.application, plan, plan.changes.final) for req, plan in zip(requests, plans)]

    async def apply(req: ApplicationRequest, plan: ApplicationPlan) -> CredentialReport:
        if not plan.changed:
            return _report(req.application, plan, plan.changes.final)
        return _report(req.application, plan, await apply_plan(clients, req.application["id"], plan))

    return await gather_limited([(lambda req=req, plan=plan: apply(req, plan)) for req, plan in zip(requests, plans)], limit=limit)


# --------------------------------------------------------------------------------------------
# Results in the module's option names
# --------------------------------------------------------------------------------------------

def item_results(report: CredentialReport, specs: Sequence[CredentialSpec]) -> list:
    """One result per spec, in spec (so item) order: what became of the credential each requested item resolved to.

    ``{index, name, id, issuer, subject, claims_matching_expression, state, action}``; ``index`` is the item's position in
    ``credentials`` (None for the single form; a project request gives several results with the same index); ``action``
    is ``created``, ``updated`` or ``unchanged`` for ``state: present``, ``deleted`` or ``absent`` (there was nothing to
    delete) for ``state: absent``. In check mode, what would happen (``id`` null for a credential to create).
    """
    def folded(names: Iterable[str]) -> set:
        return {(name or "").casefold() for name in names}

    created, deleted = folded(report.created), folded(report.deleted)
    updated = folded(item["name"] for item in report.updated)
    after = {(item.get("name") or "").casefold(): item for item in report.after}
    before = {(item.get("name") or "").casefold(): item for item in report.before}
    results = []
    for spec, name in zip(specs, report.names):
        key = (name or "").casefold()
        if spec.state == STATE_PRESENT:
            action = ACTION_CREATED if key in created else ACTION_UPDATED if key in updated else ACTION_UNCHANGED
            credential = after.get(key) or dict(spec.credential, name=name)
        else:
            action = ACTION_DELETED if key in deleted else ACTION_ABSENT
            credential = before.get(key) or dict(spec.credential, name=name)
        shown = credential_result(credential)
        results.append({"index": spec.index, "name": name, "id": shown["id"], "issuer": shown["issuer"], "subject": shown["subject"],
                        "claims_matching_expression": shown["claims_matching_expression"], "state": spec.state, "action": action})
    return results


def credential_result(credential: Optional[Mapping[str, Any]]) -> Optional[dict]:
    """A credential in the module's (snake_case) shape: the same keys as the options, plus ``id``."""
    if credential is None:
        return None
    expression = credential.get("claimsMatchingExpression")
    return {
        "id": credential.get("id"),
        "name": credential.get("name"),
        "issuer": credential.get("issuer"),
        "audiences": list(credential.get("audiences") or []),
        "description": credential.get("description"),
        "subject": credential.get("subject"),
        "claims_matching_expression": expression.get("value") if expression else None,
    }
