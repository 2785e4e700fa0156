# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Federated identity credential rules (checked before any write), reconciliation plan and GitLab trust breadth."""

from __future__ import annotations

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils._fic import (
    DEFAULT_AUDIENCE,
    FicValidationError,
    analyze_gitlab_trust,
    check_gitlab_trust,
    credential_differences,
    credential_matches,
    plan_credential_changes,
    validate_credential,
    validate_credential_set,
    validate_name,
)

GITLAB = "https://gitlab.com"
SUB_MAIN = "project_path:mygroup/myproject:ref_type:branch:ref:main"


def exact(name="gitlab-main", subject=SUB_MAIN, issuer=GITLAB, **extra):
    credential = {"name": name, "issuer": issuer, "audiences": [DEFAULT_AUDIENCE], "subject": subject}
    credential.update(extra)
    return credential


def flexible(name="gitlab-all", value="claims['sub'] matches 'project_path:mygroup/myproject:*'", issuer=GITLAB, **extra):
    credential = {"name": name, "issuer": issuer, "audiences": [DEFAULT_AUDIENCE], "claimsMatchingExpression": {"value": value, "languageVersion": 1}}
    credential.update(extra)
    return credential


def test_error_type():
    error = FicValidationError("name", "too short", "use three characters")
    assert isinstance(error, ValueError)
    assert (error.field, error.message, error.fix) == ("name", "too short", "use three characters")
    assert str(error) == "name: too short. Fix: use three characters."
    assert str(FicValidationError("x", "bad.")) == "x: bad."


@pytest.mark.parametrize("name", ["abc", "a-b", "a_b", "0ab", "A" * 120, "gitlab-mygroup-myproject-branch-main-1a2b3c4d", "x__", "a--"])
def test_name_valid(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name, fragment", [
    ("ab", "has 2 characters"),
    ("a" * 121, "has 121 characters"),
    ("", "required"),
    (None, "required"),
    (123, "required"),
    ("-abc", "URL friendly"),
    ("_abc", "URL friendly"),
    ("ab.c", "URL friendly"),
    ("ab c", "URL friendly"),
    ("ab/c", "URL friendly"),
    ("abé", "URL friendly"),
    ("abc\n", "URL friendly"),
])
def test_name_invalid(name, fragment):
    with pytest.raises(FicValidationError) as caught:
        validate_name(name, field="credentials[0].name")
    assert caught.value.field == "credentials[0].name"
    assert fragment in caught.value.message
    assert caught.value.fix


@pytest.mark.parametrize("credential", [
    exact(),
    exact(description="x" * 600),
    exact(subject="s" * 600),
    exact(issuer="https://" + "i" * 592),
    exact(audiences=["a" * 600]),
    exact(audiences=("api://AzureADTokenExchange",)),
    exact(description=None),
    exact(claimsMatchingExpression=None),
    flexible(),
    flexible(subject=None),
    flexible(subject=""),
    exact(subject="project_path:g/p:ref_type:branch:ref:it's", audiences=["https://gitlab.example.com"]),
    exact(issuer="https://idp.example.com", subject="anything"),
])
def test_credential_valid(credential):
    validate_credential(credential)


