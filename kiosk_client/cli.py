"""``kiosk``: the cashier's command line; with no command it opens the terminal app.

    kiosk [--server URL] [--key KEY] [--counter ID] [--json] COMMAND ...

Server and key also come from ``KIOSK_SERVER`` and ``KIOSK_KEY`` (or ``KIOSK_KEY_FILE``), so
the key need not show in the process list. ``--json`` prints the server's token or payment
object; without it, one short line. Exit status: 0 done (or safely journalled while offline),
1 refused (the server's or the kiosk's own check), 2 bad usage, 3 server unreachable and the
action cannot wait in the journal.

While the server answers, every command tops up this counter's leased numbers (as the app
does), so ``kiosk issue`` still works when the server goes away; ``--slip`` prints a token
slip for ``issue``, a provisional receipt for ``pay`` and the day's cash-up for ``cashup``.

Payments billing refused for good are this counter's worklist: ``failed`` lists them with the
reason in words, ``resubmit`` sends one again (``--account`` corrects its account), ``refund``
records that its cash went back to the consumer. These and ``cashup`` need the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from .client import Json, KioskClient, KioskError, ServerError
from .desk import Desk, ActionResult, describe_error
from .journal import FAILED, PENDING, Journal
from .slip import COLUMNS, WIDTHS, print_slip, render
from .text import cash_up_table, failed_line, parse_rupees, token_line

DEFAULT_SERVER = "http://127.0.0.1:8080"
PRIORITIES = ("normal", "senior", "disabled")
MODES = ("cash", "cheque", "card", "upi", "dd")
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def default_journal() -> Path:
    """One journal per kiosk machine, where XDG keeps state that outlives a restart."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "kiosk" / "journal.sqlite"


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(prog="kiosk", description="The cashier's client for the counter server.")
    parser.add_argument("--server", default=env.get("KIOSK_SERVER", DEFAULT_SERVER),
                        help="server URL (KIOSK_SERVER; default %(default)s)")
    parser.add_argument("--key", default=env.get("KIOSK_KEY"), help="cashier API key (KIOSK_KEY)")
    parser.add_argument("--key-file", default=env.get("KIOSK_KEY_FILE"),
                        help="read the key from a file, readable by the cashier's account only (KIOSK_KEY_FILE)")
    parser.add_argument("--counter", default=env.get("KIOSK_COUNTER"),
                        help="counter id (default: the one the key is bound to)")
    parser.add_argument("--journal", type=Path, default=Path(env.get("KIOSK_JOURNAL") or default_journal()),
                        help="offline journal file (KIOSK_JOURNAL; default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the server's JSON object")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per attempt (default 5)")
    parser.add_argument("--retries", type=int, default=3, help="retries after the first attempt (default 3)")
    parser.add_argument("--lease-size", type=int, default=10,
                        help="numbers to lease per service for offline issue; 0 leases none (default 10)")

    def slip_options(p: argparse.ArgumentParser, default: Any = None) -> None:
        """Before or after the command: a subcommand's copy only overrides when given."""
        keep = argparse.SUPPRESS
        p.add_argument("--slip", default=keep if default is keep else env.get("KIOSK_SLIP"),
                       help="print token slips, payment receipts and the cash-up to this printer device "
                            "or file (KIOSK_SLIP)")
        p.add_argument("--slip-format", choices=("escpos", "text"), default=keep if default is keep else "escpos")
        p.add_argument("--paper", type=int, choices=tuple(COLUMNS), default=keep if default is keep else 58,
                       help="paper width in mm: 58 (32 characters a line) or 80 (48)")
        p.add_argument("--columns", type=int, choices=WIDTHS, default=keep if default is keep else None,
                       help="characters a line holds, as the printer's manual says; overrides --paper "
                            "(42: 76 mm paper, or an 80 mm printer with a 512-dot head)")

    slip_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def token_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--token", help="token id (default: the token at this counter)")

    issue = sub.add_parser("issue", help="issue a token (from a leased block while offline)")
    issue.add_argument("--service", help="service id (default: the counter's first service)")
    issue.add_argument("--priority", choices=PRIORITIES, default="normal")
    slip_options(issue, argparse.SUPPRESS)
    sub.add_parser("next", help="call the next consumer to this counter")
    for name, text in (("recall", "announce the called token again"), ("start", "start serving it"),
                       ("complete", "finish it"), ("no-show", "mark it a no-show (after a recall)")):
        token_option(sub.add_parser(name, help=text, aliases=["finish"] if name == "complete" else []))
    transfer = sub.add_parser("transfer", help="send the token to another service or counter")
    token_option(transfer)
    transfer.add_argument("--service")
    transfer.add_argument("--to-counter")
    pay = sub.add_parser("pay", help="record a payment for the token at the counter")
    token_option(pay)
    pay.add_argument("--account", required=True)
    amount = pay.add_mutually_exclusive_group(required=True)
    amount.add_argument("--amount", help="rupees, e.g. 1234.50")
    amount.add_argument("--paise", type=int, help="paise, e.g. 123450")
    pay.add_argument("--mode", choices=MODES, default="cash")
    pay.add_argument("--part", action="store_true",
                     help="one of several payments for this token (two bills, or one bill in two modes)")
    slip_options(pay, argparse.SUPPRESS)
    sub.add_parser("failed", help="this counter's failed payments (billing refused them), with the reason")
    resubmit = sub.add_parser("resubmit", help="send a failed payment to billing again")
    resubmit.add_argument("payment", metavar="PAYMENT_ID_OR_RECEIPT")
    resubmit.add_argument("--account", help="the corrected account number (default: the payment's own)")
    refund = sub.add_parser("refund", help="record that a failed payment's cash went back to the consumer")
    refund.add_argument("payment", metavar="PAYMENT_ID_OR_RECEIPT")
    cashup = sub.add_parser("cashup", help="the day's payments at this counter, to count the drawer against")
    cashup.add_argument("--date", type=day_arg, help="YYYY-MM-DD (default: today)")
    slip_options(cashup, argparse.SUPPRESS)
    sub.add_parser("status", help="server, billing, this counter's token and the journal")
    sub.add_parser("sync", help="replay the offline journal")
    lease = sub.add_parser("lease", help="lease numbers for issuing while offline")
    lease.add_argument("--service")
    lease.add_argument("--size", type=int)
    app = sub.add_parser("app", help="the terminal app (also with no command)")
    slip_options(app, argparse.SUPPRESS)
    return parser


