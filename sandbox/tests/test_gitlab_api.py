"""The GitLab REST API of the sandbox's instances, driven through python-gitlab and raw HTTP (see README,
"GitLab REST API"): groups, subgroups and projects with both paginations, project settings and the ID tokens they
feed, CI/CD variables with GitLab's validation, tokens, scopes and visibility, errors, rate limits, control API."""
from __future__ import annotations

import gitlab
import pytest

TREE = {
    "groups": [{"path": "demo/platform/deep"}, {"path": "pub", "visibility": "public"}],
    "projects": [
        {"path": "demo/web-app", "topics": ["azure", "frontend"], "id": 2001},
        {"path": "demo/payments", "topics": ["azure"], "id": 2002,
         "ci_id_token_sub_claim_components": ["project_id", "ref_type", "ref"]},
        {"path": "demo/platform/infra", "topics": ["azure", "infra"], "id": 2003, "default_branch": "trunk"},
        {"path": "demo/platform/deep/tool", "id": 2004},
        {"path": "demo/platform/old", "archived": True, "id": 2005},
        {"path": "pub/open", "visibility": "public", "id": 2006},
    ],
    "tokens": [
        {"token": "glpat-read-only-demo", "scopes": ["read_api"], "namespaces": ["demo"]},
        {"token": "glpat-developer-demo", "scopes": ["api"], "namespaces": ["demo"], "access_level": 30},
        {"token": "glpat-platform-maint", "scopes": ["api"], "namespaces": ["demo/platform"]},
        {"token": "glpat-repository-only", "scopes": ["read_repository"], "namespaces": ["demo"]},
        {"token": "glpat-expired-demo-1", "scopes": ["api"], "namespaces": ["demo"], "expired": True},
        {"token": "glpat-revoked-demo-1", "scopes": ["api"], "namespaces": ["demo"], "revoked": True},
    ],
}


@pytest.fixture
def gl_sandbox(clean_sandbox):
    clean_sandbox.gitlab_seed(**TREE)
    return clean_sandbox


def client(sb, token=None):
    return gitlab.Gitlab(sb.gitlab_url, private_token=token or sb.gitlab_token, ssl_verify=sb.ca_file,
                         keep_base_url=True)


def paths(projects):
    return sorted(p.path_with_namespace for p in projects)


# --- groups and projects through python-gitlab --------------------------------------------------------------------

def test_groups_subgroups_and_projects_through_python_gitlab(gl_sandbox):
    gl = client(gl_sandbox)
    group = gl.groups.get("demo/platform")
    assert (group.full_path, group.parent_id, group.full_name) == ("demo/platform", gl.groups.get("demo").id,
                                                                   "demo / platform")
    assert [g.full_path for g in group.subgroups.list(get_all=True)] == ["demo/platform/deep"]
    demo = gl.groups.get("demo", lazy=True)
    assert [g.full_path for g in demo.descendant_groups.list(get_all=True)] == ["demo/platform/deep",
                                                                                "demo/platform"]
    assert paths(demo.projects.list(get_all=True)) == ["demo/payments", "demo/web-app"]
    everything = demo.projects.list(get_all=True, include_subgroups=True, per_page=2)
    assert len(everything) == 5
    live = demo.projects.list(get_all=True, include_subgroups=True, archived=False)
    assert "demo/platform/old" not in paths(live) and len(live) == 4
    assert paths(demo.projects.list(get_all=True, include_subgroups=True, topic="azure,infra")) == [
        "demo/platform/infra"]
    assert paths(demo.projects.list(get_all=True, include_subgroups=True, search="TOO")) == ["demo/platform/deep/tool"]
    simple = demo.projects.list(get_all=True, simple=True)[0]
    assert "archived" not in simple.attributes and "path_with_namespace" in simple.attributes


def test_keyset_pagination_through_python_gitlab_follows_link(gl_sandbox):
    gl = client(gl_sandbox)
    pages = gl.groups.get("demo", lazy=True).projects.list(iterator=True, pagination="keyset", order_by="id",
                                                            sort="asc", per_page=2, include_subgroups=True)
    assert [p.id for p in pages] == [2001, 2002, 2003, 2004, 2005]
    desc = gl.projects.list(iterator=True, pagination="keyset", order_by="id", sort="desc", per_page=4)
    assert [p.id for p in desc] == [2006, 2005, 2004, 2003, 2002, 2001]


