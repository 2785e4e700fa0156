# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""GitLab sub claims, subject/expression builders and credential planning."""

from __future__ import annotations

import random
import re

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils._fic import (
    DEFAULT_AUDIENCE,
    FicValidationError,
    analyze_gitlab_trust,
    credential_matches,
    parse_expression,
    plan_credential_changes,
    validate_credential,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._gitlab import (
    APP_UNIQUE_NAME_MAX_LENGTH,
    DEFAULT_SUB_CLAIM_COMPONENTS,
    app_unique_name,
    SubjectBuilder,
    build_sub,
    credential_name,
    plan_project_credentials,
    validate_issuer,
    validate_project_id,
    validate_project_path,
    validate_ref,
    validate_ref_pattern,
    validate_sub_claim_components,
)

GITLAB = "https://gitlab.com"
SANDBOX = "https://127.0.0.1:8443/gitlab/primary"
PROJECT_ID_FORM = ["project_id", "ref_type", "ref"]

# --------------------------------------------------------------------------------------------
# Validation of GitLab inputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("components, expected", [
    (None, ("project_path", "ref_type", "ref")),
    (["project_path", "ref_type", "ref"], ("project_path", "ref_type", "ref")),
    (["project_path"], ("project_path",)),
    (("project_id", "ref_type", "ref"), ("project_id", "ref_type", "ref")),
    (["project_path", "ref"], ("project_path", "ref")),
    (["project_path", "ref_type", "ref", "ref_protected"], ("project_path", "ref_type", "ref", "ref_protected")),
    (["project_id", "deployment_tier", "environment_protected"], ("project_id", "deployment_tier", "environment_protected")),
])
def test_components_valid(components, expected):
    assert validate_sub_claim_components(components) == expected


@pytest.mark.parametrize("components, fragments", [
    # GitLab's own wording (ProjectCiCdSetting validations)
    ([], ["is too short (minimum is 1 character)"]),
    (["ref"], ["project_path must be the first element of the sub claim"]),
    (["project_path", "not_existing_claim"], ["not_existing_claim is not an allowed sub claim component"]),
    (["ref_type", "bogus"], ["project_path must be the first element", "bogus is not an allowed sub claim component"]),
    (["project_path", "project_id", "ref"], ["not contain both"]),
    (["project_path", "job_project_id"], ["job_project_id is not an allowed sub claim component"]),
    ("project_path", ["must be a list"]),
    (42, ["must be a list"]),
])
def test_components_invalid(components, fragments):
    with pytest.raises(FicValidationError) as caught:
        validate_sub_claim_components(components)
    assert caught.value.field == "ci_id_token_sub_claim_components"
    for fragment in fragments:
        assert fragment in caught.value.message
    assert "project_path" in caught.value.fix


@pytest.mark.parametrize("path", ["g/p", "mygroup/myproject", "my-group/sub.group/my_project", "a/b/c/d/e/f", "G1/P.2-x_y", "_g/.p", "g/p-"])
def test_project_path_valid(path):
    assert validate_project_path(path) == path


@pytest.mark.parametrize("path, fragment", [
    ("myproject", "no namespace"),
    ("", "required"),
    (None, "required"),
    ("https://gitlab.com/g/p", "is a URL"),
    ("/g/p", "starts or ends with '/'"),
    ("g/p/", "starts or ends with '/'"),
    ("g//p", "not a valid GitLab path segment"),
    ("g/p.git", "not a valid"),
    ("g/p.atom", "not a valid"),
    ("g/p.", "not a valid"),
    ("g/-p", "not a valid"),
    ("g/my project", "not a valid"),
    ("g/*", "not a valid"),
    ("g/p?", "not a valid"),
    ("g:x/p", "not a valid"),
    ("g/pröject", "not a valid"),
    ("g/it's", "not a valid"),
])
def test_project_path_invalid(path, fragment):
    with pytest.raises(FicValidationError) as caught:
        validate_project_path(path)
    assert caught.value.field == "project_path"
    assert fragment in caught.value.message


@pytest.mark.parametrize("value, expected", [(42, "42"), ("57382910", "57382910")])
def test_project_id_valid(value, expected):
    assert validate_project_id(value) == expected


@pytest.mark.parametrize("value", [0, -1, "042", "abc", "", True, 4.2, None, "12*"])
def test_project_id_invalid(value):
    with pytest.raises(FicValidationError) as caught:
        validate_project_id(value)
    assert caught.value.field == "project_id"


@pytest.mark.parametrize("ref", [
    "main", "feature/x", "release/1.0", "v1.0.0", "it's", 'say"hi"', "fëature/ünïcode", "漢字", "a-b_c", "v1.0/rc1", "a.b", "x@y", "a{b}", "HEAD2",
])
def test_ref_valid(ref):
    assert validate_ref(ref, "branch") == ref
    assert validate_ref(ref, "tag") == ref


