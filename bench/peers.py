"""Drivers for the peers that have no CLI of their own, run as a child process of the harness
so that their wall time, CPU seconds and peak RSS are measured like every other tool's.

    python bench/peers.py hf_transfer --list URLS.json --to DIR --workers 8 --chunk-size BYTES

`URLS.json` is `[{"url": ..., "path": ..., "size": ...}, ...]` (Hugging Face resolve URLs of one
commit, made by the harness from the hub's tree listing exactly as huggingface_hub did). Each file
goes through hf_transfer's own Python API, `hf_transfer.download(...)`, from a pool of threads, the
way huggingface_hub < 1.0 called it from snapshot_download (8 files at once; max_files=100 ranged
streams per file, parallel_failures=3, max_retries=5), into a temporary name that is renamed when
complete.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor


def hf_transfer_main(args: argparse.Namespace) -> int:
    import hf_transfer

    with open(args.list) as f:
        files = json.load(f)

    def one(entry: dict) -> None:
        dest = os.path.join(args.to, entry["path"])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = dest + ".incomplete"
        hf_transfer.download(
            url=entry["url"],
            filename=tmp,
            max_files=args.max_files,
            chunk_size=args.chunk_size,
            parallel_failures=3,
            max_retries=5,
            headers={"user-agent": "ferry-bench/hf_transfer"},
        )
        if os.path.getsize(tmp) != entry["size"]:
            raise RuntimeError(f"{entry['path']}: got {os.path.getsize(tmp)} bytes, want {entry['size']}")
        os.replace(tmp, dest)

    failed = 0
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        for entry, fut in [(e, pool.submit(one, e)) for e in files]:
            try:
                fut.result()
            except Exception as exc:  # report every failure, exit non-zero at the end
                failed += 1
                print(f"hf_transfer: {entry['path']}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("hf_transfer")
    t.add_argument("--list", required=True)
    t.add_argument("--to", required=True)
    t.add_argument("--workers", type=int, default=8)
    t.add_argument("--max-files", type=int, default=100)
    t.add_argument("--chunk-size", type=int, default=10 * 1024 * 1024)
    args = p.parse_args()
    if args.cmd == "hf_transfer":
        return hf_transfer_main(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
