"""ARM over HTTPS: metadata, api-version, tenants, subscriptions, resource groups and their RBAC."""
from __future__ import annotations

import uuid

from test_arm_helpers import (  # noqa: F401 - arm is a fixture
    CONTRIBUTOR, READER, RG_VERSION, SEEDED_RG, SUB_VERSION, arm, error_of)

RG_READ = "Microsoft.Resources/subscriptions/resourceGroups/read"


# --- metadata -----------------------------------------------------------------------------------------------

def test_metadata_endpoints_point_at_the_sandbox(arm):
    response = arm.sb.http.get("/metadata/endpoints?api-version=2022-09-01")  # no token needed
    assert response.status_code == 200, response.text
    doc = response.json()
    url = arm.sb.url
    assert doc["name"] and doc["suffixes"] == {}
    assert doc["resourceManager"] == f"{url}/"
    assert doc["microsoftGraphResourceId"] == f"{url}/"
    assert doc["authentication"]["loginEndpoint"] == url
    assert doc["authentication"]["audiences"][0] == "https://management.core.windows.net/"
    assert doc["graph"] == doc["graphAudience"] == "https://graph.windows.net/"


def test_metadata_2019_05_01_lists_clouds(arm):
    response = arm.sb.http.get("/metadata/endpoints?api-version=2019-05-01")
    assert response.status_code == 200
    clouds = response.json()
    assert isinstance(clouds, list) and clouds[0]["resourceManager"] == f"{arm.sb.url}/"


def test_repeated_slashes_are_collapsed_before_dispatch(arm):
    """``az cloud register --endpoint-resource-manager https://host:port/`` requests ``//metadata/endpoints``."""
    url = arm.sb.url
    response = arm.sb.http.get(f"{url}//metadata/endpoints?api-version=2022-09-01")
    assert response.status_code == 200, response.text
    assert response.json()["resourceManager"] == f"{url}/"
    response = arm.call("GET", f"{url}//subscriptions//{arm.sub}?{SUB_VERSION}")
    assert response.status_code == 200, response.text
    assert response.json()["subscriptionId"] == arm.sub
    # nextLinks are built from the collapsed path
    arm.sb.control("POST", "config", json={"arm_page_size": 1})
    try:
        page = arm.call("GET", f"{url}/{arm.sub_scope}//providers/Microsoft.Authorization/roleAssignments"
                               f"?api-version=2022-04-01").json()
    finally:
        arm.sb.control("POST", "config", json={"arm_page_size": 100})
    assert page["nextLink"].startswith(f"{url}{arm.sub_scope}/providers/Microsoft.Authorization/roleAssignments?")


def test_metadata_requires_api_version(arm):
    message = error_of(arm.sb.http.get("/metadata/endpoints"), 400, "MissingApiVersionParameter")
    assert message == "The api-version query parameter (?api-version=) is required for all requests."


# --- api-version, envelope, headers ---------------------------------------------------------------------------

def test_missing_api_version_on_every_family(arm):
    for path in ("/subscriptions", f"{arm.sub_scope}/resourcegroups",
                 f"{arm.sub_scope}/providers/Microsoft.Authorization/roleAssignments",
                 f"{arm.sub_scope}/providers/Microsoft.Authorization/roleDefinitions"):
        error_of(arm.call("GET", path), 400, "MissingApiVersionParameter")


def test_unsupported_api_versions(arm):
    message = error_of(arm.call("GET", "/subscriptions?api-version=2099-01-01"), 400, "InvalidApiVersionParameter")
    assert message.startswith("The api-version '2099-01-01' is invalid. The supported versions are '")
    assert "2022-12-01" in message
    error_of(arm.call("GET", "/subscriptions?api-version=yesterday"), 400, "InvalidApiVersionParameter")
    message = error_of(arm.call("GET", f"{arm.sub_scope}/providers/Microsoft.Authorization/roleAssignments"
                                       f"?api-version=2015-06-15"), 400, "NoRegisteredProviderFound")
    assert "for type 'roleAssignments'" in message and "2022-04-01" in message