@pytest.mark.parametrize("ref, fragment", [
    ("", "is empty"),
    ("*", "'*'"),
    ("a?b", "'?'"),
    ("a:b", "':'"),
    ("a b", "' '"),
    ("a~b", "'~'"),
    ("a^b", "'^'"),
    ("a[b", "'['"),
    ("a\\b", "'\\\\'"),
    ("a\tb", "control character"),
    ("a\x7fb", "control character"),
    ("a..b", "'..'"),
    ("a@{b", "'@{'"),
    ("@", "'@'"),
    ("/a", "starts with '/'"),
    ("a/", "ends with '/'"),
    ("a//b", "'//'"),
    ("a.", "ends with '/' or '.'"),
    ("-a", "'-'"),
    (".a", "starting with '.'"),
    ("a/.b", "starting with '.'"),
    ("a.lock", "'.lock'"),
    ("a.lock/b", "'.lock'"),
    ("refs/heads/main", "short name ('main')"),
    ("refs/tags/v1", "short name ('v1')"),
])
def test_ref_invalid(ref, fragment):
    with pytest.raises(FicValidationError) as caught:
        validate_ref(ref, "tag")
    assert caught.value.field == "tags"
    assert fragment in caught.value.message


def test_ref_type_and_non_string():
    with pytest.raises(FicValidationError, match="ref type 'commit'"):
        validate_ref("main", "commit")
    with pytest.raises(FicValidationError, match="must be a string"):
        validate_ref(1.0, "branch")
    with pytest.raises(FicValidationError, match="must be a string"):
        validate_ref_pattern(None, "branch")


@pytest.mark.parametrize("pattern, valid", [
    ("*", True), ("release/*", True), ("v?.*", True), ("*/hotfix", True), ("it's-*", True),
    ("*:x", False), ("/*", False), ("* x", False), ("*..*", False), ("*.lock", False),
])
def test_ref_pattern(pattern, valid):
    if valid:
        assert validate_ref_pattern(pattern, "branch") == pattern
    else:
        with pytest.raises(FicValidationError):
            validate_ref_pattern(pattern, "branch")


@pytest.mark.parametrize("issuer, valid", [
    ("https://gitlab.com", True), ("https://gitlab.example.com", True), (SANDBOX, True), ("https://example.com/gitlab", True),
    ("https://gitlab.com/", False), ("http://gitlab.com", False), ("gitlab.com", False), ("https://", False), (None, False),
    ("https://gitlab.com ", False), ("https://gitlab.com?x=1", False), ("https://gitlab.com#f", False),
])
def test_issuer(issuer, valid):
    if valid:
        assert validate_issuer(issuer) == issuer
    else:
        with pytest.raises(FicValidationError) as caught:
            validate_issuer(issuer)
        assert caught.value.field == "issuer"


# --------------------------------------------------------------------------------------------
# sub claims
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, expected", [
    # api-facts section 4/7 and GitLab docs
    (dict(project_path="g/p", ref_type="branch", ref="main"), "project_path:g/p:ref_type:branch:ref:main"),
    (dict(project_path="mygroup/myproject", ref_type="tag", ref="v1.0.0"), "project_path:mygroup/myproject:ref_type:tag:ref:v1.0.0"),
    (dict(project_id=57382910, components=PROJECT_ID_FORM, ref_type="branch", ref="main"), "project_id:57382910:ref_type:branch:ref:main"),
    (dict(project_path="a/b.c/d-e", ref_type="tag", ref="release/2026/01"), "project_path:a/b.c/d-e:ref_type:tag:ref:release/2026/01"),
    (dict(project_path="g/p", components=["project_path"], ref_type="branch", ref="main"), "project_path:g/p"),
    (dict(project_path="g/p", components=["project_path", "ref"], ref_type="branch", ref="main"), "project_path:g/p:ref:main"),
    (dict(project_path="g/p", components=["project_path", "ref", "ref_type"], ref_type="tag", ref="v1"), "project_path:g/p:ref:v1:ref_type:tag"),
    (dict(project_path="g/p", project_id=7, ref_type="branch", ref="main"), "project_path:g/p:ref_type:branch:ref:main"),
    (dict(project_path="g/p", components=["project_path", "ref_type", "ref", "ref_protected"], claim_values={"ref_protected": True},
          ref_type="branch", ref="main"), "project_path:g/p:ref_type:branch:ref:main:ref_protected:true"),
    # empty values are skipped (a job without an environment)
    (dict(project_path="g/p", components=["project_path", "ref_type", "ref", "deployment_tier", "environment_protected"],
          claim_values={"deployment_tier": "", "environment_protected": None}, ref_type="branch", ref="main"),
     "project_path:g/p:ref_type:branch:ref:main"),
    (dict(project_path="g/p", components=["project_path", "deployment_tier", "environment_protected", "ref_type", "ref"],
          claim_values={"deployment_tier": "production", "environment_protected": "true"}, ref_type="branch", ref="main"),
     "project_path:g/p:deployment_tier:production:environment_protected:true:ref_type:branch:ref:main"),
    (dict(project_path="g/p", ref_type="branch", ref="it's \"quoted\"".replace(" ", "-")), "project_path:g/p:ref_type:branch:ref:it's-\"quoted\""),
    (dict(project_path="g/p", ref_type="branch", ref="fëature/漢字"), "project_path:g/p:ref_type:branch:ref:fëature/漢字"),
])
def test_build_sub(kwargs, expected):
    assert build_sub(**kwargs) == expected


