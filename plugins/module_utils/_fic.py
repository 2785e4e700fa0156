# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""Federated identity credential (FIC) rules and the flexible expression language.

Pure logic, standard library only. Everything here runs before any request is sent, so that a
credential Microsoft Graph would refuse (or one that would silently never match, or match too much)
is reported with the field at fault and a fix.

Credentials are plain dicts in Microsoft Graph's shape::

    {"name": "...", "issuer": "...", "audiences": ["api://AzureADTokenExchange"], "description": "...",
     "subject": "..."}                                             # exact credential, or
    {..., "claimsMatchingExpression": {"value": "claims['sub'] matches '...'", "languageVersion": 1}}

Flexible expressions (languageVersion 1): ``claims['<claim>'] <op> '<comparand>'`` joined by `` and ``;
operators ``eq`` (exact) and ``matches`` (``*`` any run of characters, ``?`` exactly one character); a
single space on each side of an operator and of ``and``; comparands in single quotes, ``''`` for a
literal quote. There is no ``or``, no parentheses and no escape for ``*``/``?`` inside ``matches``.
The parser is strict on purpose: it accepts exactly one spelling for each expression, so the
rendering of a parsed expression is byte-identical to its input and string comparison is semantic
comparison.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import ValidationError

MAX_CREDENTIALS_PER_APP = 20
NAME_MIN_LENGTH = 3
NAME_MAX_LENGTH = 120
MAX_FIELD_LENGTH = 600
LANGUAGE_VERSION = 1
DEFAULT_AUDIENCE = "api://AzureADTokenExchange"

OP_EQ = "eq"
OP_MATCHES = "matches"
OPERATORS = (OP_EQ, OP_MATCHES)
WILDCARDS = ("*", "?")

# Graph property names, used as the ``field`` of errors.
FIELD_NAME = "name"
FIELD_ISSUER = "issuer"
FIELD_SUBJECT = "subject"
FIELD_AUDIENCES = "audiences"
FIELD_DESCRIPTION = "description"
FIELD_EXPRESSION = "claimsMatchingExpression"

ISSUER_GITLAB = "gitlab"
ISSUER_GITHUB = "github"
ISSUER_TERRAFORM = "terraform"
GITLAB_COM_ISSUER = "https://gitlab.com"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
# Microsoft lists the Terraform Cloud issuers as bare hosts; HCP Terraform's tokens carry the https URL.
TERRAFORM_ISSUERS = ("https://app.terraform.io", "https://app.eu.terraform.io", "app.terraform.io", "app.eu.terraform.io")

TRUST_PROJECT = "project"
TRUST_GROUP = "group"
TRUST_UNSAFE = "unsafe"
TRUST_LEVELS = (TRUST_PROJECT, TRUST_GROUP, TRUST_UNSAFE)

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")
# "https://gitlab.<anything>.<tld>": one or more DNS labels between "gitlab." and the top-level domain.
_GITLAB_ISSUER_RE = re.compile(r"https://gitlab(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+\.[a-z]{2,63}\Z")
_OPERATOR_WORD_RE = re.compile(r"[A-Za-z_]+")
_GITLAB_SUB_LEADS = ("project_path:", "project_id:")

# Claims and operators Microsoft allows in flexible expressions, per issuer kind.
_ALLOWED_CLAIMS: dict[str, dict[str, tuple[str, ...]]] = {
    ISSUER_GITLAB: {"sub": (OP_EQ, OP_MATCHES)},
    ISSUER_GITHUB: {
        "sub": (OP_EQ, OP_MATCHES),
        "job_workflow_ref": (OP_EQ, OP_MATCHES),
        "repository_id": (OP_EQ,),
        "repository_owner_id": (OP_EQ,),
    },
    ISSUER_TERRAFORM: {"sub": (OP_EQ, OP_MATCHES)},
}
_ISSUER_LABELS = {ISSUER_GITLAB: "GitLab", ISSUER_GITHUB: "GitHub Actions", ISSUER_TERRAFORM: "Terraform Cloud"}


class FicValidationError(ValidationError, ValueError):
    """Bad input, found before any request: ``field`` is at fault, ``message`` says why, ``fix`` says what to do.

    A ``ValidationError`` (the collection's one bad-input type, which modules turn into a failure naming the field),
    and a ``ValueError`` for plain-Python callers.
    """

    def __init__(self, field: str, message: str, fix: str | None = None) -> None:
        self.field = field
        self.message = message
        self.fix = fix
        super().__init__(self.render(), field=field, fix=fix)

    def render(self) -> str:
        """One line naming the field, the problem and the fix."""
        text = "%s: %s" % (self.field, _sentence(self.message))
        if self.fix:
            text += " Fix: %s" % _sentence(self.fix)
        return text


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "?", "!")) else text + "."


def _join_field(prefix: str, field: str) -> str:
    return prefix + field if prefix else field


