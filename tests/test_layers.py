"""The packages depend on each other one way only (shared/DESIGN.md), checked on the imports in the source."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what each package may import (besides itself); the CLI joins everything, nothing imports the CLI
ALLOWED = {
    "infra": set(),
    "data": {"infra"},
    "ope": {"infra"},
    "encoders": {"data", "infra"},
    "simulators": {"data", "infra"},
    "envs": {"encoders", "simulators", "data", "infra"},
    "agents": {"envs", "encoders", "simulators", "data", "ope", "infra"},
    "cli": {"agents", "envs", "encoders", "simulators", "data", "ope", "infra"},
}


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        found |= {n.split(".")[1] for n in names if n.startswith("seqrec.") and n.count(".") >= 1}
    return found


def test_dependencies_point_one_way() -> None:
    problems = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).glob("*.py")):
            bad = _imported_packages(path) - allowed - {package}
            if bad:
                problems.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not problems, problems
    assert (ROOT / "infra" / "errors.py").exists() and not (ROOT / "data" / "errors.py").exists()
