"""``counter-server``: serve the API, or manage API keys.

    counter-server                              serve on 127.0.0.1:8080 with ./counter-data
    counter-server serve --data-dir DIR --host H --port P [--config FILE]
    counter-server keys create --data-dir DIR --role ROLE [--counter ID] [--label TEXT]
    counter-server keys list|revoke ...

Defaults can be overridden with COUNTER_SERVER_DATA_DIR, _HOST, _PORT and _CONFIG.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from aiohttp import web

from .app import create_app
from .config import ScenarioError, Settings, env_default, load_scenario
from .services import KeyService, ServiceError
from .store import SQLiteStore


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=Path(env_default("data_dir", "counter-data")),
                        help="where the SQLite file and admin.key live (default ./counter-data)")
    parser.add_argument("--config", type=Path, default=env_default("config", None),
                        help="scenario TOML file (default: the built-in scenario)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="counter-server", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the API server")
    _common(serve)
    serve.add_argument("--host", default=env_default("host", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(env_default("port", "8080") or 8080))
    serve.add_argument("--billing-url", default=env_default("billing_url", None),
                       help="the billing server (default: the scenario's, else a simulated one)")
    serve.add_argument("--rate-limit", type=float, default=float(env_default("rate_limit", "20") or 20),
                       help="requests a second per API key (0: no limit; an address gets 10x)")
    serve.add_argument("--rate-burst", type=float, default=float(env_default("rate_burst", "40") or 40),
                       help="requests per API key at once before the rate applies")
    serve.add_argument("--access-log", action="store_true",
                       help="log a line per HTTP request (off by default: formatting it takes "
                            "about an eighth of the server's time per request)")

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="key_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it alone on one line")
    _common(create)
    create.add_argument("--role", required=True, choices=["admin", "cashier", "board"])
    create.add_argument("--counter", help="the counter a cashier key belongs to, e.g. S01-C1")
    create.add_argument("--label", default="", help="a note to tell keys apart")
    listing = key_commands.add_parser("list", help="list keys (never the keys themselves)")
    _common(listing)
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id (see keys list)")
    _common(revoke)
    revoke.add_argument("key_id")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("serve", "keys", "-h", "--help"):
        argv = ["serve", *argv]  # plain `counter-server [options]` serves
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        scenario = load_scenario(args.config)
    except ScenarioError as exc:
        print(f"counter-server: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(args, scenario)
    return asyncio.run(_keys(args, scenario))


def _serve(args: argparse.Namespace, scenario) -> int:
    settings = Settings(data_dir=args.data_dir, host=args.host, port=args.port, scenario=scenario,
                        rate_limit_per_s=args.rate_limit, rate_limit_burst=args.rate_burst,
                        billing_url=args.billing_url)
    counters = len(scenario.counters)
    print(
        f"counter-server: {scenario.name} ({len(scenario.substations)} substations, "
        f"{counters} counters); data in {settings.data_dir.resolve()}",
        flush=True,
    )
    access_log = logging.getLogger("aiohttp.access") if args.access_log else None
    web.run_app(create_app(settings), host=args.host, port=args.port, access_log=access_log,
                print=lambda text: print(text, flush=True))
    return 0


async def _keys(args: argparse.Namespace, scenario) -> int:
    store = SQLiteStore(args.data_dir / "counter.db", scenario.policy)
    await store.open()
    try:
        keys = KeyService(store, scenario)
        if args.key_command == "create":
            try:
                plain, _ = await keys.create(args.role, args.counter, args.label)
            except ServiceError as exc:
                print(f"counter-server: {exc.message}", file=sys.stderr)
                return 2
            print(plain)
        elif args.key_command == "list":
            for record in await store.list_keys():
                state = "revoked" if record.revoked_at else "live"
                print(f"{record.id}\t{record.role}\t{record.counter or '-'}\t{state}\t{record.label}")
        elif args.key_command == "revoke":
            import time

            if not await store.revoke_key(args.key_id, time.time()):
                print(f"counter-server: no live key {args.key_id!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.key_id}")
    finally:
        await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