def test_claims_of_a_job():
    builder = SubjectBuilder(project_path="mygroup/sub/myproject", project_id="42")
    claims = builder.claims("tag", "v1/rc", issuer=GITLAB, audience=DEFAULT_AUDIENCE)
    assert claims == {
        "sub": "project_path:mygroup/sub/myproject:ref_type:tag:ref:v1/rc", "ref": "v1/rc", "ref_type": "tag", "ref_path": "refs/tags/v1/rc",
        "project_path": "mygroup/sub/myproject", "namespace_path": "mygroup/sub", "project_id": "42", "iss": GITLAB, "aud": DEFAULT_AUDIENCE,
    }


@pytest.mark.parametrize("kwargs, field, fragment", [
    (dict(project_id=1), "project_path", "project path is required"),
    (dict(project_path="g/p", components=PROJECT_ID_FORM), "project_id", "project id is required"),
    (dict(project_path="g/p", components=["project_path", "ref_protected"]), "claim_values.ref_protected", "value must be given"),
    (dict(project_path="g/p", components=["project_path", "deployment_tier"]), "claim_values.deployment_tier", "value must be given"),
    (dict(project_path="g/p", components=["project_path", "environment_protected"]), "claim_values.environment_protected", "value must be given"),
    (dict(project_path="g/p", components=["project_path", "ref_protected"], claim_values={"ref_protected": None}), "claim_values.ref_protected",
     "not true or false"),
    (dict(project_path="g/p", components=["project_path", "ref_protected"], claim_values={"ref_protected": "yes"}), "claim_values.ref_protected",
     "not true or false"),
    (dict(project_path="g/p", components=["project_path", "deployment_tier"], claim_values={"deployment_tier": "prod"}),
     "claim_values.deployment_tier", "not a GitLab deployment tier"),
    (dict(project_path="g/p", claim_values={"ref_protected": True}), "claim_values.ref_protected", "would restrict nothing"),
    (dict(project_path="g/p", claim_values={"environment": "prod"}), "claim_values.environment", "not a sub claim component"),
    (dict(project_path="g", ), "project_path", "no namespace"),
])
def test_builder_invalid(kwargs, field, fragment):
    with pytest.raises(FicValidationError) as caught:
        SubjectBuilder(**kwargs)
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert caught.value.fix


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------

DOCS = SubjectBuilder(project_path="mygroup/myproject")
BY_ID = SubjectBuilder(project_path="mygroup/myproject", project_id=57382910, components=PROJECT_ID_FORM)