# --------------------------------------------------------------------------------------------
# Expression language: model, rendering, parsing, evaluation
# --------------------------------------------------------------------------------------------

def quote(value: str) -> str:
    """Render ``value`` as a single-quoted literal, doubling embedded quotes (``it's`` -> ``'it''s'``)."""
    return "'" + value.replace("'", "''") + "'"


def has_wildcards(value: str) -> bool:
    """True if ``value`` contains a ``matches`` wildcard (``*`` or ``?``)."""
    return any(char in value for char in WILDCARDS)


def wildcard_match(pattern: str, value: str) -> bool:
    """Case-sensitive ``matches``: ``*`` is any run of characters (also empty, also ``/`` and ``:``), ``?`` one character.

    Linear greedy matching with back-tracking to the last ``*`` (no regular expressions, so no
    pathological back-tracking on patterns with many stars).
    """
    pos = 0
    ppos = 0
    star = -1
    mark = 0
    while pos < len(value):
        if ppos < len(pattern) and pattern[ppos] == "*":
            star = ppos
            mark = pos
            ppos += 1
        elif ppos < len(pattern) and (pattern[ppos] == "?" or pattern[ppos] == value[pos]):
            ppos += 1
            pos += 1
        elif star >= 0:
            ppos = star + 1
            mark += 1
            pos = mark
        else:
            return False
    while ppos < len(pattern) and pattern[ppos] == "*":
        ppos += 1
    return ppos == len(pattern)


