"""federatedIdentityCredentials over raw HTTP: CRUD by every key, upsert, every documented rule, flexible FICs."""
from __future__ import annotations

import json
import uuid

import pytest

from test_graph_helpers import assert_graph_error, fic_body, graph_env, new_app  # noqa: F401

INVALID = "InvalidFederatedIdentityCredentialValue"
GITLAB_ALL_BRANCHES = "claims['sub'] matches 'project_path:group/project:ref_type:branch:ref:*'"


@pytest.fixture
def app(graph_env):
    return new_app(graph_env.http())


def _fics_url(app, version="v1.0"):
    return f"/{version}/applications/{app['id']}/federatedIdentityCredentials"


def _flexible(name="gitlab-flex", value=GITLAB_ALL_BRANCHES, issuer="https://gitlab.com", **over):
    body = {"name": name, "issuer": issuer, "audiences": ["api://AzureADTokenExchange"],
            "claimsMatchingExpression": {"value": value, "languageVersion": 1}}
    body.update(over)
    return body


# --------------------------------------------------------------------------- CRUD


def test_create_returns_the_credential(graph_env, app):
    response = graph_env.http().post(_fics_url(app), json=fic_body(description=None))
    assert response.status_code == 201, response.text
    fic = response.json()
    assert fic["@odata.context"] == (f"{graph_env.url}/v1.0/$metadata#applications('{app['id']}')"
                                     f"/federatedIdentityCredentials/$entity")
    assert uuid.UUID(fic["id"])
    assert {k: fic[k] for k in ("name", "issuer", "subject", "audiences", "description")} == {
        "name": "gitlab-main", "issuer": "https://gitlab.com",
        "subject": "project_path:group/project:ref_type:branch:ref:main",
        "audiences": ["api://AzureADTokenExchange"], "description": None}
    assert "claimsMatchingExpression" not in fic  # not a v1.0 property
    beta = graph_env.http().get(f"{_fics_url(app, 'beta')}/{fic['id']}").json()
    assert beta["claimsMatchingExpression"] is None and beta["subject"] == fic["subject"]


def test_every_address_of_a_credential(graph_env):
    client = graph_env.http()
    app = new_app(client, uniqueName="fic-owner")
    fic = client.post(_fics_url(app), json=fic_body()).json()
    by_app_id = f"/v1.0/applications(appId='{app['appId']}')/federatedIdentityCredentials"
    by_unique_name = "/beta/applications(uniqueName='fic-owner')/federatedIdentityCredentials"
    for url in (f"{_fics_url(app)}/{fic['id']}", f"{_fics_url(app)}/gitlab-main",
                f"{_fics_url(app)}(name='gitlab-main')", f"{_fics_url(app)}('{fic['id']}')",
                f"{by_app_id}/gitlab-main", f"{by_unique_name}(name='gitlab-main')",
                f"/V1.0/APPLICATIONS/{app['id']}/FederatedIdentityCredentials/{fic['id']}"):
        response = client.get(url)
        assert response.status_code == 200, (url, response.text)
        assert response.json()["id"] == fic["id"]
    listed = client.get(by_app_id).json()
    assert [f["id"] for f in listed["value"]] == [fic["id"]]
    assert listed["@odata.context"].endswith(f"#applications('{app['id']}')/federatedIdentityCredentials")
    assert_graph_error(client.get(f"{_fics_url(app)}/nope"), 404, "Request_ResourceNotFound", "Resource 'nope'")
    assert_graph_error(client.get(f"{_fics_url(app)}(name='nope')"), 404, "Request_ResourceNotFound")
    assert_graph_error(client.get(f"/v1.0/applications/{uuid.uuid4()}/federatedIdentityCredentials"), 404,
                       "Request_ResourceNotFound")
    assert_graph_error(client.get(f"{_fics_url(app)}(subject='x')"), 400, "BadRequest")


