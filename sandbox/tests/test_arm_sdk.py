"""The real azure-mgmt-authorization (async) client against the sandbox's ARM over HTTPS."""
from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from test_arm_helpers import ARM_SCOPE, READER, arm  # noqa: F401 - arm is a fixture


class _StaticCredential:
    """An async azure-core credential handing out a token the sandbox minted."""

    def __init__(self, token: str):
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        assert list(scopes) == [ARM_SCOPE], scopes
        return AccessToken(self._token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> "_StaticCredential":
        return self

    async def __aexit__(self, *args: Any) -> None:
        return None


def _client(arm):
    from azure.mgmt.authorization.aio import AuthorizationManagementClient

    return AuthorizationManagementClient(_StaticCredential(arm.operator_token()), arm.sub, base_url=arm.sb.url,
                                         credential_scopes=[ARM_SCOPE], connection_verify=arm.sb.ca_file)


@pytest.mark.asyncio
async def test_sdk_role_assignment_round_trip(arm):
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
    from azure.mgmt.authorization.models import RoleAssignmentCreateParameters

    member = arm.principal()
    scope = arm.rg_scope
    name = str(uuid.uuid4())
    async with _client(arm) as client:
        (reader,) = [d async for d in client.role_definitions.list(scope, filter="roleName eq 'Reader'")]
        assert reader.name == READER and reader.role_name == "Reader" and reader.role_type == "BuiltInRole"
        params = RoleAssignmentCreateParameters(role_definition_id=reader.id, principal_id=member.sp_id,
                                                principal_type="ServicePrincipal")
        created = await client.role_assignments.create(scope, name, params)
        assert created.name == name and created.scope == scope and created.principal_id == member.sp_id
        assert created.role_definition_id == reader.id
        got = await client.role_assignments.get(scope, name)
        assert got.id == created.id
        listed = [a.id async for a in client.role_assignments.list_for_scope(scope, filter="atScope()")]
        assert created.id in listed
        mine = [a.id async for a in client.role_assignments.list_for_subscription(
            filter=f"principalId eq '{member.sp_id}'")]
        assert mine == [created.id]
        with pytest.raises(HttpResponseError) as conflict:
            await client.role_assignments.create(scope, str(uuid.uuid4()), params)
        assert conflict.value.status_code == 409 and conflict.value.error.code == "RoleAssignmentExists"
        deleted = await client.role_assignments.delete(scope, name)
        assert deleted is not None and deleted.id == created.id
        assert await client.role_assignments.delete(scope, name) is None  # 204
        with pytest.raises(ResourceNotFoundError):
            await client.role_assignments.get(scope, name)


@pytest.mark.asyncio
async def test_sdk_follows_next_links(arm):
    response = arm.sb.control("POST", "config", json={"arm_page_size": 2})
    assert response.status_code == 200, response.text
    try:
        for _ in range(3):
            arm.grant(arm.principal(), READER, arm.rg_scope)
        async with _client(arm) as client:
            ids = [a.id async for a in client.role_assignments.list_for_resource_group("rg-sandbox")]
        assert len(ids) == len(set(ids)) >= 5  # two seeded at the subscription, three at the group
    finally:
        arm.sb.control("POST", "config", json={"arm_page_size": 100})
