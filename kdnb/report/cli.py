"""The installed ``kdnb`` command: the engine's subcommands (``kdnb.cli``) plus ``kdnb book``."""

from __future__ import annotations

import argparse
import sys

from kdnb import cli


def _book_arguments(b: argparse.ArgumentParser) -> None:
    b.add_argument("--profile", default="mini")
    b.add_argument("--no-train", action="store_true", help="refuse to train; fail naming the missing runs")
    b.add_argument("--only", nargs="+", help="execute only these sections")
    b.add_argument("--skip-build", action="store_true", help="execute notebooks only")
    b.add_argument("--root", help="the checkout to build (default: the working directory)")
    b.add_argument("--cell-timeout", type=int, metavar="SECONDS",
                   help="stop a notebook whose cell runs longer (0: no limit; default: 1800 when nothing is "
                        "trained, no limit when the build trains)")


def _book(a: argparse.Namespace) -> int:
    from kdnb.report.book import build_book

    return build_book(a.profile, train=not a.no_train, only=a.only, build=not a.skip_build, root=a.root,
                      cell_timeout=a.cell_timeout)


BOOK = ("execute the notebooks with a profile's params, then build the HTML book", _book_arguments, _book)


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, extra={"book": BOOK})


if __name__ == "__main__":
    sys.exit(main())