def test_project_by_id_and_by_encoded_path(gl_sandbox):
    gl = client(gl_sandbox)
    by_path = gl.projects.get("demo/platform/infra")  # python-gitlab encodes it: demo%2Fplatform%2Finfra
    assert (by_path.id, by_path.default_branch, by_path.namespace["full_path"]) == (2003, "trunk", "demo/platform")
    assert gl.projects.get(2002).ci_id_token_sub_claim_components == ["project_id", "ref_type", "ref"]
    assert gl.projects.get(2001).ci_id_token_sub_claim_components == ["project_path", "ref_type", "ref"]
    assert gl_sandbox.gitlab("GET", "/projects/demo/web-app").status_code == 404  # not encoded: no such route
    missing = gl_sandbox.gitlab("GET", "/projects/demo%2Fnope")
    assert (missing.status_code, missing.json()) == (404, {"message": "404 Project Not Found"})
    assert gl_sandbox.gitlab("GET", "/groups/nope").json() == {"message": "404 Group Not Found"}


# --- pagination headers (raw HTTP) --------------------------------------------------------------------------------

def test_offset_pagination_headers(gl_sandbox):
    response = gl_sandbox.gitlab("GET", "/groups/demo/projects?include_subgroups=true&per_page=2&page=2")
    headers = response.headers
    assert [p["id"] for p in response.json()] == [2003, 2002]  # default order: created_at desc
    assert (headers["x-page"], headers["x-per-page"], headers["x-next-page"], headers["x-prev-page"],
            headers["x-total"], headers["x-total-pages"]) == ("2", "2", "3", "1", "5", "3")
    links = {part.split('rel="')[1].rstrip('"'): part.split(">")[0].lstrip("<") for part in
             headers["link"].split(", ")}
    assert set(links) == {"prev", "next", "first", "last"}
    assert links["next"].startswith(gl_sandbox.gitlab_url + "/api/v4/groups/demo/projects?")
    assert "include_subgroups=true" in links["next"] and "page=3" in links["next"]
    last = gl_sandbox.gitlab("GET", "/groups/demo/projects?include_subgroups=true&per_page=2&page=3")
    assert last.headers["x-next-page"] == "" and 'rel="next"' not in last.headers["link"]
    capped = gl_sandbox.gitlab("GET", "/projects?per_page=500")
    assert capped.headers["x-per-page"] == "100"


def test_keyset_pagination_headers_and_refusals(gl_sandbox):
    first = gl_sandbox.gitlab("GET", "/groups/demo%2Fplatform/projects?include_subgroups=true&pagination=keyset"
                                     "&order_by=id&sort=asc&per_page=2")
    assert [p["id"] for p in first.json()] == [2003, 2004]
    assert "x-total" not in first.headers and "x-next-page" not in first.headers
    link = first.headers["link"]
    assert link.endswith('>; rel="next"') and "id_after=2004" in link and "demo%2Fplatform" in link
    second = gl_sandbox.http.get(link[1:link.index(">")], headers={"PRIVATE-TOKEN": gl_sandbox.gitlab_token})
    assert [p["id"] for p in second.json()] == [2005] and "link" not in second.headers
    refused = gl_sandbox.gitlab("GET", "/projects?pagination=keyset&order_by=name&sort=asc")
    assert (refused.status_code, refused.json()) == (
        405, {"error": "Keyset pagination is not yet available for this type of request"})
    assert gl_sandbox.gitlab("GET", "/groups?pagination=keyset&order_by=id").status_code == 405
    bad = gl_sandbox.gitlab("GET", "/projects?order_by=size")
    assert (bad.status_code, bad.json()) == (400, {"error": "order_by does not have a valid value"})
    assert gl_sandbox.gitlab("GET", "/projects?archived=maybe").json() == {"error": "archived is invalid"}


# --- project settings and ID tokens -------------------------------------------------------------------------------

@pytest.mark.parametrize("components, message", [
    ([], "is too short (minimum is 1 character)"),
    (["ref", "project_path"], "project_path or project_id must be the first element of the sub claim"),
    (["project_path", "branch"], "branch is not an allowed sub claim component"),
])
def test_sub_claim_components_validation(gl_sandbox, components, message):
    response = gl_sandbox.gitlab("PUT", "/projects/2001", json={"ci_id_token_sub_claim_components": components})
    assert response.status_code == 400
    assert response.json() == {"message": {"ci_cd_settings.id_token_sub_claim_components": [message]}}