def line_width(args: argparse.Namespace) -> int:
    """The slip's characters a line: ``--columns`` when given, else the usual for ``--paper``."""
    return args.columns or COLUMNS[args.paper]


def day_arg(text: str) -> str:
    """A day as YYYY-MM-DD, checked before anything is sent."""
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None   # 3.11 takes 20261201 too
    except ValueError:
        day = None
    if day is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day as YYYY-MM-DD")
    return day.isoformat()


def read_key(args: argparse.Namespace) -> str | None:
    if args.key:
        return args.key.strip()
    if args.key_file:
        path = Path(args.key_file)
        if path.stat().st_mode & 0o077:
            sys.stderr.write(f"kiosk: {path} can be read by other users of this PC: chmod 600 {path}\n")
        return path.read_text().strip()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    key = key_or_exit(parser, args)
    if args.command in (None, "app"):
        from .app import KioskApp  # Textual loads only when the screen is wanted

        KioskApp(args.server, key, counter=args.counter, journal_path=args.journal,
                 slip_path=args.slip, slip_format=args.slip_format, columns=line_width(args),
                 lease_size=args.lease_size, timeout=args.timeout, retries=args.retries).run()
        return EXIT_OK
    return asyncio.run(run_command(args, key, sys.stdout, sys.stderr))


async def run(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """One command from inside a running event loop (tests, scripts); never the app."""
    out, err = out or sys.stdout, err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "app"):
        parser.error("run() takes a command; main() opens the app")
    return await run_command(args, key_or_exit(parser, args), out, err)