@pytest.mark.parametrize("match, subject, expression", [
    # the GitLab examples of api-facts section 4
    (DOCS.all_branches(), None, "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:branch:ref:*'"),
    (DOCS.all_tags(), None, "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:tag:ref:*'"),
    (BY_ID.any_ref(), None, "claims['sub'] matches 'project_id:57382910:*'"),
    (DOCS.branch("main"), "project_path:mygroup/myproject:ref_type:branch:ref:main", None),
    # more
    (DOCS.any_ref(), None, "claims['sub'] matches 'project_path:mygroup/myproject:*'"),
    (DOCS.tag("v1.0/rc1"), "project_path:mygroup/myproject:ref_type:tag:ref:v1.0/rc1", None),
    (BY_ID.branch("main"), "project_id:57382910:ref_type:branch:ref:main", None),
    (BY_ID.all_tags(), None, "claims['sub'] matches 'project_id:57382910:ref_type:tag:ref:*'"),
    (DOCS.ref_pattern("branch", "release/*"), None, "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:branch:ref:release/*'"),
    (DOCS.ref_pattern("tag", "v?.*"), None, "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:tag:ref:v?.*'"),
    (DOCS.ref_pattern("branch", "it's/*"), None, "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:branch:ref:it''s/*'"),
    (DOCS.ref_pattern("branch", "*"), None, "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:branch:ref:*'"),
    (DOCS.ref_pattern("branch", "main"), "project_path:mygroup/myproject:ref_type:branch:ref:main", None),
    (DOCS.branch("it's"), "project_path:mygroup/myproject:ref_type:branch:ref:it's", None),
    # without ref (or ref_type), the "all" kinds need no wildcard
    (SubjectBuilder(project_path="g/p", components=["project_path", "ref_type"]).all_branches(), "project_path:g/p:ref_type:branch", None),
    (SubjectBuilder(project_path="g/p", components=["project_path"]).any_ref(), "project_path:g/p", None),
    (SubjectBuilder(project_path="g/p", components=["project_path", "ref"]).any_ref(), None, "claims['sub'] matches 'project_path:g/p:ref:*'"),
    # extra components stay pinned; trailing wildcards collapse only when two or more are trailing
    (SubjectBuilder(project_path="g/p", components=["project_path", "ref_type", "ref", "ref_protected"], claim_values={"ref_protected": "true"})
     .all_branches(), None, "claims['sub'] matches 'project_path:g/p:ref_type:branch:ref:*:ref_protected:true'"),
    (SubjectBuilder(project_path="g/p", components=["project_path", "ref_protected", "ref_type", "ref"], claim_values={"ref_protected": "true"})
     .any_ref(), None, "claims['sub'] matches 'project_path:g/p:ref_protected:true:*'"),
    (SubjectBuilder(project_path="g/p", components=["project_path", "ref_type", "ref_protected", "ref"], claim_values={"ref_protected": "false"})
     .any_ref(), None, "claims['sub'] matches 'project_path:g/p:ref_type:*:ref_protected:false:ref:*'"),
])
def test_builders(match, subject, expression):
    assert match.subject == subject
    assert match.expression == expression
    assert match.flexible is (expression is not None)
    if expression:
        assert parse_expression(expression).render() == expression
        assert match.fic_fields() == {"claimsMatchingExpression": {"value": expression, "languageVersion": 1}}
    else:
        assert match.fic_fields() == {"subject": subject}


def test_builders_need_ref_components():
    no_ref_type = SubjectBuilder(project_path="g/p", components=["project_path", "ref"])
    for call in (lambda: no_ref_type.branch("main"), no_ref_type.all_tags, lambda: no_ref_type.ref_pattern("branch", "r/*")):
        with pytest.raises(FicValidationError, match="cannot be told from a tag"):
            call()
    no_ref = SubjectBuilder(project_path="g/p", components=["project_path", "ref_type"])
    with pytest.raises(FicValidationError, match="one branch cannot be told from another") as caught:
        no_ref.branch("main")
    assert caught.value.field == "branches"
    with pytest.raises(FicValidationError, match="one tag cannot be told from another") as caught:
        no_ref.tag("v1")
    assert caught.value.field == "tags"


def test_builders_refuse_wildcards_in_literals_and_long_subjects():
    with pytest.raises(FicValidationError, match="'\\*'"):
        DOCS.branch("release/*")
    long_ref = "/".join(["segment"] * 70)
    with pytest.raises(FicValidationError, match="characters; Entra ID allows 600"):
        DOCS.branch(long_ref)
    assert len(DOCS.branch(long_ref[:540]).subject) <= 600


def test_refs_dedup_subsumption_and_order():
    names = ["release/1.0", "main", "release/*", "main", "hotfix/x", "release/2.0"]
    matches = DOCS.branches(names)
    assert [(match.kind, match.ref) for match in matches] == [("branch_pattern", "release/*"), ("branch", "hotfix/x"), ("branch", "main")]
    assert DOCS.branches(list(reversed(names))) == matches
    assert [match.kind for match in DOCS.branches(["main", "*", "release/*"])] == ["all_branches"]
    assert [match.kind for match in DOCS.tags("v1")] == ["tag"]
    # a branch pattern does not cover tags
    mixed = DOCS.branches(["v*"]) + DOCS.tags(["v1"])
    assert [match.kind for match in mixed] == ["branch_pattern", "tag"]


def test_describe():
    assert DOCS.branch("main").describe() == "branch main"
    assert DOCS.ref_pattern("tag", "v*").describe() == "tags matching v*"
    assert DOCS.any_ref().describe() == "any branch or tag"


# --------------------------------------------------------------------------------------------
# Names and planning
# --------------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,119}\Z")


