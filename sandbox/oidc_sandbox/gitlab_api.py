"""GitLab's REST API (``/api/v4``) for each sandbox GitLab instance: the subset onboarding needs.

Every issuer ``{base}/gitlab/<name>`` is also a GitLab instance whose API lives at ``{base}/gitlab/<name>/api/v4``:

* groups (nested): ``GET /groups/:id``, ``/groups/:id/projects``, ``/groups/:id/subgroups``,
  ``/groups/:id/descendant_groups`` (``:id`` a number or the URL-encoded full path);
* projects: ``GET /projects`` (visible to the token), ``GET /projects/:id`` (id or URL-encoded path), ``PUT
  /projects/:id`` (``ci_id_token_sub_claim_components`` with GitLab's validation, ``name``, ``path``, ``description``,
  ``default_branch``, ``topics``, ``visibility``), ``POST /projects/:id/archive`` and ``/unarchive``;
* project CI/CD variables: ``GET|POST /projects/:id/variables``, ``GET|PUT|DELETE /projects/:id/variables/:key``
  with ``filter[environment_scope]`` (doc/api/project_level_variables.md, app/models/concerns/ci/maskable.rb);
* personal access tokens (``PRIVATE-TOKEN``, ``Authorization: Bearer``, ``private_token=``) with scopes (``api``,
  ``read_api``), the namespaces their user is a member of and the role there; 401 ``{"message":"401
  Unauthorized"}``, 403 ``insufficient_scope`` (rack-oauth2 body), 404 ``{"message":"404 Project Not Found"}``;
* pagination as doc/api/rest/index.md: offset (``page``/``per_page``, ``x-total``, ``x-next-page``... and a
  ``Link`` header) everywhere, keyset (``pagination=keyset``, ``order_by=id``, ``Link: rel="next"`` with
  ``id_after``/``id_before``) on project lists.

The data (groups, projects, variables, tokens) is seeded through the control API (``/_sandbox/gitlab/...``) and kept
in ``state.gitlab`` (instance name -> ``{"groups", "projects", "variables", "tokens", "next_id"}``); tokens are
stored as SHA-256 digests only. gitlab.py mints ID tokens for seeded projects from the same data.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import secrets
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .errors import ServiceError, control_error, method_not_allowed, read_json
from .state import public

if TYPE_CHECKING:
    from .context import Sandbox

API_PREFIX = "/api/v4"
GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50
ACCESS_LEVELS = (GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER)
VISIBILITIES = ("private", "internal", "public")
TOKEN_SCOPES = ("api", "read_api", "read_user", "read_repository", "write_repository", "read_registry",
                "write_registry", "create_runner", "manage_runner", "k8s_proxy", "ai_features", "self_rotate", "sudo",
                "admin_mode")
DEFAULT_SUB_COMPONENTS = ["project_path", "ref_type", "ref"]
PER_PAGE_DEFAULT, PER_PAGE_MAX = 20, 100
ORDER_BY_PROJECTS = ("id", "name", "path", "created_at", "updated_at", "last_activity_at", "similarity", "star_count")
ORDER_BY_GROUPS = ("name", "path", "id", "similarity")
# app/models/concerns/ci/has_variable.rb, maskable.rb; variable description max 255
KEY_RE = re.compile(r"^[a-zA-Z0-9_]+$")
MASK_RE = re.compile(r"^[a-zA-Z0-9_+=/@:.~-]{8,}$")
MASK_RAW_RE = re.compile(r"^\S{8,}$")
PATH_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9_.-]*$")
# Gitlab::Regex.environment_scope_regex (environment name characters plus '*') and its message
ENVIRONMENT_SCOPE_RE = re.compile(r"[a-zA-Z0-9_/${}. *-]+")  # fullmatch
ENVIRONMENT_SCOPE_MESSAGE = "can contain only letters, digits, '-', '_', '/', '$', '{', '}', '.', '*' and spaces"
# Plan limits of an instance (PlanLimits; 0 = no limit). 8000 CI/CD variables per project is the self-managed default.
DEFAULT_LIMITS = {"project_ci_variables": 8000}
_TRUE = ("true", "1", "yes", "t", "y", "on")
_FALSE = ("false", "0", "no", "f", "n", "off")
INSUFFICIENT_SCOPE = "The request requires higher privileges than provided by the access token."


# --- errors in GitLab's shapes ----------------------------------------------------------------------------------------

def _message(status: int, message: Any, headers: dict[str, str] | None = None) -> ServiceError:
    return ServiceError(status, {"message": message}, headers)


def _error(status: int, text: str) -> ServiceError:
    """Grape's own errors (parameter validation, keyset availability): ``{"error": "..."}``."""
    return ServiceError(status, {"error": text})


def unauthorized() -> ServiceError:
    return _message(401, "401 Unauthorized")


def forbidden() -> ServiceError:
    return _message(403, "403 Forbidden")


def not_found(what: str) -> ServiceError:
    return _message(404, f"404 {what} Not Found")


def insufficient_scope(scopes: list[str]) -> ServiceError:
    # api_guard.rb: Rack::OAuth2::Server::Resource::Bearer::Forbidden(:insufficient_scope, DEFAULT_DESCRIPTION,
    # scope: e.scopes); rack-oauth2 joins the scopes with spaces. No WWW-Authenticate header (GitLab's FIXME).
    return ServiceError(403, {"error": "insufficient_scope", "error_description": INSUFFICIENT_SCOPE,
                              "scope": " ".join(scopes)})


def invalid_token(description: str) -> ServiceError:
    header = f'Bearer realm="",error="invalid_token",error_description="{description}"'
    return ServiceError(401, {"error": "invalid_token", "error_description": description},
                        {"WWW-Authenticate": header})


def validation_error(errors: dict[str, list[str]]) -> ServiceError:
    """``render_validation_error!``: 400 ``{"message": {"field": ["problem", ...]}}``."""
    return _message(400, errors)


# --- instance data ----------------------------------------------------------------------------------------------------