def key_or_exit(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    try:
        key = read_key(args)
    except OSError as exc:
        parser.error(f"cannot read the key file: {exc}")
    if not key:
        parser.error("give a cashier key: --key, --key-file, KIOSK_KEY or KIOSK_KEY_FILE")
    return key


async def run_command(args: argparse.Namespace, key: str, out: TextIO, err: TextIO) -> int:
    """Run one command against the server (or the journal) and print its answer."""
    async with KioskClient(args.server, key, timeout=args.timeout, retries=args.retries) as client:
        with Journal(args.journal) as journal:
            desk = Desk(client, journal, counter=args.counter, lease_size=args.lease_size)
            try:
                await desk.connect()
                code = await COMMANDS[args.command](desk, args, out)
            except KioskError as exc:
                return report_error(exc, args.json, out, err)
            if args.command != "lease":
                await top_up_leases(desk, err)
            return code


async def top_up_leases(desk: Desk, err: TextIO) -> None:
    """Lease numbers for offline issue while the server answers, as the app does on each refresh:
    only when fewer than a few are left, so most commands cost no request. A refusal is said on
    stderr and changes nothing else (the command itself is done)."""
    if desk.online is not True:
        return
    try:
        await desk.ensure_leases()
    except KioskError as exc:
        err.write(f"kiosk: could not lease numbers for offline issue: {describe_error(exc)}\n")


def report_error(exc: KioskError, as_json: bool, out: TextIO, err: TextIO) -> int:
    if as_json:
        code = "unreachable" if exc.transient else "kiosk_error"
        error = exc.as_json() if isinstance(exc, ServerError) else {"code": code, "message": exc.message}
        out.write(json.dumps({"error": error}) + "\n")
    else:
        prefix = f"refused ({exc.code})" if isinstance(exc, ServerError) else "error"
        err.write(f"kiosk: {prefix}: {describe_error(exc)}\n")
    if exc.transient:
        return EXIT_UNREACHABLE
    return EXIT_REFUSED


def emit(out: TextIO, as_json: bool, data: Any, line: str) -> None:
    out.write((json.dumps(data, ensure_ascii=False) if as_json else line) + "\n")


def emit_result(desk: Desk, args: argparse.Namespace, out: TextIO, result: ActionResult) -> int:
    emit(out, args.json, result.as_json(), result.message(desk.service_names))
    return EXIT_OK


def print_result_slip(desk: Desk, args: argparse.Namespace, result: ActionResult) -> None:
    """The token slip or payment receipt, when a printer is set."""
    slip = desk.slip_for(result) if args.slip else None
    if slip is None:
        return
    try:
        print_slip(render(slip, line_width(args), args.slip_format), args.slip)
    except OSError as exc:   # the action is done all the same: say so, do not fail it
        sys.stderr.write(f"kiosk: slip NOT printed to {args.slip}: {exc.strerror or exc}\n")


async def cmd_issue(desk: Desk, args: argparse.Namespace, out: TextIO) -> int:
    result = await desk.issue(args.service, args.priority)
    assert result.token is not None
    print_result_slip(desk, args, result)
    return emit_result(desk, args, out, result)


async def cmd_next(desk: Desk, args: argparse.Namespace, out: TextIO) -> int:
    return emit_result(desk, args, out, await desk.call_next())


def token_command(action: str) -> Callable[[Desk, argparse.Namespace, TextIO], Awaitable[int]]:
    async def command(desk: Desk, args: argparse.Namespace, out: TextIO) -> int:
        if args.token is None:
            await desk.locate()
        return emit_result(desk, args, out, await desk.act(action, args.token))

    return command


async def cmd_transfer(desk: Desk, args: argparse.Namespace, out: TextIO) -> int:
    if not args.service and not args.to_counter:
        raise KioskError("Name the --service or the --to-counter to transfer to.")
    if args.token is None:
        await desk.locate()
    return emit_result(desk, args, out,
                        await desk.transfer(service=args.service, counter=args.to_counter, token_id=args.token))


async def cmd_pay(desk: Desk, args: argparse.Namespace, out: TextIO) -> int:
    try:
        paise = args.paise if args.paise is not None else parse_rupees(args.amount)
    except ValueError as exc:
        raise KioskError(str(exc)) from None
    if args.token is None:
        await desk.locate()
    result = await desk.pay(args.account, paise, args.mode, args.token, part=args.part)
    print_result_slip(desk, args, result)
    return emit_result(desk, args, out, result)


async def cmd_status(desk: Desk, args: argparse.Namespace, out: TextIO) -> int:
    view = await desk.refresh(sync=False)
    entries = [e for e in desk.journal.entries(desk.cid) if e.status in (PENDING, FAILED)]
    if args.json:
        emit(out, True, {**view.as_json(), "journal": [e.as_json() for e in entries]}, "")
        return EXIT_OK
    lines = [view.status_line()]
    if view.error:
        lines.append(f"  {view.error}")
    current = view.current
    lines.append("  at the counter: " + (token_line(current, desk.service_names) if current else "nobody"))
    if view.online:
        lines.append(f"  waiting in the hall: {view.waiting}")
    for entry in entries:
        why = f": {entry.error_message}" if entry.status == FAILED else ""
        lines.append(f"  journal #{entry.seq} {entry.status} {entry.label}{why}")
    emit(out, False, None, "\n".join(lines))
    return EXIT_OK


async def cmd_sync(desk: Desk, args: argparse.Namespace, out: TextIO) -> int:
    report = await desk.sync()
    lines = [f"synced: {len(report.done)} sent, {len(report.failed)} refused, {report.pending} still pending"]
    lines += [f"  refused #{e.seq} {e.label}: {e.error_message}" for e in report.failed]
    if report.stopped is not None:
        lines.append(f"  stopped: {report.stopped.message}")
    emit(out, args.json, report.as_json(), "\n".join(lines))
    if report.pending:
        return EXIT_UNREACHABLE
    return EXIT_REFUSED if report.failed else EXIT_OK


async def cmd_failed(desk: Desk, args: argparse.Namespace, out: TextIO) -> int:
    payments = await desk.failed_payments()
    if args.json:
        emit(out, True, {"payments": payments}, "")
        return EXIT_OK
    where = f"{desk.cid} ({desk.counter_name()})" if desk.counter_name() != desk.cid else desk.cid
    if not payments:
        emit(out, False, None, f"No failed payments at {where}.")
        return EXIT_OK
    lines = [f"{len(payments)} failed payment(s) at {where}, oldest first "
             "(resubmit RECEIPT [--account A], or refund RECEIPT):"]
    for payment in payments:
        lines.append(f"  {failed_line(payment)}")
        lines.append(f"      {payment.get('reason_text') or payment.get('reason') or 'no reason given'}")
    emit(out, False, None, "\n".join(lines))
    return EXIT_OK


async def cmd_resubmit(desk: Desk, args: argparse.Namespace, out: TextIO) -> int:
    return emit_result(desk, args, out, await desk.resubmit(args.payment, args.account))


async def cmd_refund(desk: Desk, args: argparse.Namespace, out: TextIO) -> int:
    return emit_result(desk, args, out, await desk.refund(args.payment))


async def cmd_cashup(desk: Desk, args: argparse.Namespace, out: TextIO) -> int:
    cash = await desk.cash_up(args.date)
    if args.slip:
        try:
            print_slip(render(desk.cash_up_slip(cash), line_width(args), args.slip_format), args.slip)
        except OSError as exc:
            sys.stderr.write(f"kiosk: cash-up slip NOT printed to {args.slip}: {exc.strerror or exc}\n")
    lines = cash_up_table(cash, desk.counter_name(cash.get("counter")), desk.substation_name)
    emit(out, args.json, cash, "\n".join(lines))
    return EXIT_OK


async def cmd_lease(desk: Desk, args: argparse.Namespace, out: TextIO) -> int:
    lease = await desk.lease(args.service, args.size)
    data: Json = {"id": lease.id, "counter": lease.counter, "service": lease.service, "day": lease.day,
                  "numbers": list(lease.numbers)}
    return emit_result(desk, args, out, ActionResult("lease", lease=data))


COMMANDS: dict[str, Callable[[Desk, argparse.Namespace, TextIO], Awaitable[int]]] = {
    "issue": cmd_issue,
    "next": cmd_next,
    "recall": token_command("recall"),
    "start": token_command("start"),
    "complete": token_command("complete"),
    "finish": token_command("complete"),
    "no-show": token_command("no-show"),
    "transfer": cmd_transfer,
    "pay": cmd_pay,
    "failed": cmd_failed,
    "resubmit": cmd_resubmit,
    "refund": cmd_refund,
    "cashup": cmd_cashup,
    "status": cmd_status,
    "sync": cmd_sync,
    "lease": cmd_lease,
}


if __name__ == "__main__":
    sys.exit(main())