def test_list_filters(graph_env, app):
    client = graph_env.http()
    a = client.post(_fics_url(app), json=fic_body("one", subject="s-one")).json()
    b = client.post(_fics_url(app), json=fic_body("two", subject="s-two")).json()
    def names(expr):
        response = client.get(_fics_url(app), params={"$filter": expr})
        assert response.status_code == 200, response.text
        return [f["name"] for f in response.json()["value"]]
    assert names("name eq 'two'") == ["two"]
    assert names("subject eq 's-one'") == ["one"]
    assert sorted(names("name eq 'one' or name eq 'two'")) == ["one", "two"]
    assert {a["id"], b["id"]} == {f["id"] for f in client.get(_fics_url(app)).json()["value"]}
    assert_graph_error(client.get(_fics_url(app), params={"$filter": "issuer eq 'x'"}), 400,
                       "Request_UnsupportedQuery", "property 'issuer' of resource 'FederatedIdentityCredential'")
    page = client.get(_fics_url(app), params={"$top": "1", "$select": "name"}).json()
    assert len(page["value"]) == 1 and set(page["value"][0]) == {"name"} and "@odata.nextLink" in page


def test_patch_and_delete(graph_env, app):
    client = graph_env.http()
    fic = client.post(_fics_url(app), json=fic_body()).json()
    url = f"{_fics_url(app)}/{fic['id']}"
    response = client.patch(url, json={"subject": "project_path:group/project:ref_type:tag:ref:v1",
                                       "description": "tags", "name": "gitlab-main"})
    assert response.status_code == 204 and response.content == b""
    got = client.get(url).json()
    assert got["subject"].endswith("ref_type:tag:ref:v1") and got["description"] == "tags"
    assert_graph_error(client.patch(url, json={"name": "renamed"}), 400, INVALID,
                       "The name of a federated identity credential is immutable")
    assert_graph_error(client.patch(url, json={"audiences": ["a", "b"]}), 400, INVALID, "exactly one audience")
    assert_graph_error(client.patch(f"{_fics_url(app)}/missing", json={"description": "x"}), 404,
                       "Request_ResourceNotFound")
    assert client.delete(f"{_fics_url(app)}(name='gitlab-main')").status_code == 204
    assert_graph_error(client.get(url), 404, "Request_ResourceNotFound")
    assert_graph_error(client.delete(url), 404, "Request_ResourceNotFound")


def test_upsert_by_name(graph_env, app):
    client = graph_env.http()
    url = f"{_fics_url(app)}(name='gitlab-main')"
    body = fic_body()
    del body["name"]
    assert_graph_error(client.patch(url, json=body), 404, "Request_ResourceNotFound")
    created = client.patch(url, json=body, headers={"Prefer": "create-if-missing"})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "gitlab-main" and created.json()["subject"] == body["subject"]
    assert created.json()["@odata.context"].endswith("/federatedIdentityCredentials/$entity")
    updated = client.patch(url, json={**body, "subject": "other"}, headers={"Prefer": "create-if-missing"})
    assert updated.status_code == 204
    assert client.get(url).json()["subject"] == "other"
    assert_graph_error(client.patch(f"{_fics_url(app)}(name='other-name')", json={**body, "name": "mismatch"},
                                    headers={"Prefer": "create-if-missing"}), 400, INVALID, "does not match")
    assert_graph_error(client.patch(f"{_fics_url(app)}(name='no-subject')",
                                    json={"issuer": "https://gitlab.com", "audiences": ["x"]},
                                    headers={"Prefer": "create-if-missing"}), 400, INVALID,
                       "Either 'subject' or 'claimsMatchingExpression' must be set.")
    # the path form /{name} is not an upsert target
    assert_graph_error(client.patch(f"{_fics_url(app)}/not-there", json=body, headers={"Prefer": "create-if-missing"}),
                       404, "Request_ResourceNotFound")
    assert len(client.get(_fics_url(app)).json()["value"]) == 1


# --------------------------------------------------------------------------- documented rules


def test_at_most_twenty_per_application(graph_env, app):
    client = graph_env.http()
    for index in range(20):
        response = client.post(_fics_url(app), json=fic_body(f"fic-{index:02d}", subject=f"s{index}"))
        assert response.status_code == 201, response.text
    response = client.post(_fics_url(app), json=fic_body("fic-20", subject="s20"))
    assert_graph_error(response, 400, INVALID, "maximum of 20 federated identity credentials")
    upsert = client.patch(f"{_fics_url(app)}(name='fic-20')", json=fic_body("fic-20", subject="s20"),
                          headers={"Prefer": "create-if-missing"})
    assert_graph_error(upsert, 400, INVALID, "maximum of 20")
    assert client.patch(f"{_fics_url(app)}/fic-00", json={"description": "still editable"}).status_code == 204