def test_credential_name_format_and_stability():
    name = credential_name(DOCS.branch("main"), issuer=GITLAB, project_label="mygroup/myproject")
    assert re.match(r"gitlab-mygroup-myproject-branch-main-[0-9a-f]{8}\Z", name)
    assert name == credential_name(SubjectBuilder(project_path="mygroup/myproject").branch("main"), issuer=GITLAB, project_label="mygroup/myproject")
    assert name != credential_name(DOCS.branch("main"), issuer="https://gitlab.example.com", project_label="mygroup/myproject")
    assert credential_name(DOCS.any_ref(), issuer=GITLAB, project_label="g/p", prefix="ci").startswith("ci-g-p-any-ref-")


def test_credential_names_unique_where_slugs_collide():
    first = SubjectBuilder(project_path="a/b-c")
    second = SubjectBuilder(project_path="a-b/c")
    names = {
        credential_name(first.branch("release/1.0"), issuer=GITLAB, project_label=first.label),
        credential_name(second.branch("release/1.0"), issuer=GITLAB, project_label=second.label),
        credential_name(first.branch("release-1.0"), issuer=GITLAB, project_label=first.label),
        credential_name(first.branch("release_1.0"), issuer=GITLAB, project_label=first.label),
    }
    assert len(names) == 4
    assert all(name.startswith("gitlab-a-b-c-branch-release") for name in names)


@pytest.mark.parametrize("ref", ["x" * 300, "ü" * 200, "a/" * 100 + "b", "-".join(["it's"] * 60), "漢"])
def test_credential_name_charset_and_length(ref):
    builder = SubjectBuilder(project_path="a-very-long-group-name/with.sub.groups/and-a-long-project-name", project_id=1)
    match = builder.branch(ref) if len(ref) < 500 else builder.ref_pattern("branch", ref[:400] + "*")
    name = credential_name(match, issuer=GITLAB, project_label=builder.label)
    assert _NAME_RE.match(name), name
    assert len(name) <= 120


@pytest.mark.parametrize("prefix", ["", "-x", "a" * 41, "a.b", None])
def test_credential_name_bad_prefix(prefix):
    with pytest.raises(FicValidationError) as caught:
        credential_name(DOCS.branch("main"), issuer=GITLAB, project_label="g/p", prefix=prefix)
    assert caught.value.field == "name_prefix"


def test_plan_typical():
    builder = SubjectBuilder(project_path="mygroup/myproject", project_id=42)
    credentials = plan_project_credentials(builder, issuer=GITLAB, branches=["main", "release/*"], tags=["*"])
    assert [(c.get("subject"), (c.get("claimsMatchingExpression") or {}).get("value")) for c in credentials] == [
        (None, "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:branch:ref:release/*'"),
        ("project_path:mygroup/myproject:ref_type:branch:ref:main", None),
        (None, "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:tag:ref:*'"),
    ]
    for credential in credentials:
        validate_credential(credential)
        assert credential["issuer"] == GITLAB and credential["audiences"] == [DEFAULT_AUDIENCE]
        assert credential["description"].startswith("GitLab CI/CD of mygroup/myproject (project id 42): ")
        assert "managed by oidc_federation.azure" in credential["description"]
    assert credentials == plan_project_credentials(builder, issuer=GITLAB, tags=["*"], branches=["release/*", "main"])
    # the planned set is idempotent through the reconciliation plan
    existing = [dict(credential, id=str(index)) for index, credential in enumerate(credentials)]
    assert not plan_credential_changes(existing, credentials).changed


def test_plan_exact_only_works_for_any_issuer():
    credentials = plan_project_credentials(DOCS, issuer="https://code.example.org", branches=["main", "develop"])
    assert [credential["subject"] for credential in credentials] == [
        "project_path:mygroup/myproject:ref_type:branch:ref:develop", "project_path:mygroup/myproject:ref_type:branch:ref:main"]


def test_plan_flexible_needs_a_gitlab_issuer():
    with pytest.raises(FicValidationError) as caught:
        plan_project_credentials(DOCS, issuer=SANDBOX, branches=["*"])
    assert caught.value.field == "issuer"
    assert "all branches needs a flexible credential" in caught.value.message
    assert "gitlab_issuers" in caught.value.fix
    credentials = plan_project_credentials(DOCS, issuer=SANDBOX, branches=["*"], gitlab_issuers=[SANDBOX])
    assert credentials[0]["claimsMatchingExpression"]["value"] == "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:branch:ref:*'"
    assert plan_project_credentials(DOCS, issuer="https://gitlab.example.com", any_ref=True)[0]["issuer"] == "https://gitlab.example.com"


