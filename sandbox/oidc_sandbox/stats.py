"""Request statistics for ``GET /_sandbox/stats``: counts by service, method, route template and status."""
from __future__ import annotations

import collections
import re
import time
from typing import Any

_GUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_KEY_PREDICATE = re.compile(r"\((\w+)='(?:[^']|'')*'\)")
_NUMBER = re.compile(r"^\d+$")
# A segment following one of these (lower-cased) names is a name/id, not a route word.
_NAMED_AFTER = {
    "subscriptions": "{subscriptionId}", "resourcegroups": "{resourceGroupName}",
    "roleassignments": "{roleAssignmentName}", "roledefinitions": "{roleDefinitionId}",
    "managementgroups": "{managementGroupId}", "federatedidentitycredentials": "{id}",
    "applications": "{id}", "serviceprincipals": "{id}", "deleteditems": "{id}", "gitlab": "{issuer}",
    "approleassignments": "{id}", "approleassignedto": "{id}", "owners": "{id}", "providers": "{namespace}",

}
_KEEP_AFTER_PROVIDERS = {"microsoft.authorization", "microsoft.management", "microsoft.resources"}
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def route_template(service: str, path: str) -> str:
    """``/v1.0/applications/3f.../federatedIdentityCredentials`` -> ``/v1.0/applications/{id}/federatedIdentityCredentials``."""
    if service == "control":
        return path
    parts = path.split("/")
    out: list[str] = []
    previous = ""
    for index, part in enumerate(parts):
        if not part:
            out.append(part)
            continue
        if service == "entra" and index == 1 and part.lower() not in ("common", "organizations", "consumers"):
            out.append("{tenant}")
        elif previous == "providers" and part.lower() in _KEEP_AFTER_PROVIDERS:
            out.append(part)
        elif previous in _NAMED_AFTER and not part.startswith("$") and "." not in part[:1]:
            out.append(_NAMED_AFTER[previous])
        elif _GUID.match(part) or _NUMBER.match(part):
            out.append("{id}")
        else:
            out.append(_KEY_PREDICATE.sub(lambda m: "(" + m.group(1) + "='{" + m.group(1) + "}')", part))
        previous = part.lower().split("(", 1)[0]
    return "/".join(out)


class Stats:
    """Counters since start or the last ``reset()``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.since = time.time()
        self.total = 0
        self.reads = 0
        self.writes = 0
        self.throttled = 0
        self.faults_injected = 0
        self.errors_5xx = 0
        self.tokens_issued = 0
        self.token_failures: collections.Counter[str] = collections.Counter()
        self.tokens_by_service: collections.Counter[str] = collections.Counter()
        self.by_service: collections.Counter[str] = collections.Counter()
        self.by_method: collections.Counter[str] = collections.Counter()
        self.by_status: collections.Counter[str] = collections.Counter()
        self.by_route: collections.Counter[str] = collections.Counter()

    def record(self, service: str, method: str, path: str, status: int, *, injected: bool = False) -> None:
        """Count one answered request (called by the app for every request)."""
        self.total += 1
        if service in ("graph", "arm"):  # reads/writes of the management APIs (token POSTs are not writes)
            if method in _WRITE_METHODS:
                self.writes += 1
            else:
                self.reads += 1
        if status == 429:
            self.throttled += 1
        if status >= 500:
            self.errors_5xx += 1
        if injected:
            self.faults_injected += 1
        self.by_service[service] += 1
        self.by_method[method] += 1
        self.by_status[str(status)] += 1
        self.by_route[f"{method} {route_template(service, path)}"] += 1

    def token_issued(self, service: str) -> None:
        self.tokens_issued += 1
        self.tokens_by_service[service] += 1

    def token_failed(self, aadsts_code: int) -> None:
        self.token_failures[f"AADSTS{aadsts_code}"] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since, "total": self.total, "reads": self.reads, "writes": self.writes,
            "throttled": self.throttled, "faults_injected": self.faults_injected, "errors_5xx": self.errors_5xx,
            "tokens_issued": self.tokens_issued, "tokens_by_service": dict(self.tokens_by_service),
            "token_failures": dict(self.token_failures), "by_service": dict(self.by_service),
            "by_method": dict(self.by_method), "by_status": dict(self.by_status),
            "by_route": dict(sorted(self.by_route.items())),
        }
