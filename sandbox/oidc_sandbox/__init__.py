"""Local HTTPS stand-in for Entra ID, Microsoft Graph, Azure Resource Manager and GitLab OIDC issuers.

Run it with ``PYTHONPATH=sandbox python -m oidc_sandbox serve|start|stop``; see ``sandbox/README.md``.
It shares no code with the collection in ``plugins/``.
"""
from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
