"""In-memory state of the sandbox: one Entra tenant, its directory and its Azure subscriptions.

Everything the services (Entra, Graph, ARM, GitLab) know lives in one ``State`` object so that a reset is a single
assignment and the state can be dumped to / loaded from a JSON file.  Objects are stored in the JSON shape the real
service returns (camelCase for Graph, ARM's ``{id, name, type, properties}`` for ARM), plus private keys starting
with ``_`` (for example ``_created`` as a monotonic timestamp used by the replication-lag model) that are stripped
before a response is sent.

Owners:
  * ``apps``, ``sps``, ``fics``, ``deleted``, ``app_role_assignments`` -> graph.py (the directory)
  * ``subscriptions``, ``resource_groups``, ``role_assignments``, ``role_definitions`` -> arm.py
  * ``operators``, ``issued_tokens`` -> entra.py
  * ``issuers`` -> gitlab.py
  * ``gitlab`` -> gitlab_api.py (groups, projects, CI/CD variables, access tokens of each GitLab instance)
"""
from __future__ import annotations

import dataclasses
import json
import os
import uuid
from typing import Any


@dataclasses.dataclass
class State:
    tenant_id: str
    # Graph directory: object id -> object
    apps: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    sps: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # application object id -> {fic id -> fic}
    fics: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    # soft-deleted directory objects (object id -> object), as /directory/deletedItems
    deleted: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # Graph appRoleAssignments (object id -> assignment in Graph's JSON shape). An SP's Graph application
    # permissions (the ``roles`` claim of its Graph tokens) are its assignments whose resourceId is the
    # Microsoft Graph service principal (appId 00000003-0000-0000-c000-000000000000).
    app_role_assignments: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # ARM: subscription id (lower) -> subscription object
    subscriptions: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # "/subscriptions/{sub}/resourcegroups/{rg}" (lower-cased) -> resource group object
    resource_groups: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # management groups the tenant has: name (lower) -> object
    management_groups: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # role assignment full id (lower-cased) -> role assignment object
    role_assignments: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # role definition GUID (lower) -> definition (id is tenant-level /providers/Microsoft.Authorization/...)
    role_definitions: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # operator principals that can use client_secret:
    # client id -> {"client_id", "display_name", "secret", "app_object_id", "object_id" (of the SP)} (app and SP live in
    # apps/sps like any other; their Graph roles are app_role_assignments, their ARM roles role_assignments)
    operators: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # GitLab issuers: short name -> {"name", "path", "issuer" (URL), "unreachable": None|"closed"|"503"|"timeout",
    # "broken": None|"document"|"issuer"|"keys"|"empty_keys"|"no_jwks_uri", "keys": [public JWKs]}
    issuers: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # GitLab instances behind the issuers (gitlab_api.py): name -> {"groups": {id: group}, "projects": {id: project},
    # "variables": {project id: [variable]}, "tokens": {SHA-256 of the token: record}, "next_id": {...}}.
    # Not persisted in the state file (the issuers are this start's too); tokens are stored as digests only.
    gitlab: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "State":
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def redacted(self) -> dict[str, Any]:
        """JSON form without secrets (operator secrets, private keys never live here; secrets are dropped)."""
        data = self.to_json()
        data["operators"] = {cid: {k: v for k, v in op.items() if k != "secret"}
                             for cid, op in data["operators"].items()}
        data.pop("gitlab", None)  # GitLab data is this start's (and variable values may be secrets)
        return data

    def dump(self, path: str) -> None:
        """Write the redacted state as JSON (mode 0600)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.redacted(), fh, indent=1, sort_keys=True)


def new_guid() -> str:
    return str(uuid.uuid4())


def public(obj: dict[str, Any]) -> dict[str, Any]:
    """Copy of a stored object without the sandbox's private ``_`` keys."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}
