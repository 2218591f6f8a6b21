"""Compare two bench result files: ``python -m bench.compare OLD.json NEW.json [--margin 0.2]``.

Prints each figure of both runs, its change, and flags a regression: worse by more than ``--margin`` (a
fraction; 0.2 by default: the spread of repeated runs on a quiet 2-core host is about 10 %).  Exits 1 when a
figure regressed, 2 on a bad file.  The machine-speed figures are printed first: when they differ by more than
the margin, the two runs were not made on equally quiet machines and the comparison says so (figures are not
rescaled: what a loaded machine does to a latency tail is not proportional).  Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MARGIN = 0.2


@dataclass(frozen=True)
class Change:
    name: str
    old: float
    new: float
    unit: str
    regressed: bool

    @property
    def ratio(self) -> float:
        return self.new / self.old if self.old else float("inf") if self.new else 1.0


def compare(old: dict[str, Any], new: dict[str, Any], margin: float = DEFAULT_MARGIN) -> list[Change]:
    """Every figure present in both results, with ``regressed`` when worse by more than ``margin``."""
    changes = []
    for name, figure in new["figures"].items():
        before = old["figures"].get(name)
        if before is None:
            continue
        was, now = float(before["value"]), float(figure["value"])
        worse = now < was * (1 - margin) if figure.get("higher_is_better") else now > was * (1 + margin)
        changes.append(Change(name, was, now, figure["unit"], worse))
    return changes


def speeds_differ(old: dict[str, Any], new: dict[str, Any], margin: float = DEFAULT_MARGIN) -> bool:
    was, now = (max(r["machine_speed_s"].values()) for r in (old, new))
    return bool(now > was * (1 + margin) or was > now * (1 + margin))


def _load(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
        if not isinstance(document.get("figures"), dict) or "machine_speed_s" not in document:
            raise ValueError("no 'figures' or 'machine_speed_s'")
        return dict(document)
    except (OSError, ValueError) as exc:
        print(f"error: {path}: not a bench result file: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="fraction (default 0.2)")
    args = parser.parse_args(argv)
    old, new = _load(args.old), _load(args.new)
    print(f"machine speed (fixed Python loop, start/end): {old['machine_speed_s']} -> {new['machine_speed_s']}")
    if speeds_differ(old, new, args.margin):
        print(f"  the machine speeds differ by more than {args.margin:.0%}: the runs are not comparable")
    changes = compare(old, new, args.margin)
    for c in changes:
        flag = f"REGRESSED (> {args.margin:.0%})" if c.regressed else ""
        print(f"  {c.name:<40} {c.old:10.3f} -> {c.new:10.3f} {c.unit:<4} x{c.ratio:5.2f}  {flag}")
    return 1 if any(c.regressed for c in changes) else 0


if __name__ == "__main__":
    sys.exit(main())