@pytest.mark.parametrize("credential, field, fragment", [
    (exact(name="x"), "name", "has 1 characters"),
    (exact(issuer=""), "issuer", "required"),
    (exact(issuer=None), "issuer", "required"),
    (exact(issuer="https://" + "i" * 593), "issuer", "601 characters"),
    (exact(issuer="https://gitlab.com "), "issuer", "whitespace"),
    (exact(issuer=" https://gitlab.com"), "issuer", "whitespace"),
    (exact(audiences=[]), "audiences", "exactly one audience, not 0"),
    (exact(audiences=["a", "b"]), "audiences", "exactly one audience, not 2"),
    (exact(audiences="api://AzureADTokenExchange"), "audiences", "must be a list"),
    (exact(audiences=None), "audiences", "must be a list"),
    (exact(audiences=["a" * 601]), "audiences[0]", "601 characters"),
    (exact(audiences=[""]), "audiences[0]", "required"),
    (exact(description="d" * 601), "description", "601 characters"),
    (exact(description=5), "description", "must be a string"),
    (exact(subject="s" * 601), "subject", "601 characters"),
    (exact(subject=None), "subject", "required"),
    (exact(subject=""), "subject", "required"),
    (exact(subject="project_path:g/p:ref_type:branch:ref:*"), "subject", "wildcard"),
    (exact(subject="project_path:g/p:ref_type:branch:ref:ma?n"), "subject", "wildcard"),
    (flexible(subject=SUB_MAIN), "subject", "mutually exclusive"),
    (flexible(claimsMatchingExpression="claims['sub'] eq 'x'"), "claimsMatchingExpression", "must be an object"),
    (flexible(claimsMatchingExpression={"languageVersion": 1}), "claimsMatchingExpression", "must be an object"),
    (flexible(value="claims['sub'] eq 'x' or claims['sub'] eq 'y'"), "claimsMatchingExpression.value", "no 'or'"),
    (flexible(value="claims['project_path'] eq 'g/p'"), "claimsMatchingExpression.value", "not allowed for GitLab"),
    (flexible(claimsMatchingExpression={"value": "claims['sub'] eq 'x'", "languageVersion": 2}), "claimsMatchingExpression.languageVersion", "must be 1"),
    (flexible(issuer="https://idp.example.com"), "issuer", "may not use flexible credentials"),
])
def test_credential_invalid(credential, field, fragment):
    with pytest.raises(FicValidationError) as caught:
        validate_credential(credential)
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert caught.value.fix


def test_credential_wildcard_subject_suggests_expression_with_escaped_quotes():
    with pytest.raises(FicValidationError) as caught:
        validate_credential(exact(subject="project_path:g/p:ref_type:branch:ref:it's/*"))
    assert "claims['sub'] matches 'project_path:g/p:ref_type:branch:ref:it''s/*'" in caught.value.fix


def test_credential_field_prefix_and_declared_issuer():
    sandbox = "https://127.0.0.1:9443/gitlab/a"
    validate_credential(flexible(issuer=sandbox), gitlab_issuers=[sandbox])
    with pytest.raises(FicValidationError) as caught:
        validate_credential(exact(audiences=["a", "b"]), field_prefix="credentials[3].")
    assert caught.value.field == "credentials[3].audiences"


def test_set_twenty_ok_twenty_one_refused():
    twenty = [exact(name="cred-%02d" % index, subject="project_path:g/p:ref_type:branch:ref:b%d" % index) for index in range(20)]
    validate_credential_set(twenty)
    with pytest.raises(FicValidationError) as caught:
        validate_credential_set(twenty + [flexible()])
    assert "21 credentials" in caught.value.message and "at most 20" in caught.value.message
    assert "flexible credential" in caught.value.fix and "claims['sub'] matches" in caught.value.fix


@pytest.mark.parametrize("credentials, fragment", [
    ([exact(name="abc"), exact(name="abc", subject="other")], "two credentials are named 'abc'"),
    ([exact(name="abc"), exact(name="ABC", subject="other")], "two credentials are named 'ABC'"),
    ([exact(name="one"), exact(name="two")], "same issuer 'https://gitlab.com' and subject"),
])
def test_set_duplicates(credentials, fragment):
    with pytest.raises(FicValidationError) as caught:
        validate_credential_set(credentials, field="credentials")
    assert caught.value.field == "credentials"
    assert fragment in caught.value.message


def test_set_same_subject_other_issuer_or_flexible_is_fine():
    validate_credential_set([exact(name="one"), exact(name="two", issuer="https://gitlab.example.com"), flexible(name="three"), flexible(name="four")])


# --------------------------------------------------------------------------------------------
# plan_credential_changes
# --------------------------------------------------------------------------------------------