def test_project_settings_feed_minted_id_tokens(gl_sandbox):
    gl = client(gl_sandbox)
    project = gl.projects.get("demo/web-app")
    project.ci_id_token_sub_claim_components = ["project_id", "ref_type", "ref"]
    project.save()
    assert gl.projects.get(2001).ci_id_token_sub_claim_components == ["project_id", "ref_type", "ref"]
    claims = gl_sandbox.control("POST", "gitlab/token", json={"project": "demo/web-app", "ref": "main"}).json()["claims"]
    assert claims["sub"] == "project_id:2001:ref_type:branch:ref:main"
    assert (claims["project_path"], claims["namespace_path"]) == ("demo/web-app", "demo")
    assert claims["namespace_id"] == str(gl.groups.get("demo").id)
    # a rename (and transfer) keeps the id; tokens then carry the new path
    moved = gl_sandbox.control("PATCH", "gitlab/projects/2003", json={"path": "demo/ops/infrastructure"})
    assert moved.json()["path_with_namespace"] == "demo/ops/infrastructure"
    claims = gl_sandbox.control("POST", "gitlab/token", json={"project_id": "2003"}).json()["claims"]
    assert claims["sub"] == "project_path:demo/ops/infrastructure:ref_type:branch:ref:main"
    explicit = gl_sandbox.control("POST", "gitlab/token", json={"project": 2002, "sub_components": [
        "project_path", "ref_type", "ref"]}).json()["claims"]
    assert explicit["sub"].startswith("project_path:demo/payments:")
    unknown = gl_sandbox.control("POST", "gitlab/token", json={"project": "demo/none"})
    assert unknown.status_code == 400 and "no project 'demo/none'" in unknown.json()["error"]["message"]
    renamed = gl_sandbox.gitlab("PUT", "/projects/2001", json={"path": "web"})
    assert renamed.json()["path_with_namespace"] == "demo/web"


# --- CI/CD variables ----------------------------------------------------------------------------------------------

def test_variables_crud_through_python_gitlab(gl_sandbox):
    project = client(gl_sandbox).projects.get(2001, lazy=True)
    created = project.variables.create({"key": "AZURE_CLIENT_ID", "value": "0c7f1a2b-3c4d", "description": "id"})
    assert (created.environment_scope, created.masked, created.protected, created.variable_type, created.raw) == (
        "*", False, False, "env_var", False)
    project.variables.create({"key": "AZURE_CLIENT_ID", "value": "prod-value-1", "environment_scope": "production",
                              "masked": True, "protected": True})
    assert sorted(v.environment_scope for v in project.variables.list(get_all=True)) == ["*", "production"]
    with pytest.raises(gitlab.GitlabGetError) as exc:
        project.variables.get("AZURE_CLIENT_ID")
    assert exc.value.response_code == 409
    assert "Please use 'filter[environment_scope]'" in exc.value.error_message
    prod = project.variables.get("AZURE_CLIENT_ID", filter={"environment_scope": "production"})
    assert (prod.value, prod.masked) == ("prod-value-1", True)  # masked values are returned by the API
    project.variables.update("AZURE_CLIENT_ID", {"value": "prod-value-2", "protected": False},
                             filter={"environment_scope": "production"})
    assert project.variables.get("AZURE_CLIENT_ID", filter={"environment_scope": "production"}).value == "prod-value-2"
    project.variables.delete("AZURE_CLIENT_ID", filter={"environment_scope": "production"})
    assert [v.environment_scope for v in project.variables.list(get_all=True)] == ["*"]
    with pytest.raises(gitlab.GitlabGetError) as exc:
        project.variables.get("NOPE")
    assert (exc.value.response_code, exc.value.error_message) == (404, "404 Variable Not Found")