def test_plan_any_ref_subsumes_the_rest():
    credentials = plan_project_credentials(BY_ID, issuer=GITLAB, branches=["main"], tags=["v1"], any_ref=True)
    assert len(credentials) == 1
    assert credentials[0]["claimsMatchingExpression"]["value"] == "claims['sub'] matches 'project_id:57382910:*'"
    assert credentials[0]["description"] == ("GitLab CI/CD of mygroup/myproject (project id 57382910): any branch or tag "
                                             "(managed by oidc_federation.azure)")


def test_plan_twenty_fit_twenty_one_do_not():
    twenty = ["release/%d" % index for index in range(19)] + ["main"]
    assert len(plan_project_credentials(DOCS, issuer=GITLAB, branches=twenty)) == 20
    with pytest.raises(FicValidationError) as caught:
        plan_project_credentials(DOCS, issuer=GITLAB, branches=twenty + ["develop"])
    error = caught.value
    assert error.field == "branches"
    assert "needs 21 credentials but only 20 are available" in error.message
    assert "no 'or'" in error.message
    assert "branch release/*" in error.fix and "never made automatically" in error.fix
    # the budget also counts the application's other credentials
    with pytest.raises(FicValidationError, match="needs 3 credentials but only 2"):
        plan_project_credentials(DOCS, issuer=GITLAB, tags=["v1", "v2", "v3"], available=2)
    assert len(plan_project_credentials(DOCS, issuer=GITLAB, tags=["v1", "v2"], available=2)) == 2


def test_plan_twenty_five_tags_suggests_patterns():
    tags = ["v1/%d" % index for index in range(12)] + ["v2/%d" % index for index in range(13)]
    with pytest.raises(FicValidationError) as caught:
        plan_project_credentials(DOCS, issuer=GITLAB, tags=tags)
    assert caught.value.field == "tags"
    assert "tag v1/*, tag v2/*" in caught.value.fix


@pytest.mark.parametrize("kwargs, field, fragment", [
    (dict(issuer=GITLAB), "branches", "nothing would be trusted"),
    (dict(issuer="https://gitlab.com/", branches=["main"]), "issuer", "must not end with '/'"),
    (dict(issuer=GITLAB, branches=["main"], audience=""), "audiences[0]", "required"),
    (dict(issuer=GITLAB, branches=["main"], name_prefix="bad prefix"), "name_prefix", "not a valid name prefix"),
    (dict(issuer=GITLAB, branches=["ma in"]), "branches", "' '"),
    (dict(issuer=GITLAB, tags=["refs/tags/v1"]), "tags", "short name"),
])
def test_plan_invalid(kwargs, field, fragment):
    with pytest.raises(FicValidationError) as caught:
        plan_project_credentials(DOCS, **kwargs)
    assert caught.value.field == field
    assert fragment in caught.value.message


@pytest.mark.parametrize("available", [-1, 21, True, "20"])
def test_plan_bad_available(available):
    with pytest.raises(ValueError):
        plan_project_credentials(DOCS, issuer=GITLAB, branches=["main"], available=available)


# --------------------------------------------------------------------------------------------
# Property-style: builder output parses, is confined to the project, matches the intended
# refs' tokens and nothing else
# --------------------------------------------------------------------------------------------

_SEGMENT_FIRST = "abcxyzABZ019_"
_SEGMENT_BODY = "abcxyzABZ019_.-"
_REF_PIECES = ["main", "dev", "release", "v1.0", "it's", 'q"t', "fëat", "漢字", "a-b", "x_y", "1.2.3", "ü"]
_COMPONENT_SETS = [
    (["project_path", "ref_type", "ref"], {}),
    (["project_id", "ref_type", "ref"], {}),
    (["project_path", "ref_type", "ref", "ref_protected"], {"ref_protected": "true"}),
    (["project_id", "ref_protected", "ref_type", "ref"], {"ref_protected": "false"}),
    (["project_path", "ref_type", "ref", "deployment_tier"], {"deployment_tier": "production"}),
]


def _segment(rng):
    while True:
        text = rng.choice(_SEGMENT_FIRST) + "".join(rng.choice(_SEGMENT_BODY) for _index in range(rng.randint(0, 6)))
        if not text.endswith((".", ".git", ".atom")):
            return text


def _ref(rng):
    while True:
        ref = "/".join(rng.choice(_REF_PIECES) for _index in range(rng.randint(1, 3)))
        try:
            return validate_ref(ref, "branch")
        except FicValidationError:
            continue


