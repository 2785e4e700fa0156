"""Flexible federated identity credential expressions (``claimsMatchingExpression``, ``languageVersion: 1``).

One implementation for the whole sandbox: graph.py validates expressions when a credential is written and entra.py
evaluates them at token exchange.  The language, as Microsoft documents it (entra-docs, "Flexible federated identity
credentials"):

* a condition is ``claims['<claimName>'] <operator> '<comparand>'``;
* the operator is ``eq`` (exact, case-sensitive) or ``matches`` (wildcards ``?`` = one character, ``*`` = any run);
* the operator is separated from the claim lookup and the comparand by a single space;
* conditions are joined with `` and `` (there is no ``or``);
* a single quote inside a quoted string is written twice (``''``).

Which claims and operators an issuer may use depends on its platform (GitLab, GitHub, Terraform Cloud): ``RULES``.
Mapping an issuer URL to its platform is the context's job (``Sandbox.flexible_issuer_platform``, configurable).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

LANGUAGE_VERSION = 1
OPERATORS = ("eq", "matches")


class ExpressionError(ValueError):
    """The expression is not valid languageVersion 1, or the issuer's allow-list refuses it."""


@dataclasses.dataclass(frozen=True)
class Condition:
    """One ``claims['claim'] op 'value'`` clause."""

    claim: str
    op: str
    value: str

    def matches(self, claims: Mapping[str, Any]) -> bool:
        """True when the token's claim satisfies this condition (a missing or non-string claim never does)."""
        actual = claims.get(self.claim)
        if not isinstance(actual, str):
            return False
        if self.op == "eq":
            return actual == self.value
        return wildcard_regex(self.value).fullmatch(actual) is not None


@dataclasses.dataclass(frozen=True)
class Expression:
    """A parsed expression: all conditions must hold."""

    conditions: tuple[Condition, ...]

    def matches(self, claims: Mapping[str, Any]) -> bool:
        return all(cond.matches(claims) for cond in self.conditions)

    @property
    def claims(self) -> frozenset[str]:
        return frozenset(cond.claim for cond in self.conditions)


def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """Compile a ``matches`` comparand: ``*`` any run (also empty), ``?`` exactly one character, all else literal."""
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


class _Parser:
    """Strict recursive-descent parser over the exact documented syntax."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, expected: str) -> ExpressionError:
        found = repr(self.text[self.pos:self.pos + 12]) if self.pos < len(self.text) else "end of expression"
        return ExpressionError(
            f"Invalid claims matching expression: expected {expected} at position {self.pos}, found {found}.")

    def literal(self, token: str, expected: str | None = None) -> None:
        if not self.text.startswith(token, self.pos):
            raise self.fail(expected or repr(token))
        self.pos += len(token)

    def quoted(self, what: str) -> str:
        """A single-quoted string with ``''`` as the escaped quote."""
        self.literal("'", f"a single-quoted {what}")
        out = []
        while True:
            end = self.text.find("'", self.pos)
            if end < 0:
                raise ExpressionError(
                    f"Invalid claims matching expression: unterminated quoted {what} starting at position "
                    f"{self.pos - 1}.")
            out.append(self.text[self.pos:end])
            self.pos = end + 1
            if self.text.startswith("'", self.pos):
                out.append("'")
                self.pos += 1
                continue
            return "".join(out)

    def condition(self) -> Condition:
        self.literal("claims[", "\"claims['<claimName>']\"")
        start = self.pos
        claim = self.quoted("claim name")
        if not claim:
            self.pos = start
            raise ExpressionError(
                f"Invalid claims matching expression: empty claim name at position {start}.")
        self.literal("]", "']' after the claim name")
        self.literal(" ", "a single space before the operator")
        op = self.operator()
        self.literal(" ", "a single space after the operator")
        value = self.quoted("comparand")
        return Condition(claim, op, value)

    def operator(self) -> str:
        match = re.compile(r"[A-Za-z]+").match(self.text, self.pos)
        word = match.group(0) if match else ""
        if word not in OPERATORS:
            raise ExpressionError(
                f"Invalid claims matching expression: unsupported operator {word or self.text[self.pos:self.pos + 1]!r}"
                f" at position {self.pos}; languageVersion 1 supports 'eq' and 'matches'.")
        self.pos += len(word)
        return word

    def parse(self) -> Expression:
        conditions = [self.condition()]
        while self.pos < len(self.text):
            if not self.text.startswith(" and ", self.pos):
                raise self.fail("' and ' followed by another condition (the only boolean operator is 'and')")
            self.pos += len(" and ")
            conditions.append(self.condition())
        return Expression(tuple(conditions))


def parse(text: str) -> Expression:
    """Parse a languageVersion 1 expression; raises ``ExpressionError`` with the position of the problem."""
    if not isinstance(text, str) or not text:
        raise ExpressionError("Invalid claims matching expression: the expression is empty.")
    return _Parser(text).parse()


# --------------------------------------------------------------------------- per-platform claim rules


@dataclasses.dataclass(frozen=True)
class PlatformRules:
    """Claims (and their operators) a platform's expressions may use, and the claims they must use.

    ``require_one_of``: for each group, at least one condition must use a claim of that group.
    """

    claims: Mapping[str, frozenset[str]]
    require_one_of: tuple[frozenset[str], ...] = ()


# Which issuer belongs to which platform is configuration (``Sandbox.flexible_issuer_platform``: Microsoft's issuer
# URLs, plus the sandbox's own GitLab issuers counting as GitLab); what each platform may express is fixed here.
RULES: dict[str, PlatformRules] = {
    "gitlab": PlatformRules({"sub": frozenset(OPERATORS)}, (frozenset({"sub"}),)),
    # "sub plus at least one of repository_id and repository_owner_id (eq)"
    "github": PlatformRules({"sub": frozenset(OPERATORS), "job_workflow_ref": frozenset(OPERATORS),
                             "repository_id": frozenset({"eq"}), "repository_owner_id": frozenset({"eq"})},
                            (frozenset({"sub"}), frozenset({"repository_id", "repository_owner_id"}))),
    "terraform": PlatformRules({"sub": frozenset(OPERATORS)}, (frozenset({"sub"}),)),
}


def violation(expr: Expression, platform: str | None) -> str | None:
    """Why ``expr`` is not allowed for an issuer of ``platform`` (None: allowed; platform None: issuer not listed)."""
    rules = RULES.get(platform) if platform else None
    if rules is None:
        return "the issuer is not supported for claims matching expressions"
    problems = []
    for cond in expr.conditions:
        allowed_ops = rules.claims.get(cond.claim)
        if allowed_ops is None:
            problems.append(f"claim '{cond.claim}' is not allowed")
        elif cond.op not in allowed_ops:
            problems.append(f"operator '{cond.op}' is not allowed on claim '{cond.claim}'")
    for group in rules.require_one_of:
        if not any(cond.claim in group for cond in expr.conditions):
            problems.append("one of the claims " + ", ".join(f"'{c}'" for c in sorted(group)) + " is required")
    if problems:
        return ("the expression lacks all required claims or contains unallowed claims (" + "; ".join(problems)
                + ")")
    return None


def check_allowed(expr: Expression, issuer: str, platform: str | None) -> None:
    """Raise ``ExpressionError`` unless an issuer of ``platform`` may use ``expr``."""
    reason = violation(expr, platform)
    if reason is not None:
        where = f"issuer '{issuer}'" + (f" ({platform})" if platform else "")
        raise ExpressionError(f"The claims matching expression is not allowed for {where}: {reason}.")
