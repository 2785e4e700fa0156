"""Fault injection: replication lag, throttling (rates and Graph's identity token buckets), 5xx, latency.

Configured as JSON through ``POST /_sandbox/faults`` (see README).  Everything random draws from one
``random.Random(seed)``, so the same request sequence sees the same faults.  The app calls :meth:`Faults.before`
for every service request before the handler runs.

Spec (all keys optional)::

    {"seed": 7,
     "replication_lag": 2.5,                       # seconds a new object stays invisible / not usable
     "rules": [                                    # evaluated in order; latency adds up, first 429/5xx wins
       {"service": "graph", "kind": "throttle", "rate": 1.0, "times": 2, "retry_after": 1,
        "methods": ["POST"], "path": "/applications"},
       {"service": "arm", "kind": "error", "status": 503, "rate": 0.1},
       {"service": "*", "kind": "latency", "ms": 40, "jitter_ms": 10}],
     "graph_quotas": {"tenant_size": "S", "scale": 0.01,    # Graph identity token buckets (api-facts §8)
                      "window_scale": 0.01}}
"""
from __future__ import annotations

import math
import random
import re
import time
import urllib.parse
from typing import Any, Callable

from .errors import ServiceError, throttled, unavailable

FAULT_SERVICES = ("graph", "arm", "entra", "gitlab")
_KINDS = ("throttle", "error", "latency")
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Graph identity and access limits (per https://learn.microsoft.com/graph/throttling-limits, api-facts §8):
# (capacity, window seconds).
_APP_TENANT_RU = {"S": 3500, "M": 5000, "L": 8000}
_APP_TENANT_RU_WINDOW = 10.0
_APP_TENANT_WRITES = (3000, 150.0)
_APP_RU = (150_000, 20.0)
_APP_WRITES = (35_000, 300.0)
_TENANT_WRITES = (18_000, 300.0)
# Base request costs that differ from the default (GET 1 unit; POST/PATCH/PUT/DELETE 1 unit + 1 write), from the
# documented table; ``{id}`` is one segment (an id or an alternate key), ``me/`` also covers ``users/{id}/``.
_BASE_COSTS = {
    ("GET", "applications"): (2, 0),
    ("GET", "applications/{id}/extensionproperties"): (2, 0),
    ("GET", "contracts"): (3, 0),
    ("POST", "directoryobjects/getbyids"): (5, 0),
    ("GET", "domains/{id}/domainnamereferences"): (4, 0),
    ("POST", "getobjectsbyid"): (5, 0),
    ("GET", "groups/{id}/members"): (3, 0),
    ("GET", "groups/{id}/transitivemembers"): (5, 0),
    ("POST", "ismemberof"): (4, 0),
    ("POST", "me/checkmembergroups"): (4, 0),
    ("POST", "me/checkmemberobjects"): (4, 0),
    ("POST", "me/getmembergroups"): (2, 0),
    ("POST", "me/getmemberobjects"): (2, 0),
    ("GET", "me/licensedetails"): (2, 0),
    ("GET", "me/memberof"): (2, 0),
    ("GET", "me/ownedobjects"): (2, 0),
    ("GET", "me/transitivememberof"): (2, 0),
    ("GET", "oauth2permissiongrants"): (2, 0),
    ("GET", "oauth2permissiongrants/{id}"): (2, 0),
    ("GET", "serviceprincipals/{id}/approleassignments"): (2, 0),
    ("GET", "subscribedskus"): (3, 0),
    ("GET", "users"): (2, 0),
}
# "Using $select for directoryObjects/getByIds and getObjectsById results in 2 ResourceUnits."
_SELECT_FIXED = {"directoryobjects/getbyids": 2, "getobjectsbyid": 2}


def _cost_template(path: str) -> str:
    """``/v1.0/applications(appId='x')/federatedIdentityCredentials`` -> ``applications/{id}/federatedidentitycredentials``
    (key predicates become an id segment; ``users/{id}/...`` is matched as ``me/...``)."""
    parts: list[str] = []
    for raw in [p for p in path.split("/") if p][1:]:  # drop the version
        name, paren, _key = raw.partition("(")
        if name:
            parts.append(name.lower())
        if paren:
            parts.append("{key}")
    if len(parts) >= 3 and parts[0] == "users":
        parts = ["me"] + parts[2:]
    return "/".join(parts)


def _template_matches(template: str, pattern: str) -> bool:
    got, want = template.split("/"), pattern.split("/")
    return len(got) == len(want) and all(w == "{id}" or g == w for g, w in zip(got, want))


class TokenBucket:
    """A bucket of ``capacity`` units refilled evenly over ``window`` seconds."""

    def __init__(self, capacity: float, window: float, now: float):
        self.capacity = max(capacity, 1.0)
        self.rate = self.capacity / window
        self.tokens = self.capacity
        self.stamp = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` units are available (0 when they are now)."""
        self._refill(now)
        return 0.0 if self.tokens >= cost else (cost - self.tokens) / self.rate

    def take(self, cost: float) -> None:
        self.tokens -= cost

    def used_fraction(self) -> float:
        return 1.0 - self.tokens / self.capacity


class Rule:
    """One configured fault rule (validated at construction)."""

    def __init__(self, spec: dict[str, Any]):
        if not isinstance(spec, dict):
            raise ValueError("each rule must be an object")
        unknown = set(spec) - {"service", "kind", "rate", "times", "after", "retry_after", "status", "ms",
                               "jitter_ms", "methods", "path"}
        if unknown:
            raise ValueError(f"unknown rule keys: {', '.join(sorted(unknown))}")
        self.service = spec.get("service", "*")
        if self.service != "*" and self.service not in FAULT_SERVICES:
            raise ValueError(f"rule service must be one of {', '.join(FAULT_SERVICES)} or '*'")
        self.kind = spec.get("kind")
        if self.kind not in _KINDS:
            raise ValueError(f"rule kind must be one of {', '.join(_KINDS)}")
        self.rate = _number(spec, "rate", 1.0, 0.0, 1.0)
        self.times = _int_or_none(spec, "times")
        self.after = _int_or_none(spec, "after") or 0
        self.retry_after = int(_number(spec, "retry_after", 1, 0, 3600))
        self.status = int(_number(spec, "status", 503, 500, 599))
        self.ms = _number(spec, "ms", 0.0, 0.0, 60_000.0)
        self.jitter_ms = _number(spec, "jitter_ms", 0.0, 0.0, 60_000.0)
        methods = spec.get("methods")
        if methods is not None and (not isinstance(methods, list) or not all(isinstance(m, str) for m in methods)):
            raise ValueError("rule methods must be a list of strings")
        self.methods = {m.upper() for m in methods} if methods else None
        path = spec.get("path")
        try:
            self.path = re.compile(path, re.IGNORECASE) if path else None
        except (re.error, TypeError) as exc:
            raise ValueError(f"rule path is not a valid regular expression: {exc}") from exc
        self.matched = 0
        self.fired = 0
        self.spec = spec

    def applies(self, service: str, method: str, path: str) -> bool:
        return ((self.service in ("*", service)) and (self.methods is None or method in self.methods)
                and (self.path is None or self.path.search(path) is not None))

    def fires(self, rng: random.Random) -> bool:
        """Count a matching request and decide whether the rule fires for it."""
        self.matched += 1
        if self.matched <= self.after:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        if self.rate < 1.0 and rng.random() >= self.rate:
            return False
        self.fired += 1
        return True

    def describe(self) -> dict[str, Any]:
        return {**self.spec, "matched": self.matched, "fired": self.fired}


def _number(spec: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{key} must be a number between {low:g} and {high:g}")
    return float(value)


def _int_or_none(spec: dict[str, Any], key: str) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer")
    return value


class GraphQuotas:
    """Graph's identity-and-access token buckets, keyed by calling app and tenant."""

    def __init__(self, spec: dict[str, Any], monotonic: Callable[[], float]):
        if not isinstance(spec, dict):
            raise ValueError("graph_quotas must be an object")
        unknown = set(spec) - {"tenant_size", "scale", "window_scale"}
        if unknown:
            raise ValueError(f"unknown graph_quotas keys: {', '.join(sorted(unknown))}")
        self.tenant_size = spec.get("tenant_size", "S")
        if self.tenant_size not in _APP_TENANT_RU:
            raise ValueError("graph_quotas.tenant_size must be S, M or L")
        self.scale = _number(spec, "scale", 1.0, 0.000001, 1000.0)
        self.window_scale = _number(spec, "window_scale", 1.0, 0.000001, 1000.0)
        self.spec = {"tenant_size": self.tenant_size, "scale": self.scale, "window_scale": self.window_scale}
        self._monotonic = monotonic
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def _bucket(self, kind: str, key: str, capacity: float, window: float) -> TokenBucket:
        bucket = self._buckets.get((kind, key))
        if bucket is None:
            bucket = self._buckets[(kind, key)] = TokenBucket(capacity * self.scale, window * self.window_scale,
                                                              self._monotonic())
        return bucket

    @staticmethod
    def cost(method: str, path: str, query: str = "") -> tuple[int, int]:
        """(resource units, writes) of one request, per the documented table: base cost by path (``GET
        applications`` 2, ``GET users`` 2, ... other GETs 1, writes 1 unit + 1 write), then ``$select`` -1,
        ``$expand`` +1, ``$top`` below 20 -1, never below 1."""
        template = _cost_template(path)
        units, writes = (1, 1) if method in _WRITE_METHODS else (1, 0)
        for (base_method, pattern), base in _BASE_COSTS.items():
            if base_method == method and _template_matches(template, pattern):
                units, writes = base
                break
        options = {k.lower(): v for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True)}
        if "$select" in options and template in _SELECT_FIXED:
            units = _SELECT_FIXED[template]
        else:
            if "$select" in options:
                units -= 1
            if "$expand" in options:
                units += 1
            top = options.get("$top", "").strip()
            if top.isdigit() and int(top) < 20:
                units -= 1
        return max(1, units), writes

    def charge(self, app_id: str, tenant_id: str, method: str, path: str,
               query: str = "") -> tuple[ServiceError | None, dict[str, str]]:
        """Take the request's cost from every bucket it counts against, or return the 429 it gets."""
        units, writes = self.cost(method, path, query)
        now = self._monotonic()
        checks = [
            (self._bucket("ru", f"{app_id}/{tenant_id}", _APP_TENANT_RU[self.tenant_size], _APP_TENANT_RU_WINDOW),
             units, f"Tenant_Application/ReadWrite/{app_id}/{tenant_id}", "ResourceUnitLimitExceeded"),
            (self._bucket("ru-app", app_id, *_APP_RU), units, f"Application/ReadWrite/{app_id}",
             "ResourceUnitLimitExceeded"),
        ]
        if writes:
            checks += [
                (self._bucket("w", f"{app_id}/{tenant_id}", *_APP_TENANT_WRITES), writes,
                 f"Tenant_Application/Write/{app_id}/{tenant_id}", "WriteLimitExceeded"),
                (self._bucket("w-app", app_id, *_APP_WRITES), writes, f"Application/Write/{app_id}",
                 "WriteLimitExceeded"),
                (self._bucket("w-tenant", tenant_id, *_TENANT_WRITES), writes, f"Tenant/Write/{tenant_id}",
                 "WriteLimitExceeded"),
            ]
        for bucket, cost, scope, info in checks:
            wait = bucket.wait_for(cost, now)
            if wait > 0:
                error = throttled("graph", max(1, math.ceil(wait)), tenant_id=tenant_id, app_id=app_id,
                                  scope=scope, information=info, write=bool(writes))
                error.source = "quota"
                return error, {}
        for bucket, cost, _scope, _info in checks:
            bucket.take(cost)
        headers = {"x-ms-resource-unit": str(units)}
        used = max(bucket.used_fraction() for bucket, *_ in checks)
        if used >= 0.8:
            headers["x-ms-throttle-limit-percentage"] = f"{used:.1f}"
        return None, headers


class Faults:
    """The sandbox's fault injector (one per sandbox; reconfigured by the control API)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic):
        self._monotonic = monotonic
        self.configure({})

    def configure(self, spec: dict[str, Any]) -> None:
        """Replace the whole configuration; raises ``ValueError`` (nothing changed) when ``spec`` is invalid."""
        if not isinstance(spec, dict):
            raise ValueError("the fault configuration must be a JSON object")
        unknown = set(spec) - {"seed", "replication_lag", "rules", "graph_quotas"}
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        seed = spec.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, (int, str)):
            raise ValueError("seed must be an integer or a string")
        lag = _number(spec, "replication_lag", 0.0, 0.0, 3600.0)
        rules_spec = spec.get("rules", [])
        if not isinstance(rules_spec, list):
            raise ValueError("rules must be a list")
        rules = [Rule(rule) for rule in rules_spec]
        quotas = spec.get("graph_quotas")
        graph_quotas = GraphQuotas(quotas, self._monotonic) if quotas else None
        self.seed = seed
        self.replication_lag = lag
        self.rules = rules
        self.graph_quotas = graph_quotas
        self.rng = random.Random(seed)

    def describe(self) -> dict[str, Any]:
        """The current configuration plus per-rule counters."""
        return {"seed": self.seed, "replication_lag": self.replication_lag,
                "rules": [rule.describe() for rule in self.rules],
                "graph_quotas": self.graph_quotas.spec if self.graph_quotas else None}

    def lagging(self, obj: dict[str, Any] | None) -> bool:
        """True while ``obj`` (with a ``_created`` monotonic stamp) is inside the replication-lag window."""
        if not obj or self.replication_lag <= 0:
            return False
        created = obj.get("_created")
        return isinstance(created, (int, float)) and self._monotonic() - created < self.replication_lag

    def before(self, service: str, method: str, path: str, *, app_id: str | None = None,
               tenant_id: str = "", quotas: bool = True,
               query: str = "") -> tuple[float, ServiceError | None, dict[str, str]]:
        """Decide the faults of one request: (delay seconds, error to answer instead, extra headers).

        The error's ``source`` says where it came from: ``"rule"`` (a fault rule) or ``"quota"`` (a Graph quota
        bucket). ``quotas=False`` applies the rules only (graph.py charges ``$batch`` items with
        :meth:`graph_charge`). ``query`` (the raw query string) prices ``$select``/``$expand``/``$top``.
        """
        delay = 0.0
        error: ServiceError | None = None
        for rule in self.rules:
            if not rule.applies(service, method, path):
                continue
            if rule.kind == "latency":
                if rule.fires(self.rng):
                    jitter = self.rng.uniform(-rule.jitter_ms, rule.jitter_ms) if rule.jitter_ms else 0.0
                    delay += max(0.0, rule.ms + jitter) / 1000.0
            elif error is not None:
                rule.matched += 1  # counted (for "after"), but the request is already answered
            elif rule.fires(self.rng):
                if rule.kind == "throttle":
                    error = throttled(service, rule.retry_after, tenant_id=tenant_id, app_id=app_id or "",
                                      write=method in _WRITE_METHODS)
                else:
                    error = unavailable(service, rule.status)
                error.source = "rule"
        headers: dict[str, str] = {}
        if error is None and quotas and service == "graph" and self.graph_quotas is not None \
                and app_id is not None and not path.lower().endswith("/$batch"):
            error, headers = self.graph_quotas.charge(app_id, tenant_id, method, path, query)
        return delay, error, headers

    def graph_charge(self, app_id: str, tenant_id: str, method: str, path: str,
                     query: str = "") -> tuple[ServiceError | None, dict[str, str]]:
        """For graph.py's ``$batch``: charge one inner request against the Graph quotas: (429 or None, the
        ``x-ms-resource-unit``/``x-ms-throttle-limit-percentage`` headers of an allowed request)."""
        if self.graph_quotas is None:
            return None, {}
        return self.graph_quotas.charge(app_id, tenant_id, method, path, query)
