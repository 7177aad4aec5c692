"""bench/perf_analyzer.sh's Python half: its inputs (JPEGs, perf_analyzer's JSON, a bundle) and its report.

    python bench/perf_analyzer_input.py prepare OUT [--models DIR] [--jpegs 16] [--jpeg-size 128]
    python bench/perf_analyzer_input.py report --csv-dir DIR [--field key=JSON] [--text key=text]

`prepare` writes OUT/input.json: one perf_analyzer data entry per JPEG for the BYTES input `images`
(shape [1]), base64 of Triton's serialised BYTES tensor (each element's uint32 little-endian length,
then its bytes), and OUT/jpegs.json (what was sent). With --models it also writes a tiny multilabel
bundle there (`tags`, a resnet18 at 32 px with seeded weights, the serving tests' `write_tags`).

`report` reads the `<protocol>-c<concurrency>.csv` files perf_analyzer wrote (`-f`) and prints the
bench's one JSON line: per protocol and concurrency, inferences/s and p50/p90/p95/p99 latency (us).
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import statistics
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def serialize_bytes(elements: list[bytes]) -> bytes:
    """A BYTES tensor as Triton sends it in binary form: each element's uint32 LE length, then its bytes."""
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def prepare(args: argparse.Namespace) -> None:
    sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]  # the benches' JPEGs; the tests' bundles
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        from servers import make_jpegs

        jpegs, source = make_jpegs(Path(tmp), args.jpeg_size, args.jpegs)
    entries = [{"images": {"b64": base64.b64encode(serialize_bytes([j])).decode()}} for j in jpegs]
    (out / "input.json").write_text(json.dumps({"data": entries}))
    sizes = [len(j) for j in jpegs]
    sent = {
        "jpegs": source, "jpeg_count": len(jpegs), "jpeg_size": args.jpeg_size,
        "jpeg_bytes_mean": round(statistics.mean(sizes)), "jpeg_bytes_max": max(sizes),
    }  # fmt: skip
    (out / "jpegs.json").write_text(json.dumps(sent))
    if args.models is not None:
        from tests.serving.bundles import write_tags

        bundle = write_tags(args.models, jpegs, name=args.model)
        print(f"bundle {bundle}", file=sys.stderr)


def read_csv(path: Path) -> dict[str, Any]:
    """perf_analyzer's `-f` CSV: one row per concurrency; the numbers this bench reports."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != 1:
        raise SystemExit(f"{path}: expected one row, found {len(rows)}")
    row = rows[0]
    measured: dict[str, Any] = {
        "concurrency": int(row["Concurrency"]),
        "infer_s": round(float(row["Inferences/Second"]), 2),
    }
    for p in (50, 90, 95, 99):
        measured[f"p{p}_us"] = int(row[f"p{p} latency"])
    measured["avg_us"] = int(row["Avg latency"]) if "Avg latency" in row else None
    return measured


def first_error(log: Path) -> str:
    """The line of perf_analyzer's output that says what went wrong (else its last line)."""
    if not log.is_file():
        return "perf_analyzer did not run"
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]  # a thread's error, then the summary
    failures = [line for line in lines if any(w in line.lower() for w in ("failed", "unable"))]
    error = (errors or failures or lines or ["no output"])[0][:500]
    if "unable to set shape for the input" in error:
        error += (
            " (the model's metadata gives an input no dimension past the batch axis, e.g. [-1] with"
            " max_batch_size > 0: perf_analyzer takes the metadata's shape less its first axis, and needs"
            " [-1] + the config's dims, e.g. [-1, 1])"
        )
    return error


def report(args: argparse.Namespace) -> None:
    fields: dict[str, Any] = {"bench": "perf_analyzer"}
    for pair in args.field:
        key, _, value = pair.partition("=")
        fields[key] = json.loads(value)
    for pair in args.text:
        key, _, value = pair.partition("=")
        fields[key] = value
    if args.jpegs is not None:
        fields.update(json.loads(args.jpegs.read_text()))
    results: dict[str, Any] = {}
    for protocol in args.protocols.split(","):
        skipped = fields.pop(f"{protocol}_skipped", None)
        if skipped:
            results[protocol] = {"skipped": skipped}
            continue
        rows, failed = [], []
        for concurrency in args.concurrency.split(","):
            path = args.csv_dir / f"{protocol}-c{concurrency}.csv"
            if path.is_file():
                rows.append({**read_csv(path), "stable": not path.with_suffix(".unstable").exists()})
            else:
                error = first_error(path.with_suffix(".log"))
                failed.append({"concurrency": int(concurrency), "error": error})
        results[protocol] = {"rows": rows, **({"failed": failed} if failed else {})}
    fields["results"] = results
    fields["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    fields["cpus"] = os.cpu_count()
    print(json.dumps(fields))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="JPEGs, perf_analyzer's input JSON, and optionally a bundle")
    p.add_argument("out", type=Path)
    p.add_argument("--models", type=Path, help="write a tiny tags bundle into this model repository")
    p.add_argument("--model", default="tags", help="the bundle's name")
    p.add_argument("--jpegs", type=int, default=16, help="how many JPEGs (requests cycle through them)")
    p.add_argument("--jpeg-size", type=int, default=128, help="side of the JPEGs sent, in pixels")
    r = commands.add_parser("report", help="perf_analyzer's CSVs -> the bench's one JSON line")
    r.add_argument("--csv-dir", type=Path, required=True)
    r.add_argument("--protocols", default="grpc,http")
    r.add_argument("--concurrency", default="1,4,16,32")
    r.add_argument("--jpegs", type=Path, help="prepare's jpegs.json")
    r.add_argument("--field", action="append", default=[], help="key=JSON to report")
    r.add_argument("--text", action="append", default=[], help="key=text to report")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
