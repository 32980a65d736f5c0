"""Rebuild every example report: each reports/NAME.toml -> reports/NAME.pdf.

Run from the repository root:  python reports/build_all.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from imrsurv.report.build import report

HERE = Path(__file__).resolve().parent


def main() -> int:
    for spec in sorted(HERE.glob("*.toml")):
        out = spec.with_suffix(".pdf")
        rel = spec.relative_to(HERE.parent)
        report(spec, out, command=f"imrsurv report {rel} --out {out.relative_to(HERE.parent)}")
        print(f"wrote {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
