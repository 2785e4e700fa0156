"""The sandbox's configuration: ids, secrets and files fixed at start, plus the runtime settings."""
from __future__ import annotations

import dataclasses
import secrets
from typing import Any

DEFAULT_TENANT_ID = "5a1d5b0e-7e4a-4c1f-9d2e-3f0a6b8c9d10"
DEFAULT_SUBSCRIPTION_ID = "6b2e6c1f-8f5b-4d20-ae3f-40b17c9dae21"
DEFAULT_OPERATOR_CLIENT_ID = "0c7f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b"
DEFAULT_RESTRICTED_CLIENT_ID = "1d8a2b3c-4d5e-4f6a-9b7c-8d9e0f1a2b3c"
DEFAULT_GITLAB_ISSUERS = ("gitlab.com", "gitlab.example.com")

# Issuer URL patterns allowed for flexible FICs (claimsMatchingExpression), per platform (api-facts §4).
DEFAULT_FLEXIBLE_ISSUERS: dict[str, list[str]] = {
    "gitlab": ["https://gitlab.com", "https://gitlab.*.com", "https://gitlab.*.ca"],
    "github": ["https://token.actions.githubusercontent.com"],
    "terraform": ["https://app.terraform.io", "https://app.eu.terraform.io"],
}


@dataclasses.dataclass
class Config:
    """Settings fixed at start (IDs, secrets, files) plus the few that ``POST /_sandbox/config`` may change."""

    state_dir: str
    tenant_id: str = DEFAULT_TENANT_ID
    tenant_domain: str = "sandbox.onmicrosoft.com"
    subscription_id: str = DEFAULT_SUBSCRIPTION_ID
    operator_client_id: str = DEFAULT_OPERATOR_CLIENT_ID
    operator_secret: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(30))
    restricted_client_id: str = DEFAULT_RESTRICTED_CLIENT_ID
    restricted_secret: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(30))
    gitlab_issuers: tuple[str, ...] = DEFAULT_GITLAB_ISSUERS
    # the administrator's personal access token of every sandbox GitLab instance (api scope, Owner everywhere)
    gitlab_token: str = dataclasses.field(default_factory=lambda: "glpat-" + secrets.token_urlsafe(15))
    state_file: str | None = None
    base_url: str = ""
    ca_file: str = ""
    bundle_file: str = ""
    # changeable at run time (POST /_sandbox/config)
    flexible_issuers: dict[str, list[str]] = dataclasses.field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_FLEXIBLE_ISSUERS.items()})
    local_issuers_are_gitlab: bool = True
    oidc_fetch_timeout: float = 5.0
    jwks_cache_seconds: float = 0.0
    assertion_clock_skew: float = 300.0
    access_token_lifetime: int = 3599
    arm_page_size: int = 100  # items per ARM list page (arm.py)

    RUNTIME_KEYS = ("flexible_issuers", "local_issuers_are_gitlab", "oidc_fetch_timeout", "jwks_cache_seconds",
                    "assertion_clock_skew", "access_token_lifetime", "arm_page_size")

    def runtime(self) -> dict[str, Any]:
        """The settings ``POST /_sandbox/config`` can change, as JSON."""
        return {key: getattr(self, key) for key in self.RUNTIME_KEYS}

    def update(self, changes: dict[str, Any]) -> None:
        """Validate and apply runtime settings; raises ``ValueError`` (nothing applied) on a bad value."""
        if not isinstance(changes, dict):
            raise ValueError("the configuration must be a JSON object")
        unknown = set(changes) - set(self.RUNTIME_KEYS)
        if unknown:
            raise ValueError(f"unknown or read-only config keys: {', '.join(sorted(unknown))}")
        staged = self.runtime()
        for key, value in changes.items():
            staged[key] = _validate_setting(key, value)
        for key, value in staged.items():
            setattr(self, key, value)

    def public(self) -> dict[str, Any]:
        """Non-secret configuration for ``GET /_sandbox/state`` and ``/health``."""
        return {
            "base_url": self.base_url, "tenant_id": self.tenant_id, "tenant_domain": self.tenant_domain,
            "subscription_id": self.subscription_id, "operator_client_id": self.operator_client_id,
            "restricted_client_id": self.restricted_client_id, "gitlab_issuers": list(self.gitlab_issuers),
            "ca_file": self.ca_file, **self.runtime(),
        }


def _validate_setting(key: str, value: Any) -> Any:
    if key == "flexible_issuers":
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, list) and all(isinstance(p, str) for p in v)
                for k, v in value.items()):
            raise ValueError("flexible_issuers must map a platform name to a list of issuer URL patterns")
        return {k: list(v) for k, v in value.items()}
    if key == "local_issuers_are_gitlab":
        if not isinstance(value, bool):
            raise ValueError("local_issuers_are_gitlab must be true or false")
        return value
    integer_ranges = {"access_token_lifetime": (60, 86400), "arm_page_size": (1, 1000)}
    if key in integer_ranges:
        low, high = integer_ranges[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{key} must be an integer between {low} and {high}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 600:
        raise ValueError(f"{key} must be a number of seconds between 0 and 600")
    return float(value)
