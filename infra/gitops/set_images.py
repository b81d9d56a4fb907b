#!/usr/bin/env python3
"""Write the image digests CI pushed into an environment's images.yaml.

    python3 infra/gitops/set_images.py --tag <commit> --digests <dir> infra/gitops/prod/images.yaml

<dir> holds one file per image, `<image>.digest`, each holding `sha256:<64 hex>` (the
digest the registry gave the pushed image). Every image must be there: a release
never mixes images of two commits. The standard library only, so CI needs nothing else.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

SERVICES = ("command-service", "query-service", "projector", "kos-mock")
IMAGES = SERVICES + ("web",)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
TAG = re.compile(r"[0-9a-f]{7,40}")

HEADER = """\
# The images production runs, by digest. Written by CI only (.github/workflows/ci.yaml,
# job "promote", with infra/gitops/set_images.py) in a pull request whose merge is the
# release; reverting that merge is the rollback. Empty digests: the chart's appVersion tag.
"""


def read_digests(folder: Path) -> dict[str, str]:
    found = {p.name.removesuffix(".digest"): p.read_text().strip() for p in folder.glob("*.digest")}
    missing = [i for i in IMAGES if i not in found]
    unknown = sorted(set(found) - set(IMAGES))
    bad = [f"{i}: {d!r}" for i, d in found.items() if i in IMAGES and not DIGEST.fullmatch(d)]
    problems = []
    if missing:
        problems.append(f"no digest for {', '.join(missing)}")
    if unknown:
        problems.append(f"digests for unknown images {', '.join(unknown)}")
    if bad:
        problems.append(f"not a sha256 digest: {'; '.join(bad)}")
    if problems:
        raise SystemExit("set_images: " + "; ".join(problems))
    return found


def render(tag: str, digests: dict[str, str]) -> str:
    lines = [HEADER.rstrip("\n"), "image:", f'  tag: "{tag}"', "services:"]
    lines += [f'  {s}: {{imageDigest: "{digests[s]}"}}' for s in SERVICES]
    lines.append(f'web: {{imageDigest: "{digests["web"]}"}}')
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True, help="the commit the images were built from")
    parser.add_argument("--digests", required=True, type=Path, help="folder of <image>.digest files")
    parser.add_argument("images_file", type=Path, help="the environment's images.yaml")
    args = parser.parse_args(argv)
    if not TAG.fullmatch(args.tag):
        raise SystemExit(f"set_images: --tag must be a commit id, not {args.tag!r}")
    args.images_file.write_text(render(args.tag, read_digests(args.digests)))


if __name__ == "__main__":
    main(sys.argv[1:])