def _other_builders(rng, builder, components, values):
    """Projects that must never be trusted: siblings, ids sharing a prefix, other namespaces, other pinned values."""
    path = builder.project_path
    pid = builder.project_id
    namespace = path.rsplit("/", 1)[0]
    others = [
        (path + "x", str(int(pid) + 1)),
        (path + "-evil", pid + "0"),
        (namespace + "/" + _segment(rng), pid[:-1] or "9"),
        ("evil" + path, str(int(pid) * 10 + 1)),
        (_segment(rng) + "/" + path.split("/", 1)[1], str(int(pid) + 1000)),
    ]
    result = [SubjectBuilder(project_path=other_path, project_id=other_id, components=components, claim_values=values)
              for other_path, other_id in others if other_path != path and other_id != pid]
    for key, value in values.items():
        flipped = {"true": "false", "false": "true", "production": "staging"}[value]
        result.append(SubjectBuilder(project_path=path, project_id=pid, components=components, claim_values=dict(values, **{key: flipped})))
    return result


def _check(builder, match, intended, others, foreign_claims):
    fields = match.fic_fields()
    credential = dict(fields, name="cred-x", issuer=GITLAB, audiences=[DEFAULT_AUDIENCE])
    validate_credential(credential)
    if match.expression:
        assert parse_expression(match.expression).render() == match.expression
    target = {"subject": match.subject} if match.subject else {"expression": match.expression}
    assert analyze_gitlab_trust(project_path=builder.project_path, project_id=builder.project_id, **target).level == "project"
    for ref_type, ref in intended:
        claims = builder.claims(ref_type, ref, issuer=GITLAB, audience=DEFAULT_AUDIENCE)
        assert credential_matches(credential, claims), (match, ref_type, ref)
        assert match.matches(claims)
    for ref_type, ref in others:
        assert not credential_matches(credential, builder.claims(ref_type, ref)), (match, ref_type, ref)
    for claims in foreign_claims:
        assert not credential_matches(credential, claims), (match, claims["sub"])


@pytest.mark.parametrize("seed", range(60))
def test_property_builders(seed):
    rng = random.Random(seed)
    components, values = _COMPONENT_SETS[seed % len(_COMPONENT_SETS)]
    path = "/".join(_segment(rng) for _index in range(rng.randint(2, 4)))
    pid = str(rng.randint(1, 99999999))
    builder = SubjectBuilder(project_path=path, project_id=pid, components=components, claim_values=values)
    branch = _ref(rng)
    tag = _ref(rng)
    prefix = _ref(rng)
    inside = prefix + "/" + _ref(rng)
    others = _other_builders(rng, builder, components, values)
    sample = [("branch", branch), ("tag", tag), ("branch", inside), ("tag", inside)]
    foreign = [other.claims(ref_type, ref) for other in others for ref_type, ref in sample]

    _check(builder, builder.branch(branch), [("branch", branch)],
           [("branch", branch + "x"), ("branch", branch + "/x"), ("branch", "x" + branch), ("tag", branch)], foreign)
    _check(builder, builder.tag(tag), [("tag", tag)], [("tag", tag + "x"), ("branch", tag)], foreign)
    _check(builder, builder.all_branches(), [("branch", branch), ("branch", tag), ("branch", inside)], [("tag", branch), ("tag", inside)], foreign)
    _check(builder, builder.all_tags(), [("tag", tag), ("tag", branch)], [("branch", tag), ("branch", inside)], foreign)
    _check(builder, builder.any_ref(), [("branch", branch), ("tag", tag), ("tag", inside)], [], foreign)
    _check(builder, builder.ref_pattern("branch", prefix + "/*"), [("branch", inside), ("branch", prefix + "/x")],
           [("branch", prefix), ("branch", prefix + "-x"), ("tag", inside)], foreign)

    plan = plan_project_credentials(builder, issuer=GITLAB, branches=[branch, prefix + "/*", inside], tags=[tag, "*"])
    names = [credential["name"] for credential in plan]
    assert len(set(names)) == len(names) and all(_NAME_RE.match(name) for name in names)
    assert plan == plan_project_credentials(builder, issuer=GITLAB, branches=[inside, prefix + "/*", branch], tags=["*", tag])
    token = builder.claims("branch", inside, issuer=GITLAB, audience=DEFAULT_AUDIENCE)
    assert any(credential_matches(credential, token) for credential in plan)
    assert not any(credential_matches(credential, claims) for credential in plan for claims in foreign)


def test_default_components_constant():
    assert DEFAULT_SUB_CLAIM_COMPONENTS == ("project_path", "ref_type", "ref")


# --------------------------------------------------------------------------------------------
# Application uniqueName derived from a project
# --------------------------------------------------------------------------------------------

def test_app_unique_name_examples():
    assert app_unique_name(project_path="mygroup/sub/my-project") == "gitlab-oidc-mygroup~sub~my-project"
    assert app_unique_name(project_path="a/b-c") != app_unique_name(project_path="a-b/c")  # '/' -> '-' would collide
    assert app_unique_name(project_id=57382910) == app_unique_name(project_id="57382910") == "gitlab-oidc-id-57382910"
    assert app_unique_name(project_path="g/p", prefix="ci-") == "ci-g~p"