@pytest.mark.parametrize("name,ok", [("abc", True), ("a" * 120, True), ("A1-_z", True), ("9lives", True),
                                     ("ab", False), ("a" * 121, False), ("-abc", False), ("_abc", False),
                                     ("has space", False), ("dots.are.bad", False), ("slash/no", False),
                                     ("ümlaut", False)])
def test_name_rules(graph_env, app, name, ok):
    response = graph_env.http().post(_fics_url(app), json=fic_body(name))
    if ok:
        assert response.status_code == 201, response.text
    else:
        assert_graph_error(response, 400, INVALID, f"Federated Identity Credential name '{name}' is invalid.")


def test_name_is_unique_per_application(graph_env, app):
    client = graph_env.http()
    assert client.post(_fics_url(app), json=fic_body("same")).status_code == 201
    error = assert_graph_error(client.post(_fics_url(app), json=fic_body("SAME", subject="different")), 400,
                               "Request_BadRequest", "FederatedIdentityCredential with name 'SAME' already exists.")
    assert error["details"][0]["code"] == "ObjectConflict"
    other = new_app(client)
    assert client.post(_fics_url(other), json=fic_body("same")).status_code == 201  # per application


@pytest.mark.parametrize("audiences", [[], ["a", "b"]])
def test_exactly_one_audience(graph_env, app, audiences):
    response = graph_env.http().post(_fics_url(app), json=fic_body(audiences=audiences))
    assert_graph_error(response, 400, INVALID, "Federated identity credentials must have exactly one audience.")


@pytest.mark.parametrize("prop", ["issuer", "subject", "audiences", "description"])
def test_600_character_limits(graph_env, app, prop):
    client = graph_env.http()
    def value(length):
        text = "https://" + "x" * (length - 8) if prop == "issuer" else "y" * length
        return [text] if prop == "audiences" else text
    assert client.post(_fics_url(app), json=fic_body("at-limit", **{prop: value(600)})).status_code == 201
    response = client.post(_fics_url(app), json=fic_body("over-limit", **{prop: value(601)}))
    assert_graph_error(response, 400, INVALID, f"The value of '{prop}' must be at most 600 characters long.")


def test_issuer_and_subject_unique_per_application(graph_env, app):
    client = graph_env.http()
    first = fic_body("first")
    assert client.post(_fics_url(app), json=first).status_code == 201
    response = client.post(_fics_url(app), json=fic_body("second"))
    assert_graph_error(response, 400, INVALID,
                       f"The combination of issuer and subject must be unique for the application. Issuer "
                       f"{first['issuer']} and Subject: {first['subject']} already exist.")
    # subjects compare case-sensitively, issuers exactly
    assert client.post(_fics_url(app), json=fic_body("third", subject=first["subject"].upper())).status_code == 201
    assert client.post(_fics_url(app), json=fic_body("fourth", issuer="https://gitlab.example.com")).status_code \
        == 201
    second = client.post(_fics_url(app), json=fic_body("fifth", subject="other")).json()
    assert_graph_error(client.patch(f"{_fics_url(app)}/{second['id']}", json={"subject": first["subject"]}), 400,
                       INVALID, "must be unique")


@pytest.mark.parametrize("over,code,message", [
    ({"subject": None}, INVALID, "Either 'subject' or 'claimsMatchingExpression' must be set."),
    ({"subject": ""}, INVALID, "The subject must not be empty."),
    ({"issuer": None}, "BadRequest", "'issuer', which has the expected type 'Edm.String[Nullable=False]'"),
    ({"issuer": ""}, "Request_BadRequest", "property 'issuer' of resource 'FederatedIdentityCredential'"),
    ({"name": None}, "BadRequest", "'name'"),
    ({"audiences": None}, "BadRequest", "'audiences'"),
    ({"audiences": "api://AzureADTokenExchange"}, "BadRequest", "A 'StartArray' node was expected."),
    ({"audiences": [""]}, INVALID, "The audience must not be empty."),
    ({"subject": 7}, "BadRequest", "Cannot convert the literal '7' to the expected type 'Edm.String'."),
    ({"colour": "x"}, "Request_BadRequest", "Property 'colour' does not exist"),
    ({"id": str(uuid.uuid4())}, "Request_BadRequest", "Property 'id' is read-only"),
])
def test_field_validation(graph_env, app, over, code, message):
    assert_graph_error(graph_env.http().post(_fics_url(app), json=fic_body(**over)), 400, code, message)