def _claim_text(value: Any) -> str | None:
    """A claim's value as compared by the expression language; None when it cannot match anything."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return None


@dataclass(frozen=True)
class Condition:
    """One ``claims['<claim>'] <operator> '<comparand>'`` condition."""

    claim: str
    operator: str
    comparand: str

    def render(self) -> str:
        """Canonical text of this condition."""
        return "claims[%s] %s %s" % (quote(self.claim), self.operator, quote(self.comparand))

    def evaluate(self, claims: Mapping[str, Any]) -> bool:
        """True if the token ``claims`` satisfy this condition (a missing or non-string claim never does)."""
        value = _claim_text(claims.get(self.claim))
        if value is None:
            return False
        if self.operator == OP_EQ:
            return value == self.comparand
        if self.operator == OP_MATCHES:
            return wildcard_match(self.comparand, value)
        raise ValueError("unknown operator %r" % self.operator)


@dataclass(frozen=True)
class Expression:
    """A parsed languageVersion 1 expression: conditions joined by ``and``."""

    conditions: tuple[Condition, ...]

    def render(self) -> str:
        """Canonical text (identical to the text it was parsed from)."""
        return " and ".join(condition.render() for condition in self.conditions)

    def evaluate(self, claims: Mapping[str, Any]) -> bool:
        """True if every condition holds for the token ``claims``."""
        return all(condition.evaluate(claims) for condition in self.conditions)

    def claims_used(self) -> tuple[str, ...]:
        """Names of the claims the expression reads, in order of first use."""
        seen: list[str] = []
        for condition in self.conditions:
            if condition.claim not in seen:
                seen.append(condition.claim)
        return tuple(seen)


def render_condition(claim: str, operator: str, comparand: str) -> str:
    """Text of one condition, e.g. ``render_condition('sub', 'matches', 'project_id:42:*')``."""
    if operator not in OPERATORS:
        raise ValueError("unknown operator %r" % operator)
    return Condition(claim, operator, comparand).render()


def render_expression(conditions: Iterable[Condition | tuple[str, str, str]]) -> str:
    """Text of an expression built from ``Condition`` objects or ``(claim, operator, comparand)`` tuples."""
    items = [item if isinstance(item, Condition) else Condition(*item) for item in conditions]
    if not items:
        raise ValueError("an expression needs at least one condition")
    for item in items:
        if item.operator not in OPERATORS:
            raise ValueError("unknown operator %r" % item.operator)
    return Expression(tuple(items)).render()


_SYNTAX_FIX = "write conditions as claims['sub'] matches 'project_path:mygroup/myproject:*', joined by ' and '"


class _Parser:
    """Strict recursive-descent parser for languageVersion 1."""

    def __init__(self, text: str, field: str) -> None:
        self.text = text
        self.field = field
        self.pos = 0

    def fail(self, message: str, fix: str = _SYNTAX_FIX, pos: int | None = None) -> FicValidationError:
        where = self.pos if pos is None else pos
        snippet = self.text[where:where + 24]
        context = "at the end of the expression" if where >= len(self.text) else "at character %d (%r)" % (where + 1, snippet)
        return FicValidationError(self.field, "%s %s" % (message, context), fix)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> Expression:
        if not self.text.strip():
            raise FicValidationError(self.field, "the expression is empty", _SYNTAX_FIX)
        if self.text != self.text.strip():
            raise FicValidationError(self.field, "the expression starts or ends with whitespace", "remove the leading and trailing whitespace")
        conditions = [self.condition()]
        while self.pos < len(self.text):
            self.conjunction()
            conditions.append(self.condition())
        return Expression(tuple(conditions))

    def condition(self) -> Condition:
        if not self.text.startswith("claims[", self.pos):
            if self.peek() == "(":
                raise self.fail("parentheses are not supported", "remove the parentheses; conditions can only be joined with ' and '")
            word = self.word()
            if word.lower() == "not":
                raise self.fail("'not' is not supported", "express the condition positively with eq or matches")
            raise self.fail("expected claims['<claim>']")
        self.pos += len("claims[")
        claim = self.quoted("claim name")
        if not claim:
            raise self.fail("the claim name is empty", "name a claim, e.g. claims['sub']", self.pos - 2)
        if self.peek() != "]":
            raise self.fail("expected ']' after the claim name")
        self.pos += 1
        self.single_space("between the claim and the operator")
        operator = self.operator()
        self.single_space("between the operator and the comparand")
        comparand = self.quoted("comparand")
        return Condition(claim, operator, comparand)

    def word(self) -> str:
        found = _OPERATOR_WORD_RE.match(self.text, self.pos)
        return found.group(0) if found else ""

    def operator(self) -> str:
        start = self.pos
        word = self.word()
        if not word:
            raise self.fail("expected an operator (eq or matches)", "use eq or matches")
        if word in OPERATORS:
            self.pos += len(word)
            return word
        if word.lower() in OPERATORS:
            raise self.fail("operators are lower case", "write %r" % word.lower(), start)
        raise self.fail("unknown operator %r" % word, "use eq (exact) or matches (wildcards * and ?); languageVersion 1 has no other operator", start)

    def single_space(self, where: str) -> None:
        char = self.peek()
        if char != " ":
            if not char:
                raise self.fail("the expression ends early; expected a space %s" % where)
            if char.isspace():
                raise self.fail("expected a single space character %s" % where, "use one plain space (no tabs or line breaks)")
            raise self.fail("expected a single space %s" % where)
        self.pos += 1
        if self.peek().isspace():
            raise self.fail("more than one space %s" % where, "use exactly one space", self.pos - 1)

    def quoted(self, what: str) -> str:
        start = self.pos
        char = self.peek()
        if char == '"':
            raise self.fail("the %s is in double quotes" % what, "use single quotes; write '' for a quote inside the text")
        if char != "'":
            raise self.fail("expected the %s in single quotes" % what)
        self.pos += 1
        chunks: list[str] = []
        while True:
            end = self.text.find("'", self.pos)
            if end < 0:
                raise self.fail("unterminated %s: the closing quote is missing" % what, "close the quote; write '' for a quote inside the text", start)
            chunks.append(self.text[self.pos:end])
            if self.text.startswith("''", end):
                chunks.append("'")
                self.pos = end + 2
                continue
            self.pos = end + 1
            return "".join(chunks)

    def conjunction(self) -> None:
        if self.peek() != " ":
            raise self.fail("unexpected text after a condition", "join conditions with ' and ' and nothing else")
        self.pos += 1
        if self.peek().isspace():
            raise self.fail("more than one space before 'and'", "use exactly one space", self.pos - 1)
        start = self.pos
        word = self.word()
        if word == "and":
            self.pos += len(word)
            self.single_space("after 'and'")
            return
        if word.lower() == "and":
            raise self.fail("'and' is lower case", "write 'and'", start)
        if word.lower() == "or":
            raise self.fail("there is no 'or' in languageVersion 1", "create one credential per alternative, or use matches with a wildcard", start)
        raise self.fail("expected 'and' between conditions", "join conditions with ' and '", start)


def parse_expression(text: str, *, field: str = FIELD_EXPRESSION) -> Expression:
    """Parse a languageVersion 1 expression; raise ``FicValidationError`` naming ``field`` and the position otherwise."""
    if not isinstance(text, str):
        raise FicValidationError(field, "the expression must be a string, not %s" % type(text).__name__, _SYNTAX_FIX)
    return _Parser(text, field).parse()


def evaluate_expression(expression: str | Expression, claims: Mapping[str, Any]) -> bool:
    """Evaluate an expression (text or parsed) against a token's claims, as Entra ID would."""
    parsed = expression if isinstance(expression, Expression) else parse_expression(expression)
    return parsed.evaluate(claims)


# --------------------------------------------------------------------------------------------
# Issuers and their allow-lists
# --------------------------------------------------------------------------------------------

