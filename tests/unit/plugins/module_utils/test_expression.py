# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Flexible FIC expression language (languageVersion 1): parser, renderer, evaluator, per-issuer allow-lists."""

from __future__ import annotations

import time

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils._fic import (
    Condition,
    Expression,
    FicValidationError,
    evaluate_expression,
    issuer_kind,
    parse_expression,
    quote,
    render_condition,
    render_expression,
    validate_expression,
    wildcard_match,
)

GITLAB = "https://gitlab.com"
GITHUB = "https://token.actions.githubusercontent.com"

# (expression text, expected conditions as (claim, operator, comparand))
VALID = [
    # GitLab examples from Microsoft's and GitLab's docs (api-facts section 4)
    ("claims['sub'] matches 'project_path:mygroup/myproject:ref_type:branch:ref:*'",
     [("sub", "matches", "project_path:mygroup/myproject:ref_type:branch:ref:*")]),
    ("claims['sub'] matches 'project_path:mygroup/myproject:ref_type:tag:ref:*'",
     [("sub", "matches", "project_path:mygroup/myproject:ref_type:tag:ref:*")]),
    ("claims['sub'] matches 'project_id:57382910:*'", [("sub", "matches", "project_id:57382910:*")]),
    ("claims['sub'] eq 'project_path:g/p:ref_type:branch:ref:main'", [("sub", "eq", "project_path:g/p:ref_type:branch:ref:main")]),
    # GitHub style, several conditions
    ("claims['sub'] matches 'repo:contoso/contoso-repo:ref:refs/heads/*' and claims['repository_owner_id'] eq '1234'",
     [("sub", "matches", "repo:contoso/contoso-repo:ref:refs/heads/*"), ("repository_owner_id", "eq", "1234")]),
    ("claims['a'] eq 'x' and claims['b'] eq 'y' and claims['c'] matches 'z*'", [("a", "eq", "x"), ("b", "eq", "y"), ("c", "matches", "z*")]),
    # quote escapes
    ("claims['sub'] eq 'it''s'", [("sub", "eq", "it's")]),
    ("claims['sub'] eq ''''", [("sub", "eq", "'")]),
    ("claims['sub'] eq 'a''''b'", [("sub", "eq", "a''b")]),
    ("claims['sub'] eq ''", [("sub", "eq", "")]),
    ("claims['sub'] eq 'x''' and claims['sub'] eq '''y'", [("sub", "eq", "x'"), ("sub", "eq", "'y")]),
    # keywords and brackets inside a comparand are text
    ("claims['sub'] eq 'a and claims[''b''] or c'", [("sub", "eq", "a and claims['b'] or c")]),
    ("claims['sub'] matches 'x  y'", [("sub", "matches", "x  y")]),
    # unicode
    ("claims['sub'] eq 'project_path:g/p:ref_type:branch:ref:fëature/漢字'", [("sub", "eq", "project_path:g/p:ref_type:branch:ref:fëature/漢字")]),
]


@pytest.mark.parametrize("text, expected", VALID)
def test_parse_valid(text, expected):
    parsed = parse_expression(text)
    assert parsed == Expression(tuple(Condition(*item) for item in expected))


@pytest.mark.parametrize("text", [item[0] for item in VALID])
def test_render_round_trip(text):
    assert parse_expression(text).render() == text


def test_claims_used():
    parsed = parse_expression("claims['sub'] eq 'a' and claims['repository_id'] eq '1' and claims['sub'] matches '*'")
    assert parsed.claims_used() == ("sub", "repository_id")


@pytest.mark.parametrize("value, rendered", [
    ("main", "'main'"),
    ("it's", "'it''s'"),
    ("''", "''''''"),
    ("", "''"),
    ("ü", "'ü'"),
])
def test_quote(value, rendered):
    assert quote(value) == rendered


def test_render_helpers():
    assert render_condition("sub", "matches", "project_path:g/p:ref:it's*") == "claims['sub'] matches 'project_path:g/p:ref:it''s*'"
    assert render_expression([("sub", "eq", "a"), Condition("repository_id", "eq", "1")]) == "claims['sub'] eq 'a' and claims['repository_id'] eq '1'"
    with pytest.raises(ValueError):
        render_condition("sub", "startswith", "a")
    with pytest.raises(ValueError):
        render_expression([("sub", "ne", "a")])
    with pytest.raises(ValueError):
        render_expression([])