def test_app_unique_name_limit_matches_graph_rule():
    from ansible_collections.oidc_federation.azure.plugins.module_utils._graph import MAX_UNIQUE_NAME, UNIQUE_NAME_RE
    assert APP_UNIQUE_NAME_MAX_LENGTH == MAX_UNIQUE_NAME
    name = app_unique_name(project_path="/".join(["g" * 200, "p" * 200]))
    assert len(name) == MAX_UNIQUE_NAME and UNIQUE_NAME_RE.match(name)


def _random_segment(rng):
    first = rng.choice("abcAB019_.")
    rest = "".join(rng.choice("abAB09_.-") for _index in range(rng.randint(0, 6)))
    segment = (first + rest).rstrip(".")
    return segment if segment and not segment.endswith((".git", ".atom")) else "x"


def test_app_unique_name_is_injective_and_valid_on_random_paths():
    """Thousands of short and long paths, chosen to collide under lossy mappings: all names distinct and valid."""
    from ansible_collections.oidc_federation.azure.plugins.module_utils._graph import UNIQUE_NAME_RE
    rng = random.Random(20260101)
    paths = {}  # GitLab paths are unique regardless of case: one path per case-folded key
    while len(paths) < 4000:
        segments = [_random_segment(rng) for _index in range(rng.randint(2, 4))]
        if rng.random() < 0.1:  # long paths, cut with a hash
            segments = [segment + "y" * rng.randint(60, 120) for segment in segments] + ["z" * rng.randint(0, 3) + "p"]
        path = "/".join(segments)
        paths.setdefault(path.lower(), path)
    for path in ("a/b-c", "a-b/c", "a/b/c", "a-b-c/d", "a.b/c", "a/b.c"):  # collide under '/' -> '-' or '.'
        paths.setdefault(path, path)
    paths = set(paths.values())
    names = {}
    for path in paths:
        name = app_unique_name(project_path=path)
        assert len(name) <= APP_UNIQUE_NAME_MAX_LENGTH and UNIQUE_NAME_RE.match(name), (path, name)
        assert ("~-" in name) == (len("gitlab-oidc-" + path) > APP_UNIQUE_NAME_MAX_LENGTH), (path, name)
        assert name.lower() not in names, (path, names.get(name.lower()))
        names[name.lower()] = path
    ids = {app_unique_name(project_id=number).lower() for number in range(1, 2000)}
    assert len(ids) == 1999 and not ids & set(names)
    assert all("~" not in name for name in ids) and all("~" in name for name in names)


@pytest.mark.parametrize("kwargs,field,text", [
    ({}, "project_path", "exactly one"),
    ({"project_path": "g/p", "project_id": 1}, "project_path", "exactly one"),
    ({"project_path": "p"}, "project_path", "no namespace"),
    ({"project_path": "g/-p"}, "project_path", "not a valid GitLab path segment"),
    ({"project_id": "01"}, "project_id", "not a GitLab project id"),
    ({"project_path": "g/p", "prefix": "-x"}, "prefix", "not a valid uniqueName prefix"),
    ({"project_path": "g/p", "prefix": "a/b"}, "prefix", "not a valid uniqueName prefix"),
    ({"project_path": "g/p", "prefix": "x" * 65}, "prefix", "not a valid uniqueName prefix"),
    ({"project_path": "p", "field": "gitlab_project_path"}, "gitlab_project_path", "no namespace"),
])
def test_app_unique_name_errors(kwargs, field, text):
    with pytest.raises(FicValidationError) as caught:
        app_unique_name(**kwargs)
    assert caught.value.field == field and text in str(caught.value) and caught.value.fix


def test_descriptions_name_the_project_id_so_renamed_projects_are_recognised():
    from ansible_collections.oidc_federation.azure.plugins.module_utils._gitlab import describes_project
    by_path = plan_project_credentials(DOCS, issuer=GITLAB, branches=["main"])[0]["description"]
    with_id = plan_project_credentials(SubjectBuilder(project_path="a/b", project_id=7), issuer=GITLAB, branches=["main"])[0]
    only_id = plan_project_credentials(SubjectBuilder(project_id=7, components=["project_id", "ref_type", "ref"]), issuer=GITLAB,
                                       branches=["main"])[0]
    assert describes_project(with_id["description"], 7) and describes_project(only_id["description"], "7")
    assert not describes_project(with_id["description"], 70) and not describes_project(by_path, 7)
    assert not describes_project("GitLab CI/CD of a/b (project id 7): made by hand", 7)  # no marker: not ours
    assert not describes_project(None, 7) and not describes_project(with_id["description"], None)
