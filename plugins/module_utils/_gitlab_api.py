# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""The GitLab REST API, through python-gitlab: connection settings, projects of groups, one project, CI/CD variables.

Shared by the ``gitlab_projects`` inventory plugin and the onboarding engine. python-gitlab is imported lazily (the
first time a client is used); a missing library raises ``MissingLibraryError``.

* Settings: ``resolve_settings(url, token, validate_certs, ca_bundle, timeout)`` with environment fallbacks (token
  ``GITLAB_TOKEN`` then ``GITLAB_PRIVATE_TOKEN``; URL ``GITLAB_URL`` then ``CI_SERVER_URL``, default
  ``https://gitlab.com``; ``GITLAB_CA_BUNDLE``). The token is registered with ``_errors.register_secret`` and never
  appears in a message, a ``repr`` or a result.
* Errors: every failed call raises ``GitLabApiError`` (``_errors.py``, a subclass of ``AzureApiError``) naming what
  was asked (``operation``, ``target``), GitLab's status and text, and a hint with the fix (bad token, missing
  scope, not found or not visible, rate limited, a value GitLab refuses). Bad input raises ``ValidationError`` before
  any request.
* Retries: python-gitlab's own retries are switched off; ``_retry.run_with_retry_sync`` retries 429 (honouring
  ``Retry-After``) and, for idempotent calls, 5xx and connection errors, page by page for lists.
* Threads: every function is synchronous and thread-safe: ``GitLabClient`` keeps one python-gitlab session per thread,
  so an async caller runs calls with ``asyncio.to_thread`` under its own concurrency limit.
* CI/CD variables: ``plan_variables`` / ``diff_variables`` (pure) compute what a desired set changes, and
  ``apply_variable_plan`` writes it. Only variables this collection set (their description carries
  ``MANAGED_MARKER``) are ever updated or deleted; plans and results never contain a variable's value.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
import threading
import traceback
from typing import Any, Iterable, Mapping, Optional, Sequence, Union
from urllib.parse import urlsplit

from ansible.module_utils.basic import env_fallback