def issuer_kind(issuer: str, gitlab_issuers: Iterable[str] = ()) -> str | None:
    """``'gitlab'``, ``'github'``, ``'terraform'`` or None for an issuer flexible credentials may not use.

    GitLab: ``https://gitlab.com``, ``https://gitlab.<name>.<tld>`` (one or more labels in ``<name>``),
    and every issuer listed in ``gitlab_issuers`` (self-managed instances on other host names, the sandbox).
    """
    if not isinstance(issuer, str):
        return None
    if issuer in _issuer_list(gitlab_issuers) or issuer == GITLAB_COM_ISSUER or _GITLAB_ISSUER_RE.match(issuer):
        return ISSUER_GITLAB
    if issuer == GITHUB_ISSUER:
        return ISSUER_GITHUB
    if issuer in TERRAFORM_ISSUERS:
        return ISSUER_TERRAFORM
    return None


def _issuer_list(gitlab_issuers: Iterable[str] | str | None) -> tuple[str, ...]:
    if not gitlab_issuers:
        return ()
    if isinstance(gitlab_issuers, str):
        return (gitlab_issuers,)
    return tuple(gitlab_issuers)


def is_gitlab_issuer(issuer: str, gitlab_issuers: Iterable[str] = ()) -> bool:
    """True if ``issuer`` is treated as GitLab (Microsoft's allow-list or declared in ``gitlab_issuers``)."""
    return issuer_kind(issuer, gitlab_issuers) == ISSUER_GITLAB


def _check_allowed(expression: Expression, kind: str, field: str) -> None:
    allowed = _ALLOWED_CLAIMS[kind]
    label = _ISSUER_LABELS[kind]
    for condition in expression.conditions:
        operators = allowed.get(condition.claim)
        if operators is None:
            raise FicValidationError(
                field, "claim %r is not allowed for %s issuers (allowed: %s; Entra ID refuses it, AADSTS700237)"
                % (condition.claim, label, ", ".join(sorted(allowed))),
                "match through claims['sub'], e.g. claims['sub'] matches 'project_path:mygroup/myproject:*'" if kind == ISSUER_GITLAB
                else "use only the allowed claims")
        if condition.operator not in operators:
            raise FicValidationError(
                field, "operator %r is not allowed on claims[%s] for %s issuers (allowed: %s)"
                % (condition.operator, quote(condition.claim), label, ", ".join(operators)), "use %s" % " or ".join(operators))
        if not condition.comparand:
            raise FicValidationError(field, "the comparand of claims[%s] is empty" % quote(condition.claim), "compare against a non-empty value")
        if kind == ISSUER_GITLAB and condition.operator == OP_EQ and has_wildcards(condition.comparand):
            raise FicValidationError(
                field, "eq compares literally, and a GitLab subject never contains '*' or '?', so %s can never match" % condition.render(),
                "use matches for wildcards")
    if kind == ISSUER_GITHUB:
        used = {(condition.claim, condition.operator) for condition in expression.conditions}
        if not any(claim == "sub" for claim, _op in used) or not used & {("repository_id", OP_EQ), ("repository_owner_id", OP_EQ)}:
            raise FicValidationError(
                field, "a GitHub expression must match claims['sub'] and at least one of repository_id or repository_owner_id with eq "
                "(otherwise Entra ID refuses it: lacks all required claims)",
                "add e.g. and claims['repository_owner_id'] eq '<owner id>'")


def validate_expression(value: str, issuer: str, *, language_version: Any = LANGUAGE_VERSION, gitlab_issuers: Iterable[str] = (),
                        field: str = FIELD_EXPRESSION) -> Expression:
    """Parse ``value`` and check it against the issuer's allow-list; return the parsed expression.

    Raises ``FicValidationError`` for a bad language version, a syntax error, an issuer that may not use
    flexible credentials, or a claim/operator the issuer's allow-list does not permit.
    """
    if isinstance(language_version, bool) or language_version != LANGUAGE_VERSION:
        raise FicValidationError(field + ".languageVersion", "languageVersion must be 1, not %r" % (language_version,), "set languageVersion: 1")
    expression = parse_expression(value, field=field + ".value")
    kind = issuer_kind(issuer, gitlab_issuers)
    if kind is None:
        raise FicValidationError(
            FIELD_ISSUER, "issuer %r may not use flexible credentials: Entra ID allows them only for GitLab (https://gitlab.com, "
            "https://gitlab.<name>.<tld>), GitHub Actions and Terraform Cloud (AADSTS7002241)" % (issuer,),
            "use an exact subject, or declare the issuer as a self-managed GitLab instance (gitlab_issuers) if that is what it is")
    _check_allowed(expression, kind, field + ".value")
    return expression


# --------------------------------------------------------------------------------------------
# Credential rules (Microsoft Graph), checked before any write
# --------------------------------------------------------------------------------------------