def test_plan_create_update_unchanged_delete():
    existing = [
        dict(exact(name="keep"), id="1", description=None),
        dict(exact(name="change", subject="project_path:g/p:ref_type:branch:ref:dev"), id="2", description="old"),
        dict(exact(name="drop", subject="project_path:g/p:ref_type:branch:ref:x"), id="3", description=None),
        dict(exact(name="other", subject="project_path:g/q:ref_type:branch:ref:x"), id="4", description=None),
    ]
    desired = [
        exact(name="keep", description=""),
        exact(name="change", subject="project_path:g/p:ref_type:branch:ref:develop"),
        flexible(name="new"),
    ]
    plan = plan_credential_changes(existing, desired, absent=["drop"])
    assert [item["name"] for item in plan.create] == ["new"]
    updates = [(old["name"], new["subject"], new["description"]) for old, new in plan.update]
    assert updates == [("change", "project_path:g/p:ref_type:branch:ref:develop", "old")]
    assert [item["name"] for item in plan.unchanged] == ["keep"]
    assert [item["name"] for item in plan.delete] == ["drop"]
    assert sorted(item["name"] for item in plan.final) == ["change", "keep", "new", "other"]
    assert plan.changed


def test_plan_idempotent():
    existing = [dict(exact(), id="1", description=None), dict(flexible(), id="2", description=None, subject=None)]
    plan = plan_credential_changes(existing, [exact(), flexible()])
    assert not plan.changed
    assert len(plan.unchanged) == 2


def test_plan_exclusive_deletes_the_rest():
    existing = [dict(exact(name="a1-x", subject="s1"), id="1"), dict(exact(name="a2-x", subject="s2"), id="2")]
    plan = plan_credential_changes(existing, [exact(name="a1-x", subject="s1")], exclusive=True)
    assert [item["name"] for item in plan.delete] == ["a2-x"]
    assert [item["name"] for item in plan.final] == ["a1-x"]


def test_plan_subject_to_expression_switch():
    existing = [dict(exact(name="trust"), id="1")]
    plan = plan_credential_changes(existing, [flexible(name="trust")])
    (old, new), = plan.update
    assert old["subject"] == SUB_MAIN
    assert new["subject"] is None and new["claimsMatchingExpression"]["value"].startswith("claims['sub'] matches")
    assert credential_differences(old, flexible(name="trust")) == ["subject", "claimsMatchingExpression"]


def test_plan_limit_counts_credentials_that_stay():
    existing = [dict(exact(name="cred-%02d" % index, subject="s%d" % index), id=str(index)) for index in range(20)]
    with pytest.raises(FicValidationError, match="21 credentials would exist"):
        plan_credential_changes(existing, [flexible()])
    plan = plan_credential_changes(existing, [flexible()], absent=["cred-00"])
    assert len(plan.final) == 20
    plan = plan_credential_changes(existing, [flexible()], exclusive=True)
    assert len(plan.delete) == 20 and len(plan.final) == 1


def test_plan_refuses_rename_by_subject():
    existing = [dict(exact(name="old-name"), id="1")]
    with pytest.raises(FicValidationError) as caught:
        plan_credential_changes(existing, [exact(name="new-name")])
    assert "names are immutable" in caught.value.message
    assert "keep the name 'old-name'" in caught.value.fix
    # deleting the old one in the same run is a replacement, not a rename
    plan = plan_credential_changes(existing, [exact(name="new-name")], absent=["old-name"])
    assert [item["name"] for item in plan.delete] == ["old-name"] and [item["name"] for item in plan.create] == ["new-name"]


def test_plan_refuses_rename_by_id():
    existing = [dict(exact(name="old-name"), id="1")]
    with pytest.raises(FicValidationError) as caught:
        plan_credential_changes(existing, [dict(exact(name="new-name", subject="x"), id="1")], field="credentials")
    assert caught.value.field == "credentials[0].name"
    assert "immutable" in caught.value.message


@pytest.mark.parametrize("desired, absent, field, fragment", [
    ([exact(name="abc")], ["ABC"], "credentials[0].name", "both desired and listed as absent"),
    ([exact(name="abc"), exact(name="abc", subject="x")], [], "credentials", "two credentials are named"),
    ([exact(name="one"), exact(name="two")], [], "credentials", "same issuer"),
    ([exact(), exact(name="bad name", subject="x")], [], "credentials[1].name", "URL friendly"),
    ([exact(audiences=["a", "b"])], [], "credentials[0].audiences", "exactly one audience"),
])
def test_plan_validates_desired(desired, absent, field, fragment):
    with pytest.raises(FicValidationError) as caught:
        plan_credential_changes([], desired, absent=absent, field="credentials")
    assert caught.value.field == field
    assert fragment in caught.value.message