@pytest.mark.parametrize("body, status, answer", [
    ({"key": "AZURE-ID", "value": "v"}, 400, {"message": {"key": ["can contain only letters, digits and '_'."]}}),
    ({"key": "K" * 256, "value": "v"}, 400, {"message": {"key": ["is too long (maximum is 255 characters)"]}}),
    ({"key": "TAKEN", "value": "v"}, 400, {"message": {"key": ["(TAKEN) has already been taken"]}}),
    ({"key": "M", "value": "short", "masked": True}, 400, {"message": {"value": ["is invalid"]}}),
    ({"key": "M", "value": "has spaces 123", "masked": True}, 400, {"message": {"value": ["is invalid"]}}),
    ({"key": "M", "value": "line\nbreak1", "masked": True, "raw": True}, 400, {"message": {"value": ["is invalid"]}}),
    ({"key": "M", "value": "a$b%c&d*e(", "masked": True, "raw": True}, 201, None),
    ({"key": "M", "value": "v", "description": "d" * 256}, 400,
     {"message": {"description": ["is too long (maximum is 255 characters)"]}}),
    ({"key": "M"}, 400, {"error": "value is missing"}),
    ({}, 400, {"error": "key is missing, value is missing"}),
    ({"key": "M", "value": "v", "variable_type": "secret"}, 400, {"error": "variable_type does not have a valid value"}),
    ({"key": "M", "value": "v", "environment_scope": "prod|staging"}, 400, {"message": {"environment_scope": [
        "can contain only letters, digits, '-', '_', '/', '$', '{', '}', '.', '*' and spaces"]}}),
    ({"key": "M", "value": "v", "environment_scope": "review/${CI_COMMIT_REF_SLUG} *.x-1_"}, 201, None),
])
def test_variable_validation_errors(gl_sandbox, body, status, answer):
    gl_sandbox.gitlab("POST", "/projects/2001/variables", json={"key": "TAKEN", "value": "x"})
    response = gl_sandbox.gitlab("POST", "/projects/2001/variables", json=body)
    assert response.status_code == status, response.text
    if answer is not None:
        assert response.json() == answer


def test_plan_limit_of_variables_per_project(gl_sandbox):
    """Limitable (on create only): ``Maximum number of project ci variables (n) exceeded``; 0 lifts the limit."""
    assert gl_sandbox.control("GET", "gitlab/instances/gitlab.com").json()["limits"] == {"project_ci_variables": 8000}
    changed = gl_sandbox.control("PATCH", "gitlab/instances/gitlab.com", json={"limits": {"project_ci_variables": 2}})
    assert changed.status_code == 200 and changed.json()["limits"] == {"project_ci_variables": 2}
    for key in ("A1", "A2"):
        assert gl_sandbox.gitlab("POST", "/projects/2001/variables", json={"key": key, "value": "v"}).status_code == 201
    refused = gl_sandbox.gitlab("POST", "/projects/2001/variables", json={"key": "A3", "value": "v"})
    assert (refused.status_code, refused.json()) == (400, {"message": {"base": [
        "Maximum number of project ci variables (2) exceeded"]}})
    assert gl_sandbox.gitlab("PUT", "/projects/2001/variables/A1", json={"value": "w"}).status_code == 200
    assert gl_sandbox.gitlab("POST", "/projects/2002/variables", json={"key": "A3", "value": "v"}).status_code == 201
    gl_sandbox.control("PATCH", "gitlab/instances/gitlab.com", json={"limits": {"project_ci_variables": 0}})
    assert gl_sandbox.gitlab("POST", "/projects/2001/variables", json={"key": "A3", "value": "v"}).status_code == 201
    bad = gl_sandbox.control("PATCH", "gitlab/instances/gitlab.com", json={"limits": {"project_ci_variables": -1}})
    assert bad.status_code == 400 and "non-negative" in bad.json()["error"]["message"]
    gl_sandbox.reset()
    assert gl_sandbox.control("GET", "gitlab/instances/gitlab.com").json()["limits"] == {"project_ci_variables": 8000}


def test_hidden_variables_never_show_their_value(gl_sandbox):
    response = gl_sandbox.gitlab("POST", "/projects/2001/variables",
                                 json={"key": "H", "value": "hidden-value-1", "masked_and_hidden": True})
    assert response.status_code == 201
    assert (response.json()["value"], response.json()["hidden"], response.json()["masked"]) == (None, True, True)
    assert gl_sandbox.gitlab("GET", "/projects/2001/variables/H").json()["value"] is None
    refused = gl_sandbox.gitlab("PUT", "/projects/2001/variables/H", json={"masked": False})
    assert refused.json() == {"message": {"base": [
        "Updating masked attribute is not allowed on updates for hidden variables."]}}
    form = gl_sandbox.gitlab("PUT", "/projects/2001/variables/H", data={"value": "other-hidden-1"})
    assert form.status_code == 200 and form.json()["value"] is None
    assert gl_sandbox.gitlab("DELETE", "/projects/2001/variables/H").status_code == 204