def validate_name(name: Any, *, field: str = FIELD_NAME) -> str:
    """Check a credential name: 3-120 characters, ASCII letters, digits, '-' and '_', first character a letter or digit."""
    if not isinstance(name, str) or not name:
        raise FicValidationError(field, "a credential name is required", "set a name of 3 to 120 characters")
    if not NAME_MIN_LENGTH <= len(name) <= NAME_MAX_LENGTH:
        raise FicValidationError(field, "name %r has %d characters; it must have %d to %d" % (name, len(name), NAME_MIN_LENGTH, NAME_MAX_LENGTH),
                                 "use a name of 3 to 120 characters")
    if not _NAME_RE.match(name):
        raise FicValidationError(field, "name %r is not URL friendly: only letters, digits, '-' and '_' are allowed, and it must start with a "
                                 "letter or digit" % name, "replace other characters with '-'")
    return name


def _check_text(value: Any, field: str, what: str, *, required: bool) -> None:
    if value is None or value == "":
        if required:
            raise FicValidationError(field, "%s is required" % what, "set %s" % field)
        return
    if not isinstance(value, str):
        raise FicValidationError(field, "%s must be a string, not %s" % (what, type(value).__name__), "set %s to a string" % field)
    if len(value) > MAX_FIELD_LENGTH:
        raise FicValidationError(field, "%s has %d characters; the limit is %d" % (what, len(value), MAX_FIELD_LENGTH),
                                 "shorten it to %d characters or fewer" % MAX_FIELD_LENGTH)


def _expression_parts(value: Any, field: str) -> tuple[Any, Any]:
    if not isinstance(value, Mapping) or "value" not in value:
        raise FicValidationError(field, "claimsMatchingExpression must be an object with 'value' and 'languageVersion'",
                                 "set claimsMatchingExpression: {value: \"claims['sub'] matches '...'\", languageVersion: 1}")
    return value.get("value"), value.get("languageVersion")


def validate_credential(credential: Mapping[str, Any], *, gitlab_issuers: Iterable[str] = (), field_prefix: str = "") -> None:
    """Check one credential (Graph shape) against every per-credential rule.

    Name, issuer (<= 600, no surrounding whitespace), exactly one audience (<= 600), description (<= 600),
    subject XOR claimsMatchingExpression, subject <= 600 without wildcards, expression syntax and allow-list.
    """
    gitlab_issuers = _issuer_list(gitlab_issuers)
    validate_name(credential.get("name"), field=_join_field(field_prefix, FIELD_NAME))
    issuer_field = _join_field(field_prefix, FIELD_ISSUER)
    issuer = credential.get("issuer")
    _check_text(issuer, issuer_field, "the issuer", required=True)
    if issuer != issuer.strip():
        raise FicValidationError(issuer_field, "issuer %r starts or ends with whitespace; it must equal the token's iss exactly" % issuer,
                                 "remove the whitespace")
    _check_audiences(credential.get("audiences"), _join_field(field_prefix, FIELD_AUDIENCES))
    _check_text(credential.get("description"), _join_field(field_prefix, FIELD_DESCRIPTION), "the description", required=False)
    subject = credential.get("subject")
    expression = credential.get("claimsMatchingExpression")
    subject_field = _join_field(field_prefix, FIELD_SUBJECT)
    expression_field = _join_field(field_prefix, FIELD_EXPRESSION)
    if subject not in (None, "") and expression is not None:
        raise FicValidationError(subject_field, "subject and claimsMatchingExpression are mutually exclusive",
                                 "keep subject for an exact match, or claimsMatchingExpression for a flexible one, not both")
    if expression is not None:
        value, version = _expression_parts(expression, expression_field)
        validate_expression(value, issuer, language_version=version, gitlab_issuers=gitlab_issuers, field=expression_field)
        return
    _check_text(subject, subject_field, "a subject (or a claimsMatchingExpression)", required=True)
    if has_wildcards(subject):
        raise FicValidationError(subject_field, "subject %r contains a wildcard; an exact subject is compared literally" % subject,
                                 "use claimsMatchingExpression: {value: \"claims['sub'] matches '%s'\", languageVersion: 1} (a flexible credential)"
                                 % subject.replace("'", "''"))


def _check_audiences(audiences: Any, field: str) -> None:
    if isinstance(audiences, str) or not isinstance(audiences, Sequence):
        raise FicValidationError(field, "audiences must be a list with exactly one value", "set audiences: ['%s']" % DEFAULT_AUDIENCE)
    if len(audiences) != 1:
        raise FicValidationError(field, "a credential must have exactly one audience, not %d" % len(audiences),
                                 "keep one audience (recommended: %s) and make the CI job request the same aud" % DEFAULT_AUDIENCE)
    _check_text(audiences[0], field + "[0]", "the audience", required=True)


def _subject_key(credential: Mapping[str, Any]) -> tuple[str, str] | None:
    subject = credential.get("subject")
    if subject in (None, "") or credential.get("claimsMatchingExpression") is not None:
        return None
    return (credential.get("issuer"), subject)