# (bad text, fragment expected in the message)
INVALID = [
    ("", "empty"),
    ("   ", "empty"),
    (" claims['sub'] eq 'x'", "whitespace"),
    ("claims['sub'] eq 'x' ", "whitespace"),
    ("claims['sub'] eq 'x'\n", "whitespace"),
    # or
    ("claims['sub'] eq 'x' or claims['sub'] eq 'y'", "no 'or'"),
    ("claims['sub'] eq 'x' OR claims['sub'] eq 'y'", "no 'or'"),
    # missing quotes
    ("claims[sub] eq 'x'", "single quotes"),
    ("claims['sub'] eq x", "single quotes"),
    ("claims['sub'] eq \"x\"", "double quotes"),
    ("claims[\"sub\"] eq 'x'", "double quotes"),
    # spacing
    ("claims['sub']  eq 'x'", "more than one space"),
    ("claims['sub'] eq  'x'", "more than one space"),
    ("claims['sub'] eq 'x'  and claims['sub'] eq 'y'", "more than one space"),
    ("claims['sub'] eq 'x' and  claims['sub'] eq 'y'", "more than one space"),
    ("claims['sub']eq 'x'", "single space"),
    ("claims['sub'] eq'x'", "single space"),
    ("claims['sub']\teq 'x'", "single space character"),
    ("claims['sub'] eq 'x'and claims['sub'] eq 'y'", "unexpected text"),
    # operators
    ("claims['sub'] startswith 'x'", "unknown operator 'startswith'"),
    ("claims['sub'] ne 'x'", "unknown operator 'ne'"),
    ("claims['sub'] == 'x'", "expected an operator"),
    ("claims['sub'] EQ 'x'", "lower case"),
    ("claims['sub'] Matches 'x*'", "lower case"),
    ("claims['sub'] eq 'x' AND claims['sub'] eq 'y'", "'and' is lower case"),
    ("claims['sub'] eq 'x' und claims['sub'] eq 'y'", "expected 'and'"),
    # unterminated strings
    ("claims['sub'] eq 'x", "unterminated comparand"),
    ("claims['sub'] eq 'it''s", "unterminated comparand"),
    ("claims['sub", "unterminated claim name"),
    # structure
    ("claims['sub' eq 'x'", "expected ']'"),
    ("claims[''] eq 'x'", "claim name is empty"),
    ("claims['sub'] eq 'x' and", "ends early"),
    ("claims['sub'] eq", "ends early"),
    ("claims['sub']", "ends early"),
    ("claim['sub'] eq 'x'", "expected claims["),
    ("Claims['sub'] eq 'x'", "expected claims["),
    ("(claims['sub'] eq 'x')", "parentheses"),
    ("not claims['sub'] eq 'x'", "'not' is not supported"),
    ("claims['sub'] eq 'x' and and claims['sub'] eq 'y'", "expected claims["),
]


@pytest.mark.parametrize("text, fragment", INVALID)
def test_parse_rejects(text, fragment):
    with pytest.raises(FicValidationError) as caught:
        parse_expression(text)
    error = caught.value
    assert fragment in error.message
    assert error.field == "claimsMatchingExpression"
    assert error.fix
    assert isinstance(error, ValueError)


def test_parse_error_names_position_and_field():
    with pytest.raises(FicValidationError) as caught:
        parse_expression("claims['sub'] equals 'x'", field="credentials[2].claimsMatchingExpression.value")
    assert caught.value.field == "credentials[2].claimsMatchingExpression.value"
    assert "at character 15" in caught.value.message
    assert str(caught.value).startswith("credentials[2].claimsMatchingExpression.value: unknown operator 'equals'")
    assert "Fix: use eq" in str(caught.value)


@pytest.mark.parametrize("value", [None, 3, ["claims['sub'] eq 'x'"]])
def test_parse_rejects_non_strings(value):
    with pytest.raises(FicValidationError, match="must be a string"):
        parse_expression(value)


