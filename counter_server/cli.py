"""``counter-server``: serve the API, or manage API keys.

    counter-server                              serve on 127.0.0.1:8080 with ./counter-data
    counter-server serve --data-dir DIR --host H --port P [--config FILE]
    counter-server keys create --data-dir DIR --role ROLE [--counter ID] [--label TEXT]
    counter-server keys list|revoke ...
    counter-server serve --store redis --redis-url redis://HOST:6379/0   (one of several replicas)
    counter-server report --data-dir DIR [--date D | --month M] [--substation S] [--format F] [--chart PNG]
    counter-server backup --data-dir DIR OUT    (while the server runs)
    counter-server restore BACKUP --data-dir DIR   (into an empty data dir)

Defaults can be overridden with COUNTER_SERVER_DATA_DIR, _HOST, _PORT and _CONFIG.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import gc
import json
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from .app import create_app
from .backup import DOCS as BACKUP_DOCS
from .backup import PAGES_PER_STEP, BackupError, restore_backup, take_backup
from .ops.chart import ChartUnavailable, daily_chart, monthly_chart
from .ops.logs import FORMATS, configure_logging
from .ops.reports import daily_csv, daily_json, daily_text, monthly_csv, monthly_json, monthly_text
from .ops.service import OpsService
from .config import STORE_ENGINES, ScenarioError, Settings, env_default, load_scenario
from .scenario.schema import host_port
from .datadir import LOCK_NAME, DataDirError, DataDirLock, check_data_dir, lock_data_dir
from .listen import ListenError, address_of, bind_sockets, raise_open_files
from .services import KeyService, ServiceError
from .starting import wait_for_store
from .store import Store, StoreUnavailable, open_store


LOG_LEVELS = ("debug", "info", "warning", "error")

# A connection that has not sent a whole request head within this many seconds is closed:
# an idle keep-alive connection, or a slowloris client trickling its headers (aiohttp's
# default of 75 s let one hold a connection that long).
IDLE_TIMEOUT_S = 15.0

# Python's cyclic collector, tuned for a server holding thousands of connections and a day of
# tokens: with the defaults (700, 10, 10) the objects of a request or a view that live past a
# few hundred allocations reach the oldest generation, and every time that grows by a quarter a
# full collection stops the loop for as long as it takes to walk millions of objects (up to
# 0.9 s with 10,000 live connections, measured with benchmarks.live_fanout). A larger first
# generation lets them die young; what the server built at start is frozen out of every walk.
GC_THRESHOLDS = (50_000, 20, 10)


class _Parser(argparse.ArgumentParser):
    """Each (sub)command answers a mistake with its own usage: ``serve --prot 1`` shows serve's,
    not the top level's, and names the option meant. A usage longer than two lines is cut to
    one that points at ``--help``, so a refusal stays one or two lines."""

    def error(self, message: str) -> None:  # type: ignore[override]
        usage = self.format_usage().strip()
        if usage.count("\n") >= 1:
            usage = f"usage: {self.prog} [options]   ({self.prog} --help lists them)"
        self.exit(2, f"{usage}\n{self.prog}: error: {message}\n")

    def unrecognized(self, extras: list[str]) -> None:
        """Refuse what this (sub)command does not take, with the nearest option it does."""
        known = [o for o in self._option_string_actions if o.startswith("--")]
        hints = []
        for extra in extras:
            if extra.startswith("-"):
                near = difflib.get_close_matches(extra.split("=", 1)[0], known, n=1)
                if near:
                    hints.append(f"{extra.split('=', 1)[0]}: did you mean {near[0]}?")
        self.error(f"unrecognized arguments: {' '.join(extras)}" + (f" ({'; '.join(hints)})" if hints else ""))


def _port(text: str) -> int:
    """A TCP port number, refused by argparse (with serve's usage) when it cannot be one."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (0-65535)")
    return port


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=Path(env_default("data_dir", "counter-data")),
                        help="where the SQLite file and admin.key live (default ./counter-data)")
    parser.add_argument("--config", type=Path, default=env_default("config", None),
                        help="scenario TOML file (default: the built-in scenario)")


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", choices=STORE_ENGINES, default=env_default("store", None),
                        help="sqlite: one file in --data-dir (one server process); redis: state in "
                             "Redis, shared by several replicas (default: the config's [store], "
                             "else sqlite)")
    parser.add_argument("--redis-url", default=env_default("redis_url", None),
                        help="the Redis server of --store redis (default: the config's "
                             "[store] redis_url, else redis://127.0.0.1:6379/0)")
    parser.add_argument("--redis-sentinel", action="append", type=_sentinel, metavar="HOST:PORT",
                        help="a Redis Sentinel that names the primary (repeat for each); the "
                             "replica follows a failover by itself (default: the config's [store] "
                             "redis_sentinels)")
    parser.add_argument("--redis-master", default=None, metavar="NAME",
                        help="the Sentinels' name for the primary (default: the config's [store] "
                             "redis_master, else counter-redis)")


