"""
Allow and deny rules: C{--deny RULE}, C{--allow-only RULE} and the lines
of C{--policy-file}, a rule a project name with an optional version
specifier (C{requests<2.31}, C{urllib3==1.26.5}, C{evil-pkg}).  A file a
deny rule matches is held back; under allow-only rules, a project none
names is not served at all, and a file of a named project whose version
no rule of its project matches is held back.  The policy file also holds
C{waive ID} lines, for advisories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = ["Rule", "Rules", "parsePolicyFile", "parseRule"]

#: What a policy file holds (for C{--help}).
POLICY_FILE_FORMAT = "lines of 'deny RULE', 'allow-only RULE' or 'waive ID'; '#' begins a comment"


@dataclass(frozen=True)
class Rule:
    """
    A project, and the versions of it a rule takes (all, without a
    specifier).
    """

    text: str
    name: str
    specifier: SpecifierSet | None = None

    def matches(self, name: str, version: str | None) -> bool:
        """
        Whether a file of project C{name} at C{version} (normalized; L{None}
        if its name gives none that can be read) is one this rule takes.
        """
        if name != self.name:
            return False
        if self.specifier is None:
            return True
        if version is None:
            return False
        try:
            return self.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            return False


def parseRule(text: str) -> Rule:
    """
    A rule, as an option or a policy file gives it.

    @raise ValueError: with a line that says what is wrong.
    """
    value = text.strip()
    try:
        requirement = Requirement(value)
    except InvalidRequirement as e:
        raise ValueError(f"{value!r} is not a project name with an optional version specifier ({e})") from None
    if requirement.url or requirement.marker or requirement.extras:
        raise ValueError(f"{value!r}: a rule is a project name and a version specifier, no extras, URL or marker")
    specifier = requirement.specifier if str(requirement.specifier) else None
    return Rule(value, canonicalize_name(requirement.name), specifier)


@dataclass(frozen=True)
class Rules:
    """
    The allow and deny rules of a mirror, and the advisories waived.
    """

    deny: tuple[Rule, ...] = ()
    allowOnly: tuple[Rule, ...] = ()
    waived: frozenset[str] = field(default_factory=frozenset)

    def __add__(self, other: "Rules") -> "Rules":
        return Rules(self.deny + other.deny, self.allowOnly + other.allowOnly, self.waived | other.waived)

    @cached_property
    def names(self) -> frozenset[str]:
        """
        The projects some rule names (made once: a warm file asks).
        """
        return frozenset(r.name for r in (*self.deny, *self.allowOnly))

    def projectRefusal(self, name: str) -> str | None:
        """
        Why a project is not served at all: allow-only rules, none of which
        names it.  L{None} if it is served.
        """
        if not self.allowOnly or any(r.name == name for r in self.allowOnly):
            return None
        return f"{name} is not on the mirror's allow-only list"

    def refusal(self, name: str, version: str | None) -> str | None:
        """
        The rule that holds back a file of project C{name} at C{version},
        as one line; L{None} if none does.
        """
        for rule in self.deny:
            if rule.matches(name, version):
                return f"deny {rule.text}"
        named = [r for r in self.allowOnly if r.name == name]
        if named and not any(r.matches(name, version) for r in named):
            return "allow-only " + ", ".join(r.text for r in named)
        return None


def parsePolicyFile(text: str, path: str) -> Rules:
    """
    The rules of a policy file's text.

    @raise ValueError: naming the file and the line at fault.
    """
    deny: list[Rule] = []
    allowOnly: list[Rule] = []
    waived: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        verb, _, rest = line.partition(" ")
        rest = rest.strip()
        if not rest:
            raise ValueError(f"{path} line {number}: {verb!r} needs a rule or an ID after it")
        try:
            if verb == "deny":
                deny.append(parseRule(rest))
            elif verb == "allow-only":
                allowOnly.append(parseRule(rest))
            elif verb == "waive":
                waived.add(rest)
            else:
                raise ValueError(f"{verb!r} is none of deny, allow-only and waive")
        except ValueError as e:
            raise ValueError(f"{path} line {number}: {e}") from None
    return Rules(tuple(deny), tuple(allowOnly), frozenset(waived))


def policyFileRules(data: bytes, path: str) -> Rules:
    """
    The rules of a policy file's bytes.

    @raise ValueError: if it is not UTF-8, or a line is not a rule.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8") from None
    return parsePolicyFile(text, path)


def rulesOf(deny: Iterable[str] = (), allowOnly: Iterable[str] = (), waive: Iterable[str] = ()) -> Rules:
    """
    The rules the options give.

    @raise ValueError: if one is not a rule.
    """
    return Rules(
        tuple(parseRule(r) for r in deny), tuple(parseRule(r) for r in allowOnly), frozenset(w.strip() for w in waive)
    )