# --- tokens, scopes, visibility -----------------------------------------------------------------------------------

def test_token_errors_are_gitlabs(gl_sandbox):
    bad = gl_sandbox.gitlab("GET", "/projects/2001", token="glpat-not-known-at-all")
    assert (bad.status_code, bad.json()) == (401, {"message": "401 Unauthorized"})
    with pytest.raises(gitlab.GitlabAuthenticationError):
        client(gl_sandbox, "glpat-not-known-at-all").projects.get(2001)
    expired = gl_sandbox.gitlab("GET", "/projects/2001", token="glpat-expired-demo-1")
    assert expired.status_code == 401 and expired.json()["error"] == "invalid_token"
    assert expired.json()["error_description"].startswith("Token is expired.")
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]
    revoked = gl_sandbox.gitlab("GET", "/projects/2001", token="glpat-revoked-demo-1")
    assert revoked.json()["error_description"].startswith("Token was revoked.")
    bearer = gl_sandbox.http.get(gl_sandbox.gitlab_url + "/api/v4/projects/2001",
                                 headers={"Authorization": "Bearer glpat-read-only-demo"})
    assert bearer.status_code == 200
    query = gl_sandbox.http.get(gl_sandbox.gitlab_url + "/api/v4/projects/2001?private_token=glpat-read-only-demo")
    assert query.status_code == 200


def test_scopes_roles_and_visibility(gl_sandbox):
    write = gl_sandbox.gitlab("POST", "/projects/2001/variables", token="glpat-read-only-demo",
                              json={"key": "K", "value": "v"})
    assert (write.status_code, write.json()) == (403, {
        "error": "insufficient_scope",
        "error_description": "The request requires higher privileges than provided by the access token.",
        "scope": "api"})
    read = gl_sandbox.gitlab("GET", "/projects/2001", token="glpat-repository-only")
    assert (read.status_code, read.json()["scope"]) == (403, "api read_api")
    with pytest.raises(gitlab.GitlabCreateError) as exc:
        client(gl_sandbox, "glpat-read-only-demo").projects.get(2001, lazy=True).variables.create(
            {"key": "K", "value": "v"})
    assert exc.value.response_code == 403
    developer = gl_sandbox.gitlab("GET", "/projects/2001", token="glpat-developer-demo").json()
    assert "ci_id_token_sub_claim_components" not in developer and developer["archived"] is False
    denied = gl_sandbox.gitlab("GET", "/projects/2001/variables", token="glpat-developer-demo")
    assert (denied.status_code, denied.json()) == (403, {"message": "403 Forbidden"})
    platform = client(gl_sandbox, "glpat-platform-maint")
    assert paths(platform.groups.get("demo", lazy=True).projects.list(get_all=True, include_subgroups=True)) == [
        "demo/platform/deep/tool", "demo/platform/infra", "demo/platform/old"]
    assert platform.groups.get("demo").full_path == "demo"  # members of a subgroup see its ancestors
    hidden = gl_sandbox.gitlab("GET", "/projects/demo%2Fweb-app", token="glpat-platform-maint")
    assert (hidden.status_code, hidden.json()) == (404, {"message": "404 Project Not Found"})
    anonymous = gl_sandbox.gitlab("GET", "/projects", token="")
    assert [p["path_with_namespace"] for p in anonymous.json()] == ["pub/open"]
    assert "archived" not in anonymous.json()[0]
    assert gl_sandbox.gitlab("GET", "/projects/2001", token="").status_code == 404
    assert gl_sandbox.gitlab("PUT", "/projects/2006", token="", json={"description": "x"}).json() == {
        "message": "401 Unauthorized"}
    rename = gl_sandbox.gitlab("PUT", "/projects/2003", token="glpat-platform-maint", json={"path": "x"})
    assert rename.status_code == 403  # renaming is for Owners


def test_rate_limits_answer_429_with_gitlab_headers(gl_sandbox):
    gl_sandbox.faults(rules=[{"service": "gitlab", "kind": "throttle", "retry_after": 4, "times": 1}])
    response = gl_sandbox.gitlab("GET", "/projects/2001")
    assert (response.status_code, response.text) == (429, "Retry later\n")
    assert response.headers["retry-after"] == "4" and response.headers["content-type"].startswith("text/plain")
    assert {"ratelimit-limit", "ratelimit-observed", "ratelimit-remaining", "ratelimit-reset",
            "ratelimit-resettime", "ratelimit-name"} <= set(response.headers)
    gl_sandbox.faults(rules=[{"service": "gitlab", "kind": "throttle", "retry_after": 1, "times": 1}])
    with pytest.raises(gitlab.GitlabGetError) as exc:
        client(gl_sandbox).projects.get(2001, obey_rate_limit=False)
    assert exc.value.response_code == 429
    assert gl_sandbox.gitlab("GET", "/projects/2001").status_code == 200