def _sentinel(value: str) -> str:
    try:
        host_port(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _store_overrides(args: argparse.Namespace) -> dict:
    """The store flags, as Settings takes them."""
    return {"store_engine": args.store, "redis_url": args.redis_url,
            "redis_sentinels": tuple(args.redis_sentinel or ()), "redis_master": args.redis_master}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="counter-server", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the API server")
    _common(serve)
    _store_options(serve)
    serve.add_argument("--host", default=env_default("host", "127.0.0.1"))
    serve.add_argument("--port", type=_port, default=int(env_default("port", "8080") or 8080))
    serve.add_argument("--billing-url", default=env_default("billing_url", None),
                       help="the billing server (default: the scenario's, else a simulated one)")
    serve.add_argument("--rate-limit", type=float, default=float(env_default("rate_limit", "20") or 20),
                       help="requests a second per API key (0: no limit; an address gets 10x)")
    serve.add_argument("--rate-burst", type=float, default=float(env_default("rate_burst", "40") or 40),
                       help="requests per API key at once before the rate applies")
    serve.add_argument("--trusted-proxy", action="append", metavar="ADDRESS",
                       default=[a for a in (env_default("trusted_proxies", "") or "").split(",") if a],
                       help="a load balancer's address (or network) whose X-Forwarded-For is "
                            "believed, so per-address limits see each client (repeat for more)")
    serve.add_argument("--access-log", action="store_true",
                       help="log a line per HTTP request (off by default: formatting it takes "
                            "about an eighth of the server's time per request)")
    serve.add_argument("--log-format", choices=FORMATS, default=env_default("log_format", None),
                       help="json: one object a line (request id, counter, token); text: for a "
                            "terminal (default: text when stderr is a terminal, else json)")
    serve.add_argument("--log-level", choices=LOG_LEVELS, default=env_default("log_level", "info"),
                       help="info logs one line per change request (issue, call, payment...); "
                            "warning keeps only problems")

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="key_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it alone on one line")
    _common(create)
    _store_options(create)
    create.add_argument("--role", required=True, choices=["admin", "cashier", "board"])
    create.add_argument("--counter", help="the counter a cashier key belongs to, e.g. S01-C1")
    create.add_argument("--label", default="", help="a note to tell keys apart")
    listing = key_commands.add_parser("list", help="list keys (never the keys themselves)")
    _common(listing)
    _store_options(listing)
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id (see keys list)")
    _common(revoke)
    _store_options(revoke)
    revoke.add_argument("key_id")
    key_commands.metavar = "{" + ",".join(key_commands.choices) + "}"   # named so in its errors

    report = commands.add_parser("report", help="daily or monthly report from the store's events")
    _common(report)
    _store_options(report)
    when = report.add_mutually_exclusive_group()
    when.add_argument("--date", help="the day, YYYY-MM-DD (default: today)")
    when.add_argument("--month", help="a month, YYYY-MM: one line per day and the month's figures")
    report.add_argument("--substation", help="one substation (default: all)")
    report.add_argument("--format", choices=("text", "csv", "json"), default="text")
    report.add_argument("--chart", type=Path, metavar="PNG",
                        help="also draw waits by hour (of a day) or by day (of a month); needs matplotlib")

    backup = commands.add_parser("backup", help="copy the SQLite store into a new directory while "
                                 "the server keeps serving")
    _common(backup)
    _store_options(backup)
    backup.add_argument("out", type=Path, metavar="OUT", help="a new (or empty) directory for the backup")
    backup.add_argument("--pages-per-step", type=int, default=PAGES_PER_STEP,
                        help=f"database pages copied at a time (default {PAGES_PER_STEP}, 16 MB)")
    backup.add_argument("--step-pause", type=float, default=0.0, metavar="SECONDS",
                        help="rest between steps, leaving the disk to the server (default 0)")
    backup.add_argument("--progress-every", type=float, default=1.0, metavar="SECONDS",
                        help="how often a long copy says how far it is, on stderr (default 1)")
    restore = commands.add_parser("restore", help="check a backup and put it in place in an empty "
                                  "data dir")
    _common(restore)
    _store_options(restore)
    restore.add_argument("backup", type=Path, metavar="BACKUP", help="a directory written by backup")

    check = commands.add_parser("check-config", help="check a scenario file and print what it resolves "
                                "to, starting nothing (exit status 2 if it is refused)")
    check.add_argument("file", type=Path, nargs="?", default=env_default("config", None),
                       help="scenario TOML file (default: COUNTER_SERVER_CONFIG, else the built-in one)")
    check.add_argument("--schema", action="store_true", help="print the scenario file's JSON Schema")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line, or exit 2 with the usage of the (sub)command that was mistyped."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["serve", *argv]  # plain `counter-server [options]` serves
    if argv[0] not in commands and not argv[0].startswith("-"):
        near = difflib.get_close_matches(argv[0], commands, n=1)
        parser.error(f"unknown command {argv[0]!r}" + (f" (did you mean {near[0]}?)" if near else "")
                     + f"; the commands are {', '.join(commands)}")
    args, extras = parser.parse_known_args(argv)
    if extras:
        mistyped = commands[args.command]
        if getattr(args, "key_command", None):
            mistyped = next(a for a in mistyped._actions
                            if isinstance(a, argparse._SubParsersAction)).choices[args.key_command]
        mistyped.unrecognized(extras)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    level = getattr(args, "log_level", "info")
    configure_logging(getattr(args, "log_format", None), getattr(logging, level.upper(), logging.INFO))
    if args.command == "check-config":
        return _check_config(args)
    try:
        scenario = load_scenario(args.config)
    except ScenarioError as exc:
        print(f"counter-server: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(args, scenario)
    if args.command == "report":
        return asyncio.run(_report(args, scenario))
    if args.command in ("backup", "restore"):
        return _backup_or_restore(args, scenario)
    return asyncio.run(_keys(args, scenario))


def _check_config(args: argparse.Namespace) -> int:
    """Validate a scenario file (or print its schema) and say what it resolves to, before an
    operator starts a server on it: a typo is refused here, in one or two lines, exit status 2."""
    from .scenario.schema import json_schema
    from .check_config import describe

    if args.schema:
        print(json.dumps(json_schema(), indent=1, ensure_ascii=False))
        return 0
    try:
        scenario = load_scenario(args.file)
    except ScenarioError as exc:
        print(f"counter-server: {exc}", file=sys.stderr)
        return 2
    print(describe(scenario, str(args.file) if args.file is not None else "built-in scenario"))
    return 0


def _serve(args: argparse.Namespace, scenario) -> int:
    """Check what can be checked (the data dir, the port, the lock) before anything is written,
    then serve. Each refusal is one line on stderr and exit status 2."""
    settings = Settings(data_dir=args.data_dir, host=args.host, port=args.port, scenario=scenario,
                        rate_limit_per_s=args.rate_limit, rate_limit_burst=args.rate_burst,
                        billing_url=args.billing_url, **_store_overrides(args),
                        trusted_proxies=tuple(args.trusted_proxy))
    sqlite = settings.store.engine == "sqlite"
    data_dir = settings.data_dir.absolute()
    fresh = sqlite and not settings.database_path.exists()
    try:
        existed, sockets, lock = _claim(data_dir, args.host, args.port, lock=sqlite)
    except (DataDirError, ListenError, OSError) as exc:
        print(f"counter-server: {exc}", file=sys.stderr)
        return 2
    counters = len(scenario.counters)
    where = (f"state in Redis at {settings.store_address}" if not sqlite else f"data in {data_dir}")
    print(
        f"counter-server: {scenario.name} ({len(scenario.substations)} substations, "
        f"{counters} counters); {where}",
        flush=True,
    )
    if (short := raise_open_files(settings.open_files)) is not None:
        print(f"counter-server: {short}", flush=True)
    if fresh:
        made = "new data dir" if not existed else "no database yet in data dir"
        print(f"counter-server: {made} {data_dir}, no tokens yet", flush=True)
    access_log = logging.getLogger("aiohttp.access") if args.access_log else None
    try:
        # Redis not up yet (a reboot where it starts late): serve "not ready" until it answers.
        if not sqlite and not asyncio.run(wait_for_store(settings, sockets)):
            return 0   # stopped while waiting
        app = create_app(settings)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        web.run_app(app, sock=sockets, access_log=access_log,
                    keepalive_timeout=IDLE_TIMEOUT_S, shutdown_timeout=settings.shutdown_grace_s,
                    print=lambda text: print(text, flush=True))
    except StoreUnavailable as exc:
        print(f"counter-server: {exc}", file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            lock.release()
    return 0


def _claim(data_dir: Path, host: str, port: int,
           lock: bool) -> tuple[bool, list[socket.socket], DataDirLock | None]:
    """The checks ``serve`` makes before writing anything, then what it holds while serving:
    whether the data dir existed, the bound sockets and the data dir's lock (SQLite only:
    Redis replicas share Redis, not a data dir; see datadir.py). A data dir another server
    holds is named before the port (that server most likely has the port too)."""
    held: DataDirLock | None = None
    sockets: list[socket.socket] = []
    try:
        existed = check_data_dir(data_dir)
        if lock and existed and (data_dir / LOCK_NAME).exists():
            held = lock_data_dir(data_dir)
        sockets = bind_sockets(host, port)
        if lock:
            if not existed:
                data_dir.mkdir(mode=0o700)   # private, as the SQLite store keeps it
            held = held or lock_data_dir(data_dir)
            held.claim(address_of(sockets))
    except BaseException:
        for sock in sockets:
            sock.close()
        if held is not None:
            held.release()
        raise
    return existed, sockets, held


async def _open_store_or_say(settings: Settings) -> Store | None:
    """The configured store, or None after saying on stderr why it cannot be reached."""
    try:
        return await open_store(settings)
    except StoreUnavailable as exc:
        print(f"counter-server: {exc}", file=sys.stderr)
        return None


async def _keys(args: argparse.Namespace, scenario) -> int:
    settings = Settings(data_dir=args.data_dir, scenario=scenario, **_store_overrides(args))
    if settings.store.engine == "sqlite":   # a typo in --data-dir must not start an empty store
        try:
            check_data_dir(settings.data_dir)
        except DataDirError as exc:
            print(f"counter-server: {exc}", file=sys.stderr)
            return 2
        if args.key_command != "create" and not settings.database_path.exists():
            print(f"counter-server: no data in {settings.data_dir.absolute()} (give --data-dir)",
                  file=sys.stderr)
            return 2
    store = await _open_store_or_say(settings)
    if store is None:
        return 1
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


async def _report(args: argparse.Namespace, scenario) -> int:
    """Reports read the store directly (the data dir's file, or Redis): no server needs to run."""
    settings = Settings(data_dir=args.data_dir, scenario=scenario, **_store_overrides(args))
    if settings.store.engine == "sqlite" and not settings.database_path.exists():
        print(f"counter-server: no data in {args.data_dir} (give --data-dir)", file=sys.stderr)
        return 2
    store = await _open_store_or_say(settings)
    if store is None:
        return 1
    try:
        ops = OpsService(scenario, store)
        try:
            substation = ops.parse_substation(args.substation)
            if args.month is not None:
                found = await ops.monthly(ops.parse_month(args.month), substation)
                text = {"text": monthly_text, "csv": monthly_csv,
                        "json": lambda r: json.dumps(monthly_json(r), indent=1)}[args.format](found)
            else:
                found = await ops.daily(ops.parse_day(args.date), substation)
                text = {"text": daily_text, "csv": daily_csv,
                        "json": lambda r: json.dumps(daily_json(r), indent=1)}[args.format](found)
        except ServiceError as exc:
            print(f"counter-server: {exc.message}", file=sys.stderr)
            return 2
    finally:
        await store.close()
    print(text, end="" if text.endswith("\n") else "\n")
    if args.chart is not None:
        try:
            drawn = (monthly_chart if args.month is not None else daily_chart)(found, args.chart)
        except ChartUnavailable as exc:
            print(f"counter-server: {exc}", file=sys.stderr)
            return 3
        print(f"chart: {drawn}", file=sys.stderr)
    return 0


def _backup_or_restore(args: argparse.Namespace, scenario) -> int:
    """``backup`` beside a running server (it takes no lock: SQLite's snapshot keeps the copy
    whole), ``restore`` into an empty data dir; Redis is refused with where its backup is said."""
    settings = Settings(data_dir=args.data_dir, scenario=scenario, store_engine=args.store,
                        redis_url=args.redis_url)
    if settings.store.engine != "sqlite":
        print(f"counter-server: {args.command}: the store is Redis, which keeps its own AOF and RDB "
              f"files; back those up (and restore them) as {BACKUP_DOCS} says", file=sys.stderr)
        return 2
    try:
        if args.command == "restore":
            summary = restore_backup(args.backup, settings.data_dir, settings.database_path.name)
            print(f"restored {summary.describe()} (backup of {summary.source}) into "
                  f"{settings.data_dir.absolute()}")
            return 0
        summary = take_backup(settings.database_path, args.out, pages_per_step=args.pages_per_step,
                              step_pause_s=args.step_pause, progress=_progress_printer(args.progress_every))
    except BackupError as exc:
        print(f"counter-server: {exc}", file=sys.stderr)
        return 2
    print(f"backup: {summary.describe()} in {summary.seconds:.2f} s -> {args.out.absolute()}")
    return 0


def _progress_printer(every_s: float) -> Callable[[int, int], None]:
    """Says how far a copy is on stderr: when it begins, then at most every ``every_s`` seconds
    once it has taken that long (a short copy says nothing more)."""
    import time

    shown = {"at": time.monotonic()}

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if done == 0:
            print(f"backup: copying {total:,} pages", file=sys.stderr, flush=True)
        elif done < total and now - shown["at"] >= every_s:
            shown["at"] = now
            print(f"backup: {done / total:.0%} ({done:,} of {total:,} pages)", file=sys.stderr, flush=True)

    return show


if __name__ == "__main__":
    sys.exit(main())