def test_missing_required_properties(graph_env, app):
    client = graph_env.http()
    for prop in ("name", "issuer", "audiences"):
        body = fic_body()
        del body[prop]
        assert_graph_error(client.post(_fics_url(app), json=body), 400, "Request_BadRequest",
                           f"Invalid value specified for property '{prop}' of resource "
                           f"'FederatedIdentityCredential'.")


def test_writes_need_write_permission(graph_env, app):
    client = graph_env.http()
    fic = client.post(_fics_url(app), json=fic_body()).json()
    reader = graph_env.http(graph_env.restricted())
    assert reader.get(f"{_fics_url(app)}/{fic['id']}").status_code == 200
    for response in (reader.post(_fics_url(app), json=fic_body("other", subject="o")),
                     reader.patch(f"{_fics_url(app)}/{fic['id']}", json={"description": "x"}),
                     reader.patch(f"{_fics_url(app)}(name='new-one')", json=fic_body("new-one", subject="n"),
                                  headers={"Prefer": "create-if-missing"}),
                     reader.delete(f"{_fics_url(app)}/{fic['id']}")):
        assert_graph_error(response, 403, "Authorization_RequestDenied")


def test_credentials_of_an_application_still_replicating(graph_env):
    client = graph_env.http()
    graph_env.set_lag(60)
    app = new_app(client)
    assert_graph_error(client.post(_fics_url(app), json=fic_body()), 404, "Request_ResourceNotFound", app["id"])
    assert_graph_error(client.patch(f"{_fics_url(app)}(name='x1x')", json=fic_body("x1x"),
                                    headers={"Prefer": "create-if-missing"}), 404, "Request_ResourceNotFound")


# --------------------------------------------------------------------------- flexible credentials


def test_flexible_credential_only_through_beta(graph_env, app):
    client = graph_env.http()
    assert_graph_error(client.post(_fics_url(app), json=_flexible()), 400, "Request_BadRequest",
                       "Property 'claimsMatchingExpression' does not exist as a declared property or extension "
                       "property.")
    response = client.post(_fics_url(app, "beta"), json={**_flexible(), "subject": None})
    assert response.status_code == 201, response.text
    fic = response.json()
    assert fic["subject"] is None
    assert fic["claimsMatchingExpression"] == {"value": GITLAB_ALL_BRANCHES, "languageVersion": 1}
    assert fic["@odata.context"].startswith(f"{graph_env.url}/beta/$metadata#")
    listed = client.get(_fics_url(app, "beta")).json()["value"]
    assert [f["name"] for f in listed] == ["gitlab-flex"]


V1_SUBJECT_ERROR = ("The property 'subject[Nullable=False]' of type 'Edm.String' has a null value, which is not "
                    "allowed.")


def _in_stream_error(response, prefix: str) -> dict:
    """The error appended to a payload that v1.0 stopped writing mid-object (msgraph-sdk-python#1359): status
    200, malformed JSON ``<prefix>{"error":...}`` with nothing closed."""
    assert response.status_code == 200, response.text
    text = response.text
    assert text.startswith(prefix), text[:400]
    with pytest.raises(ValueError):
        json.loads(text)
    error = json.loads(text[len(prefix):])["error"]
    assert error["code"] == "InternalServerError" and error["message"] == V1_SUBJECT_ERROR
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    return error


