"""npm version ranges (engines.node): parse `>=18 <21`, `^20.9`, `~20.1.2`, `20.x`,
`18 || 20`, `1.2 - 3`, and answer whether a version satisfies one and which release lines it
allows. Pre-release tags are ignored. Pure: no I/O."""

from __future__ import annotations

import re

Version = tuple[int, int, int]
Interval = tuple[Version, Version]  # [low, high): every range here is a union of these
TOP: Version = (1 << 30, 0, 0)
_PART = r"v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:[-+][\w.+-]*)?"
_COMPARATOR = re.compile(rf"^(\^|~>?|>=|<=|>|<|=)?\s*{_PART}$")


def parse(text: str) -> list[Interval]:
    """The range as intervals; ValueError naming the part that is not a version."""
    out = []
    for alternative in text.split("||"):
        alternative = alternative.strip()
        hyphen = re.fullmatch(rf"({_PART})\s+-\s+({_PART})", alternative)
        if hyphen:
            low, _ = _bounds("", _parts(hyphen.group(1)))
            _, high = _bounds("<=", _parts(hyphen.group(5)))
            out.append((low, high))
            continue
        low, high = (0, 0, 0), TOP
        words = re.sub(r"(>=|<=|>|<|=|\^|~>?)\s+", r"\1", alternative).split()
        for word in words or ["*"]:
            match = _COMPARATOR.match(word)
            if not match:
                raise ValueError(f"{word!r} is not a version or a comparator")
            lo, hi = _bounds(match.group(1) or "", _parts(word, match))
            low, high = max(low, lo), min(high, hi)
        out.append((low, high))
    return out


def _parts(word: str, match: re.Match[str] | None = None) -> list[int | None]:
    match = match or _COMPARATOR.match(word)
    assert match is not None
    groups = match.groups()[1:4]
    parts: list[int | None] = []
    for g in groups:
        if g is None or not g.isdigit():
            break
        parts.append(int(g))
    return parts


def _bounds(op: str, parts: list[int | None]) -> Interval:
    """One comparator as [low, high). `parts` holds the given numbers (X, X.Y or X.Y.Z)."""
    nums = [p for p in parts if p is not None]
    full = (nums + [0, 0, 0])[:3]
    base: Version = (full[0], full[1], full[2])
    nxt = _bump(nums)  # the first version past the partial one (20 -> 21.0.0, 20.1 -> 20.2.0)
    if not nums:
        return (0, 0, 0), TOP
    if op in ("", "="):
        return base, nxt
    if op == ">=":
        return base, TOP
    if op == ">":
        return nxt, TOP
    if op == "<":
        return (0, 0, 0), base
    if op == "<=":
        return (0, 0, 0), nxt
    if op.startswith("~"):
        return base, _bump(nums[:2]) if len(nums) >= 2 else nxt
    # ^: the left-most non-zero part may not change
    lead = next((i for i, n in enumerate(nums) if n), len(nums) - 1)
    return base, _bump(nums[:lead + 1])


def _bump(nums: list[int]) -> Version:
    if not nums:
        return TOP
    bumped = [*nums[:-1], nums[-1] + 1] + [0, 0, 0]
    return (bumped[0], bumped[1], bumped[2])


def version(text: str) -> Version:
    nums = [int(n) for n in re.findall(r"\d+", text.split("-")[0])[:3]] + [0, 0, 0]
    return (nums[0], nums[1], nums[2])


def satisfies(text: str, ranges: list[Interval]) -> bool:
    v = version(text)
    return any(low <= v < high for low, high in ranges)


def allows_major(ranges: list[Interval], major: int) -> bool:
    return any(max(low, (major, 0, 0)) < min(high, (major + 1, 0, 0)) for low, high in ranges)


def newest_major(ranges: list[Interval], *, prefer_up_to: int) -> int | None:
    """The newest even (LTS) release line up to `prefer_up_to` the range allows; else the
    newest line it allows at all (an odd one, or one past the preferred)."""
    for major in range(prefer_up_to - prefer_up_to % 2, 3, -2):
        if allows_major(ranges, major):
            return major
    return next((m for m in range(40, -1, -1) if allows_major(ranges, m)), None)