# wildcard truth table: (pattern, value, expected)
WILDCARD_TABLE = [
    ("*", "", True),
    ("*", "anything:at/all", True),
    ("?", "", False),
    ("?", "a", True),
    ("?", "ab", False),
    ("a?c", "abc", True),
    ("a?c", "ac", False),
    ("a*c", "ac", True),
    ("a*c", "abbbc", True),
    ("a*c", "abbbcd", False),
    ("abc", "abc", True),
    ("abc", "ABC", False),  # case-sensitive
    ("Main", "main", False),
    ("project_path:g/*", "project_path:g/p:ref_type:branch:ref:main", True),  # * spans '/' and ':'
    ("project_path:g/p:*", "project_path:g/p2:ref_type:branch:ref:main", False),
    ("project_id:12*", "project_id:123:ref_type:branch:ref:main", True),
    ("project_id:12:*", "project_id:123:ref_type:branch:ref:main", False),
    ("*main", "ref:main", True),
    ("*main", "ref:main2", False),
    ("**", "", True),
    ("*?*", "", False),
    ("*?*", "x", True),
    ("a.c", "abc", False),  # '.' is literal, not a regex
    ("[ab]c", "ac", False),  # no character classes
    ("[ab]c", "[ab]c", True),
    ("a+", "aa", False),
    ("a\\*", "a\\xyz", True),  # backslash is not an escape
    ("?", "漢", True),  # one code point
    ("ref:*/*", "ref:release/1.0", True),
    ("ref:*/*", "ref:main", False),
]


@pytest.mark.parametrize("pattern, value, expected", WILDCARD_TABLE)
def test_wildcard_match(pattern, value, expected):
    assert wildcard_match(pattern, value) is expected


def test_wildcard_match_no_pathological_backtracking():
    start = time.monotonic()
    assert wildcard_match("*a" * 25 + "b", "a" * 300) is False
    assert time.monotonic() - start < 2


# eq vs matches truth table on the same claims
CLAIMS = {"sub": "project_path:g/p:ref_type:branch:ref:main", "repository_id": "42", "number": 42, "flag": True, "list": ["a"]}


@pytest.mark.parametrize("text, expected", [
    ("claims['sub'] eq 'project_path:g/p:ref_type:branch:ref:main'", True),
    ("claims['sub'] eq 'project_path:g/p:ref_type:branch:ref:*'", False),  # eq is literal
    ("claims['sub'] matches 'project_path:g/p:ref_type:branch:ref:*'", True),
    ("claims['sub'] matches 'project_path:g/p:ref_type:tag:ref:*'", False),
    ("claims['sub'] matches 'project_path:g/p:ref_type:branch:ref:mai?'", True),
    ("claims['sub'] matches 'project_path:g/p:ref_type:branch:ref:ma?'", False),
    ("claims['sub'] matches 'project_path:G/P:*'", False),
    ("claims['missing'] eq ''", False),  # a missing claim never matches
    ("claims['missing'] matches '*'", False),
    ("claims['number'] eq '42'", True),  # numeric claims compare as text
    ("claims['flag'] eq 'True'", False),
    ("claims['list'] matches '*'", False),
    # and: TT, TF, FT, FF
    ("claims['sub'] matches 'project_path:g/p:*' and claims['repository_id'] eq '42'", True),
    ("claims['sub'] matches 'project_path:g/p:*' and claims['repository_id'] eq '43'", False),
    ("claims['sub'] matches 'project_path:g/q:*' and claims['repository_id'] eq '42'", False),
    ("claims['sub'] matches 'project_path:g/q:*' and claims['repository_id'] eq '43'", False),
])
def test_evaluate(text, expected):
    assert evaluate_expression(text, CLAIMS) is expected
    assert parse_expression(text).evaluate(CLAIMS) is expected


def test_evaluate_quotes():
    claims = {"sub": "project_path:g/p:ref_type:branch:ref:it's"}
    assert evaluate_expression("claims['sub'] eq 'project_path:g/p:ref_type:branch:ref:it''s'", claims)
    assert evaluate_expression("claims['sub'] matches '*:it''*'", claims)
    assert not evaluate_expression("claims['sub'] matches '*:it''''*'", claims)


# issuer kinds: (issuer, declared GitLab issuers, expected kind)
ISSUERS = [
    ("https://gitlab.com", (), "gitlab"),
    ("https://gitlab.example.com", (), "gitlab"),
    ("https://gitlab.example.ca", (), "gitlab"),
    ("https://gitlab.my-company.de", (), "gitlab"),
    ("https://gitlab.corp.example.com", (), "gitlab"),
    ("https://gitlab.com/", (), None),
    ("http://gitlab.com", (), None),
    ("https://GitLab.com", (), None),
    ("https://gitlab.example.com:8443", (), None),
    ("https://gitlab.example.com/gitlab", (), None),
    ("https://code.example.com", (), None),
    ("https://gitlab.example", (), None),
    ("https://notgitlab.example.com", (), None),
    ("https://127.0.0.1:8443/gitlab/sandbox", (), None),
    ("https://127.0.0.1:8443/gitlab/sandbox", ("https://127.0.0.1:8443/gitlab/sandbox",), "gitlab"),
    ("https://code.example.com", "https://code.example.com", "gitlab"),
    ("https://token.actions.githubusercontent.com", (), "github"),
    ("https://app.terraform.io", (), "terraform"),
    ("app.eu.terraform.io", (), "terraform"),
    ("https://login.microsoftonline.com/x/v2.0", (), None),
    (None, (), None),
]