def test_v1_listing_fails_on_a_flexible_credential(graph_env, app):
    client = graph_env.http()
    exact = client.post(_fics_url(app), json=fic_body()).json()
    flexible = client.post(_fics_url(app, "beta"), json=_flexible()).json()
    listed = client.get(_fics_url(app))
    context = f"{graph_env.url}/v1.0/$metadata#applications('{app['id']}')/federatedIdentityCredentials"
    items = sorted([exact, flexible], key=lambda f: f["id"])
    done = "".join(json.dumps({k: v for k, v in f.items() if not k.startswith("@")}, separators=(",", ":")) + ","
                   for f in items[:items.index(flexible)])
    head = json.dumps({"@odata.context": context}, separators=(",", ":"))[:-1]
    partial = json.dumps({"id": flexible["id"], "name": flexible["name"], "issuer": flexible["issuer"]},
                         separators=(",", ":"))[:-1]
    _in_stream_error(listed, f'{head},"value":[{done}{partial}')
    single = client.get(f"{_fics_url(app)}/{flexible['id']}")
    _in_stream_error(single, json.dumps({"@odata.context": f"{context}/$entity"}, separators=(",", ":"))[:-1]
                     + "," + partial)
    # what v1.0 never has to serialise still works: other credentials, and $select without subject
    only_exact = client.get(_fics_url(app), params={"$filter": "name eq 'gitlab-main'"}).json()["value"]
    assert [f["id"] for f in only_exact] == [exact["id"]]
    assert client.get(f"{_fics_url(app)}/{exact['id']}").status_code == 200
    names = client.get(_fics_url(app), params={"$select": "id,name"}).json()["value"]
    assert sorted(f["name"] for f in names) == sorted([exact["name"], flexible["name"]])
    # in a $batch the item carries the error (a batch response cannot embed a malformed body)
    batch = client.post("/v1.0/$batch", json={"requests": [
        {"id": "1", "method": "GET", "url": f"/applications/{app['id']}/federatedIdentityCredentials"}]})
    (item,) = batch.json()["responses"]
    assert item["status"] == 500 and item["body"]["error"]["message"] == V1_SUBJECT_ERROR
    assert client.delete(f"{_fics_url(app)}/{flexible['id']}").status_code == 204
    assert client.get(_fics_url(app)).json()["value"][0]["id"] == exact["id"]


def test_flexible_patch_and_upsert_on_beta(graph_env, app):
    client = graph_env.http()
    url = f"{_fics_url(app, 'beta')}(name='gitlab-flex')"
    body = _flexible()
    del body["name"]
    assert client.patch(url, json=body, headers={"Prefer": "create-if-missing"}).status_code == 201
    tags = "claims['sub'] matches 'project_path:group/project:ref_type:tag:ref:*'"
    assert client.patch(url, json={"claimsMatchingExpression": {"value": tags, "languageVersion": 1}}) \
        .status_code == 204
    assert client.get(url).json()["claimsMatchingExpression"]["value"] == tags
    # switching to an exact subject needs the expression cleared in the same request
    assert_graph_error(client.patch(url, json={"subject": "s"}), 400, INVALID, "mutually exclusive")
    assert client.patch(url, json={"subject": "s", "claimsMatchingExpression": None}).status_code == 204
    got = client.get(url).json()
    assert got["subject"] == "s" and got["claimsMatchingExpression"] is None
    assert client.get(_fics_url(app)).status_code == 200  # v1.0 can list it again


@pytest.mark.parametrize("value,message", [
    ("claims['sub'] eq 'a' or claims['sub'] eq 'b'", "the only boolean operator is 'and'"),
    ("claims['sub']  eq 'a'", "unsupported operator"),
    ("claims['sub'] eq  'a'", "a single-quoted comparand"),
    ("claims['sub'] ne 'a'", "unsupported operator 'ne'"),
    ("claims['sub'] startswith 'a'", "unsupported operator 'startswith'"),
    ("claims[\"sub\"] eq 'a'", "a single-quoted claim name"),
    ("claims['sub'] eq a", "a single-quoted comparand"),
    ("claims['sub'] eq 'unterminated", "unterminated quoted comparand"),
    ("claims['sub'] eq 'a' and", "expected ' and ' followed by another condition"),
    ("sub eq 'a'", "\"claims['<claimName>']\""),
    ("", "the expression is empty"),
    (" claims['sub'] eq 'a'", "\"claims['<claimName>']\""),
    ("claims[''] eq 'a'", "empty claim name"),
])
def test_expression_syntax_errors(graph_env, app, value, message):
    response = graph_env.http().post(_fics_url(app, "beta"), json=_flexible(value=value))
    error = assert_graph_error(response, 400, INVALID, "Invalid claims matching expression")
    assert message in error["message"]