def test_real_api_versions_are_accepted(arm):
    for version in ("2016-06-01", "2020-01-01", "2022-12-01", "2024-11-01"):  # the last one is newer than the list
        assert arm.call("GET", f"/subscriptions?api-version={version}").status_code == 200, version
    for version in ("2015-07-01", "2018-09-01-preview", "2022-04-01", "2022-05-01-preview"):
        response = arm.call("GET", f"{arm.sub_scope}/providers/Microsoft.Authorization/roleDefinitions"
                                   f"?api-version={version}")
        assert response.status_code == 200, (version, response.text)


def test_request_and_correlation_ids(arm):
    correlation = str(uuid.uuid4())
    ok = arm.call("GET", f"/subscriptions?{SUB_VERSION}", headers={"x-ms-correlation-request-id": correlation})
    assert ok.headers["x-ms-correlation-request-id"] == correlation
    assert uuid.UUID(ok.headers["x-ms-request-id"])
    failed = arm.call("GET", "/subscriptions")
    assert failed.status_code == 400 and uuid.UUID(failed.headers["x-ms-request-id"])


def test_missing_token_is_401_in_arm_envelope(arm):
    response = arm.sb.http.get(f"/subscriptions?{SUB_VERSION}")
    assert response.status_code == 401
    assert set(response.json()["error"]) >= {"code", "message"}


def test_path_segments_are_case_insensitive(arm):
    response = arm.call("GET", f"/SUBSCRIPTIONS/{arm.sub}/ResourceGroups/{SEEDED_RG}?{RG_VERSION}")
    assert response.status_code == 200, response.text
    assert response.json()["name"] == SEEDED_RG


# --- tenants and subscriptions ------------------------------------------------------------------------------

def test_tenants(arm):
    response = arm.call("GET", f"/tenants?{SUB_VERSION}")
    assert response.status_code == 200, response.text
    assert [t["tenantId"] for t in response.json()["value"]] == [arm.sb.tenant_id]


def test_subscriptions_visible_to_operator(arm):
    response = arm.call("GET", f"/subscriptions?{SUB_VERSION}")
    assert response.status_code == 200
    (sub,) = response.json()["value"]
    assert sub["id"] == arm.sub_scope and sub["subscriptionId"] == arm.sub
    assert sub["tenantId"] == arm.sb.tenant_id and sub["state"] == "Enabled" and sub["displayName"]
    got = arm.call("GET", f"{arm.sub_scope}?{SUB_VERSION}")
    assert got.status_code == 200 and got.json()["subscriptionId"] == arm.sub


def test_subscriptions_need_a_role_assignment_somewhere(arm):
    nobody = arm.principal()
    assert arm.call("GET", f"/subscriptions?{SUB_VERSION}", nobody).json()["value"] == []
    message = error_of(arm.call("GET", f"{arm.sub_scope}?{SUB_VERSION}", nobody), 403, "AuthorizationFailed")
    assert "'Microsoft.Resources/subscriptions/read'" in message and nobody.sp_id in message
    # a role assignment below the subscription is enough to see it
    arm.grant(nobody, READER, arm.rg_scope)
    assert [s["subscriptionId"] for s in arm.call("GET", f"/subscriptions?{SUB_VERSION}", nobody).json()["value"]] \
        == [arm.sub]
    assert arm.call("GET", f"{arm.sub_scope}?{SUB_VERSION}", nobody).status_code == 200


def test_unknown_and_malformed_subscriptions(arm):
    other = str(uuid.uuid4())
    message = error_of(arm.call("GET", f"/subscriptions/{other}?{SUB_VERSION}"), 404, "SubscriptionNotFound")
    assert other in message
    error_of(arm.call("GET", f"/subscriptions/{other}/resourcegroups?{RG_VERSION}"), 404, "SubscriptionNotFound")
    error_of(arm.call("GET", f"/subscriptions/not-a-guid/resourcegroups/x?{RG_VERSION}"), 400,
             "InvalidSubscriptionId")


# --- resource groups ----------------------------------------------------------------------------------------