def _check_unique(credentials: Sequence[Mapping[str, Any]], field: str) -> None:
    names: dict[str, str] = {}
    subjects: dict[tuple[str, str], str] = {}
    for credential in credentials:
        name = credential.get("name") or ""
        folded = name.casefold()
        if folded in names:
            raise FicValidationError(field, "two credentials are named %r (names are unique per application, compared case-insensitively)" % name,
                                     "give each credential its own name")
        names[folded] = name
        key = _subject_key(credential)
        if key is None:
            continue
        if key in subjects:
            raise FicValidationError(
                field, "credentials %r and %r have the same issuer %r and subject %r; the combination must be unique per application"
                % (subjects[key], name, key[0], key[1]), "keep one of them")
        subjects[key] = name


def validate_credential_set(credentials: Sequence[Mapping[str, Any]], *, max_credentials: int = MAX_CREDENTIALS_PER_APP,
                            field: str = "federated_identity_credentials") -> None:
    """Check the rules that span an application's final set of credentials.

    At most ``max_credentials`` (20), names unique (compared case-insensitively), issuer+subject unique.
    """
    if len(credentials) > max_credentials:
        raise FicValidationError(
            field, "%d credentials would exist on the application; Entra ID allows at most %d per application" % (len(credentials), max_credentials),
            "remove credentials you no longer need, or replace a project's exact subjects by one flexible credential, e.g. "
            "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:branch:ref:*' for all its branches")
    _check_unique(credentials, field)


# --------------------------------------------------------------------------------------------
# Reconciliation plan: what to create, update and delete, validated as a whole before any write
# --------------------------------------------------------------------------------------------

_COMPARED_FIELDS = ("issuer", "audiences", "description", "subject", "claimsMatchingExpression")


@dataclass
class CredentialPlan:
    """Changes to reach the desired credentials. Apply ``delete`` first, then ``update``, then ``create``."""

    create: list[dict[str, Any]]
    update: list[tuple[dict[str, Any], dict[str, Any]]]  # (existing credential, merged desired credential)
    delete: list[dict[str, Any]]
    unchanged: list[dict[str, Any]]
    final: list[dict[str, Any]]

    @property
    def changed(self) -> bool:
        """True if anything would be written."""
        return bool(self.create or self.update or self.delete)


def _normal(field: str, value: Any) -> Any:
    if field == "description" and value == "":
        return None
    if field == "subject" and value == "":
        return None
    if field == "audiences" and value is not None:
        return sorted(value)  # compared order-insensitively
    if field == "claimsMatchingExpression" and value is not None:
        return (value.get("value"), value.get("languageVersion"))
    return value