@pytest.mark.parametrize("issuer,value,ok,message", [
    ("https://gitlab.com", "claims['sub'] eq 'project_path:g/p:ref_type:branch:ref:main'", True, None),
    ("https://gitlab.mycompany.com", "claims['sub'] matches 'project_id:42:*'", True, None),
    ("https://gitlab.example.ca", "claims['sub'] matches 'project_path:g/p:*' and claims['sub'] matches '*:ref:?*'",
     True, None),
    ("https://gitlab.com", "claims['ref'] eq 'main'", False, "claim 'ref' is not allowed"),
    ("https://gitlab.com", "claims['sub'] eq 'x' and claims['project_id'] eq '1'", False,
     "claim 'project_id' is not allowed"),
    ("https://example.com", "claims['sub'] eq 'x'", False, "the issuer is not supported"),
    ("https://gitlab.com/", "claims['sub'] eq 'x'", False, "the issuer is not supported"),
    ("https://token.actions.githubusercontent.com",
     "claims['sub'] matches 'repo:o/r:*' and claims['repository_owner_id'] eq '123'", True, None),
    ("https://token.actions.githubusercontent.com",
     "claims['sub'] matches 'repo:o/r:*' and claims['job_workflow_ref'] matches 'o/r/.github/*'", False,
     "one of the claims 'repository_id', 'repository_owner_id' is required"),
    ("https://token.actions.githubusercontent.com",
     "claims['sub'] matches 'repo:o/r:*' and claims['repository_id'] matches '1*'", False,
     "operator 'matches' is not allowed on claim 'repository_id'"),
    ("https://token.actions.githubusercontent.com", "claims['repository_id'] eq '1'", False,
     "one of the claims 'sub' is required"),
    ("https://app.terraform.io", "claims['sub'] matches 'organization:o:project:p:*'", True, None),
    ("https://app.eu.terraform.io", "claims['terraform_run_phase'] eq 'apply'", False, "not allowed"),
])
def test_per_issuer_allow_list(graph_env, app, issuer, value, ok, message):
    response = graph_env.http().post(_fics_url(app, "beta"), json=_flexible(value=value, issuer=issuer))
    if ok:
        assert response.status_code == 201, response.text
    else:
        error = assert_graph_error(response, 400, INVALID, "The claims matching expression is not allowed")
        assert message in error["message"], error["message"]


def test_sandbox_issuers_count_as_gitlab_unless_configured_otherwise(graph_env, app):
    client = graph_env.http()
    issuer = graph_env.sb.gitlab_issuer
    assert client.post(_fics_url(app, "beta"), json=_flexible("local-1", issuer=issuer)).status_code == 201
    previous = graph_env.set_config(local_issuers_are_gitlab=False)
    try:
        response = client.post(_fics_url(app, "beta"), json=_flexible("local-2", issuer=issuer))
        assert_graph_error(response, 400, INVALID, "the issuer is not supported")
    finally:
        graph_env.set_config(**previous)


@pytest.mark.parametrize("expr,code,message", [
    ({"value": GITLAB_ALL_BRANCHES, "languageVersion": 2}, INVALID, "Unsupported languageVersion 2"),
    ({"value": GITLAB_ALL_BRANCHES}, "Request_BadRequest", "property 'claimsMatchingExpression'"),
    ({"languageVersion": 1}, "Request_BadRequest", "property 'claimsMatchingExpression'"),
    ({"value": 5, "languageVersion": 1}, "BadRequest", "Cannot convert the literal '5'"),
    ({"value": GITLAB_ALL_BRANCHES, "languageVersion": "1"}, "BadRequest", "'Edm.Int32'"),
    ({"value": GITLAB_ALL_BRANCHES, "languageVersion": 1, "extra": True}, "BadRequest",
     "The property 'extra' does not exist on type 'microsoft.graph.federatedIdentityExpression'."),
    ("claims['sub'] eq 'x'", "BadRequest", "A 'StartObject' node was expected."),
])
def test_expression_object_validation(graph_env, app, expr, code, message):
    response = graph_env.http().post(_fics_url(app, "beta"), json=_flexible(claimsMatchingExpression=expr))
    assert_graph_error(response, 400, code, message)


def test_subject_and_expression_are_mutually_exclusive(graph_env, app):
    response = graph_env.http().post(_fics_url(app, "beta"), json=_flexible(subject="also-a-subject"))
    assert_graph_error(response, 400, INVALID, "'subject' and 'claimsMatchingExpression' are mutually exclusive")
