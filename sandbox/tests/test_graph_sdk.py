"""The real msgraph-sdk ``GraphServiceClient`` against the sandbox: every endpoint, and every Graph error code as the
SDK surfaces it (``ODataError``).  ``/beta`` is driven with the v1.0 SDK pointed at ``/beta`` (the beta-only
``claimsMatchingExpression`` travels in ``additional_data``), as msgraph-beta-sdk is not a dependency."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder
from msgraph.generated.applications.item.federated_identity_credentials.federated_identity_credentials_request_builder \
    import FederatedIdentityCredentialsRequestBuilder
from msgraph.generated.directory_objects.get_by_ids.get_by_ids_post_request_body import GetByIdsPostRequestBody
from msgraph.generated.models.app_role_assignment import AppRoleAssignment
from msgraph.generated.models.application import Application
from msgraph.generated.models.federated_identity_credential import FederatedIdentityCredential
from msgraph.generated.models.reference_create import ReferenceCreate
from msgraph.generated.models.service_principal import ServicePrincipal
from msgraph.generated.service_principals.service_principals_request_builder import ServicePrincipalsRequestBuilder

from test_graph_helpers import Caller, graph_env, run, sdk_error  # noqa: F401

GITLAB_SUB = "project_path:group/project:ref_type:branch:ref:main"
FIC_QUERY = FederatedIdentityCredentialsRequestBuilder.FederatedIdentityCredentialsRequestBuilderGetQueryParameters


def _prefer_create() -> RequestConfiguration:
    config = RequestConfiguration()
    config.headers.add("Prefer", "create-if-missing")
    return config


def _app_query(**params) -> RequestConfiguration:
    return RequestConfiguration(
        query_parameters=ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(**params))


def _fic(name: str | None = "gitlab-main", subject: str | None = GITLAB_SUB) -> FederatedIdentityCredential:
    return FederatedIdentityCredential(name=name, issuer="https://gitlab.com", subject=subject,
                                       audiences=["api://AzureADTokenExchange"])


def _expect(error, status: int, code: str, message: str | None = None) -> None:
    assert error.response_status_code == status, (error.response_status_code, error.error.code)
    assert error.error.code == code, error.error.code
    if message is not None:
        assert message in error.error.message, error.error.message


# --------------------------------------------------------------------------- applications


def test_application_lifecycle(graph_env):
    async def scenario():
        async with graph_env.sdk() as g:
            app = await g.applications.post(Application(display_name="sdk app", sign_in_audience="AzureADMyOrg",
                                                        tags=["sdk"], notes="n"))
            assert app.id and app.app_id and app.created_date_time is not None
            assert app.sign_in_audience == "AzureADMyOrg" and app.tags == ["sdk"]
            assert (await g.applications.by_application_id(app.id).get()).display_name == "sdk app"
            assert (await g.applications_with_app_id(app.app_id).get()).id == app.id
            await g.applications.by_application_id(app.id).patch(Application(display_name="renamed"))
            assert (await g.applications.by_application_id(app.id).get()).display_name == "renamed"
            await g.applications.by_application_id(app.id).delete()
            _expect(await sdk_error(g.applications.by_application_id(app.id).get()), 404,
                    "Request_ResourceNotFound", app.id)
            deleted = await g.directory.deleted_items.by_directory_object_id(app.id).get()
            assert isinstance(deleted, Application) and deleted.deleted_date_time is not None
            listed = await g.directory.deleted_items.graph_application.get()
            assert [a.id for a in listed.value] == [app.id]
            restored = await g.directory.deleted_items.by_directory_object_id(app.id).restore.post()
            assert isinstance(restored, Application) and restored.id == app.id
            await g.applications.by_application_id(app.id).delete()
            await g.directory.deleted_items.by_directory_object_id(app.id).delete()
            _expect(await sdk_error(g.directory.deleted_items.by_directory_object_id(app.id).get()), 404,
                    "Request_ResourceNotFound")
    run(scenario())


def test_application_upsert_by_unique_name(graph_env):
    async def scenario():
        async with graph_env.sdk() as g:
            builder = g.applications_with_unique_name("sdk-unique")
            _expect(await sdk_error(builder.patch(Application(display_name="u"))), 404, "Request_ResourceNotFound")
            created = await builder.patch(Application(display_name="u", sign_in_audience="AzureADMyOrg"),
                                          _prefer_create())
            assert isinstance(created, Application) and created.unique_name == "sdk-unique" and created.app_id
            assert await builder.patch(Application(display_name="u2"), _prefer_create()) is None  # 204
            got = await builder.get()
            assert got.id == created.id and got.display_name == "u2"
            _expect(await sdk_error(g.applications_with_unique_name("other").patch(Application(notes="x"),
                                                                                 _prefer_create())),
                    400, "Request_BadRequest", "property 'displayName'")
            _expect(await sdk_error(g.applications.by_application_id(created.id).patch(
                Application(unique_name="changed"))), 400, "Request_BadRequest", "immutable")
            _expect(await sdk_error(g.applications.post(Application(display_name="dup", unique_name="sdk-unique"))),
                    400, "Request_BadRequest", "Another object with the same value for property uniqueName")
    run(scenario())


def test_application_list_filter_select_and_paging(graph_env):
    async def scenario():
        async with graph_env.sdk() as g:
            created = {(await g.applications.post(Application(display_name=f"page {i}", tags=["sdk-page"]))).id
                       for i in range(3)}
            page = await g.applications.get(_app_query(filter="tags/any(t:t eq 'sdk-page')",
                                                       select=["id", "displayName"], top=2))
            seen = [a.id for a in page.value]
            assert len(seen) == 2 and page.odata_next_link
            assert all(a.app_id is None for a in page.value)  # not selected
            rest = await g.applications.with_url(page.odata_next_link).get()
            seen += [a.id for a in rest.value]
            assert set(seen) == created and rest.odata_next_link is None
            quoted = await g.applications.post(Application(display_name="it's quoted"))
            found = await g.applications.get(_app_query(filter="displayName eq 'it''s quoted'"))
            assert [a.id for a in found.value] == [quoted.id]
            _expect(await sdk_error(g.applications.get(_app_query(filter="displayName eq"))), 400, "BadRequest",
                    "Invalid filter clause")
            _expect(await sdk_error(g.applications.get(_app_query(filter="notes eq 'x'"))), 400,
                    "Request_UnsupportedQuery", "property 'notes'")
            _expect(await sdk_error(g.applications.get(_app_query(top=1000))), 400, "Request_BadRequest",
                    "Invalid page size specified")
            _expect(await sdk_error(g.applications.with_url(f"{graph_env.url}/v1.0/applications?$skiptoken=x").get()),
                    400, "Directory_ExpiredPageToken")
    run(scenario())


def test_owners(graph_env):
    async def scenario():
        async with graph_env.sdk() as g:
            app = await g.applications.post(Application(display_name="owned"))
            owner_app = await g.applications.post(Application(display_name="owner"))
            owner = await g.service_principals.post(ServicePrincipal(app_id=owner_app.app_id))
            owners = g.applications.by_application_id(app.id).owners
            ref = ReferenceCreate(odata_id=f"https://graph.microsoft.com/v1.0/directoryObjects/{owner.id}")
            await owners.ref.post(ref)
            listed = await owners.get()
            assert [(type(o).__name__, o.id) for o in listed.value] == [("ServicePrincipal", owner.id)]
            assert [o.id for o in (await owners.graph_service_principal.get()).value] == [owner.id]
            _expect(await sdk_error(owners.ref.post(ref)), 400, "Request_BadRequest",
                    "One or more added object references already exist")
            missing = ReferenceCreate(odata_id=f"https://graph.microsoft.com/v1.0/directoryObjects/{uuid.uuid4()}")
            _expect(await sdk_error(owners.ref.post(missing)), 404, "Request_ResourceNotFound")
            await owners.by_directory_object_id(owner.id).ref.delete()
            assert (await owners.get()).value == []
    run(scenario())


def test_permissions_and_authentication(graph_env):
    reader = graph_env.restricted()

    async def scenario():
        async with graph_env.sdk(reader) as g:
            assert (await g.applications.get()).value  # reading is allowed
            _expect(await sdk_error(g.applications.post(Application(display_name="x"))), 403,
                    "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        async with graph_env.sdk(Caller("nobody", None, "not-a-token")) as g:
            _expect(await sdk_error(g.applications.get()), 401, "InvalidAuthenticationToken")
    run(scenario())


def test_error_details_reach_the_sdk(graph_env):
    async def scenario():
        async with graph_env.sdk() as g:
            error = await sdk_error(g.applications.post(Application(description="no name")))
            _expect(error, 400, "Request_BadRequest",
                    "Invalid value specified for property 'displayName' of resource 'Application'.")
            inner = error.error.inner_error
            assert inner is not None and inner.request_id and inner.client_request_id and inner.date
            _expect(await sdk_error(g.applications.by_application_id("not-a-guid").get()), 400,
                    "Request_BadRequest", "Invalid object identifier 'not-a-guid'.")
            collection_as_item = g.applications.by_application_id("x").with_url(f"{graph_env.url}/v1.0/applications")
            _expect(await sdk_error(collection_as_item.delete()), 405, "Request_BadRequest",
                    "Specified HTTP method is not allowed for the request target.")
    run(scenario())


# --------------------------------------------------------------------------- service principals


def test_service_principal_lifecycle(graph_env):
    async def scenario():
        async with graph_env.sdk() as g:
            app = await g.applications.post(Application(display_name="sdk sp", tags=["t"]))
            sp = await g.service_principals.post(ServicePrincipal(app_id=app.app_id))
            assert sp.app_id == app.app_id and sp.service_principal_names == [app.app_id]
            assert sp.service_principal_type == "Application" and sp.tags == ["t"] and sp.account_enabled
            assert (await g.service_principals.by_service_principal_id(sp.id).get()).id == sp.id
            assert (await g.service_principals_with_app_id(app.app_id).get()).id == sp.id
            query = ServicePrincipalsRequestBuilder.ServicePrincipalsRequestBuilderGetQueryParameters(
                filter=f"servicePrincipalNames/any(c:c eq '{app.app_id}')")
            found = await g.service_principals.get(RequestConfiguration(query_parameters=query))
            assert [s.id for s in found.value] == [sp.id]
            error = await sdk_error(g.service_principals.post(ServicePrincipal(app_id=app.app_id)))
            _expect(error, 409, "Request_MultipleObjectsWithSameKeyValue", app.app_id)
            assert await g.service_principals_with_app_id(app.app_id).patch(
                ServicePrincipal(account_enabled=False), _prefer_create()) is None
            await g.service_principals.by_service_principal_id(sp.id).patch(ServicePrincipal(notes="n"))
            got = await g.service_principals.by_service_principal_id(sp.id).get()
            assert got.account_enabled is False and got.notes == "n"
            await g.service_principals.by_service_principal_id(sp.id).delete()
            _expect(await sdk_error(g.service_principals_with_app_id(app.app_id).get()), 404,
                    "Request_ResourceNotFound")
            created = await g.service_principals_with_app_id(app.app_id).patch(ServicePrincipal(), _prefer_create())
            assert isinstance(created, ServicePrincipal) and created.app_id == app.app_id
            deleted = await g.directory.deleted_items.graph_service_principal.get()
            assert [s.id for s in deleted.value] == [sp.id]
    run(scenario())


def test_no_backing_application_object(graph_env):
    async def scenario():
        async with graph_env.sdk() as g:
            unknown = str(uuid.uuid4())
            error = await sdk_error(g.service_principals.post(ServicePrincipal(app_id=unknown)))
            _expect(error, 400, "Request_BadRequest",
                    f"The appId '{unknown}' of the service principal does not reference a valid application object.")
            assert [(d.code, d.target) for d in error.error.details] == [("NoBackingApplicationObject", "appId")]
            graph_env.set_lag(1.0)
            app = await g.applications.post(Application(display_name="fresh"))
            error = await sdk_error(g.service_principals.post(ServicePrincipal(app_id=app.app_id)))
            assert error.error.details[0].code == "NoBackingApplicationObject"
            _expect(await sdk_error(g.applications.by_application_id(app.id).get()), 404,
                    "Request_ResourceNotFound")
            await asyncio.sleep(1.1)  # replicated: the documented retry succeeds
            assert (await g.service_principals.post(ServicePrincipal(app_id=app.app_id))).app_id == app.app_id
    run(scenario())


def test_app_role_assignments_and_directory_objects(graph_env):
    async def scenario():
        async with graph_env.sdk() as g:
            app = await g.applications.post(Application(display_name="granted"))
            sp = await g.service_principals.post(ServicePrincipal(app_id=app.app_id))
            graph_sp = await g.service_principals_with_app_id("00000003-0000-0000-c000-000000000000").get()
            role = next(r for r in graph_sp.app_roles if r.value == "Application.Read.All")
            assignments = g.service_principals.by_service_principal_id(sp.id).app_role_assignments
            created = await assignments.post(AppRoleAssignment(principal_id=uuid.UUID(sp.id),
                                                               resource_id=uuid.UUID(graph_sp.id),
                                                               app_role_id=role.id))
            assert created.app_role_id == role.id and str(created.principal_id) == sp.id
            assert [a.id for a in (await assignments.get()).value] == [created.id]
            _expect(await sdk_error(assignments.post(AppRoleAssignment(
                principal_id=uuid.UUID(sp.id), resource_id=uuid.UUID(graph_sp.id), app_role_id=role.id))),
                400, "Request_BadRequest", "Permission being assigned already exists on the object.")
            await assignments.by_app_role_assignment_id(created.id).delete()
            assert (await assignments.get()).value == []

            body = GetByIdsPostRequestBody(ids=[sp.id, app.id, str(uuid.uuid4())],
                                           types=["servicePrincipal", "application"])
            result = await g.directory_objects.get_by_ids.post(body)
            assert sorted((type(o).__name__, o.id) for o in result.value) == sorted(
                [("ServicePrincipal", sp.id), ("Application", app.id)])
            single = await g.directory_objects.by_directory_object_id(sp.id).get()
            assert isinstance(single, ServicePrincipal) and single.app_id == app.app_id
            _expect(await sdk_error(g.directory_objects.by_directory_object_id(str(uuid.uuid4())).get()), 404,
                    "Request_ResourceNotFound")
    run(scenario())


# --------------------------------------------------------------------------- federated identity credentials


def test_federated_identity_credentials(graph_env):
    async def scenario():
        async with graph_env.sdk() as g:
            app = await g.applications.post(Application(display_name="fic app"))
            fics = g.applications.by_application_id(app.id).federated_identity_credentials
            fic = await fics.post(_fic())
            assert fic.id and fic.name == "gitlab-main" and fic.audiences == ["api://AzureADTokenExchange"]
            assert fic.description is None
            assert (await fics.by_federated_identity_credential_id(fic.id).get()).subject == GITLAB_SUB
            assert (await fics.by_federated_identity_credential_id("gitlab-main").get()).id == fic.id
            by_name = g.applications.by_application_id(app.id).federated_identity_credentials_with_name
            assert (await by_name("gitlab-main").get()).id == fic.id
            assert await by_name("gitlab-main").patch(_fic(subject="other"), _prefer_create()) is None
            created = await by_name("gitlab-tags").patch(_fic(name=None, subject="tags"), _prefer_create())
            assert isinstance(created, FederatedIdentityCredential) and created.name == "gitlab-tags"
            query = FIC_QUERY(filter="subject eq 'other'")
            listed = await fics.get(RequestConfiguration(query_parameters=query))
            assert [f.name for f in listed.value] == ["gitlab-main"]
            await fics.by_federated_identity_credential_id(fic.id).patch(FederatedIdentityCredential(description="d"))
            assert (await by_name("gitlab-main").get()).description == "d"
            _expect(await sdk_error(fics.by_federated_identity_credential_id(fic.id).patch(
                FederatedIdentityCredential(name="renamed"))), 400, "InvalidFederatedIdentityCredentialValue",
                "immutable")
            _expect(await sdk_error(fics.post(_fic(name="dup", subject="other"))), 400,
                    "InvalidFederatedIdentityCredentialValue", "The combination of issuer and subject must be unique")
            _expect(await sdk_error(fics.post(_fic(name="x"))), 400, "InvalidFederatedIdentityCredentialValue",
                    "Federated Identity Credential name 'x' is invalid.")
            two_audiences = FederatedIdentityCredential(name="two-audiences", issuer="https://gitlab.com",
                                                        subject="s2", audiences=["a", "b"])
            _expect(await sdk_error(fics.post(two_audiences)), 400, "InvalidFederatedIdentityCredentialValue",
                    "exactly one audience")
            await by_name("gitlab-tags").delete()
            _expect(await sdk_error(by_name("gitlab-tags").get()), 404, "Request_ResourceNotFound")
            _expect(await sdk_error(by_name("nothing").patch(_fic(name=None, subject="n"))), 404,
                    "Request_ResourceNotFound")
    run(scenario())


def test_twenty_credentials_per_application(graph_env):
    async def scenario():
        async with graph_env.sdk() as g:
            app = await g.applications.post(Application(display_name="full"))
            fics = g.applications.by_application_id(app.id).federated_identity_credentials
            for index in range(20):
                await fics.post(_fic(name=f"fic-{index:02d}", subject=f"s{index}"))
            _expect(await sdk_error(fics.post(_fic(name="fic-20", subject="s20"))), 400,
                    "InvalidFederatedIdentityCredentialValue", "maximum of 20")
            assert len((await fics.get()).value) == 20
    run(scenario())


def test_flexible_credentials_via_beta_and_the_v1_failure(graph_env):
    expression = {"value": "claims['sub'] matches 'project_path:group/project:ref_type:branch:ref:*'",
                  "languageVersion": 1}

    async def scenario():
        async with graph_env.sdk() as v1, graph_env.sdk(version="beta") as beta:
            app = await v1.applications.post(Application(display_name="flex"))
            flexible = FederatedIdentityCredential(name="all-branches", issuer="https://gitlab.com",
                                                   audiences=["api://AzureADTokenExchange"],
                                                   additional_data={"claimsMatchingExpression": expression})
            _expect(await sdk_error(v1.applications.by_application_id(app.id).federated_identity_credentials.post(
                flexible)), 400, "Request_BadRequest", "Property 'claimsMatchingExpression' does not exist")
            created = await beta.applications.by_application_id(app.id).federated_identity_credentials.post(flexible)
            assert created.subject is None
            assert created.additional_data["claimsMatchingExpression"] == expression
            listed = await beta.applications.by_application_id(app.id).federated_identity_credentials.get()
            assert [f.additional_data["claimsMatchingExpression"]["value"] for f in listed.value] == [
                expression["value"]]
            # msgraph-sdk-python#1359: the v1.0 list breaks off at the flexible credential (a 200 whose JSON is
            # malformed), so the SDK fails while parsing it
            with pytest.raises(json.JSONDecodeError):
                await v1.applications.by_application_id(app.id).federated_identity_credentials.get()
            bad = FederatedIdentityCredential(
                name="bad-expression", issuer="https://gitlab.com", audiences=["api://AzureADTokenExchange"],
                additional_data={"claimsMatchingExpression": {"value": "claims['ref'] eq 'main'",
                                                              "languageVersion": 1}})
            _expect(await sdk_error(beta.applications.by_application_id(app.id).federated_identity_credentials.post(
                bad)), 400, "InvalidFederatedIdentityCredentialValue", "lacks all required claims")
    run(scenario())