def credential_differences(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> list[str]:
    """Graph fields whose desired value differs from the existing one (fields absent from ``desired`` are not compared)."""
    merged = merge_credential(existing, desired)
    return [field for field in _COMPARED_FIELDS if _normal(field, merged.get(field)) != _normal(field, existing.get(field))]


def merge_credential(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The credential after applying ``desired`` to ``existing``: setting subject clears the expression and vice versa."""
    merged = dict(existing)
    merged.update(desired)
    if desired.get("subject") not in (None, "") and "claimsMatchingExpression" not in desired:
        merged["claimsMatchingExpression"] = None
    if desired.get("claimsMatchingExpression") is not None and "subject" not in desired:
        merged["subject"] = None
    return merged


def _check_name_changes(existing: Sequence[Mapping[str, Any]], desired: Sequence[Mapping[str, Any]], field: str) -> None:
    by_id = {item.get("id"): item for item in existing if item.get("id")}
    for index, item in enumerate(desired):
        current = by_id.get(item.get("id")) if item.get("id") else None
        if current is not None and current.get("name") != item.get("name"):
            raise FicValidationError(
                "%s[%d].name" % (field, index), "credential %r cannot be renamed to %r: names are immutable" % (current.get("name"), item.get("name")),
                "keep the name %r, or delete the credential and create a new one" % current.get("name"))


def plan_credential_changes(existing: Sequence[Mapping[str, Any]], desired: Sequence[Mapping[str, Any]], *, absent: Iterable[str] = (),
                            exclusive: bool = False, gitlab_issuers: Iterable[str] = (), max_credentials: int = MAX_CREDENTIALS_PER_APP,
                            field: str = "federated_identity_credentials") -> CredentialPlan:
    """Validate ``desired`` and plan the changes from ``existing`` (both Graph-shaped dicts, matched by name).

    ``absent`` names credentials to delete; ``exclusive`` deletes every existing credential not in ``desired``.
    Refuses a rename (same ``id`` with a new name, or a new name reusing the issuer+subject of a credential
    that stays), and validates the final set (20 per app, unique names, unique issuer+subject).
    """
    gitlab_issuers = _issuer_list(gitlab_issuers)
    absent_names = {name.casefold() for name in ((absent,) if isinstance(absent, str) else absent)}
    for index, item in enumerate(desired):
        validate_credential(item, gitlab_issuers=gitlab_issuers, field_prefix="%s[%d]." % (field, index))
        if item["name"].casefold() in absent_names:
            raise FicValidationError("%s[%d].name" % (field, index), "credential %r is both desired and listed as absent" % item["name"],
                                     "remove it from one of the two lists")
    _check_unique(desired, field)
    _check_name_changes(existing, desired, field)
    desired_names = {item["name"].casefold() for item in desired}
    existing_by_name = {(item.get("name") or "").casefold(): item for item in existing}
    plan = CredentialPlan(create=[], update=[], delete=[], unchanged=[], final=[])
    for item in existing:
        folded = (item.get("name") or "").casefold()
        if folded in absent_names or (exclusive and folded not in desired_names):
            plan.delete.append(dict(item))
        elif folded not in desired_names:
            plan.final.append(dict(item))
    for item in desired:
        current = existing_by_name.get(item["name"].casefold())
        if current is None:
            plan.create.append(dict(item))
            plan.final.append(dict(item))
            continue
        merged = merge_credential(current, item)
        if credential_differences(current, item):
            plan.update.append((dict(current), merged))
        else:
            plan.unchanged.append(dict(current))
        plan.final.append(merged)
    _check_renames(plan, field)
    validate_credential_set(plan.final, max_credentials=max_credentials, field=field)
    return plan


def _check_renames(plan: CredentialPlan, field: str) -> None:
    created = {item["name"] for item in plan.create}
    kept = {}
    for item in plan.final:
        key = _subject_key(item)
        if key is not None and item.get("name") not in created:
            kept[key] = item.get("name")
    for item in plan.create:
        key = _subject_key(item)
        if key is not None and key in kept:
            raise FicValidationError(
                field, "new credential %r has the issuer and subject of existing credential %r; names are immutable, so a credential cannot be "
                "renamed" % (item["name"], kept[key]), "keep the name %r, or delete %r in the same run (absent/exclusive)" % (kept[key], kept[key]))


def credential_matches(credential: Mapping[str, Any], claims: Mapping[str, Any]) -> bool:
    """True if a token with ``claims`` would be accepted by ``credential`` (issuer, audience, then subject or expression)."""
    if "iss" in claims and claims["iss"] != credential.get("issuer"):
        return False
    if "aud" in claims:
        token_audiences = claims["aud"] if isinstance(claims["aud"], (list, tuple)) else [claims["aud"]]
        if not set(token_audiences) & set(credential.get("audiences") or ()):
            return False
    expression = credential.get("claimsMatchingExpression")
    if expression is not None:
        return evaluate_expression(expression["value"], claims)
    subject = credential.get("subject")
    return subject not in (None, "") and claims.get("sub") == subject


# --------------------------------------------------------------------------------------------
# Trust breadth of a GitLab subject or expression
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrustAnalysis:
    """How far a GitLab credential reaches: ``level`` is 'project', 'group' or 'unsafe'; ``scope`` is what it is confined to."""

    level: str
    explanation: str
    scope: str | None = None


@dataclass(frozen=True)
class _SubReach:
    analysis: TrustAnalysis
    decisive: bool  # True: the condition alone rules the credential out for the intended project


def _analyze_lead(lead: str, value: str, pattern: str, project_path: str | None, project_id: str | None) -> _SubReach:
    shown = "%s%s" % (lead, value)
    if lead == "project_id:":
        if not value.isdigit():
            return _SubReach(TrustAnalysis(TRUST_UNSAFE, "%r is not a numeric project id, so %r never matches a GitLab token" % (value, pattern)), True)
        if project_id is not None and value != project_id:
            return _SubReach(TrustAnalysis(TRUST_UNSAFE, "%r trusts project id %s, not the intended project id %s" % (pattern, value, project_id), shown), True)
        note = "" if project_id is not None else " (not checked against the intended project: its id was not given)"
        return _SubReach(TrustAnalysis(TRUST_PROJECT, "%r is confined to project id %s%s" % (pattern, value, note), shown), False)
    if project_path is not None and value != project_path:
        return _SubReach(TrustAnalysis(TRUST_UNSAFE, "%r trusts project %r, not the intended project %r (paths are case-sensitive)"
                                       % (pattern, value, project_path), shown), True)
    note = "" if project_path is not None else " (not checked against the intended project: its path was not given)"
    return _SubReach(TrustAnalysis(TRUST_PROJECT, "%r is confined to project %r%s" % (pattern, value, note), shown), False)


def _analyze_wild_lead(lead: str, prefix: str, pattern: str, project_path: str | None) -> _SubReach:
    if lead == "project_id:":
        return _SubReach(TrustAnalysis(
            TRUST_UNSAFE, "%r has a wildcard inside the project id, so it also matches other projects' ids (project_id:%s* matches %s0, %s1, ...); "
            "end the id with ':' as in 'project_id:%s:*'" % (pattern, prefix, prefix, prefix, prefix or "<id>")), False)
    if "/" not in prefix or prefix.startswith("/"):
        return _SubReach(TrustAnalysis(
            TRUST_UNSAFE, "%r has a wildcard in the top-level namespace of the project path, so it can match projects of other namespaces "
            "(anyone who creates a matching group)" % pattern), False)
    namespace = prefix[:prefix.rindex("/")]
    if project_path is not None and not project_path.startswith(namespace + "/"):
        return _SubReach(TrustAnalysis(TRUST_UNSAFE, "%r is confined to namespace %r, which does not contain the intended project %r"
                                       % (pattern, namespace, project_path), "namespace:" + namespace), True)
    return _SubReach(TrustAnalysis(
        TRUST_GROUP, "%r matches every project under %r (subgroups and projects created later included), not only the intended project"
        % (pattern, namespace + "/"), "namespace:" + namespace), False)


def _analyze_sub(condition: Condition, project_path: str | None, project_id: str | None) -> _SubReach:
    pattern = condition.comparand
    wild = [pattern.find(char) for char in WILDCARDS if condition.operator == OP_MATCHES and char in pattern]
    first_wild = min(wild) if wild else -1
    literal = pattern if first_wild < 0 else pattern[:first_wild]
    for lead in _GITLAB_SUB_LEADS:
        if not literal.startswith(lead):
            continue
        rest = literal[len(lead):]
        if ":" in rest:
            return _analyze_lead(lead, rest[:rest.index(":")], pattern, project_path, project_id)
        if first_wild < 0:
            return _analyze_lead(lead, rest, pattern, project_path, project_id)
        return _analyze_wild_lead(lead, rest, pattern, project_path)
    if first_wild < 0:
        return _SubReach(TrustAnalysis(TRUST_UNSAFE, "%r never matches a GitLab token: a GitLab sub starts with 'project_path:' or 'project_id:'"
                                       % pattern), True)
    return _SubReach(TrustAnalysis(TRUST_UNSAFE, "%r does not start with a literal 'project_path:<path>:' or 'project_id:<id>:', so it can match "
                                   "tokens of any project" % pattern), False)


def analyze_gitlab_trust(*, subject: str | None = None, expression: str | Expression | None = None, project_path: str | None = None,
                         project_id: int | str | None = None) -> TrustAnalysis:
    """Classify how widely a GitLab ``subject`` or flexible ``expression`` trusts, relative to the intended project.

    * ``project``: every token it can match comes from the intended project (any of its refs).
    * ``group``: it can match other projects, but only inside one namespace containing the intended project
      (e.g. ``project_path:mygroup/*``); acceptable only with ``allow_broad_trust: true``.
    * ``unsafe``: it can match projects of other namespaces (``*``, ``project_path:*``, ``project_path:my*``,
      ``project_id:12*``, ``?`` in the namespace), or it trusts a project other than the intended one, or it
      can never match a GitLab token.

    Conditions are joined by ``and``, so the narrowest condition on ``sub`` decides.
    """
    if (subject is None) == (expression is None):
        raise ValueError("give exactly one of subject or expression")
    path = project_path if project_path else None
    ident = str(project_id) if project_id not in (None, "") else None
    if subject is not None:
        conditions: tuple[Condition, ...] = (Condition("sub", OP_EQ, subject),)
    else:
        parsed = expression if isinstance(expression, Expression) else parse_expression(expression)
        conditions = tuple(condition for condition in parsed.conditions if condition.claim == "sub")
    if not conditions:
        return TrustAnalysis(TRUST_UNSAFE, "the expression has no condition on claims['sub'], so it does not confine the project")
    reaches = [_analyze_sub(condition, path, ident) for condition in conditions]
    for reach in reaches:
        if reach.decisive:
            return reach.analysis
    return min(reaches, key=lambda reach: TRUST_LEVELS.index(reach.analysis.level)).analysis


def check_gitlab_trust(*, subject: str | None = None, expression: str | Expression | None = None, project_path: str | None = None,
                       project_id: int | str | None = None, allow_broad_trust: bool = False, field: str | None = None) -> TrustAnalysis:
    """``analyze_gitlab_trust`` that raises ``FicValidationError`` for 'unsafe', and for 'group' unless ``allow_broad_trust``."""
    analysis = analyze_gitlab_trust(subject=subject, expression=expression, project_path=project_path, project_id=project_id)
    where = field or (FIELD_SUBJECT if subject is not None else FIELD_EXPRESSION)
    if analysis.level == TRUST_UNSAFE:
        raise FicValidationError(where, "unsafe trust: %s" % analysis.explanation,
                                 "confine the match to one project: start with 'project_path:<group>/<project>:' or 'project_id:<id>:'")
    if analysis.level == TRUST_GROUP and not allow_broad_trust:
        raise FicValidationError(where, "broad trust: %s" % analysis.explanation,
                                 "confine it to 'project_path:<group>/<project>:', or set allow_broad_trust: true if every project there may deploy")
    return analysis
