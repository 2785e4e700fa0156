"""Request statistics for ``GET /_sandbox/stats``: counts by service, method, route template and status, and per
management API (``graph``, ``arm``) the requests as their quotas count them (see README, "Control API")."""
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


class ServiceCounts:
    """One management API's requests as its quotas see them: a ``$batch`` counts each inner request, not the
    envelope.  ``reads``/``writes`` are requests the service ran (no fault or quota answered instead: what the
    quotas charge); ``throttled`` every 429 (``quota_throttled`` those of the Graph quota buckets); ``faulted``
    answers injected by fault rules; ``not_attempted`` inner requests answered 424 (a prerequisite failed)."""

    FIELDS = ("requests", "reads", "writes", "throttled", "quota_throttled", "faulted", "errors_5xx", "batches",
              "batch_requests", "not_attempted")

    def __init__(self) -> None:
        for name in self.FIELDS:
            setattr(self, name, 0)

    def count(self, method: str, status: int, injected: str | None) -> None:
        self.requests += 1
        if status == 429:
            self.throttled += 1
        if injected == "quota":
            self.quota_throttled += 1
        elif injected:
            self.faulted += 1
        if status >= 500:
            self.errors_5xx += 1
        if not injected:
            if method in _WRITE_METHODS:
                self.writes += 1
            else:
                self.reads += 1

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.FIELDS}


class Stats:
    """Counters since start or the last ``reset()``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.since = time.time()
        self.total = 0
        self.reads = 0
        self.writes = 0
        self.gitlab_reads = 0
        self.gitlab_writes = 0
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
        self.batch_by_route: collections.Counter[str] = collections.Counter()
        self.services = {"graph": ServiceCounts(), "arm": ServiceCounts()}

    def record(self, service: str, method: str, path: str, status: int, *, injected: str | bool | None = None) -> None:
        """Count one answered HTTP request (called by the app for every request); ``injected`` is the source of a
        fault that answered it (``"rule"``/``"quota"``), if any."""
        injected = ("rule" if injected is True else injected) or None
        counts = self.services.get(service)
        if counts is not None:
            if service == "graph" and method == "POST" and path.lower().rstrip("/").endswith("/$batch"):
                counts.batches += 1  # the envelope: its inner requests are counted by record_batch_item
                if injected:
                    counts.count(method, status, injected)
            else:
                counts.count(method, status, injected)
        self.total += 1
        if service in ("graph", "arm"):  # reads/writes of the management APIs (token POSTs are not writes)
            if method in _WRITE_METHODS:
                self.writes += 1
            else:
                self.reads += 1
        elif service == "gitlab" and "/api/v4" in path:  # the REST API of a GitLab instance (not its issuer documents)
            if method in _WRITE_METHODS:
                self.gitlab_writes += 1
            else:
                self.gitlab_reads += 1
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

    def record_batch_item(self, method: str, path: str, status: int, *, injected: str | None = None,
                          not_attempted: bool = False) -> None:
        """Count one inner request of a Graph ``$batch`` (called by graph.py)."""
        counts = self.services["graph"]
        counts.batch_requests += 1
        self.batch_by_route[f"{method} {route_template('graph', path)}"] += 1
        if not_attempted:
            counts.not_attempted += 1
        else:
            counts.count(method, status, injected)

    def token_issued(self, service: str) -> None:
        self.tokens_issued += 1
        self.tokens_by_service[service] += 1

    def token_failed(self, aadsts_code: int) -> None:
        self.token_failures[f"AADSTS{aadsts_code}"] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since, "total": self.total, "reads": self.reads, "writes": self.writes,
            "gitlab_reads": self.gitlab_reads, "gitlab_writes": self.gitlab_writes,
            "throttled": self.throttled, "faults_injected": self.faults_injected, "errors_5xx": self.errors_5xx,
            "tokens_issued": self.tokens_issued, "tokens_by_service": dict(self.tokens_by_service),
            "token_failures": dict(self.token_failures), "by_service": dict(self.by_service),
            "by_method": dict(self.by_method), "by_status": dict(self.by_status),
            "by_route": dict(sorted(self.by_route.items())),
            "graph": self.services["graph"].to_json(), "arm": self.services["arm"].to_json(),
            "batch_by_route": dict(sorted(self.batch_by_route.items())),
        }
