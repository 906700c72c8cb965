"""The committed gRPC code is what `scripts/generate_protos.sh` makes of the protos today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "src/stox_gateway/grpc/generated"


def test_the_generated_grpc_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [str(REPO / "scripts/generate_protos.sh"), str(tmp_path)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    fresh = _sources(tmp_path)
    committed = _sources(COMMITTED)
    assert fresh.keys() == committed.keys()
    stale = [str(path) for path in fresh if fresh[path] != committed[path]]
    assert not stale, f"run scripts/generate_protos.sh: stale {stale}"


def _sources(root: Path) -> dict[Path, bytes]:
    # Sources only: importing the package leaves __pycache__/*.pyc beside them.
    return {
        p.relative_to(root): p.read_bytes()
        for p in root.rglob("*")
        if p.suffix in {".py", ".pyi"} and "__pycache__" not in p.parts
    }