def test_plan_desired_duplicate_of_existing_subject():
    existing = [dict(exact(name="theirs", subject=SUB_MAIN), id="1")]
    with pytest.raises(FicValidationError, match="names are immutable"):
        plan_credential_changes(existing, [exact(name="mine", subject=SUB_MAIN)])


def test_credential_matches():
    claims = {"iss": GITLAB, "aud": DEFAULT_AUDIENCE, "sub": SUB_MAIN}
    assert credential_matches(exact(), claims)
    assert credential_matches(flexible(), claims)
    assert credential_matches(exact(), dict(claims, aud=["other", DEFAULT_AUDIENCE]))
    assert not credential_matches(exact(), dict(claims, aud="other"))
    assert not credential_matches(exact(), dict(claims, iss="https://gitlab.example.com"))
    assert not credential_matches(exact(), dict(claims, sub=SUB_MAIN + "2"))
    assert not credential_matches(exact(subject=None), claims)
    assert credential_matches(exact(), {"sub": SUB_MAIN})


# --------------------------------------------------------------------------------------------
# GitLab trust breadth
# --------------------------------------------------------------------------------------------

PATH = "mygroup/myproject"
PID = "57382910"

# (comparand of claims['sub'] matches ..., expected level, fragment of the explanation)
TRUST_TABLE = [
    ("project_path:mygroup/myproject:ref_type:branch:ref:*", "project", "confined to project 'mygroup/myproject'"),
    ("project_path:mygroup/myproject:ref_type:tag:ref:*", "project", "confined"),
    ("project_path:mygroup/myproject:*", "project", "confined"),
    ("project_path:mygroup/myproject:ref_type:?ranch:ref:*", "project", "confined"),
    ("project_path:mygroup/myproject", "project", "confined"),
    ("project_id:57382910:*", "project", "confined to project id 57382910"),
    ("project_id:57382910:ref_type:branch:ref:*", "project", "confined"),
    ("project_path:mygroup/*", "group", "every project under 'mygroup/'"),
    ("project_path:mygroup/my*", "group", "under 'mygroup/'"),
    ("project_path:mygroup/myproject*", "group", "under 'mygroup/'"),
    ("project_path:mygroup/myproject?:*", "group", "under 'mygroup/'"),
    ("project_path:mygroup/?yproject:*", "group", "under 'mygroup/'"),
    ("project_path:*", "unsafe", "other namespaces"),
    ("project_path:my*", "unsafe", "other namespaces"),
    ("project_path:mygroup*", "unsafe", "other namespaces"),
    ("project_path:mygr?up/*", "unsafe", "other namespaces"),
    ("project_path:?ygroup/myproject:*", "unsafe", "other namespaces"),
    ("*", "unsafe", "any project"),
    ("*:ref_type:branch:ref:main", "unsafe", "any project"),
    ("project_pa*", "unsafe", "any project"),
    ("?roject_path:mygroup/myproject:*", "unsafe", "any project"),
    ("project_id:*", "unsafe", "wildcard inside the project id"),
    ("project_id:12*", "unsafe", "wildcard inside the project id"),
    ("project_id:57382910*", "unsafe", "wildcard inside the project id"),
    ("project_id:5738291?:*", "unsafe", "wildcard inside the project id"),
    ("project_path:other/project:*", "unsafe", "not the intended project 'mygroup/myproject'"),
    ("project_path:MyGroup/MyProject:*", "unsafe", "case-sensitive"),
    ("project_path:other/*", "unsafe", "does not contain the intended project"),
    ("project_path:mygroup/myproject/*", "unsafe", "does not contain the intended project"),
    ("project_id:123:*", "unsafe", "not the intended project id 57382910"),
    ("project_id:abc:*", "unsafe", "not a numeric project id"),
    ("repo:mygroup/myproject:*", "unsafe", "any project"),
]


