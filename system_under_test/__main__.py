"""Command line: ``python -m system_under_test api|worker``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from system_under_test.config import ConfigError, Settings, describe, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m system_under_test",
        description="The crashlab reference worker: a media-to-text job service on Redis.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Configuration comes from the environment:\n" + describe(),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    api = commands.add_parser("api", help="serve the HTTP API (submit jobs, status, transcript)")
    api.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    api.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    commands.add_parser(
        "worker", help="process jobs: claim, chunk with ffmpeg, transcribe, commit, recover"
    )
    for sub in commands.choices.values():
        sub.add_argument("--log-level", default=os.environ.get("CRASHLAB_LOG_LEVEL", "INFO"),
                         choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"system_under_test: {exc}", file=sys.stderr)
        return 2
    from system_under_test import logs

    logs.configure(settings.worker_id if args.command == "worker" else "api", args.log_level)
    if args.command == "api":
        return _serve_api(settings, args.host, args.port)
    return _run_worker(settings)


def _serve_api(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from system_under_test.api import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)
    return 0


def _run_worker(settings: Settings) -> int:
    from system_under_test.worker import Worker

    async def run() -> None:
        if not settings.recovery_machinery:
            from system_under_test.bare import BareWorker

            await BareWorker(settings).run()
            return
        await Worker(settings).run()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
