"""Build the console for the tts-frontend image: every file under assets/ renamed with a hash of its content.

    python frontend/build.py --out build/frontend      # (make frontend)

A hashed name changes whenever the content does, so the image's web server lets browsers and CDNs keep those
files for a year, while index.html (no-cache) names the current ones. ES modules import each other by name, so a
module's imports are rewritten to the hashed names first and its own hash covers them: a change to any module
gives every module that imports it (and index.html) a new name too. Standard library only; no Node needed.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
HASH_CHARS = 10
# `from "./x.js"`, `import "./x.js"` and `import("./x.js")`: the console's modules import each other only so.
IMPORT = re.compile(r"""((?:\bfrom|\bimport)\s*\(?\s*)(["'])\./([A-Za-z0-9_.-]+\.js)\2""")
# index.html names its files as `assets/<name>` in href and src attributes.
ASSET_REF = re.compile(r"""((?:href|src)=")assets/([A-Za-z0-9_.-]+)(")""")


def hashed_name(name: str, content: bytes) -> str:
    stem, dot, ext = name.rpartition(".")
    return f"{stem}.{hashlib.sha256(content).hexdigest()[:HASH_CHARS]}{dot}{ext}"


def build(source: Path, out: Path) -> dict[str, str]:
    """Write the hashed console from `source` into `out` (emptied first); returns source name -> hashed name."""
    assets = source / "assets"
    files = {p.name: p.read_bytes() for p in sorted(assets.iterdir()) if p.is_file()}
    names: dict[str, str] = {}
    contents: dict[str, bytes] = {}
    visiting: set[str] = set()

    def resolve(name: str) -> str:
        if name in names:
            return names[name]
        if name not in files:
            raise SystemExit(f"{name} is imported but not in {assets}")
        if name in visiting:
            raise SystemExit(f"import cycle through {name}: hashed names need an acyclic module graph")
        visiting.add(name)
        content = files[name]
        if name.endswith(".js"):
            text = content.decode()
            text = IMPORT.sub(lambda m: f"{m[1]}{m[2]}./{resolve(m[3])}{m[2]}", text)
            content = text.encode()
        elif name.endswith(".css") and b"url(" in content:
            raise SystemExit(f"{name} uses url(): rewrite its references here before relying on it")
        visiting.discard(name)
        names[name] = hashed_name(name, content)
        contents[names[name]] = content
        return names[name]

    for name in files:
        resolve(name)
    index = (source / "index.html").read_text()
    missing = [m[2] for m in ASSET_REF.finditer(index) if m[2] not in files]
    if missing:
        raise SystemExit(f"index.html names files that do not exist: {missing}")
    index = ASSET_REF.sub(lambda m: f"{m[1]}assets/{names[m[2]]}{m[3]}", index)

    if out.exists():
        shutil.rmtree(out)
    (out / "assets").mkdir(parents=True)
    for name, content in contents.items():
        (out / "assets" / name).write_bytes(content)
    (out / "index.html").write_text(index)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write (replaced)")
    parser.add_argument("--source", type=Path, default=HERE, help="the console's source folder (this one)")
    args = parser.parse_args()
    names = build(args.source, args.out)
    print(f"{len(names)} assets hashed into {args.out}")  # noqa: T201


if __name__ == "__main__":
    main()
