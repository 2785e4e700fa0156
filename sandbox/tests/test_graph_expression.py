"""The flexible FIC expression language (``oidc_sandbox.expression``) as a unit: parser, matcher, claim rules."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oidc_sandbox import expression  # noqa: E402
from oidc_sandbox.expression import Condition, ExpressionError  # noqa: E402


def test_parse_conditions_and_escapes():
    parsed = expression.parse("claims['sub'] matches 'project_path:o''brien/*' and claims['x'] eq ''")
    assert parsed.conditions == (Condition("sub", "matches", "project_path:o'brien/*"), Condition("x", "eq", ""))
    assert parsed.claims == {"sub", "x"}


@pytest.mark.parametrize("text,position", [
    ("claims['sub'] eq 'a' or claims['sub'] eq 'b'", 20),
    ("claims['sub']  eq 'a'", 14),
    ("claims['sub'] EQ 'a'", 14),
    ("claims['sub'] eq 'a' AND claims['sub'] eq 'b'", 20),
    ("claims['sub'] eq 'a' ", 20),
    ("(claims['sub'] eq 'a')", 0),
    ("claims['sub'] eq \"a\"", 17),
])
def test_parse_errors_name_the_position(text, position):
    with pytest.raises(ExpressionError, match=f"position {position}"):
        expression.parse(text)


@pytest.mark.parametrize("text", ["", "claims['sub'] eq 'open", "claims['sub'] in 'a'", "claims[sub] eq 'a'"])
def test_parse_errors(text):
    with pytest.raises(ExpressionError):
        expression.parse(text)
    assert issubclass(ExpressionError, ValueError)


@pytest.mark.parametrize("pattern,value,expected", [
    ("project_path:g/p:ref_type:branch:ref:*", "project_path:g/p:ref_type:branch:ref:main", True),
    ("project_path:g/p:ref_type:branch:ref:*", "project_path:g/p:ref_type:branch:ref:", True),
    ("project_path:g/p:ref_type:branch:ref:*", "project_path:g/p:ref_type:tag:ref:v1", False),
    ("v?", "v1", True),
    ("v?", "v10", False),
    ("v?", "v", False),
    ("a.b", "aXb", False),  # regex metacharacters are literal
    ("a[1]", "a[1]", True),
    ("CASE*", "case-x", False),  # case-sensitive
    ("*", "line\nbreak", True),
])
def test_matches_wildcards(pattern, value, expected):
    assert expression.parse(f"claims['sub'] matches '{pattern}'").matches({"sub": value}) is expected


def test_eq_is_exact_and_all_conditions_must_hold():
    expr = expression.parse("claims['sub'] eq 'a*' and claims['repository_id'] eq '42'")
    assert expr.matches({"sub": "a*", "repository_id": "42"})
    assert not expr.matches({"sub": "abc", "repository_id": "42"})
    assert not expr.matches({"sub": "a*"})
    assert not expr.matches({"sub": "a*", "repository_id": 42})  # only string claims match


@pytest.mark.parametrize("platform,text,reason", [
    ("gitlab", "claims['sub'] matches 'x*'", None),
    ("gitlab", "claims['ref'] eq 'main'", "claim 'ref' is not allowed"),
    ("github", "claims['sub'] eq 'x' and claims['repository_id'] eq '1'", None),
    ("github", "claims['sub'] eq 'x' and claims['job_workflow_ref'] matches 'o/*'",
     "one of the claims 'repository_id', 'repository_owner_id' is required"),
    ("github", "claims['sub'] eq 'x' and claims['repository_owner_id'] matches '1'",
     "operator 'matches' is not allowed on claim 'repository_owner_id'"),
    ("terraform", "claims['sub'] eq 'x'", None),
    (None, "claims['sub'] eq 'x'", "the issuer is not supported"),
    ("jenkins", "claims['sub'] eq 'x'", "the issuer is not supported"),
])
def test_platform_rules(platform, text, reason):
    expr = expression.parse(text)
    found = expression.violation(expr, platform)
    if reason is None:
        assert found is None
        expression.check_allowed(expr, "https://issuer", platform)
    else:
        assert reason in found and (platform is None or "lacks all required claims" in found or "issuer" in found)
        with pytest.raises(ExpressionError, match="not allowed for issuer 'https://issuer'"):
            expression.check_allowed(expr, "https://issuer", platform)
