"""A data file in chunks that each travel to the device machine with the working tree, joined there losslessly.

The device machine receives the working tree and at most 64 MiB per call (README § On a GPU or a cluster), and
``../shared`` does not travel; CIFAR-10's ``cifar10.npz`` is 133 MiB. ``split`` cuts it into byte ranges of at
most ``CHUNK_BYTES`` in an ignored folder, with a manifest holding each part's and the whole file's sha256 and
the host's source state (commit and diff hash: the device's copy of the tree has no ``.git``); ``join`` checks
every part, concatenates them and checks the whole file again. Usage, on the host, after the last commit::

    python -m benchmarks.datachunks split /path/to/cifar10.npz .gpu     # .gpu/cifar10.npz.1 .. .3, manifest.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

MIB = 2**20
TREE_LIMIT = 64 * MIB  # what one call carries: the working tree and the carried paths
CHUNK_BYTES = 34 * MIB  # four parts; leaves 30 MiB of each call for the tree (20 MiB at the time of writing)
MANIFEST = "manifest.json"


class ChunkError(RuntimeError):
    """A part missing, or a part or the joined file whose sha256 is not the manifest's."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MIB):
            h.update(block)
    return h.hexdigest()


def source_state() -> str:
    """'<commit>' or '<commit>:<diff sha256>' of this checkout, as ``KDNB_SOURCE_STATE`` takes it."""
    from kdnb.store import source_state as state

    st = state()
    if not st["commit"]:
        raise ChunkError("no git commit to name: split from a git checkout")
    return st["commit"] + (f":{st['diff_sha256']}" if st["diff_sha256"] else "")


def split(src: str | os.PathLike, folder: str | os.PathLike, chunk_bytes: int = CHUNK_BYTES,
          state: str | None = None) -> dict[str, Any]:
    """Write ``folder/<name>.<i>`` (1-based) and ``folder/manifest.json``; returns the manifest."""
    src, folder = Path(src), Path(folder)
    size = src.stat().st_size
    n = max(1, math.ceil(size / chunk_bytes))
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    with open(src, "rb") as f:
        for i in range(1, n + 1):
            data = f.read(chunk_bytes)
            path = folder / f"{src.name}.{i}"
            path.write_bytes(data)
            parts.append({"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {"name": src.name, "bytes": size, "sha256": sha256(src), "parts": parts,
                "source_state": state if state is not None else source_state()}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def manifest(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ChunkError(f"{path} not found: on the host, python -m benchmarks.datachunks split <file> {folder}")
    return json.loads(path.read_text())


def check(folder: str | os.PathLike, parts: list[int] | None = None) -> list[str]:
    """Check the named parts (1-based; default all) against the manifest; returns the names of those absent."""
    folder, m = Path(folder), manifest(folder)
    absent = []
    for i, part in enumerate(m["parts"], 1):
        if parts is not None and i not in parts:
            continue
        path = folder / part["file"]
        if not path.is_file():
            absent.append(part["file"])
        elif path.stat().st_size != part["bytes"] or sha256(path) != part["sha256"]:
            raise ChunkError(f"{path}: not the part the manifest names (size or sha256 differ)")
    return absent


def join(folder: str | os.PathLike, dest_folder: str | os.PathLike) -> Path:
    """The whole file in ``dest_folder`` (kept if already there and whole), every part and the result checked."""
    folder, m = Path(folder), manifest(folder)
    dest = Path(dest_folder) / m["name"]
    if dest.is_file() and dest.stat().st_size == m["bytes"] and sha256(dest) == m["sha256"]:
        return dest
    if absent := check(folder):
        raise ChunkError(f"parts {', '.join(absent)} absent from {folder}: each call carries one, back to back "
                         "on a warm machine (a cold machine starts empty: carry them again)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as out:
        for part in m["parts"]:
            out.write((folder / part["file"]).read_bytes())
    if sha256(tmp) != m["sha256"]:
        tmp.unlink()
        raise ChunkError(f"joined {m['name']} does not match the manifest's sha256")
    os.replace(tmp, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.datachunks", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split", help="cut a file into parts with a manifest")
    s.add_argument("src")
    s.add_argument("folder")
    s.add_argument("--chunk-mib", type=int, default=CHUNK_BYTES // MIB)
    j = sub.add_parser("join", help="join the parts into DEST_FOLDER/<name>, checked")
    j.add_argument("folder")
    j.add_argument("dest_folder")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "split":
            m = split(a.src, a.folder, a.chunk_mib * MIB)
            print(f"{len(m['parts'])} parts of {m['name']} in {a.folder}, source state {m['source_state']}")
        else:
            print(join(a.folder, a.dest_folder))
    except (ChunkError, OSError) as err:
        print(f"datachunks: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