@pytest.mark.parametrize("comparand, level, fragment", TRUST_TABLE)
def test_trust_breadth(comparand, level, fragment):
    expression = "claims['sub'] matches '%s'" % comparand
    analysis = analyze_gitlab_trust(expression=expression, project_path=PATH, project_id=PID)
    assert analysis.level == level, analysis.explanation
    assert fragment in analysis.explanation


@pytest.mark.parametrize("subject, level, fragment", [
    (SUB_MAIN, "project", "confined"),
    ("project_id:57382910:ref_type:branch:ref:main", "project", "confined"),
    ("project_path:mygroup/*", "unsafe", "not the intended project"),  # eq is literal: it names a project called '*'
    ("project_path:mygroup/other:ref_type:branch:ref:main", "unsafe", "not the intended project"),
    ("repo:o/r:ref:refs/heads/main", "unsafe", "never matches a GitLab token"),
])
def test_trust_of_exact_subjects(subject, level, fragment):
    analysis = analyze_gitlab_trust(subject=subject, project_path=PATH, project_id=PID)
    assert analysis.level == level
    assert fragment in analysis.explanation


def test_trust_without_intended_project():
    assert analyze_gitlab_trust(expression="claims['sub'] matches 'project_path:a/b:*'").level == "project"
    assert "not checked" in analyze_gitlab_trust(expression="claims['sub'] matches 'project_path:a/b:*'").explanation
    assert analyze_gitlab_trust(expression="claims['sub'] matches 'project_path:a/*'").level == "group"
    assert analyze_gitlab_trust(expression="claims['sub'] matches 'project_path:a*'").level == "unsafe"
    # only the id is known: a path-confined pattern is confined but cannot be compared
    analysis = analyze_gitlab_trust(expression="claims['sub'] matches 'project_path:a/b:*'", project_id=PID)
    assert analysis.level == "project" and "not checked" in analysis.explanation
    analysis = analyze_gitlab_trust(expression="claims['sub'] matches 'project_id:1:*'", project_path=PATH)
    assert analysis.level == "project" and "not checked" in analysis.explanation


@pytest.mark.parametrize("expression, level", [
    # the narrowest condition decides
    ("claims['sub'] matches 'project_path:mygroup/*' and claims['sub'] matches 'project_path:mygroup/myproject:*'", "project"),
    ("claims['sub'] matches '*:ref_type:branch:*' and claims['sub'] matches 'project_id:57382910:*'", "project"),
    ("claims['sub'] matches '*' and claims['sub'] matches 'project_path:mygroup/*'", "group"),
    ("claims['sub'] matches '*' and claims['sub'] matches '*:ref:main'", "unsafe"),
    # a condition confined to another project rules the credential out
    ("claims['sub'] matches 'project_path:mygroup/myproject:*' and claims['sub'] matches 'project_path:other/p:*'", "unsafe"),
    # no condition on sub
    ("claims['repository_id'] eq '1'", "unsafe"),
])
def test_trust_combined_conditions(expression, level):
    assert analyze_gitlab_trust(expression=expression, project_path=PATH, project_id=PID).level == level


def test_check_gitlab_trust():
    wide = "claims['sub'] matches 'project_path:mygroup/*'"
    with pytest.raises(FicValidationError) as caught:
        check_gitlab_trust(expression=wide, project_path=PATH)
    assert caught.value.field == "claimsMatchingExpression"
    assert caught.value.message.startswith("broad trust")
    assert "allow_broad_trust: true" in caught.value.fix
    assert check_gitlab_trust(expression=wide, project_path=PATH, allow_broad_trust=True).level == "group"
    with pytest.raises(FicValidationError) as caught:
        check_gitlab_trust(expression="claims['sub'] matches 'project_path:*'", project_path=PATH, allow_broad_trust=True, field="expression")
    assert caught.value.field == "expression"
    assert caught.value.message.startswith("unsafe trust")
    with pytest.raises(FicValidationError):
        check_gitlab_trust(subject="project_path:x/y:ref_type:branch:ref:main", project_path=PATH)
    assert check_gitlab_trust(subject=SUB_MAIN, project_path=PATH).level == "project"
    with pytest.raises(ValueError):
        analyze_gitlab_trust(subject=SUB_MAIN, expression="claims['sub'] eq 'x'")
