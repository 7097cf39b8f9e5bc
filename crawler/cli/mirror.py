"""``newsarchive mirror``: the offline mirrors, served on loopback until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import threading

from crawler.cli.exits import ExitCode


def add_commands(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("mirror", help="serve the offline mirrors until interrupted")
    serve.set_defaults(command=mirror_command)
    serve.add_argument("--port", type=int, default=8765)


def mirror_command(args: argparse.Namespace) -> ExitCode:
    from crawler.mirror.server import MirrorServer

    with MirrorServer(port=args.port) as server:
        print(f"mirrors at {server.url}/<host>/<path>, e.g. {server.url}/difang.gmw.cn/cq/ (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return ExitCode.OK