def test_stats_count_gitlab_api_reads_and_writes(gl_sandbox):
    """``GET /_sandbox/stats``: ``gitlab_reads``/``gitlab_writes`` count REST API requests of every instance (failed
    ones included), not the issuer documents; ``reads``/``writes`` stay Graph and ARM only."""
    assert gl_sandbox.control("POST", "stats/reset").status_code == 200
    gl_sandbox.gitlab("GET", "/projects/2001")
    gl_sandbox.gitlab("GET", "/projects/2001/variables")
    gl_sandbox.gitlab("POST", "/projects/2001/variables", json={"key": "S1", "value": "v"})
    gl_sandbox.gitlab("POST", "/projects/2001/variables", token="glpat-read-only-demo", json={"key": "S2", "value": "v"})
    gl_sandbox.gitlab("DELETE", "/projects/2001/variables/S1")
    gl_sandbox.http.get(gl_sandbox.gitlab_url + "/.well-known/openid-configuration")
    stats = gl_sandbox.control("GET", "stats").json()
    assert (stats["gitlab_reads"], stats["gitlab_writes"], stats["reads"], stats["writes"]) == (2, 3, 0, 0), stats


# --- control API --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("route, body, message", [
    ("gitlab/projects", {"path": "solo"}, "full path"),
    ("gitlab/projects", {"path": "demo/web-app"}, "already exists"),
    ("gitlab/projects", {"path": "demo/x", "id": 2001}, "project id 2001 is already used"),
    ("gitlab/projects", {"path": "demo/x", "ci_id_token_sub_claim_components": ["ref"]}, "must be the first element"),
    ("gitlab/projects", {"path": "demo/x", "colour": "red"}, "unknown project keys: colour"),
    ("gitlab/tokens", {"scopes": ["everything"]}, "scopes must be"),
    ("gitlab/tokens", {"access_level": 45}, "access_level must be"),
    ("gitlab/groups", {"path": "a/b c"}, "path segments may contain only"),
    ("gitlab/groups", {"path": "x", "instance": "nope"}, "unknown GitLab instance 'nope'"),
])
def test_control_api_refuses_bad_input(gl_sandbox, route, body, message):
    response = gl_sandbox.control("POST", route, json=body)
    assert response.status_code == 400 and message in response.json()["error"]["message"]


def test_control_seed_is_all_or_nothing_and_views_hide_secrets(gl_sandbox):
    before = gl_sandbox.control("GET", "gitlab/instances/gitlab.com").json()
    bad = gl_sandbox.control("POST", "gitlab/seed", json={"groups": [{"path": "new"}],
                                                          "projects": [{"path": "new/a"}, {"path": "new/a"}]})
    assert bad.status_code == 400
    after = gl_sandbox.control("GET", "gitlab/instances/gitlab.com").json()
    assert after == before
    other = gl_sandbox.control("POST", "gitlab/projects", json={"path": "corp/app", "instance": "gitlab.example.com"})
    assert other.status_code == 201 and other.json()["id"] == 1000
    assert gl_sandbox.gitlab("GET", "/projects/corp%2Fapp", instance="gitlab.example.com").status_code == 200
    assert gl_sandbox.gitlab("GET", "/projects/corp%2Fapp").status_code == 404  # another instance
    gl_sandbox.gitlab("POST", "/projects/2001/variables", json={"key": "S", "value": "secret-value-9"})
    state = gl_sandbox.control("GET", "state").json()["gitlab"]["gitlab.com"]
    text = str(state) + str(after)
    assert gl_sandbox.gitlab_token not in text and "glpat-read-only-demo" not in text
    assert "secret-value-9" not in str(state)
    assert {"demo/web-app", "demo/platform/infra"} <= {p["path_with_namespace"] for p in after["projects"]}
    gl_sandbox.reset()
    assert gl_sandbox.control("GET", "gitlab/instances/gitlab.com").json()["projects"] == []