@pytest.mark.parametrize("issuer, declared, kind", ISSUERS)
def test_issuer_kind(issuer, declared, kind):
    assert issuer_kind(issuer, declared) == kind


@pytest.mark.parametrize("issuer, text", [
    (GITLAB, "claims['sub'] matches 'project_path:g/p:*'"),
    (GITLAB, "claims['sub'] eq 'project_path:g/p:ref_type:branch:ref:main'"),
    (GITLAB, "claims['sub'] matches 'project_path:g/p:*' and claims['sub'] matches '*:ref_type:branch:*'"),
    (GITHUB, "claims['sub'] matches 'repo:o/r:*' and claims['repository_owner_id'] eq '1'"),
    (GITHUB, "claims['sub'] eq 'repo:o/r:ref:refs/heads/main' and claims['repository_id'] eq '2'"),
    (GITHUB, "claims['sub'] matches 'repo:o/r:*' and claims['job_workflow_ref'] matches 'o/w/*' and claims['repository_id'] eq '2'"),
    ("https://app.terraform.io", "claims['sub'] matches 'organization:o:project:p:workspace:w:run_phase:*'"),
])
def test_validate_expression_allowed(issuer, text):
    assert validate_expression(text, issuer).render() == text


@pytest.mark.parametrize("issuer, text, declared, field, fragment", [
    (GITLAB, "claims['project_path'] eq 'g/p'", (), "claimsMatchingExpression.value", "claim 'project_path' is not allowed for GitLab"),
    (GITLAB, "claims['sub'] matches 'a*' and claims['ref'] eq 'main'", (), "claimsMatchingExpression.value", "claim 'ref' is not allowed"),
    (GITLAB, "claims['sub'] eq 'project_path:g/p:*'", (), "claimsMatchingExpression.value", "can never match"),
    (GITLAB, "claims['sub'] matches ''", (), "claimsMatchingExpression.value", "empty"),
    (GITLAB, "claims['sub'] or", (), "claimsMatchingExpression.value", "unknown operator 'or'"),
    (GITHUB, "claims['sub'] matches 'repo:o/r:*'", (), "claimsMatchingExpression.value", "at least one of repository_id"),
    (GITHUB, "claims['repository_id'] eq '1'", (), "claimsMatchingExpression.value", "must match claims['sub']"),
    (GITHUB, "claims['sub'] matches 'repo:o/r:*' and claims['repository_id'] matches '1*'", (), "claimsMatchingExpression.value",
     "operator 'matches' is not allowed"),
    (GITHUB, "claims['sub'] matches 'repo:o/r:*' and claims['actor'] eq 'me'", (), "claimsMatchingExpression.value", "claim 'actor'"),
    ("https://app.terraform.io", "claims['terraform_workspace_id'] eq 'w'", (), "claimsMatchingExpression.value", "not allowed for Terraform"),
    ("https://idp.example.com", "claims['sub'] eq 'x'", (), "issuer", "may not use flexible credentials"),
    ("https://127.0.0.1:9443/gitlab/a", "claims['sub'] matches 'project_path:g/p:*'", (), "issuer", "AADSTS7002241"),
])
def test_validate_expression_refused(issuer, text, declared, field, fragment):
    with pytest.raises(FicValidationError) as caught:
        validate_expression(text, issuer, gitlab_issuers=declared)
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert caught.value.fix


def test_validate_expression_declared_gitlab_issuer():
    sandbox = "https://127.0.0.1:9443/gitlab/a"
    parsed = validate_expression("claims['sub'] matches 'project_path:g/p:*'", sandbox, gitlab_issuers=[sandbox])
    assert parsed.conditions[0].comparand == "project_path:g/p:*"
    with pytest.raises(FicValidationError, match="claim 'aud' is not allowed for GitLab"):
        validate_expression("claims['aud'] eq 'x'", sandbox, gitlab_issuers=[sandbox])


@pytest.mark.parametrize("version", [0, 2, "1", True, None])
def test_validate_expression_language_version(version):
    with pytest.raises(FicValidationError) as caught:
        validate_expression("claims['sub'] eq 'x'", GITLAB, language_version=version)
    assert caught.value.field == "claimsMatchingExpression.languageVersion"
