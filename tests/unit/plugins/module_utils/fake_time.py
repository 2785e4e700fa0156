# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A fake clock for the tests of the retry policy, the pacer, the batch executor and the clients."""

from __future__ import annotations


class FakeTime:
    """A clock and an async sleep that advances it, recording every wait."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