from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import (
    GitLabApiError,
    MissingLibraryError,
    ValidationError,
    exception_chain,
    parse_retry_after,
    redact,
    register_secret,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._gitlab import (
    DEFAULT_SUB_CLAIM_COMPONENTS,
    MANAGED_MARKER,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._retry import RetryPolicy, run_with_retry_sync

DEFAULT_URL = 'https://gitlab.com'
DEFAULT_TIMEOUT = 30.0
PER_PAGE = 100
USER_AGENT = 'oidc_federation.azure'
# Environment variables, first found wins. GITLAB_TOKEN: glab, the Terraform GitLab provider; GITLAB_PRIVATE_TOKEN
# and GITLAB_URL: python-gitlab's CLI; CI_SERVER_URL: set by GitLab in every CI/CD job (the instance running it).
ENV_TOKEN = ('GITLAB_TOKEN', 'GITLAB_PRIVATE_TOKEN')
ENV_URL = ('GITLAB_URL', 'CI_SERVER_URL')
ENV_CA_BUNDLE = ('GITLAB_CA_BUNDLE',)

# Options for a module that talks to GitLab (prefixed: the Azure options already have ca_bundle...).
GITLAB_ARGSPEC = {
    'gitlab_url': dict(type='str', fallback=(env_fallback, list(ENV_URL))),
    'gitlab_token': dict(type='str', no_log=True, fallback=(env_fallback, list(ENV_TOKEN))),
    'gitlab_validate_certs': dict(type='bool', default=True),
    'gitlab_ca_bundle': dict(type='path', fallback=(env_fallback, list(ENV_CA_BUNDLE))),
    'gitlab_timeout': dict(type='float', default=DEFAULT_TIMEOUT),
}

# CI/CD variables (app/models/concerns/ci/has_variable.rb, maskable.rb; doc/api/project_level_variables.md).
VARIABLE_KEY_RE = re.compile(r'^[A-Za-z0-9_]{1,255}$')
MASKABLE_RE = re.compile(r'^[a-zA-Z0-9_+=/@:.~-]{8,}$')        # masked, expanded (raw=false)
MASKABLE_RAW_RE = re.compile(r'^\S{8,}$')                       # masked and raw
# Gitlab::Regex.environment_scope_regex: the characters of environment names, plus '*'
ENVIRONMENT_SCOPE_RE = re.compile(r'^[a-zA-Z0-9_/${}. *-]+\Z')
VARIABLE_TYPES = ('env_var', 'file')
DESCRIPTION_MAX = 255
VARIABLE_MARKER = '[{0}]'.format(MANAGED_MARKER)
_VARIABLE_FIELDS = ('value', 'protected', 'masked', 'raw', 'description', 'variable_type')

_local_lock = threading.Lock()


# --- settings -------------------------------------------------------------------------------------------------------

class GitLabSettings:
    """Where and how to reach GitLab. ``token`` never appears in ``repr``."""

    __slots__ = ('url', 'token', 'validate_certs', 'ca_bundle', 'timeout', 'per_page')

    def __init__(self, url: str, token: Optional[str], *, validate_certs: bool = True, ca_bundle: Optional[str] = None,
                 timeout: float = DEFAULT_TIMEOUT, per_page: int = PER_PAGE) -> None:
        self.url = url
        self.token = token
        self.validate_certs = validate_certs
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self.per_page = per_page

    @property
    def ssl_verify(self) -> Union[bool, str]:
        """What requests' ``verify`` gets: False, the CA bundle path, or True (requests' defaults, which honour
        ``REQUESTS_CA_BUNDLE``)."""
        if not self.validate_certs:
            return False
        return self.ca_bundle or True

    def __repr__(self) -> str:
        return 'GitLabSettings(url={0!r}, token={1}, validate_certs={2!r}, ca_bundle={3!r}, timeout={4!r})'.format(
            self.url, '<set>' if self.token else None, self.validate_certs, self.ca_bundle, self.timeout)


def _first_env(names: Iterable[str], env: Mapping[str, str]) -> Optional[str]:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def normalize_url(url: Any, field: str = 'url') -> str:
    """``https://host[/prefix]`` without a trailing slash or ``/api/v4``; ``ValidationError`` for anything else."""
    if not isinstance(url, str) or not url.strip():
        raise ValidationError('{0} must be the URL of the GitLab instance, for example {1}'.format(field, DEFAULT_URL))
    value = url.strip().rstrip('/')
    if value.endswith('/api/v4'):
        value = value[:-len('/api/v4')].rstrip('/')
    parts = urlsplit(value)
    if parts.scheme not in ('https', 'http') or not parts.netloc or parts.query or parts.fragment:
        raise ValidationError("{0} '{1}' is not an http(s) URL of a GitLab instance: give it as https://gitlab.example.com "
                              '(a path prefix is allowed, no query)'.format(field, redact(url)))
    return value


def resolve_settings(url: Optional[str] = None, token: Optional[str] = None, *, validate_certs: bool = True,
                     ca_bundle: Optional[str] = None, timeout: Optional[float] = None, per_page: int = PER_PAGE,
                     require_token: bool = True, env: Optional[Mapping[str, str]] = None,
                     field_prefix: str = '') -> GitLabSettings:
    """Settings from explicit values, then the environment (``ENV_URL``, ``ENV_TOKEN``, ``ENV_CA_BUNDLE``).

    ``field_prefix`` (``gitlab_`` for modules) names the options in error messages. Raises ``ValidationError``.
    """
    env = os.environ if env is None else env
    url = normalize_url(url or _first_env(ENV_URL, env) or DEFAULT_URL, field_prefix + 'url')
    token = token or _first_env(ENV_TOKEN, env)
    if isinstance(token, str):
        token = token.strip() or None
    if token is None and require_token:
        raise ValidationError('no GitLab token: set {0}token (or the environment variable {1}) to an access token of {2} '
                              'with the api scope (read_api to read only)'.format(field_prefix, ' or '.join(ENV_TOKEN), url))
    if token is not None:
        if not isinstance(token, str) or any(c.isspace() for c in token):
            raise ValidationError('{0}token must be one GitLab access token without spaces or line breaks'.format(field_prefix))
        register_secret(token)
    ca_bundle = ca_bundle or _first_env(ENV_CA_BUNDLE, env)
    if ca_bundle is not None and not os.path.isfile(ca_bundle):
        raise ValidationError('{0}ca_bundle {1} is not a file: give the path of a PEM file with the CA certificates to '
                              'trust'.format(field_prefix, ca_bundle))
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        timeout = -1.0
    if not 0 < timeout <= 3600:
        raise ValidationError('{0}timeout must be a number of seconds between 0 and 3600'.format(field_prefix))
    if not isinstance(per_page, int) or not 1 <= per_page <= 100:
        raise ValidationError('per_page must be between 1 and 100 (GitLab allows at most 100)')
    return GitLabSettings(url, token, validate_certs=bool(validate_certs), ca_bundle=ca_bundle, timeout=timeout,
                          per_page=per_page)


def settings_from_params(params: Mapping[str, Any], *, require_token: bool = True) -> GitLabSettings:
    """Settings from a module's ``GITLAB_ARGSPEC`` options (env fallbacks already applied by Ansible)."""
    return resolve_settings(params.get('gitlab_url'), params.get('gitlab_token'),
                            validate_certs=params.get('gitlab_validate_certs', True),
                            ca_bundle=params.get('gitlab_ca_bundle'), timeout=params.get('gitlab_timeout'),
                            require_token=require_token, field_prefix='gitlab_')


# --- errors -----------------------------------------------------------------------------------------------------------

_TLS_NAMES = frozenset(('SSLError', 'SSLCertVerificationError', 'CertificateError'))
_CONNECTION_NAMES = frozenset(('ConnectionError', 'ConnectTimeout', 'ReadTimeout', 'Timeout', 'ChunkedEncodingError',
                               'ProtocolError', 'NewConnectionError', 'MaxRetryError', 'RemoteDisconnected',
                               'gaierror', 'TimeoutError', 'ConnectionResetError', 'ConnectionRefusedError'))
_WHAT = {'project': 'project', 'group': 'group', 'variable': 'CI/CD variable', 'token': 'access token'}


def _body_json(body: Any) -> Any:
    if isinstance(body, (bytes, bytearray)):
        body = body.decode('utf-8', 'replace')
    if isinstance(body, str):
        try:
            return json.loads(body)
        except ValueError:
            return None
    return body if isinstance(body, (dict, list)) else None


def validation_text(message: Any) -> str:
    """GitLab's ``{"message": {"value": ["is invalid"]}}`` (or a string) as one line: ``value is invalid``."""
    if isinstance(message, dict):
        parts = []
        for field, problems in message.items():
            problems = problems if isinstance(problems, list) else [problems]
            for problem in problems:
                parts.append(str(problem) if field == 'base' else '{0} {1}'.format(field, problem))
        return '; '.join(parts)
    if isinstance(message, list):
        return '; '.join(str(m) for m in message)
    return '' if message is None else str(message)


class _Failure:
    """What the classifier needs of one failed call."""

    def __init__(self, operation: str, target: Optional[str], kind: str, url: str, scope_needed: str) -> None:
        self.operation = operation
        self.target = target
        self.kind = kind
        self.url = url
        self.scope_needed = scope_needed


def classify_exception(exc: BaseException, failure: _Failure,
                       headers: Optional[Mapping[str, str]] = None) -> Optional[GitLabApiError]:
    """A python-gitlab / requests exception as ``GitLabApiError`` with a hint, or None when it is neither."""
    if isinstance(exc, GitLabApiError):
        return exc
    status = getattr(exc, 'response_code', None)
    if status is not None or type(exc).__name__.startswith('Gitlab'):
        return _http_error(exc, status, failure, headers)
    names = set()
    for item in exception_chain(exc):
        names |= {c.__name__ for c in type(item).__mro__}
    text = ' | '.join(str(item) for item in exception_chain(exc) if str(item))
    if names & _TLS_NAMES or 'CERTIFICATE_VERIFY_FAILED' in text:
        return GitLabApiError(_short(text), operation=failure.operation, target=failure.target, kind='tls',
                              hint='the certificate of {0} is not trusted: set ca_bundle (GITLAB_CA_BUNDLE or '
                                   'REQUESTS_CA_BUNDLE) to the CA file, or validate_certs to false'.format(failure.url))
    if names & _CONNECTION_NAMES:
        return GitLabApiError(_short(text), operation=failure.operation, target=failure.target, kind='connection',
                              hint='check url ({0}) and the network path to it'.format(failure.url))
    return None


def _short(text: str, limit: int = 400) -> str:
    text = redact(text)
    return text if len(text) <= limit else text[:limit] + '...'


def _http_error(exc: BaseException, status: Optional[int], failure: _Failure,
                headers: Optional[Mapping[str, str]]) -> GitLabApiError:
    body = _body_json(getattr(exc, 'response_body', None))
    message = getattr(exc, 'error_message', None)
    code = None
    scope = None
    if isinstance(body, dict):
        if isinstance(body.get('error'), str):
            code = body['error']
            message = body.get('error_description') or body['error']
            scope = body.get('scope')
        elif 'message' in body:
            message = body['message']
    text = validation_text(message) or (str(exc) if str(exc) else 'HTTP {0}'.format(status))
    what = _WHAT.get(failure.kind, failure.kind)
    hint = None
    if status == 401:
        code = code or 'unauthorized'
        hint = ('the GitLab token is missing, wrong, expired or revoked: set token (GITLAB_TOKEN or GITLAB_PRIVATE_TOKEN) '
                'to a valid access token of {0}'.format(failure.url))
    elif status == 403 and code == 'insufficient_scope':
        needed = scope if isinstance(scope, str) and scope else failure.scope_needed
        hint = ("the token lacks the scope this needs ({0}): create a personal, group or project access token with the "
                'api scope (read_api is enough for reading)'.format(needed))
    elif status == 403:
        code = code or 'forbidden'
        hint = ("the token's user lacks the role this needs: reading or writing CI/CD variables and reading a project's "
                'ID token settings need the Maintainer role on the project')
    elif status == 404:
        code = code or 'not_found'
        if failure.kind == 'variable':
            hint = 'no such CI/CD variable with this key and environment scope'
        else:
            hint = ('{0} {1} does not exist on {2}, or the token cannot see it: check the path or id (full path, for '
                    'example mygroup/subgroup/name) and that the token\'s user is a member'.format(
                        what, failure.target, failure.url))
    elif status == 429:
        code = code or 'rate_limited'
        hint = 'GitLab rate limit reached: lower the concurrency (forks) or raise the rate limits of the instance'
    elif status == 400:
        code = code or 'invalid'
        hint = 'GitLab refused the request: {0}'.format(text)
    elif status == 409:
        code = code or 'conflict'
    elif status == 405 and 'keyset' in text.lower():
        code = 'keyset_unavailable'
    return GitLabApiError(text, operation=failure.operation, target=failure.target, status=status, code=code,
                          retry_after=parse_retry_after(headers) if headers else None, hint=hint,
                          request_id=(headers or {}).get('x-request-id'))


# --- client -----------------------------------------------------------------------------------------------------------

def load_gitlab() -> Any:
    """``import gitlab`` or ``MissingLibraryError('python-gitlab')``."""
    try:
        return importlib.import_module('gitlab')
    except ImportError:
        raise MissingLibraryError('python-gitlab', traceback.format_exc(),
                                  url='https://python-gitlab.readthedocs.io/') from None


class GitLabClient:
    """python-gitlab sessions (one per thread) plus the retry policy; safe to share between threads.

    ``gl`` is this thread's ``gitlab.Gitlab``. ``call(operation, target, kind, fn, ...)`` runs a python-gitlab call
    with retries and error mapping. ``retry_policy`` defaults to a ``RetryPolicy()``.
    """

    def __init__(self, settings: GitLabSettings, retry_policy: Optional[RetryPolicy] = None) -> None:
        self.settings = settings
        self.retry_policy = retry_policy or RetryPolicy()
        self._local = threading.local()
        self._gitlab = None

    def __repr__(self) -> str:
        return 'GitLabClient({0!r})'.format(self.settings)

    @property
    def gl(self) -> Any:
        gl = getattr(self._local, 'gl', None)
        if gl is None:
            with _local_lock:
                if self._gitlab is None:
                    self._gitlab = load_gitlab()
            module = self._gitlab
            requests = importlib.import_module('requests')
            session = requests.Session()
            session.hooks['response'].append(self._remember)
            gl = module.Gitlab(self.settings.url, private_token=self.settings.token, ssl_verify=self.settings.ssl_verify,
                               timeout=self.settings.timeout, per_page=self.settings.per_page, user_agent=USER_AGENT,
                               retry_transient_errors=False, session=session, keep_base_url=True)
            self._local.gl = gl
        return gl

    def _remember(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self._local.headers = {str(k).lower(): str(v) for k, v in response.headers.items()}
        return response

    def close(self) -> None:
        """Close this thread's session (others close when their thread ends)."""
        gl = getattr(self._local, 'gl', None)
        if gl is not None:
            gl.session.close()
            self._local.gl = None

    def call(self, operation: str, target: Optional[str], kind: str, fn: Any, *args: Any, idempotent: bool = True,
             scope_needed: str = 'read_api', **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` with ``obey_rate_limit=False`` (retries are ours), retried and mapped to errors."""
        failure = _Failure(operation, target, kind, self.settings.url, scope_needed)

        def attempt() -> Any:
            self._local.headers = None
            return fn(*args, obey_rate_limit=False, **kwargs)

        def classify(exc: BaseException) -> Optional[GitLabApiError]:
            return classify_exception(exc, failure, getattr(self._local, 'headers', None))

        return run_with_retry_sync(self.retry_policy, operation, attempt, target=target, service='gitlab',
                                   idempotent=idempotent, classify_error=classify)

    def iterate(self, operation: str, target: Optional[str], kind: str, list_fn: Any, **kwargs: Any) -> Iterable[Any]:
        """Yield every item of a paginated python-gitlab ``list`` (``iterator=True``), retrying page by page."""
        pages = self.call(operation, target, kind, list_fn, iterator=True, **kwargs)
        while True:
            item = self.call(operation, target, kind, _next_item, pages)
            if item is _END:
                return
            yield item


_END = object()


def _next_item(pages: Any, obey_rate_limit: bool = False) -> Any:
    # GitlabList keeps its position when fetching the next page fails, so calling next() again retries that page.
    # python-gitlab takes obey_rate_limit from the list call's kwargs; the argument is accepted and ignored here.
    del obey_rate_limit
    try:
        return pages.next()
    except StopIteration:
        return _END


def _project_ref(project: Any, field: str = 'project') -> Union[int, str]:
    """A project or group id (int or digit string) or full path; ``ValidationError`` otherwise."""
    if isinstance(project, bool):
        raise ValidationError('{0} must be a numeric id or a full path such as mygroup/myproject'.format(field))
    if isinstance(project, int):
        if project <= 0:
            raise ValidationError('{0} id must be a positive number'.format(field))
        return project
    if isinstance(project, str):
        value = project.strip().strip('/')
        if value.isdigit():
            return int(value)
        if value and not any(c.isspace() for c in value) and '//' not in value:
            return value
    raise ValidationError("{0} '{1}' must be a numeric id or a full path such as mygroup/myproject".format(field, project))


# --- groups and projects ----------------------------------------------------------------------------------------------

def project_info(attrs: Mapping[str, Any]) -> dict:
    """The project fields the collection uses, from a GitLab project JSON object.

    ``ci_id_token_sub_claim_components`` is GitLab's default (``project_path, ref_type, ref``) when the answer does not
    carry the field (GitLab before 17.10, or a token whose user is not Maintainer of the project);
    ``ci_id_token_sub_claim_components_known`` says whether GitLab reported it.
    """
    namespace = attrs.get('namespace') if isinstance(attrs.get('namespace'), dict) else {}
    components = attrs.get('ci_id_token_sub_claim_components')
    known = isinstance(components, list) and bool(components)
    topics = attrs.get('topics')
    if not isinstance(topics, list):
        topics = attrs.get('tag_list') if isinstance(attrs.get('tag_list'), list) else []
    return {
        'id': attrs.get('id'),
        'path_with_namespace': attrs.get('path_with_namespace'),
        'path': attrs.get('path'),
        'name': attrs.get('name'),
        'namespace_full_path': namespace.get('full_path') or (attrs.get('path_with_namespace') or '').rpartition('/')[0],
        'default_branch': attrs.get('default_branch'),
        'topics': [str(t) for t in topics],
        'archived': bool(attrs.get('archived', False)),
        'visibility': attrs.get('visibility'),
        'web_url': attrs.get('web_url'),
        'ci_id_token_sub_claim_components': [str(c) for c in components] if known else list(DEFAULT_SUB_CLAIM_COMPONENTS),
        'ci_id_token_sub_claim_components_known': known,
        'access_level': access_level(attrs),
    }


def access_level(attrs: Mapping[str, Any]) -> Optional[int]:
    """The token user's role on the project from ``permissions`` (the higher of project and group access), None when
    GitLab did not say (doc/api/projects.md: 10 guest, 20 reporter, 30 developer, 40 maintainer, 50 owner)."""
    permissions = attrs.get('permissions')
    if not isinstance(permissions, Mapping):
        return None
    levels = [entry.get('access_level') for entry in (permissions.get('project_access'), permissions.get('group_access'))
              if isinstance(entry, Mapping) and isinstance(entry.get('access_level'), int)]
    return max(levels) if levels else 0


def token_info(client: 'GitLabClient') -> dict:
    """The presented access token: ``{'name', 'scopes', 'active', 'expires_at'}`` (``GET /personal_access_tokens/self``,
    which answers for personal, group and project access tokens). ``GitLabApiError`` 401 for a bad token."""
    obj = client.call('get access token', 'self', 'token', client.gl.personal_access_tokens.get, 'self')
    attrs = obj.attributes
    return {'name': attrs.get('name'), 'scopes': [str(s) for s in attrs.get('scopes') or []],
            'active': bool(attrs.get('active', True)), 'expires_at': attrs.get('expires_at')}


def get_group(client: GitLabClient, group: Any) -> dict:
    """``{'id', 'full_path', 'name', 'parent_id', 'web_url', 'visibility'}`` of a group (id or full path)."""
    ref = _project_ref(group, 'group')
    obj = client.call('get group', str(ref), 'group', client.gl.groups.get, ref, with_projects=False)
    attrs = obj.attributes
    return {k: attrs.get(k) for k in ('id', 'full_path', 'name', 'parent_id', 'web_url', 'visibility')}


def get_project(client: GitLabClient, project: Any) -> dict:
    """One project by id or full path (``project_info`` shape). ``GitLabApiError`` 404 when missing or invisible."""
    ref = _project_ref(project)
    obj = client.call('get project', str(ref), 'project', client.gl.projects.get, ref)
    return project_info(obj.attributes)


def _check_patterns(values: Any, field: str) -> list:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) and v for v in values):
        raise ValidationError('{0} must be a list of non-empty strings'.format(field))
    return list(values)


def compile_path_regex(value: Optional[str], field: str = 'path_regex') -> Any:
    """``re.compile(value)`` or a ``ValidationError`` naming the field."""
    if value is None or value == '':
        return None
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValidationError('{0} is not a valid regular expression: {1}'.format(field, exc)) from None


def project_matches(info: Mapping[str, Any], *, include_archived: bool = False, topics: Sequence[str] = (),
                    path_patterns: Sequence[str] = (), exclude_path_patterns: Sequence[str] = (),
                    path_regex: Any = None) -> bool:
    """The client-side filters of ``list_group_projects`` (pure)."""
    path = info.get('path_with_namespace') or ''
    if info.get('archived') and not include_archived:
        return False
    if topics and not set(topics) <= set(info.get('topics') or ()):
        return False
    if path_patterns and not any(fnmatch.fnmatchcase(path, p) for p in path_patterns):
        return False
    if any(fnmatch.fnmatchcase(path, p) for p in exclude_path_patterns):
        return False
    if path_regex is not None and not path_regex.search(path):
        return False
    return True


def list_group_projects(client: GitLabClient, groups: Sequence[Any], *, include_subgroups: bool = True,
                        include_archived: bool = False, topics: Sequence[str] = (), path_patterns: Sequence[str] = (),
                        exclude_path_patterns: Sequence[str] = (), path_regex: Optional[str] = None,
                        search: Optional[str] = None, pagination: str = 'keyset') -> list:
    """The projects of ``groups`` (ids or full paths), each once, sorted by path (``project_info`` shape).

    Subgroups are included unless ``include_subgroups`` is false; archived projects are left out unless
    ``include_archived``; projects shared into a group from elsewhere never count. ``topics``: a project must have all
    of them (GitLab's ``topic`` filter, checked again here). ``path_patterns`` / ``exclude_path_patterns``: shell globs
    over ``path_with_namespace`` (case-sensitive; ``*`` also matches ``/``); ``path_regex``: ``re.search`` over it.
    ``pagination``: ``keyset`` (``order_by=id``, falls back to offset where GitLab answers 405) or ``offset``.
    """
    if isinstance(groups, (str, int)):
        groups = [groups]
    if not groups:
        raise ValidationError('groups must list at least one GitLab group (id or full path, for example mygroup/sub)')
    refs = [_project_ref(g, 'groups') for g in groups]
    topics = _check_patterns(topics, 'topics')
    path_patterns = _check_patterns(path_patterns, 'path_patterns')
    exclude_path_patterns = _check_patterns(exclude_path_patterns, 'exclude_path_patterns')
    regex = compile_path_regex(path_regex)
    if pagination not in ('keyset', 'offset'):
        raise ValidationError("pagination must be 'keyset' or 'offset'")
    found = {}
    for ref in refs:
        query = {'include_subgroups': bool(include_subgroups), 'with_shared': False, 'order_by': 'id', 'sort': 'asc'}
        if not include_archived:
            query['archived'] = False
        if topics:
            query['topic'] = ','.join(topics)
        if search:
            query['search'] = search
        for info in _group_projects(client, ref, query, pagination):
            if info['id'] in found:
                continue
            if project_matches(info, include_archived=include_archived, topics=topics, path_patterns=path_patterns,
                               exclude_path_patterns=exclude_path_patterns, path_regex=regex):
                found[info['id']] = info
    return sorted(found.values(), key=lambda p: (p['path_with_namespace'] or '', p['id']))


def _group_projects(client: GitLabClient, ref: Union[int, str], query: dict, pagination: str) -> list:
    group = client.gl.groups.get(ref, lazy=True)
    kwargs = dict(query)
    if pagination == 'keyset':
        kwargs['pagination'] = 'keyset'
    try:
        return [project_info(p.attributes) for p in
                client.iterate('list projects of group', str(ref), 'group', group.projects.list, **kwargs)]
    except GitLabApiError as err:
        if err.code != 'keyset_unavailable':
            raise
    kwargs.pop('pagination', None)
    return [project_info(p.attributes) for p in
            client.iterate('list projects of group', str(ref), 'group', group.projects.list, **kwargs)]


# --- CI/CD variables --------------------------------------------------------------------------------------------------

class VariableSpec:
    """One desired CI/CD variable; validated by ``variable_specs``. ``value`` is never shown in ``repr``."""

    __slots__ = ('key', 'value', 'protected', 'masked', 'raw', 'environment_scope', 'description', 'variable_type')

    def __init__(self, key: str, value: str, *, protected: bool = False, masked: bool = False, raw: bool = False,
                 environment_scope: str = '*', description: Optional[str] = None, variable_type: str = 'env_var') -> None:
        self.key = key
        self.value = value
        self.protected = protected
        self.masked = masked
        self.raw = raw
        self.environment_scope = environment_scope
        self.description = description
        self.variable_type = variable_type

    @property
    def stored_description(self) -> str:
        """The description written to GitLab: the user's text followed by ``VARIABLE_MARKER``."""
        return '{0} {1}'.format(self.description, VARIABLE_MARKER) if self.description else VARIABLE_MARKER

    def attributes(self) -> dict:
        """What GitLab should hold, value included (for writing only)."""
        return {'key': self.key, 'value': self.value, 'protected': self.protected, 'masked': self.masked,
                'raw': self.raw, 'environment_scope': self.environment_scope, 'description': self.stored_description,
                'variable_type': self.variable_type}

    def __repr__(self) -> str:
        return 'VariableSpec({0!r}, environment_scope={1!r}, value=<hidden>)'.format(self.key, self.environment_scope)


def _bool(item: Mapping[str, Any], name: str, default: bool, where: str) -> bool:
    value = item.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValidationError('{0}.{1} must be true or false'.format(where, name))
    return value


def variable_specs(items: Sequence[Mapping[str, Any]], *, field: str = 'variables') -> list:
    """Validate desired variables as GitLab would (key charset and length, masked value rules, description length,
    one variable per key and environment scope); ``ValidationError`` naming the entry and the fix."""
    if items is None:
        return []
    if not isinstance(items, (list, tuple)):
        raise ValidationError('{0} must be a list of variables (key, value, ...)'.format(field))
    specs, seen = [], set()
    for index, item in enumerate(items):
        where = '{0}[{1}]'.format(field, index)
        if isinstance(item, VariableSpec):
            item = dict(item.attributes(), description=item.description)
        if not isinstance(item, Mapping):
            raise ValidationError('{0} must be a dictionary with key and value'.format(where))
        unknown = set(item) - {'key', 'value', 'protected', 'masked', 'raw', 'environment_scope', 'description',
                               'variable_type'}
        if unknown:
            raise ValidationError('{0} has unknown fields: {1}'.format(where, ', '.join(sorted(unknown))))
        key = item.get('key')
        if not isinstance(key, str) or not VARIABLE_KEY_RE.match(key):
            raise ValidationError("{0}.key '{1}' is not a valid CI/CD variable key: GitLab allows only letters, digits "
                                  "and '_', at most 255 characters".format(where, key))
        where = '{0} ({1})'.format(where, key)
        value = item.get('value')
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ValidationError('{0}.value must be a string'.format(where))
        protected = _bool(item, 'protected', False, where)
        masked = _bool(item, 'masked', False, where)
        raw = _bool(item, 'raw', False, where)
        if masked:
            rule = MASKABLE_RAW_RE if raw else MASKABLE_RE
            if not rule.match(value):
                allowed = ('any characters except spaces and line breaks' if raw else
                           "only letters, digits and the characters _ + = / @ : . ~ -")
                raise ValidationError(
                    '{0}: GitLab cannot mask this value: a masked value must be one line of at least 8 characters, {1}; '
                    'set masked to false for it{2}'.format(where, allowed, '' if raw else ', or raw to true'))
        scope = item.get('environment_scope', '*')
        if scope is None:
            scope = '*'
        if not isinstance(scope, str) or not scope.strip() or len(scope) > 255:
            raise ValidationError("{0}.environment_scope must be an environment name or pattern such as '*' or "
                                  "'production' (at most 255 characters)".format(where))
        if not ENVIRONMENT_SCOPE_RE.match(scope):
            raise ValidationError("{0}.environment_scope '{1}' is not one GitLab accepts: it can contain only letters, "
                                  "digits, '-', '_', '/', '$', '{{', '}}', '.', '*' and spaces".format(where, scope))
        description = item.get('description')
        if description is not None and not isinstance(description, str):
            raise ValidationError('{0}.description must be a string'.format(where))
        variable_type = item.get('variable_type', 'env_var') or 'env_var'
        if variable_type not in VARIABLE_TYPES:
            raise ValidationError('{0}.variable_type must be one of {1}'.format(where, ', '.join(VARIABLE_TYPES)))
        spec = VariableSpec(key, value, protected=protected, masked=masked, raw=raw, environment_scope=scope,
                            description=description or None, variable_type=variable_type)
        if len(spec.stored_description) > DESCRIPTION_MAX:
            raise ValidationError('{0}.description is too long: with the marker {1!r} it must fit in {2} characters'.format(
                where, VARIABLE_MARKER, DESCRIPTION_MAX))
        if (key, scope) in seen:
            raise ValidationError("{0}: {1} is listed twice for environment scope '{2}'".format(field, key, scope))
        seen.add((key, scope))
        specs.append(spec)
    return specs


def is_managed(variable: Mapping[str, Any]) -> bool:
    """True when the collection set this variable (its description carries ``MANAGED_MARKER``)."""
    return MANAGED_MARKER in (variable.get('description') or '')


def variable_view(variable: Mapping[str, Any], *, include_value: bool = False) -> dict:
    """A variable without its value (``include_value`` adds it for variables neither masked nor hidden)."""
    view = {
        'key': variable.get('key'),
        'environment_scope': variable.get('environment_scope', '*'),
        'protected': bool(variable.get('protected')),
        'masked': bool(variable.get('masked')),
        'hidden': bool(variable.get('hidden')),
        'raw': bool(variable.get('raw')),
        'variable_type': variable.get('variable_type') or 'env_var',
        'description': variable.get('description'),
        'managed': is_managed(variable),
    }
    if include_value and not view['masked'] and not view['hidden']:
        view['value'] = variable.get('value')
    return view


def list_variables(client: GitLabClient, project: Any, *, environment_scope: Optional[str] = None,
                   include_values: bool = False, raw: bool = False) -> list:
    """A project's CI/CD variables (all pages), optionally only those of one ``environment_scope``.

    Returns ``variable_view`` dicts (no values; ``include_values`` adds those of variables neither masked nor hidden).
    ``raw=True`` returns GitLab's objects as dicts, values included: for planning only, never for results.
    """
    ref = _project_ref(project)
    proj = client.gl.projects.get(ref, lazy=True)
    items = [v.attributes for v in client.iterate('list CI/CD variables of project', str(ref), 'project',
                                                  proj.variables.list)]
    if environment_scope is not None:
        items = [v for v in items if v.get('environment_scope', '*') == environment_scope]
    if raw:
        return [dict(v) for v in items]
    return [variable_view(v, include_value=include_values) for v in items]


class VariableChange:
    """One planned change: ``action`` ``create``/``update``/``delete``/``unchanged``/``conflict``/``skip``."""

    __slots__ = ('action', 'key', 'environment_scope', 'changes', 'before', 'after', 'reason', 'spec')

    def __init__(self, action: str, key: str, environment_scope: str, *, changes: Sequence[str] = (),
                 before: Optional[dict] = None, after: Optional[dict] = None, reason: Optional[str] = None,
                 spec: Optional[VariableSpec] = None) -> None:
        self.action = action
        self.key = key
        self.environment_scope = environment_scope
        self.changes = list(changes)
        self.before = before
        self.after = after
        self.reason = reason
        self.spec = spec

    def as_dict(self) -> dict:
        """JSON-safe, without any value: ``changes`` names the fields that differ (``value`` included)."""
        out = {'action': self.action, 'key': self.key, 'environment_scope': self.environment_scope,
               'changes': list(self.changes), 'before': self.before, 'after': self.after}
        if self.reason:
            out['reason'] = self.reason
        return out


class VariablePlan:
    """What applying a desired set of variables to one project changes. ``changed``, ``conflicts``, ``as_list()``."""

    def __init__(self, project: Any, items: Sequence[VariableChange]) -> None:
        self.project = project
        self.items = list(items)

    @property
    def changed(self) -> bool:
        return any(i.action in ('create', 'update', 'delete') for i in self.items)

    @property
    def conflicts(self) -> list:
        return [i for i in self.items if i.action == 'conflict']

    def as_list(self) -> list:
        return [i.as_dict() for i in self.items]

    def summary(self) -> dict:
        counts = {}
        for item in self.items:
            counts[item.action] = counts.get(item.action, 0) + 1
        return counts


def _public(attrs: Mapping[str, Any]) -> dict:
    view = variable_view(attrs)
    view.pop('managed', None)
    view.pop('key', None)
    return view


def diff_variables(current: Sequence[Mapping[str, Any]], desired: Sequence[VariableSpec], *,
                   absent: Sequence[Any] = (), purge: bool = False, adopt: bool = False, project: Any = None) -> VariablePlan:
    """Plan (pure) from GitLab's current variables (``list_variables(raw=True)``) and validated specs.

    * a desired variable missing in GitLab is created; one set by the collection is updated when any field differs;
      one that exists but was not set by the collection is a ``conflict`` (nothing is written while there is one),
      unless ``adopt`` (then it is updated and marked);
    * ``absent``: ``(key, environment_scope)`` pairs or keys (scope ``*``) to delete, only if the collection set them
      (otherwise ``skip``); ``purge``: delete every variable the collection set that is not desired;
    * a variable hidden in GitLab (value unreadable) is only compared on its other fields.
    """
    by_id = {}
    for var in current:
        by_id[(var.get('key'), var.get('environment_scope', '*'))] = var
    items = []
    wanted = set()
    for spec in desired:
        ident = (spec.key, spec.environment_scope)
        wanted.add(ident)
        after = _public(spec.attributes())
        existing = by_id.get(ident)
        if existing is None:
            items.append(VariableChange('create', spec.key, spec.environment_scope, changes=list(_VARIABLE_FIELDS),
                                        after=after, spec=spec))
            continue
        before = _public(existing)
        if not is_managed(existing) and not adopt:
            items.append(VariableChange(
                'conflict', spec.key, spec.environment_scope, before=before, after=after, spec=spec,
                reason='the variable exists and was not set by oidc_federation.azure: delete it in GitLab (or let '
                       'the collection adopt it) before the collection manages it'))
            continue
        target = spec.attributes()
        changes = []
        for name in _VARIABLE_FIELDS:
            if name == 'value' and existing.get('hidden') and existing.get('value') is None:
                continue
            have = existing.get(name)
            if name in ('protected', 'masked', 'raw'):
                have = bool(have)
            if name == 'variable_type':
                have = have or 'env_var'
            if have != target[name]:
                changes.append(name)
        action = 'update' if changes else 'unchanged'
        items.append(VariableChange(action, spec.key, spec.environment_scope, changes=changes, before=before,
                                    after=after, spec=spec))
    doomed = []
    for entry in absent or ():
        if isinstance(entry, (list, tuple)) and len(entry) == 2:
            doomed.append((entry[0], entry[1] or '*'))
        elif isinstance(entry, Mapping):
            doomed.append((entry.get('key'), entry.get('environment_scope') or '*'))
        else:
            doomed.append((entry, '*'))
    if purge:
        doomed.extend(ident for ident, var in by_id.items() if is_managed(var) and ident not in wanted)
    done = set()
    for ident in doomed:
        if ident in wanted or ident in done:
            continue
        done.add(ident)
        existing = by_id.get(ident)
        if existing is None:
            continue
        if not is_managed(existing):
            items.append(VariableChange('skip', ident[0], ident[1], before=_public(existing),
                                        reason='not deleted: the variable was not set by oidc_federation.azure'))
            continue
        items.append(VariableChange('delete', ident[0], ident[1], changes=list(_VARIABLE_FIELDS),
                                    before=_public(existing)))
    return VariablePlan(project, items)


def plan_variables(client: GitLabClient, project: Any, desired: Sequence[Any], *, absent: Sequence[Any] = (),
                   purge: bool = False, adopt: bool = False) -> VariablePlan:
    """Read the project's variables and ``diff_variables`` against ``desired`` (dicts or ``VariableSpec``)."""
    specs = variable_specs(desired) if desired and not all(isinstance(d, VariableSpec) for d in desired) else list(desired or ())
    current = list_variables(client, project, raw=True)
    return diff_variables(current, specs, absent=absent, purge=purge, adopt=adopt, project=project)


def apply_variable_plan(client: GitLabClient, project: Any, plan: VariablePlan) -> list:
    """Write ``plan`` (creates, then updates, then deletes); returns ``plan.as_list()`` of what was done.

    Refuses (``ValidationError``, nothing written) while the plan has conflicts. A failure stops at once with a
    ``GitLabApiError`` whose note lists what was already written.
    """
    if plan.conflicts:
        raise ValidationError('CI/CD variables of {0} not written: {1}'.format(project, '; '.join(
            '{0} (scope {1}): {2}'.format(i.key, i.environment_scope, i.reason) for i in plan.conflicts)),
            conflicts=[i.as_dict() for i in plan.conflicts])
    ref = _project_ref(project)
    proj = client.gl.projects.get(ref, lazy=True)
    order = {'create': 0, 'update': 1, 'delete': 2}
    todo = sorted((i for i in plan.items if i.action in order), key=lambda i: order[i.action])
    done = []
    for item in todo:
        target = '{0} {1} (environment scope {2})'.format(ref, item.key, item.environment_scope)
        try:
            if item.action == 'create':
                client.call('create CI/CD variable', target, 'variable', proj.variables.create, item.spec.attributes(),
                            idempotent=False, scope_needed='api')
            elif item.action == 'update':
                data = item.spec.attributes()
                data.pop('key')
                client.call('update CI/CD variable', target, 'variable', proj.variables.update, item.key, data,
                            filter={'environment_scope': item.environment_scope}, scope_needed='api')
            else:
                _delete_variable(client, proj, item, target)
        except GitLabApiError as err:
            if done:
                raise err.with_context(note='already written: {0}'.format(', '.join(
                    '{0} {1}'.format(d.action, d.key) for d in done))) from None
            raise
        done.append(item)
    return plan.as_list()


def _delete_variable(client: GitLabClient, proj: Any, item: VariableChange, target: str) -> None:
    try:
        client.call('delete CI/CD variable', target, 'variable', proj.variables.delete, item.key,
                    filter={'environment_scope': item.environment_scope}, scope_needed='api')
    except GitLabApiError as err:
        if err.status != 404:  # already gone (a retried DELETE, or removed meanwhile): the goal is reached
            raise