def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now_iso(ctx: "Sandbox") -> str:
    return _dt.datetime.fromtimestamp(ctx.clock(), _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def new_instance(ctx: "Sandbox") -> dict[str, Any]:
    """An empty GitLab instance holding the sandbox's administrator token (``Config.gitlab_token``)."""
    admin = {"name": "sandbox-admin", "scopes": ["api"], "namespaces": ["*"], "access_level": OWNER,
             "expired": False, "revoked": False, "prefix": ctx.config.gitlab_token[:10]}
    return {"groups": {}, "projects": {}, "variables": {}, "tokens": {token_digest(ctx.config.gitlab_token): admin},
            "next_id": {"group": 100, "project": 1000}, "limits": dict(DEFAULT_LIMITS)}


def seed(ctx: "Sandbox") -> None:
    """Reset hook: every configured instance empty again, with its administrator token."""
    ctx.state.gitlab = {name: new_instance(ctx) for name in ctx.state.issuers}


def instance(ctx: "Sandbox", name: str) -> dict[str, Any] | None:
    """The instance behind issuer ``name`` (created on first use for issuers added at run time)."""
    if name not in ctx.state.issuers:
        return None
    data = ctx.state.gitlab.get(name)
    if data is None:
        data = ctx.state.gitlab[name] = new_instance(ctx)
    return data


def group_by_path(inst: dict[str, Any], full_path: str) -> dict[str, Any] | None:
    lower = full_path.lower()
    for group in inst["groups"].values():
        if group["full_path"].lower() == lower:
            return group
    return None


def project_path(inst: dict[str, Any], project: dict[str, Any]) -> str:
    return f"{inst['groups'][project['namespace_id']]['full_path']}/{project['path']}"


def project_by_path(inst: dict[str, Any], full_path: str) -> dict[str, Any] | None:
    lower = full_path.lower()
    for project in inst["projects"].values():
        if project_path(inst, project).lower() == lower:
            return project
    return None


def find_project(inst: dict[str, Any], ref: Any) -> dict[str, Any] | None:
    """A project by id (int or digit string) or full path (for the control API and ID-token minting)."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        return inst["projects"].get(ref)
    if isinstance(ref, str):
        return inst["projects"].get(int(ref)) if ref.isdigit() else project_by_path(inst, ref.strip("/"))
    return None


def sub_components(project: dict[str, Any]) -> list[str]:
    return list(project.get("ci_id_token_sub_claim_components") or DEFAULT_SUB_COMPONENTS)


def _ancestors(inst: dict[str, Any], group: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    parent = group.get("parent_id")
    while parent is not None:
        out.append(inst["groups"][parent])
        parent = inst["groups"][parent].get("parent_id")
    return out


def _descendant_ids(inst: dict[str, Any], group_id: int) -> set[int]:
    found, todo = set(), [group_id]
    while todo:
        current = todo.pop()
        for group in inst["groups"].values():
            if group.get("parent_id") == current and group["id"] not in found:
                found.add(group["id"])
                todo.append(group["id"])
    return found


# --- the caller -------------------------------------------------------------------------------------------------------

class Caller:
    """The token's user: ``scopes``, member ``namespaces`` (full paths, ``*`` = everything) with ``access_level``."""

    def __init__(self, token: dict[str, Any] | None):
        self.token = token
        self.scopes = set(token["scopes"]) if token else set()
        self.namespaces = list(token["namespaces"]) if token else []
        self.level = token["access_level"] if token else 0

    @property
    def anonymous(self) -> bool:
        return self.token is None

    def member_level(self, full_path: str) -> int:
        """The role on a group or project path (membership is inherited downwards)."""
        if self.token is None:
            return 0
        lower = full_path.lower()
        for ns in self.namespaces:
            ns_lower = ns.lower()
            if ns == "*" or lower == ns_lower or lower.startswith(ns_lower + "/"):
                return self.level
        return 0

    def can_see_group(self, inst: dict[str, Any], group: dict[str, Any]) -> bool:
        if group["visibility"] == "public" or (group["visibility"] == "internal" and not self.anonymous):
            return True
        if self.member_level(group["full_path"]):
            return True
        # a member of a subgroup or project sees its ancestors
        prefix = group["full_path"].lower() + "/"
        return any(ns != "*" and ns.lower().startswith(prefix) for ns in self.namespaces)

    def project_level(self, inst: dict[str, Any], project: dict[str, Any]) -> int:
        """The role on a project (0 = no member); public/internal projects are readable below that."""
        return self.member_level(project_path(inst, project))

    def can_see_project(self, inst: dict[str, Any], project: dict[str, Any]) -> bool:
        if project["visibility"] == "public" or (project["visibility"] == "internal" and not self.anonymous):
            return True
        return self.project_level(inst, project) >= GUEST


def _presented_token(request: Request) -> str | None:
    token = request.headers.get("private-token") or request.query_params.get("private_token")
    if token:
        return token
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.query_params.get("access_token")


def authenticate(ctx: "Sandbox", inst: dict[str, Any], request: Request, *, write: bool) -> Caller:
    """The caller, or GitLab's 401/403 (api_guard.rb): bad token 401, expired/revoked 401 invalid_token, a scope
    missing 403 insufficient_scope (``api`` for writes, ``api`` or ``read_api`` for reads)."""
    presented = _presented_token(request)
    if presented is None:
        if write:
            raise unauthorized()
        return Caller(None)
    token = inst["tokens"].get(token_digest(presented))
    if token is None:
        raise unauthorized()
    if token.get("revoked"):
        raise invalid_token("Token was revoked. You have to re-authorize from the user.")
    if token.get("expired"):
        raise invalid_token("Token is expired. You can either do re-authorization or token refresh.")
    scopes = set(token["scopes"])
    if write and "api" not in scopes:
        raise insufficient_scope(["api"])
    if not write and not scopes & {"api", "read_api"}:
        raise insufficient_scope(["api", "read_api"])
    return Caller(token)


# --- JSON views -------------------------------------------------------------------------------------------------------

def _web_base(ctx: "Sandbox", name: str) -> str:
    return ctx.state.issuers[name]["issuer"]


def group_view(ctx: "Sandbox", name: str, inst: dict[str, Any], group: dict[str, Any]) -> dict[str, Any]:
    base = _web_base(ctx, name)
    return {
        "id": group["id"], "web_url": f"{base}/groups/{group['full_path']}", "name": group["name"],
        "path": group["path"], "description": group.get("description", ""), "visibility": group["visibility"],
        "share_with_group_lock": False, "require_two_factor_authentication": False, "two_factor_grace_period": 48,
        "project_creation_level": "developer", "auto_devops_enabled": None, "subgroup_creation_level": "maintainer",
        "emails_disabled": False, "emails_enabled": True, "mentions_disabled": None, "lfs_enabled": True,
        "default_branch": None, "default_branch_protection": 2, "avatar_url": None, "request_access_enabled": True,
        "full_name": " / ".join([g["name"] for g in reversed(_ancestors(inst, group))] + [group["name"]]),
        "full_path": group["full_path"], "created_at": group["created_at"], "parent_id": group.get("parent_id"),
        "organization_id": 1, "shared_runners_setting": "enabled", "ldap_cn": None, "ldap_access": None,
        "marked_for_deletion_on": None, "archived": False,
    }


def project_view(ctx: "Sandbox", name: str, inst: dict[str, Any], project: dict[str, Any], caller: Caller,
                 *, simple: bool = False) -> dict[str, Any]:
    """Entities::Project (``simple``: Entities::BasicProjectDetails). The CI/CD settings block, with
    ``ci_id_token_sub_claim_components``, is only shown to callers with the Maintainer role or more."""
    base = _web_base(ctx, name)
    group = inst["groups"][project["namespace_id"]]
    path = project_path(inst, project)
    host = base.split("://", 1)[-1].split("/", 1)[0]
    full_name = " / ".join([g["name"] for g in reversed(_ancestors(inst, group))] + [group["name"], project["name"]])
    view: dict[str, Any] = {
        "id": project["id"], "description": project.get("description"), "name": project["name"],
        "name_with_namespace": full_name, "path": project["path"], "path_with_namespace": path,
        "created_at": project["created_at"], "default_branch": project.get("default_branch"),
        "tag_list": list(project["topics"]), "topics": list(project["topics"]),
        "ssh_url_to_repo": f"git@{host}:{path}.git", "http_url_to_repo": f"{base}/{path}.git",
        "web_url": f"{base}/{path}", "readme_url": None, "forks_count": 0, "avatar_url": None,
        "star_count": project.get("star_count", 0), "last_activity_at": project["last_activity_at"],
        "visibility": project["visibility"],
        "namespace": {"id": group["id"], "name": group["name"], "path": group["path"], "kind": "group",
                      "full_path": group["full_path"], "parent_id": group.get("parent_id"), "avatar_url": None,
                      "web_url": f"{base}/groups/{group['full_path']}"},
    }
    if simple:
        return view
    view.update({
        "archived": project["archived"], "empty_repo": project.get("default_branch") is None,
        "container_registry_image_prefix": f"registry.{host}/{path}",
        "_links": {"self": f"{base}{API_PREFIX}/projects/{project['id']}"},
        "issues_enabled": True, "merge_requests_enabled": True, "wiki_enabled": True, "jobs_enabled": True,
        "snippets_enabled": True, "resolve_outdated_diff_discussions": False, "creator_id": 1,
        "shared_runners_enabled": True, "lfs_enabled": True, "open_issues_count": 0,
        "updated_at": project["updated_at"], "public_jobs": True, "shared_with_groups": [],
        "only_allow_merge_if_pipeline_succeeds": False, "request_access_enabled": True,
        "marked_for_deletion_at": None, "marked_for_deletion_on": None,
    })
    if caller.project_level(inst, project) >= MAINTAINER:
        view.update({
            "ci_default_git_depth": 20, "ci_delete_pipelines_in_seconds": None, "ci_forward_deployment_enabled": True,
            "ci_forward_deployment_rollback_allowed": True, "ci_job_token_scope_enabled": False,
            "ci_separated_caches": True, "ci_allow_fork_pipelines_to_run_in_parent_project": True,
            "ci_id_token_sub_claim_components": sub_components(project), "build_git_strategy": "fetch",
            "keep_latest_artifact": True, "restrict_user_defined_variables": True,
            "ci_pipeline_variables_minimum_override_role": "developer", "runner_token_expiration_interval": None,
            "group_runners_enabled": True, "auto_cancel_pending_pipelines": "enabled", "build_timeout": 3600,
            "auto_devops_enabled": False, "auto_devops_deploy_strategy": "continuous", "ci_config_path": None,
        })
    if not caller.anonymous:
        # Entities::ProjectWithAccess: the caller's own membership (doc/api/projects.md, "Get a single project").
        # Membership here is held on a namespace: an exact project path is project access, a group group access.
        level = caller.member_level(path)
        on_project = any(ns.lower() == path.lower() for ns in caller.namespaces)
        access = {"access_level": level, "notification_level": 3} if level else None
        view["permissions"] = {"project_access": access if on_project else None,
                               "group_access": None if on_project else access}
    if caller.anonymous:
        return {k: view[k] for k in ("id", "description", "name", "name_with_namespace", "path",
                                     "path_with_namespace", "created_at", "default_branch", "tag_list", "topics",
                                     "ssh_url_to_repo", "http_url_to_repo", "web_url", "readme_url", "forks_count",
                                     "avatar_url", "star_count", "last_activity_at", "visibility", "namespace")}
    return view


def variable_view(var: dict[str, Any]) -> dict[str, Any]:
    """Entities::Ci::Variable: hidden variables never show their value."""
    out = {k: var[k] for k in ("variable_type", "key", "value", "hidden", "protected", "masked", "raw",
                               "environment_scope", "description")}
    if var["hidden"]:
        out["value"] = None
    return out


# --- parameters -------------------------------------------------------------------------------------------------------

class Params:
    """Query parameters merged with a JSON or form body (Grape's ``params``)."""

    def __init__(self, query: list[tuple[str, str]], body: dict[str, Any] | None):
        self.values: dict[str, Any] = {}
        for key, value in query:
            if key.endswith("[]"):
                self.values.setdefault(key[:-2], []).append(value)
            else:
                self.values[key] = value
        if body:
            self.values.update(body)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def boolean(self, key: str, default: bool | None = None) -> bool | None:
        value = self.values.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise _error(400, f"{key} is invalid")

    def integer(self, key: str, default: int | None = None) -> int | None:
        value = self.values.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise _error(400, f"{key} is invalid")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _error(400, f"{key} is invalid") from None

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
        value = self.values.get(key)
        if value is None or value == "":
            return default
        if str(value) not in choices:
            raise _error(400, f"{key} does not have a valid value")
        return str(value)

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.values.get(key)
        if value is None:
            return default
        if isinstance(value, (dict, list)):
            raise _error(400, f"{key} is invalid")
        return str(value)

    def string_list(self, key: str) -> list[str] | None:
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
            return [str(v) for v in value]
        raise _error(400, f"{key} is invalid")

    def filter_scope(self) -> str | None:
        value = self.values.get("filter[environment_scope]")
        nested = self.values.get("filter")
        if value is None and isinstance(nested, dict):
            value = nested.get("environment_scope")
        return None if value is None else str(value)


async def _params(request: Request) -> Params:
    query = parse_qsl(request.url.query, keep_blank_values=True)
    body: dict[str, Any] | None = None
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        raw = await request.body()
        if raw.strip():
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype == "application/x-www-form-urlencoded":
                body = {}
                for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
                    if key.endswith("[]"):
                        body.setdefault(key[:-2], []).append(value)
                    else:
                        body[key] = value
            else:
                try:
                    data = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    raise _error(400, "The request body is not valid JSON") from None
                if not isinstance(data, dict):
                    raise _error(400, "The request body must be a JSON object")
                body = data
    return Params(query, body)


# --- pagination -------------------------------------------------------------------------------------------------------

def _page_url(request: Request, changes: dict[str, Any], drop: tuple[str, ...] = ()) -> str:
    query = [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True)
             if k not in changes and k not in drop]
    query += [(k, str(v)) for k, v in changes.items()]
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1").split("?", 1)[0] if raw else request.url.path  # keeps a%2Fb encoded
    return f"{request.url.scheme}://{request.url.netloc}{path}?{urlencode(query)}"


