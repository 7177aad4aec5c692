"""Left/right point pairs: a horizontal flip moves a left eye to where a right eye would be, so the
two swap names on every flip (as pose libraries' flip pairs do), or the model learns that either
eye may be on either side.

Names that look sided (`eye_left`, `left_eye`, `l_eye`, `LeftEye`) with no declared pair refuse
horizontal flips, naming the flags that say what to do: points are never silently wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from training.errors import ConfigError

__all__ = ["flip_pair_indices", "mirrored_name", "refuse_unpaired_sides"]

_SIDES = {"left": "right", "right": "left", "l": "r", "r": "l"}
_TOKEN = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def mirrored_name(name: str) -> str | None:
    """`name` with its side word swapped (eye_left → eye_right, LeftEye → RightEye), or None when
    it names no side."""
    pieces = re.split(r"([_\-. ]+)", name)
    for i, piece in enumerate(pieces):
        tokens = _TOKEN.findall(piece)
        for token in tokens:
            other = _SIDES.get(token.lower())
            if other is None:
                continue
            swapped = other.capitalize() if token[0].isupper() else other
            swapped = swapped.upper() if token.isupper() and len(token) > 1 else swapped
            pieces[i] = piece.replace(token, swapped, 1)
            return "".join(pieces)
    return None


def flip_pair_indices(specs: Sequence[str], points: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """`a:b` specs → index pairs into `points`; each name a point, each point in one pair at most."""
    pairs: list[tuple[int, int]] = []
    seen: set[str] = set()
    for spec in specs:
        names = spec.split(":")
        if len(names) != 2 or not all(names) or names[0] == names[1]:
            raise ConfigError(f"flip pair {spec!r}: write two different point names as left:right")
        for name in names:
            if name not in points:
                raise ConfigError(f"flip pair {spec!r}: {name!r} is not a point (points: {', '.join(points)})")
            if name in seen:
                raise ConfigError(f"flip pair {spec!r}: {name!r} is already in another pair")
            seen.add(name)
        pairs.append((points.index(names[0]), points.index(names[1])))
    return tuple(pairs)


def refuse_unpaired_sides(points: Sequence[str], pairs: Sequence[tuple[int, int]]) -> None:
    """A ConfigError when a point's name says left or right but it is in no flip pair."""
    paired = {i for pair in pairs for i in pair}
    for i, name in enumerate(points):
        other = mirrored_name(name)
        if other is None or i in paired:
            continue
        if other in points:
            raise ConfigError(
                f"points {name!r} and {other!r} look like a left/right pair, and a horizontal flip "
                f"moves each to the other's side: declare the pair with --flip-pairs {name}:{other} "
                f"(flip_pairs in a config file), or train without flips (--no-flip)"
            )
        raise ConfigError(
            f"point {name!r} names a side and has no {other!r} to swap with on a horizontal flip: "
            f"train without flips (--no-flip), or rename it"
        )
