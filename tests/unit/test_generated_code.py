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
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*.py*")}
    committed = {p.relative_to(COMMITTED): p.read_bytes() for p in COMMITTED.rglob("*.py*")}
    assert fresh.keys() == committed.keys()
    stale = [str(path) for path in fresh if fresh[path] != committed[path]]
    assert not stale, f"run scripts/generate_protos.sh: stale {stale}"