def paginate(request: Request, params: Params, items: list[Any], *, keyset_ok: bool = False,
             key: Any = None) -> tuple[list[Any], dict[str, str]]:
    """One page of ``items`` (already ordered) and the headers (offset or keyset, see the module doc)."""
    per_page = params.integer("per_page", PER_PAGE_DEFAULT)
    if per_page is None or per_page < 1:
        per_page = PER_PAGE_DEFAULT
    per_page = min(per_page, PER_PAGE_MAX)
    if params.get("pagination") == "keyset":
        if not keyset_ok:
            raise _error(405, "Keyset pagination is not yet available for this type of request")
        descending = (params.get("sort") or "desc") == "desc"
        after, before = params.integer("id_after"), params.integer("id_before")
        rows = [i for i in items if (after is None or key(i) > after) and (before is None or key(i) < before)]
        page = rows[:per_page]
        headers = {}
        if len(rows) > per_page:
            nxt = {"id_before": key(page[-1])} if descending else {"id_after": key(page[-1])}
            headers["Link"] = f'<{_page_url(request, nxt, ("id_after", "id_before"))}>; rel="next"'
        return page, headers
    page_no = params.integer("page", 1)
    if page_no is None or page_no < 1:
        page_no = 1
    total = len(items)
    pages = max(1, -(-total // per_page))
    start = (page_no - 1) * per_page
    page = items[start:start + per_page]
    nxt = page_no + 1 if page_no < pages else None
    prev = page_no - 1 if page_no > 1 else None
    links = []
    if prev:
        links.append(f'<{_page_url(request, {"page": prev, "per_page": per_page})}>; rel="prev"')
    if nxt:
        links.append(f'<{_page_url(request, {"page": nxt, "per_page": per_page})}>; rel="next"')
    links.append(f'<{_page_url(request, {"page": 1, "per_page": per_page})}>; rel="first"')
    links.append(f'<{_page_url(request, {"page": pages, "per_page": per_page})}>; rel="last"')
    headers = {"X-Page": str(page_no), "X-Per-Page": str(per_page), "X-Next-Page": str(nxt or ""),
               "X-Prev-Page": str(prev or ""), "X-Total": str(total), "X-Total-Pages": str(pages),
               "Link": ", ".join(links)}
    return page, headers


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={**(headers or {}), "X-Request-Id": str(uuid.uuid4())})


# --- lookups with visibility ------------------------------------------------------------------------------------------

def _visible_group(inst: dict[str, Any], caller: Caller, ref: str) -> dict[str, Any]:
    group = inst["groups"].get(int(ref)) if ref.isdigit() else group_by_path(inst, ref)
    if group is None or not caller.can_see_group(inst, group):
        raise not_found("Group")
    return group


def _visible_project(inst: dict[str, Any], caller: Caller, ref: str) -> dict[str, Any]:
    project = inst["projects"].get(int(ref)) if ref.isdigit() else project_by_path(inst, ref)
    if project is None or not caller.can_see_project(inst, project):
        raise not_found("Project")
    return project


def _require_level(inst: dict[str, Any], caller: Caller, project: dict[str, Any], level: int) -> None:
    if caller.project_level(inst, project) < level:
        raise forbidden()


# --- projects lists ---------------------------------------------------------------------------------------------------

def _filter_projects(inst: dict[str, Any], caller: Caller, projects: list[dict[str, Any]],
                     params: Params) -> list[dict[str, Any]]:
    archived = params.boolean("archived")
    visibility = params.choice("visibility", VISIBILITIES)
    topics = params.string_list("topic") or []
    search = (params.string("search") or "").lower()
    min_level = params.integer("min_access_level")
    out = []
    for project in projects:
        if not caller.can_see_project(inst, project):
            continue
        if archived is not None and project["archived"] != archived:
            continue
        if visibility and project["visibility"] != visibility:
            continue
        if topics and not {t.lower() for t in topics} <= {t.lower() for t in project["topics"]}:
            continue
        if search and search not in project["name"].lower() and search not in project_path(inst, project).lower():
            continue
        if min_level and caller.project_level(inst, project) < min_level:
            continue
        out.append(project)
    order_by = params.choice("order_by", ORDER_BY_PROJECTS, "created_at")
    descending = params.choice("sort", ("asc", "desc"), "desc") == "desc"
    if params.get("pagination") == "keyset" and order_by != "id":
        raise _error(405, "Keyset pagination is not yet available for this type of request")
    if order_by == "similarity" and not search:
        order_by = "name"
    field = {"path": lambda p: p["path"].lower(), "name": lambda p: p["name"].lower(), "id": lambda p: p["id"],
             "similarity": lambda p: p["name"].lower(), "star_count": lambda p: p.get("star_count", 0)}.get(
        order_by, lambda p: p[order_by])
    out.sort(key=lambda p: (field(p), p["id"]), reverse=descending)
    return out


async def _list_projects(ctx: "Sandbox", request: Request, name: str, inst: dict[str, Any], caller: Caller,
                         projects: list[dict[str, Any]]) -> Response:
    params = await _params(request)
    rows = _filter_projects(inst, caller, projects, params)
    page, headers = paginate(request, params, rows, keyset_ok=True, key=lambda p: p["id"])
    simple = bool(params.boolean("simple", False))
    return _json([project_view(ctx, name, inst, p, caller, simple=simple) for p in page], headers=headers)


async def _list_groups(ctx: "Sandbox", request: Request, name: str, inst: dict[str, Any], caller: Caller,
                       groups: list[dict[str, Any]]) -> Response:
    params = await _params(request)
    search = (params.string("search") or "").lower()
    rows = [g for g in groups if caller.can_see_group(inst, g)
            and (not search or search in g["name"].lower() or search in g["path"].lower())]
    order_by = params.choice("order_by", ORDER_BY_GROUPS, "name")
    descending = params.choice("sort", ("asc", "desc"), "asc") == "desc"
    keyf = {"name": lambda g: g["name"].lower(), "path": lambda g: g["path"].lower(), "id": lambda g: g["id"],
            "similarity": lambda g: g["name"].lower()}[order_by]
    rows.sort(key=lambda g: (keyf(g), g["id"]), reverse=descending)
    page, headers = paginate(request, params, rows)
    return _json([group_view(ctx, name, inst, g) for g in page], headers=headers)


# --- project update ---------------------------------------------------------------------------------------------------

def _check_components(ctx: "Sandbox", value: Any) -> list[str]:
    field = "ci_cd_settings.id_token_sub_claim_components"
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _error(400, "ci_id_token_sub_claim_components is invalid")
    if not value:
        raise validation_error({field: ["is too short (minimum is 1 character)"]})
    try:
        return ctx.gitlab.validate_sub_components(list(value))
    except ValueError as exc:
        raise validation_error({field: [str(exc)]}) from None


async def _update_project(ctx: "Sandbox", request: Request, name: str, inst: dict[str, Any], caller: Caller,
                          project: dict[str, Any]) -> Response:
    params = await _params(request)
    _require_level(inst, caller, project, MAINTAINER)
    allowed = {"name", "path", "description", "default_branch", "topics", "tag_list", "visibility",
               "ci_id_token_sub_claim_components"}
    given = {k for k in params.values if k in allowed}
    if not given:
        raise _error(400, "name, path, description, default_branch, topics, visibility, "
                          "ci_id_token_sub_claim_components are missing, at least one parameter must be provided")
    changes: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    if "ci_id_token_sub_claim_components" in params:
        changes["ci_id_token_sub_claim_components"] = _check_components(ctx, params.get(
            "ci_id_token_sub_claim_components"))
    if "visibility" in params:
        changes["visibility"] = params.choice("visibility", VISIBILITIES)
    for key in ("topics", "tag_list"):
        if key in params:
            changes["topics"] = sorted(set(params.string_list(key) or []))
    for key in ("name", "description", "default_branch"):
        if key in params:
            changes[key] = params.string(key)
    if "path" in params and caller.project_level(inst, project) < OWNER:
        raise forbidden()  # changing the path (a rename) is for Owners
    if "path" in params:
        path = params.string("path") or ""
        if not PATH_RE.match(path) or path.endswith((".git", ".atom")):
            errors.setdefault("path", []).append(
                "can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', end in '.git' or end in "
                "'.atom'")
        else:
            clash = project_by_path(inst, f"{inst['groups'][project['namespace_id']]['full_path']}/{path}")
            if clash is not None and clash["id"] != project["id"]:
                errors.setdefault("path", []).append("has already been taken")
            changes["path"] = path
    if "name" in changes and not (changes["name"] or "").strip():
        errors.setdefault("name", []).append("can't be blank")
    if errors:
        raise validation_error(errors)
    project.update(changes)
    project["updated_at"] = project["last_activity_at"] = _now_iso(ctx)
    return _json(project_view(ctx, name, inst, project, caller))


# --- variables --------------------------------------------------------------------------------------------------------

def _variables(inst: dict[str, Any], project: dict[str, Any]) -> list[dict[str, Any]]:
    return inst["variables"].setdefault(project["id"], [])


def _find_variable(inst: dict[str, Any], project: dict[str, Any], key: str, params: Params) -> dict[str, Any]:
    scope = params.filter_scope()
    rows = [v for v in _variables(inst, project) if v["key"] == key
            and (scope is None or v["environment_scope"] == scope)]
    if len(rows) > 1:
        raise _message(409, "There are multiple variables with provided parameters. Please use "
                            "'filter[environment_scope]'")
    if not rows:
        raise not_found("Variable")
    return rows[0]


def _validate_variable(var: dict[str, Any], others: list[dict[str, Any]], *, creating: bool,
                       hidden_before: bool = False, masked_before: bool = False, limit: int = 0) -> None:
    errors: dict[str, list[str]] = {}
    if creating and limit > 0 and len(others) >= limit:  # Limitable: validate_plan_limit_not_exceeded, on create
        errors.setdefault("base", []).append(f"Maximum number of project ci variables ({limit}) exceeded")
    key = var["key"]
    if not key:
        errors.setdefault("key", []).append("can't be blank")
    else:
        if len(key) > 255:
            errors.setdefault("key", []).append("is too long (maximum is 255 characters)")
        if not KEY_RE.match(key):
            errors.setdefault("key", []).append("can contain only letters, digits and '_'.")
    if any(o["key"] == key and o["environment_scope"] == var["environment_scope"] for o in others):
        errors.setdefault("key", []).append(f"({key}) has already been taken")
    if var["masked"]:
        rule = MASK_RAW_RE if var["raw"] else MASK_RE
        if not rule.match(var["value"] or ""):
            errors.setdefault("value", []).append("is invalid")
    if var["description"] is not None and len(var["description"]) > 255:
        errors.setdefault("description", []).append("is too long (maximum is 255 characters)")
    if len(var["environment_scope"]) > 255:
        errors.setdefault("environment_scope", []).append("is too long (maximum is 255 characters)")
    if not ENVIRONMENT_SCOPE_RE.fullmatch(var["environment_scope"]):
        errors.setdefault("environment_scope", []).append(ENVIRONMENT_SCOPE_MESSAGE)
    if creating and var["hidden"] and not var["masked"]:
        errors.setdefault("masked", []).append("should be true when variable is hidden")
    if not creating and hidden_before and var["masked"] != masked_before:
        errors.setdefault("base", []).append("Updating masked attribute is not allowed on updates for hidden variables.")
    if errors:
        raise validation_error(errors)


def _variable_fields(params: Params, var: dict[str, Any]) -> None:
    for flag in ("protected", "masked", "raw"):
        value = params.boolean(flag)
        if value is not None:
            var[flag] = value
    if "variable_type" in params:
        var["variable_type"] = params.choice("variable_type", ("env_var", "file"))
    if "environment_scope" in params:
        var["environment_scope"] = params.string("environment_scope") or "*"
    if "description" in params:
        var["description"] = params.string("description")
    if "value" in params:
        var["value"] = params.string("value", "")


async def _variables_route(ctx: "Sandbox", request: Request, inst: dict[str, Any], caller: Caller,
                           project: dict[str, Any], key: str | None) -> Response:
    _require_level(inst, caller, project, MAINTAINER)
    params = await _params(request)
    rows = _variables(inst, project)
    method = request.method
    if key is None:
        if method == "GET":
            page, headers = paginate(request, params, rows)
            return _json([variable_view(v) for v in page], headers=headers)
        if method != "POST":
            raise method_not_allowed("gitlab", method, "GET, POST")
        missing = [k for k in ("key", "value") if params.get(k) is None]
        if missing:
            raise _error(400, ", ".join(f"{k} is missing" for k in missing))
        hidden = bool(params.boolean("masked_and_hidden", False))
        var = {"variable_type": "env_var", "key": (params.string("key") or "").strip(), "value": "",
               "hidden": hidden, "protected": False, "masked": hidden, "raw": False, "environment_scope": "*",
               "description": None}
        _variable_fields(params, var)
        if hidden:
            var["masked"] = True
        _validate_variable(var, rows, creating=True,
                           limit=inst.get("limits", DEFAULT_LIMITS)["project_ci_variables"])
        rows.append(var)
        project["last_activity_at"] = _now_iso(ctx)
        return _json(variable_view(var), 201)
    var = _find_variable(inst, project, key, params)
    if method == "GET":
        return _json(variable_view(var))
    if method == "PUT":
        staged = dict(var)
        _variable_fields(params, staged)
        _validate_variable(staged, [v for v in rows if v is not var], creating=False, hidden_before=var["hidden"],
                           masked_before=var["masked"])
        var.update(staged)
        return _json(variable_view(var))
    if method == "DELETE":
        rows.remove(var)
        return Response(status_code=204, headers={"X-Request-Id": str(uuid.uuid4())})
    raise method_not_allowed("gitlab", method, "GET, PUT, DELETE")


# --- dispatch ---------------------------------------------------------------------------------------------------------

_INSTANCE_RE = re.compile(r"^/gitlab/([^/]+)/api/v4(/.*)?$")


def _segments(request: Request) -> tuple[str, list[str]] | None:
    """(instance name, percent-decoded API path segments) from the raw path, so ``a%2Fb`` stays one segment."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    raw_path = raw.decode("latin-1").split("?", 1)[0]
    while "//" in raw_path:
        raw_path = raw_path.replace("//", "/")
    match = _INSTANCE_RE.match(raw_path)
    if match is None:
        return None
    rest = (match.group(2) or "/").strip("/")
    return unquote(match.group(1)), [unquote(s) for s in rest.split("/")] if rest else []


async def handle(ctx: "Sandbox", request: Request, path: str) -> Response | None:
    """Serve ``/gitlab/<instance>/api/v4/...``; None for other paths (gitlab.py serves the issuer documents)."""
    found = _segments(request)
    if found is None:
        return None
    name, seg = found
    inst = instance(ctx, name)
    if inst is None:
        return None
    method = request.method
    write = method not in ("GET", "HEAD")
    if not seg:
        raise not_found("")
    if seg[0] == "groups" and len(seg) >= 2:
        if write:
            raise method_not_allowed("gitlab", method, "GET")
        caller = authenticate(ctx, inst, request, write=False)
        group = _visible_group(inst, caller, seg[1])
        if len(seg) == 2:
            return _json(group_view(ctx, name, inst, group))
        if seg[2:] == ["projects"]:
            params = await _params(request)
            ids = {group["id"]}
            if params.boolean("include_subgroups", False):
                ids |= _descendant_ids(inst, group["id"])
            members = [p for p in inst["projects"].values() if p["namespace_id"] in ids]
            return await _list_projects(ctx, request, name, inst, caller, members)
        if seg[2:] == ["subgroups"]:
            return await _list_groups(ctx, request, name, inst, caller,
                                      [g for g in inst["groups"].values() if g.get("parent_id") == group["id"]])
        if seg[2:] == ["descendant_groups"]:
            ids = _descendant_ids(inst, group["id"])
            return await _list_groups(ctx, request, name, inst, caller,
                                      [g for g in inst["groups"].values() if g["id"] in ids])
        return None
    if seg[0] == "groups" and len(seg) == 1:
        if write:
            raise method_not_allowed("gitlab", method, "GET")
        caller = authenticate(ctx, inst, request, write=False)
        return await _list_groups(ctx, request, name, inst, caller, list(inst["groups"].values()))
    if seg == ["personal_access_tokens", "self"]:
        if method not in ("GET", "HEAD"):
            raise method_not_allowed("gitlab", method, "GET")
        return _json(_token_self(ctx, inst, request))
    if seg[0] != "projects":
        return None
    if len(seg) == 1:
        if write:
            raise method_not_allowed("gitlab", method, "GET")
        caller = authenticate(ctx, inst, request, write=False)
        return await _list_projects(ctx, request, name, inst, caller, list(inst["projects"].values()))
    caller = authenticate(ctx, inst, request, write=write)
    project = _visible_project(inst, caller, seg[1])
    if len(seg) == 2:
        if method in ("GET", "HEAD"):
            return _json(project_view(ctx, name, inst, project, caller))
        if method == "PUT":
            return await _update_project(ctx, request, name, inst, caller, project)
        raise method_not_allowed("gitlab", method, "GET, PUT")
    if seg[2] in ("archive", "unarchive") and len(seg) == 3:
        if method != "POST":
            raise method_not_allowed("gitlab", method, "POST")
        _require_level(inst, caller, project, MAINTAINER)
        project["archived"] = seg[2] == "archive"
        return _json(project_view(ctx, name, inst, project, caller), 201)
    if seg[2] == "variables" and len(seg) in (3, 4):
        return await _variables_route(ctx, request, inst, caller, project, seg[3] if len(seg) == 4 else None)
    return None


def _token_self(ctx: "Sandbox", inst: dict[str, Any], request: Request) -> dict[str, Any]:
    """``GET /personal_access_tokens/self`` (doc/api/personal_access_tokens.md): the presented token itself, with
    any scope; 401 for a missing, unknown, revoked or expired token."""
    presented = _presented_token(request)
    record = inst["tokens"].get(token_digest(presented)) if presented else None
    if record is None:
        raise unauthorized()
    if record.get("revoked"):
        raise invalid_token("Token was revoked. You have to re-authorize from the user.")
    if record.get("expired"):
        raise invalid_token("Token is expired. You can either do re-authorization or token refresh.")
    digest = token_digest(presented)
    return {"id": int(digest[:6], 16), "name": record["name"], "revoked": False, "created_at": "2026-01-01T00:00:00.000Z",
            "description": None, "scopes": list(record["scopes"]), "user_id": 1, "last_used_at": _now_iso(ctx),
            "active": True, "expires_at": None}


# --- control API: /_sandbox/gitlab/... --------------------------------------------------------------------------------

def _instance_for(ctx: "Sandbox", body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = body.get("instance") or ctx.config.gitlab_issuers[0]
    inst = instance(ctx, name) if isinstance(name, str) else None
    if inst is None:
        raise ValueError(f"unknown GitLab instance '{name}' (an issuer name such as 'gitlab.com')")
    return name, inst


def _check_keys(body: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"unknown {what} keys: {', '.join(sorted(unknown))}")


def _visibility(body: dict[str, Any]) -> str:
    value = body.get("visibility", "private")
    if value not in VISIBILITIES:
        raise ValueError(f"visibility must be one of {', '.join(VISIBILITIES)}")
    return value


def _new_id(inst: dict[str, Any], kind: str, wanted: Any, table: dict[int, Any]) -> int:
    if wanted is None:
        while inst["next_id"][kind] in table:
            inst["next_id"][kind] += 1
        value = inst["next_id"][kind]
        inst["next_id"][kind] += 1
        return value
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1:
        raise ValueError("id must be a positive integer")
    if wanted in table:
        raise ValueError(f"{kind} id {wanted} is already used")
    return wanted


def add_group(ctx: "Sandbox", inst: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Create a group by full path (missing parents are created); ``ValueError`` on bad input."""
    _check_keys(spec, {"instance", "path", "name", "id", "visibility", "description"}, "group")
    full_path = spec.get("path")
    if not isinstance(full_path, str) or not full_path.strip("/"):
        raise ValueError("path must be the group's full path, for example 'demo' or 'demo/platform'")
    parts = full_path.strip("/").split("/")
    if not all(PATH_RE.match(p) for p in parts):
        raise ValueError("path segments may contain only letters, digits, '_', '-' and '.'")
    if group_by_path(inst, "/".join(parts)) is not None:
        raise ValueError(f"group '{'/'.join(parts)}' already exists")
    if project_by_path(inst, "/".join(parts)) is not None:
        raise ValueError(f"'{'/'.join(parts)}' is a project")
    visibility = _visibility(spec)
    parent = None
    for depth in range(1, len(parts)):
        prefix = "/".join(parts[:depth])
        existing = group_by_path(inst, prefix)
        if existing is None:
            existing = add_group(ctx, inst, {"path": prefix, "visibility": visibility})
        parent = existing
    group_id = _new_id(inst, "group", spec.get("id"), inst["groups"])
    name = spec.get("name") or parts[-1]
    if not isinstance(name, str):
        raise ValueError("name must be a string")
    group = {"id": group_id, "name": name, "path": parts[-1], "full_path": "/".join(
        [parent["full_path"], parts[-1]] if parent else [parts[-1]]), "parent_id": parent["id"] if parent else None,
        "visibility": visibility, "description": spec.get("description") or "", "created_at": _now_iso(ctx)}
    inst["groups"][group_id] = group
    return group


def add_project(ctx: "Sandbox", inst: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Create a project by full path (missing groups are created); ``ValueError`` on bad input."""
    _check_keys(spec, {"instance", "path", "name", "id", "visibility", "description", "default_branch", "topics",
                       "archived", "ci_id_token_sub_claim_components", "star_count"}, "project")
    full_path = spec.get("path")
    if not isinstance(full_path, str) or "/" not in full_path.strip("/"):
        raise ValueError("path must be the project's full path, for example 'demo/web-app'")
    namespace, _, path = full_path.strip("/").rpartition("/")
    if not PATH_RE.match(path):
        raise ValueError("the project path may contain only letters, digits, '_', '-' and '.'")
    if project_by_path(inst, full_path.strip("/")) is not None or group_by_path(inst, full_path.strip("/")):
        raise ValueError(f"'{full_path.strip('/')}' already exists")
    group = group_by_path(inst, namespace) or add_group(ctx, inst, {"path": namespace})
    topics = spec.get("topics", [])
    if not isinstance(topics, list) or not all(isinstance(t, str) and t for t in topics):
        raise ValueError("topics must be a list of strings")
    archived = spec.get("archived", False)
    if not isinstance(archived, bool):
        raise ValueError("archived must be true or false")
    components = spec.get("ci_id_token_sub_claim_components")
    if components is not None:
        components = ctx.gitlab.validate_sub_components(components if isinstance(components, list) else None)
    branch = spec.get("default_branch", "main")
    if branch is not None and not isinstance(branch, str):
        raise ValueError("default_branch must be a string or null (an empty repository)")
    stars = spec.get("star_count", 0)
    if isinstance(stars, bool) or not isinstance(stars, int) or stars < 0:
        raise ValueError("star_count must be a non-negative integer")
    project_id = _new_id(inst, "project", spec.get("id"), inst["projects"])
    now = _now_iso(ctx)
    project = {"id": project_id, "name": spec.get("name") or path, "path": path, "namespace_id": group["id"],
               "description": spec.get("description"), "default_branch": branch, "topics": list(topics),
               "archived": archived, "visibility": _visibility(spec), "created_at": now, "updated_at": now,
               "last_activity_at": now, "ci_id_token_sub_claim_components": components, "star_count": stars}
    inst["projects"][project_id] = project
    return project


def add_token(ctx: "Sandbox", inst: dict[str, Any], spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Register a personal access token; returns (token, record). ``ValueError`` on bad input."""
    _check_keys(spec, {"instance", "token", "name", "scopes", "namespaces", "access_level", "expired", "revoked"},
                "token")
    token = spec.get("token") or "glpat-" + secrets.token_urlsafe(15)
    if not isinstance(token, str) or len(token) < 8 or any(c.isspace() for c in token):
        raise ValueError("token must be a string of at least 8 characters without spaces")
    scopes = spec.get("scopes", ["api"])
    if not isinstance(scopes, list) or not scopes or not all(s in TOKEN_SCOPES for s in scopes):
        raise ValueError(f"scopes must be a non-empty list of {', '.join(TOKEN_SCOPES)}")
    namespaces = spec.get("namespaces", [])
    if not isinstance(namespaces, list) or not all(isinstance(n, str) and n.strip("/") for n in namespaces):
        raise ValueError("namespaces must be a list of group or project full paths ('*' for all)")
    level = spec.get("access_level", MAINTAINER)
    if level not in ACCESS_LEVELS or isinstance(level, bool):
        raise ValueError("access_level must be 10 (guest), 20 (reporter), 30 (developer), 40 (maintainer) or "
                         "50 (owner)")
    flags = {}
    for flag in ("expired", "revoked"):
        flags[flag] = spec.get(flag, False)
        if not isinstance(flags[flag], bool):
            raise ValueError(f"{flag} must be true or false")
    record = {"name": spec.get("name") or "sandbox-token", "scopes": list(scopes),
              "namespaces": [n.strip("/") for n in namespaces], "access_level": level, **flags,
              "prefix": token[:10]}
    inst["tokens"][token_digest(token)] = record
    return token, record


def instance_view(ctx: "Sandbox", name: str, inst: dict[str, Any]) -> dict[str, Any]:
    caller = Caller({"scopes": ["api"], "namespaces": ["*"], "access_level": OWNER})
    return {"instance": name, "api_url": f"{_web_base(ctx, name)}{API_PREFIX}",
            "limits": dict(inst.get("limits", DEFAULT_LIMITS)),
            "groups": [group_view(ctx, name, inst, g) for g in inst["groups"].values()],
            "projects": [project_view(ctx, name, inst, p, caller) for p in inst["projects"].values()],
            "tokens": [dict(t) for t in inst["tokens"].values()],
            "variables": {str(pid): [variable_view(v) for v in rows] for pid, rows in inst["variables"].items()}}


async def control(ctx: "Sandbox", request: Request, path: str) -> Response | None:
    """``/_sandbox/gitlab/groups|projects|tokens|seed`` (POST), ``/_sandbox/gitlab/projects/{id}`` (PATCH: move,
    rename, archive, change settings), ``/_sandbox/gitlab/instances/{name}`` (GET)."""
    parts = [p for p in path.split("/") if p][2:]
    if not parts:
        return None
    try:
        if parts[0] == "instances" and len(parts) == 2:
            if request.method not in ("GET", "PATCH"):
                raise method_not_allowed("control", request.method, "GET, PATCH")
            inst = instance(ctx, parts[1])
            if inst is None:
                raise control_error(404, f"No GitLab instance {parts[1]}.")
            if request.method == "PATCH":
                change_instance(inst, await _control_body(request))
            return JSONResponse(instance_view(ctx, parts[1], inst))
        if parts[0] == "projects" and len(parts) == 2:
            if request.method != "PATCH":
                raise method_not_allowed("control", request.method, "PATCH")
            body = await _control_body(request)
            name, inst = _instance_for(ctx, body)
            project = find_project(inst, parts[1])
            if project is None:
                raise control_error(404, f"No project {parts[1]} on {name}.")
            change_project(ctx, inst, project, body)
            caller = Caller({"scopes": ["api"], "namespaces": ["*"], "access_level": OWNER})
            return JSONResponse(project_view(ctx, name, inst, project, caller))
        if len(parts) != 1 or parts[0] not in ("groups", "projects", "tokens", "seed"):
            return None
        if request.method != "POST":
            raise method_not_allowed("control", request.method, "POST")
        body = await _control_body(request)
        name, inst = _instance_for(ctx, body)
        if parts[0] == "seed":
            return JSONResponse(seed_many(ctx, name, inst, body), status_code=201)
        return JSONResponse(_create(ctx, name, inst, parts[0], body), status_code=201)
    except ValueError as exc:
        raise control_error(400, str(exc)) from None


async def _control_body(request: Request) -> dict[str, Any]:
    data = await read_json(request, "control")
    if not isinstance(data, dict):
        raise control_error(400, "The body must be a JSON object.")
    return data


def _create(ctx: "Sandbox", name: str, inst: dict[str, Any], kind: str, body: dict[str, Any]) -> dict[str, Any]:
    caller = Caller({"scopes": ["api"], "namespaces": ["*"], "access_level": OWNER})
    if kind == "groups":
        return group_view(ctx, name, inst, add_group(ctx, inst, body))
    if kind == "projects":
        return project_view(ctx, name, inst, add_project(ctx, inst, body), caller)
    token, record = add_token(ctx, inst, body)
    return {"token": token, **record}


def seed_many(ctx: "Sandbox", name: str, inst: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """``{"groups": [...], "projects": [...], "tokens": [...]}`` in that order; all or nothing."""
    _check_keys(body, {"instance", "groups", "projects", "tokens"}, "seed")
    snapshot = json.loads(json.dumps({k: {str(i): v for i, v in inst[k].items()} for k in ("groups", "projects")}))
    tokens_before = dict(inst["tokens"])
    next_before = dict(inst["next_id"])
    out: dict[str, list[Any]] = {"groups": [], "projects": [], "tokens": []}
    try:
        for kind in ("groups", "projects", "tokens"):
            items = body.get(kind, [])
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ValueError(f"{kind} must be a list of objects")
            for item in items:
                out[kind].append(_create(ctx, name, inst, kind, item))
    except ValueError:
        for kind in ("groups", "projects"):
            inst[kind] = {int(i): v for i, v in snapshot[kind].items()}
        inst["tokens"] = tokens_before
        inst["next_id"] = next_before
        raise
    return out


def change_instance(inst: dict[str, Any], body: dict[str, Any]) -> None:
    """Control-API changes to an instance: ``limits`` (plan limits, ``{"project_ci_variables": n}``; 0 = no limit)."""
    _check_keys(body, {"limits"}, "instance change")
    limits = body.get("limits", {})
    if not isinstance(limits, dict):
        raise ValueError("limits must be an object such as {\"project_ci_variables\": 200}")
    _check_keys(limits, set(DEFAULT_LIMITS), "limits")
    for key, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"limits.{key} must be a non-negative integer (0 = no limit)")
    inst.setdefault("limits", dict(DEFAULT_LIMITS)).update(limits)


def change_project(ctx: "Sandbox", inst: dict[str, Any], project: dict[str, Any], body: dict[str, Any]) -> None:
    """Control-API changes to a project: ``path`` (a new full path: rename and/or transfer), ``name``, ``archived``,
    ``topics``, ``default_branch``, ``visibility``, ``ci_id_token_sub_claim_components`` (null = GitLab's default)."""
    _check_keys(body, {"instance", "path", "name", "archived", "topics", "default_branch", "visibility",
                       "ci_id_token_sub_claim_components"}, "project change")
    staged = dict(project)
    if "path" in body:
        full_path = body["path"]
        if not isinstance(full_path, str) or "/" not in full_path.strip("/"):
            raise ValueError("path must be the project's new full path")
        namespace, _, path = full_path.strip("/").rpartition("/")
        if not PATH_RE.match(path):
            raise ValueError("the project path may contain only letters, digits, '_', '-' and '.'")
        other = project_by_path(inst, full_path.strip("/"))
        if other is not None and other["id"] != project["id"]:
            raise ValueError(f"'{full_path.strip('/')}' is taken by project {other['id']}")
        group = group_by_path(inst, namespace) or add_group(ctx, inst, {"path": namespace})
        staged.update(path=path, namespace_id=group["id"])
    if "name" in body:
        if not isinstance(body["name"], str) or not body["name"].strip():
            raise ValueError("name must be a non-empty string")
        staged["name"] = body["name"]
    if "archived" in body:
        if not isinstance(body["archived"], bool):
            raise ValueError("archived must be true or false")
        staged["archived"] = body["archived"]
    if "topics" in body:
        if not isinstance(body["topics"], list) or not all(isinstance(t, str) and t for t in body["topics"]):
            raise ValueError("topics must be a list of strings")
        staged["topics"] = list(body["topics"])
    if "default_branch" in body:
        if body["default_branch"] is not None and not isinstance(body["default_branch"], str):
            raise ValueError("default_branch must be a string or null")
        staged["default_branch"] = body["default_branch"]
    if "visibility" in body:
        staged["visibility"] = _visibility(body)
    if "ci_id_token_sub_claim_components" in body:
        value = body["ci_id_token_sub_claim_components"]
        staged["ci_id_token_sub_claim_components"] = None if value is None else ctx.gitlab.validate_sub_components(
            value if isinstance(value, list) else None)
    staged["updated_at"] = _now_iso(ctx)
    project.update(staged)


def state_view(ctx: "Sandbox") -> dict[str, Any]:
    """For ``GET /_sandbox/state``: groups and projects per instance (tokens without secrets, no variable values)."""
    return {name: {"groups": [public(g) for g in inst["groups"].values()],
                   "projects": [public(p) for p in inst["projects"].values()],
                   "tokens": [dict(t) for t in inst["tokens"].values()],
                   "variables": {str(pid): [{k: v for k, v in var.items() if k != "value"} for var in rows]
                                 for pid, rows in inst["variables"].items()}}
            for name, inst in ctx.state.gitlab.items()}
