"""``newsarchive outlets``: the outlet registry, validated and listed."""

from __future__ import annotations

import argparse

from crawler.cli.exits import ExitCode
from crawler.registry import load_registry


def add_commands(commands: argparse._SubParsersAction) -> None:
    outlets = commands.add_parser("outlets", help="validate the registry and list its outlets")
    outlets.set_defaults(command=outlets_command)
    registry_arguments(outlets)


def registry_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--outlets-file",
        action="append",
        default=[],
        metavar="PATH",
        help="extra registry file; its outlets add to or replace the shipped ones",
    )


def outlets_command(args: argparse.Namespace) -> ExitCode:
    registry = load_registry(args.outlets_file)
    for outlet in registry.values():
        starts = len(outlet.sitemaps) + len(outlet.feeds) + len(outlet.listings)
        print(
            f"{outlet.id:<18} {outlet.region:<6} {','.join(outlet.languages):<4} "
            f"{starts} start point(s)  {outlet.name}"
        )
    return ExitCode.OK
