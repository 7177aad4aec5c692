"""Generate the Python gRPC stubs in `serving/wire/` from the .proto files here.

Run `python protos/generate.py` after editing a .proto; `tests/serving/test_wire.py` fails when the
committed stubs differ from what this writes. Each file is compiled under a virtual import path
(`serving/wire/<file>`), so the generated modules import each other as `serving.wire.*`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = {  # folder holding the .proto → its files
    ROOT / "protos": ["model_config.proto", "inference.proto"],
    ROOT / "protos" / "servekit" / "v1": ["tasks.proto"],
}
PACKAGE = "serving/wire"


def generate(out: Path) -> list[Path]:
    """Write the stubs under `out` (the repository root for the committed ones); the files written."""
    from grpc_tools import protoc

    for folder, files in PROTOS.items():
        args = [
            "protoc",
            f"-I{PACKAGE}={folder}",
            f"-I{protoc_include()}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *[f"{PACKAGE}/{name}" for name in files],
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {folder}")
    return sorted((out / PACKAGE).glob("*_pb2*.py*"))


def protoc_include() -> Path:
    import grpc_tools

    return Path(grpc_tools.__file__).parent / "_proto"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="root to write serving/wire/ under")
    written = generate(parser.parse_args().out)
    print("\n".join(str(p) for p in written), file=sys.stderr)


if __name__ == "__main__":
    main()
