# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""The base of the collection's controller actions (``gitlab_oidc_result``, ``gitlab_oidc_play_projects``,
``gitlab_oidc_report``): no module process, no file transfer, no connection; the options are those of the subclass's
``ARGUMENT_SPEC`` (with its ``CONSTRAINTS``), validated before anything else."""

from __future__ import annotations

from ansible.plugins.action import ActionBase


class ControllerAction(ActionBase):
    """An action that runs on the controller only. Subclasses set ``ARGUMENT_SPEC`` (and ``CONSTRAINTS``, the
    keywords of ``validate_argument_spec`` such as ``mutually_exclusive``) and call ``self._args()`` in ``run``."""

    TRANSFERS_FILES = False
    _requires_connection = False
    ARGUMENT_SPEC: dict = {}
    CONSTRAINTS: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._VALID_ARGS = frozenset(cls.ARGUMENT_SPEC)

    def _args(self) -> dict:
        """The task's options, validated against ``ARGUMENT_SPEC`` and ``CONSTRAINTS`` (the task fails otherwise)."""
        validation, args = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC, **self.CONSTRAINTS)
        del validation
        return args