def test_resource_group_lifecycle(arm):
    path = f"{arm.sub_scope}/resourcegroups/rg-Life?{RG_VERSION}"
    created = arm.call("PUT", path, json={"location": "West Europe", "tags": {"team": "ci"}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"] == f"{arm.sub_scope}/resourceGroups/rg-Life"
    assert body["name"] == "rg-Life" and body["location"] == "westeurope"
    assert body["type"] == "Microsoft.Resources/resourceGroups"
    assert body["properties"]["provisioningState"] == "Succeeded" and body["tags"] == {"team": "ci"}
    again = arm.call("PUT", path, json={"location": "westeurope"})
    assert again.status_code == 200 and "tags" not in again.json()
    moved = arm.call("PUT", path, json={"location": "eastus"})
    assert "already exists in location 'westeurope'" in error_of(moved, 409, "InvalidResourceGroupLocation")
    got = arm.call("GET", f"{arm.sub_scope}/resourceGroups/RG-LIFE?{RG_VERSION}")
    assert got.status_code == 200 and got.json()["name"] == "rg-Life"  # names compare case-insensitively
    assert arm.call("HEAD", path).status_code == 204
    assert arm.call("DELETE", path).status_code == 200
    assert arm.call("HEAD", path).status_code == 404
    error_of(arm.call("GET", path), 404, "ResourceGroupNotFound")
    error_of(arm.call("DELETE", path), 404, "ResourceGroupNotFound")


def test_resource_group_validation(arm):
    base = f"{arm.sub_scope}/resourcegroups"
    assert "location" in error_of(arm.call("PUT", f"{base}/rg-x?{RG_VERSION}", json={}), 400, "LocationRequired")
    error_of(arm.call("PUT", f"{base}/rg-x?{RG_VERSION}", json={"location": "moon"}), 400,
             "LocationNotAvailableForResourceGroup")
    error_of(arm.call("PUT", f"{base}/rg-x?{RG_VERSION}", json={"location": "westeurope", "colour": "red"}), 400,
             "InvalidRequestContent")
    error_of(arm.call("PUT", f"{base}/rg-x?{RG_VERSION}", json={"location": 7}), 400, "InvalidRequestContent")
    error_of(arm.call("PUT", f"{base}/rg-x?{RG_VERSION}", content=b"{location"), 400, "InvalidRequestContent")
    message = error_of(arm.call("PUT", f"{base}/rg%20bad!?{RG_VERSION}", json={"location": "westeurope"}), 400,
                       "InvalidResourceGroup")
    assert "invalid characters" in message
    error_of(arm.call("PATCH", f"{base}/rg-x?{RG_VERSION}", json={}), 405, "MethodNotAllowed")


def test_resource_group_list_pages_with_top(arm):
    for name in ("rg-a", "rg-b"):
        arm.create_rg(name)
    first = arm.call("GET", f"{arm.sub_scope}/resourcegroups?{RG_VERSION}&$top=2")
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["value"]) == 2 and page["nextLink"].startswith(f"{arm.sb.url}/subscriptions/")
    second = arm.call("GET", page["nextLink"])
    assert second.status_code == 200 and "nextLink" not in second.json()
    names = [g["name"] for g in page["value"] + second.json()["value"]]
    assert sorted(names) == ["rg-a", "rg-b", SEEDED_RG]


def test_reader_on_one_resource_group_reads_that_group_and_nothing_else(arm):
    other = arm.create_rg("rg-other")
    reader = arm.principal()
    arm.grant(reader, READER, arm.rg_scope)
    own = arm.call("GET", f"{arm.rg_scope}?{RG_VERSION}", reader)
    assert own.status_code == 200 and own.json()["name"] == SEEDED_RG
    message = error_of(arm.call("GET", f"{other['id']}?{RG_VERSION}", reader), 403, "AuthorizationFailed")
    assert f"'{RG_READ}'" in message and f"over scope '{other['id']}'" in message
    listed = arm.call("GET", f"{arm.sub_scope}/resourcegroups?{RG_VERSION}", reader)
    assert [g["name"] for g in listed.json()["value"]] == [SEEDED_RG]
    error_of(arm.call("PUT", f"{arm.rg_scope}?{RG_VERSION}", reader, json={"location": "westeurope"}), 403,
             "AuthorizationFailed")
    error_of(arm.call("DELETE", f"{arm.rg_scope}?{RG_VERSION}", reader), 403, "AuthorizationFailed")
    error_of(arm.call("PUT", f"{arm.sub_scope}/resourcegroups/rg-new?{RG_VERSION}", reader,
                      json={"location": "westeurope"}), 403, "AuthorizationFailed")
    # a group that does not exist is not readable either (ARM authorises before it looks)
    error_of(arm.call("GET", f"{arm.sub_scope}/resourcegroups/rg-none?{RG_VERSION}", reader), 403,
             "AuthorizationFailed")


def test_contributor_manages_groups_but_not_access(arm):
    contributor = arm.principal()
    arm.grant(contributor, CONTRIBUTOR, arm.sub_scope)
    created = arm.call("PUT", f"{arm.sub_scope}/resourcegroups/rg-c?{RG_VERSION}", contributor,
                       json={"location": "northeurope"})
    assert created.status_code == 201, created.text
    target = arm.principal()
    message = error_of(arm.assign(target, READER, created.json()["id"], who=contributor), 403, "AuthorizationFailed")
    assert "'Microsoft.Authorization/roleAssignments/write'" in message


def test_deleting_a_group_removes_its_role_assignments(arm):
    group = arm.create_rg("rg-doomed")
    member = arm.principal()
    assignment = arm.grant(member, READER, group["id"])
    assert arm.call("DELETE", f"{group['id']}?{RG_VERSION}").status_code == 200
    listed = arm.call("GET", f"{arm.sub_scope}/providers/Microsoft.Authorization/roleAssignments"
                             f"?api-version=2022-04-01&$filter=principalId eq '{member.sp_id}'")
    assert listed.status_code == 200
    assert assignment["id"] not in [a["id"] for a in listed.json()["value"]]
    assert arm.call("GET", f"/subscriptions?{SUB_VERSION}", member).json()["value"] == []


def test_fresh_role_assignment_takes_effect_after_the_replication_lag(arm):
    member = arm.principal()
    arm.login(member)  # the FIC is settled before the lag is switched on
    arm.sb.faults(replication_lag=30)
    arm.grant(member, READER, arm.rg_scope)
    message = error_of(arm.call("GET", f"{arm.rg_scope}?{RG_VERSION}", member), 403, "AuthorizationFailed")
    assert "If access was recently granted, please refresh your credentials." in message
    arm.sb.faults(replication_lag=0)
    assert arm.call("GET", f"{arm.rg_scope}?{RG_VERSION}", member).status_code == 200


def test_malformed_requests_never_cause_5xx(arm):
    ra = f"{arm.rg_scope}/providers/Microsoft.Authorization/roleAssignments"
    cases = [
        ("GET", f"{ra}?api-version=2022-04-01&$skiptoken=%%%not-base64"),
        ("GET", f"{ra}?api-version=2022-04-01&$skiptoken=" + "A" * 4000),
        ("GET", f"{ra}?api-version=2022-04-01&$filter=principalId eq "),
        ("GET", f"{ra}?api-version=2022-04-01&$filter=" + "(" * 500),
        ("GET", f"{ra}/{uuid.uuid4()}/extra?api-version=2022-04-01"),
        ("PUT", f"{ra}/{uuid.uuid4()}?api-version=2022-04-01"),
        ("PUT", f"{arm.sub_scope}/resourcegroups/{'x' * 200}?{RG_VERSION}"),
        ("GET", f"/subscriptions/{arm.sub}/resourcegroups/rg/providers/Microsoft.Authorization/roleDefinitions/"
                f"not-a-guid?api-version=2022-04-01"),
        ("GET", f"/subscriptions/{arm.sub}/providers/Microsoft.Nope/things?api-version=2022-04-01"),
        ("GET", f"/providers/Microsoft.Management/managementGroups/x/y/providers/Microsoft.Authorization/"
                f"roleAssignments?api-version=2022-04-01"),
        ("GET", "/subscriptions?api-version=2022-13-45"),
        ("GET", f"{arm.sub_scope}/resourcegroups?{RG_VERSION}&$top=-1"),
    ]
    for method, path in cases:
        response = arm.call(method, path, content=b"\xff\xfe not json" if method == "PUT" else None)
        assert response.status_code < 500, (method, path[:120], response.text[:300])
        assert set(response.json()) == {"error"}, (path[:120], response.text[:300])
        assert "Traceback" not in response.text
