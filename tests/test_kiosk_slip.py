"""The slips: plain text and the ESC/POS byte stream for 58, 76 and 80 mm thermal printers
(32, 42 and 48 characters a line)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from kiosk_client.slip import CashUpSlip, PaymentSlip, Slip, cash_up_text, print_slip, size, slip_escpos, slip_text
from kiosk_client.text import origin_text, parse_rupees, token_line, wait_text

from .test_kiosk_client import slip_figures

TOKEN = {
    "id": "t_abc", "number": "B-042", "substation": "S01", "service": "bill_payment",
    "priority": "senior", "status": "waiting", "issued_at": "2026-11-25T11:55:56+05:30",
    "estimate": {"p50_s": 300.0, "p90_s": 530.0, "ahead": 3, "counters": 4},
}


def slip_of(token: dict = TOKEN, name: str = "Kidwai Nagar") -> Slip:
    return Slip.from_token(token, service_name="Bill payment", substation_name=name)


def test_escpos_stream_initialises_centres_prints_the_number_big_and_cuts():
    data = slip_escpos(slip_of(), 32)
    assert data.startswith(b"\x1b@\x1ba\x01")                          # ESC @ init, ESC a 1 centre
    number = b"\x1d!\x33" + b"\x1bE\x01" + b"B-042" + b"\x1bE\x00" + b"\x1d!\x00"
    assert number in data                                              # GS ! 4x4, bold, back to normal
    assert data.endswith(b"\x1ba\x00" + b"\x1dV\x42\x03")              # left again, feed 3 and cut
    assert data.count(b"\x1d!\x33") == 1 and data.count(b"\x1dV") == 1
    assert b"\x1bE\x01Kidwai Nagar (S01)\x1bE\x00\n" in data                  # the hall, in bold
    for line in (b"Bill payment", b"Priority: senior citizen",
                 b"Issued 25 Nov 2026 11:55", b"People ahead: 3", b"Wait: about 5-9 min"):
        assert line + b"\n" in data, line
    assert max(data) < 0x80                                            # nothing the code page lacks


def test_the_number_is_as_large_as_the_paper_allows():
    long = {**TOKEN, "number": "B-0001234"}                             # 9 characters
    assert b"\x1d!\x22B-0001234" in slip_escpos(slip_of(long), 32).replace(b"\x1bE\x01", b"")   # 3x on 32
    assert b"\x1d!\x33B-0001234" in slip_escpos(slip_of(long), 48).replace(b"\x1bE\x01", b"")   # 4x on 48
    assert b"-" * 48 + b"\n" in slip_escpos(slip_of(), 48)
    with pytest.raises(ValueError):
        size(9, 1)


def test_hindi_names_print_as_question_marks_not_as_broken_bytes():
    data = slip_escpos(slip_of(name="किदवई नगर"), 32)
    assert b"????? ??? (S01)" in data and max(data) < 0x80


def test_plain_text_fits_the_paper_and_says_the_same():
    text = slip_text(slip_of(), 32)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 32
    assert [line.strip() for line in lines if line.strip()] == [
        "Kidwai Nagar (S01)", "-" * 32, "TOKEN B-042", "Bill payment", "Priority: senior citizen",
        "Issued 25 Nov 2026 11:55", "People ahead: 3", "Wait: about 5-9 min", "-" * 32,
        "Please wait for your number", "on the hall board.",
    ]
    assert lines[2] == "TOKEN B-042".center(32).rstrip()
    assert max(len(line) for line in slip_text(slip_of(), 48).splitlines()) == 48


def test_an_offline_slip_makes_no_promise_about_the_wait():
    offline = {**TOKEN, "priority": "normal", "estimate": None, "offline": True}
    text = slip_text(slip_of(offline))
    assert "Issued offline: wait not known yet" in text and "People ahead" not in text
    assert "Priority" not in text


def test_slips_append_to_a_file_like_paper_on_a_roll(tmp_path: Path):
    roll = tmp_path / "roll.bin"
    one = slip_escpos(slip_of(), 32)
    print_slip(one, roll)
    print_slip(slip_text(slip_of()), roll)
    assert roll.read_bytes() == one + slip_text(slip_of()).encode()


def test_wait_and_money_in_words():
    assert wait_text(None) == "wait unknown"
    assert wait_text({"p50_s": 0.0, "p90_s": 30.0}) == "under 1 min"
    assert wait_text({"p50_s": 300.0, "p90_s": 530.0}) == "about 5-9 min"
    assert wait_text({"p50_s": 600.0, "p90_s": 600.0}) == "about 10 min"
    assert parse_rupees("1,234.50") == 123450 and parse_rupees("Rs 5") == 500
    for bad in ("", "0", "-3", "1.234", "abc", "nan"):
        with pytest.raises(ValueError):
            parse_rupees(bad)


def test_the_counter_screen_says_where_a_token_came_from():
    assert origin_text({"origin": "remote", "account_hint": "1877"}) == \
        " · taken on a phone, account ending 1877"
    assert origin_text({"origin": "slot"}) == " · booked slot"
    assert origin_text({"origin": "counter"}) == origin_text({}) == ""
    # ... and the CLI's line for the token at the counter carries it
    assert token_line({"number": "B-007", "status": "called", "service": "bill_payment", "counter": "S01-C1",
                       "origin": "remote", "account_hint": "1877"}, {"bill_payment": "Bill payment"}) == \
        "B-007 called, Bill payment at S01-C1 · taken on a phone, account ending 1877"


PAYMENT = {
    "id": "p_x", "token_id": "t_abc", "substation": "S01", "counter": "S01-C1", "account": "2140012345",
    "amount_paise": 123450, "mode": "upi", "status": "queued", "part": False,
    "created_at": "2026-11-25T12:03:10+05:30", "receipt": "PROV-S01-000012",
}


def receipt_of(payment: dict = PAYMENT) -> PaymentSlip:
    return PaymentSlip.from_payment(payment, counter_name="Counter 1", substation_name="Kidwai Nagar",
                                    token_number="B-042")


def test_a_payment_prints_a_provisional_receipt_with_the_accounts_last_digits_only():
    text = slip_text(receipt_of(), 32)
    assert [line.strip() for line in text.splitlines() if line.strip()] == [
        "Kidwai Nagar (S01)", "-" * 32, "PROVISIONAL RECEIPT", "PROV-S01-000012", "Rs 1,234.50 upi",
        "Account ending 2345", "Token B-042", "At Counter 1", "Taken 25 Nov 2026 12:03", "-" * 32,
        "Keep this slip until the payment", "shows on your bill.",
    ]
    assert max(len(line) for line in text.splitlines()) <= 32 and "2140012345" not in text
    assert "PROVISIONAL RECEIPT PROV-S01-000012" in slip_text(receipt_of(), 48)   # one line fits
    data = slip_escpos(receipt_of(), 32)
    assert b"\x1d!\x11" + b"\x1bE\x01PROV-S01-000012" in data               # 2x: as large as 32 columns allow
    assert data.startswith(b"\x1b@") and data.endswith(b"\x1dV\x42\x03") and b"2140012345" not in data


def test_an_offline_receipt_says_it_waits_for_the_server():
    offline = {**PAYMENT, "status": "journaled", "receipt": "OFFLINE-S01-C1-000003", "part": True}
    text = slip_text(receipt_of(offline))
    assert "OFFLINE-S01-C1-000003" in text and "Taken offline: sent to the" in text
    assert "Rs 1,234.50 upi (part payment)" in text


CASH_UP = {
    "day": "2026-12-01", "substation": "S01", "counter": "S01-C1",
    "taken": {"count": 5, "paise": 1_000_000_00 + 25_050 + 7_500 + 120_000 + 5_000},
    "posted": {"count": 2, "paise": 1_000_000_00 + 120_000}, "pending": {"count": 1, "paise": 25_050},
    "failed": {"count": 0, "paise": 0}, "refunded": {"count": 2, "paise": 7_500 + 5_000},
    "by_mode": {"cash": {"count": 3, "paise": 1_000_000_00 + 25_050 + 5_000}, "dd": {"count": 1, "paise": 120_000},
                "upi": {"count": 1, "paise": 7_500}},
    "refunded_by_mode": {"cash": {"count": 1, "paise": 5_000}, "upi": {"count": 1, "paise": 7_500}},
    "in_drawer": {"cash": {"count": 2, "paise": 1_000_000_00 + 25_050}, "dd": {"count": 1, "paise": 120_000}},
}


def cash_up_of(cash: dict = CASH_UP) -> CashUpSlip:
    return CashUpSlip.from_cash_up(cash, counter_name="Counter 1", substation_name="Kidwai Nagar",
                                   printed_at=datetime(2026, 12, 1, 19, 5))


@pytest.mark.parametrize("cols", [32, 42, 48])
def test_the_cash_up_slip_fits_each_printer_width_with_every_figure_whole(cols: int):
    text = cash_up_text(cash_up_of(), cols)
    lines = text.splitlines()
    assert max(len(line) for line in lines) == cols and "-" * cols in lines
    rows = slip_figures(text)
    assert rows["Taken"] == (5, CASH_UP["taken"]["paise"]) and "Rs 1,001,575.50" in text   # whole
    assert any(line.startswith("  Cash ") for line in lines) and rows["Taken UPI"] == (1, 7_500)
    assert rows["Taken DD"] == (1, 120_000)
    for label in ("Posted", "Pending", "Failed", "Refunded"):
        name = label.lower()
        assert rows[label] == (CASH_UP[name]["count"], CASH_UP[name]["paise"]), label
    assert (rows["Refunded Cash"], rows["Refunded UPI"]) == ((1, 5_000), (1, 7_500))
    # what the drawer should hold: an amount of cash (not a count of payments), and the draft
    assert "In the drawer" in lines
    assert (rows["In the drawer Cash"], rows["In the drawer DD"]) == ((None, 1_000_000_00 + 25_050), (1, 120_000))
    for head in ("Kidwai Nagar (S01)", "CASH-UP", "Counter 1 (S01-C1)", "Tue 01 Dec 2026",
                 "Printed 01 Dec 2026 19:05", "Counted by"):
        assert head in text, head
    assert "they add up." in " ".join(text.split())


def test_a_cash_up_from_a_server_without_refunds_by_mode_still_prints():
    older = {k: v for k, v in CASH_UP.items() if k not in ("refunded_by_mode", "in_drawer")}
    text = cash_up_text(cash_up_of(older), 32)
    assert "In the drawer" not in text and slip_figures(text)["Refunded"] == (2, 12_500)


def test_a_cash_up_that_does_not_add_up_says_so_and_by_how_much():
    wrong = {**CASH_UP, "pending": {"count": 0, "paise": 0}}
    text = " ".join(cash_up_text(cash_up_of(wrong), 48).split())
    assert "do NOT add up to taken" in text and "Tell the supervisor" in text
    assert "they add up." not in text


def test_the_cash_up_in_escpos_is_a_left_aligned_table_with_taken_in_bold():
    data = slip_escpos(cash_up_of(), 32)
    assert data.startswith(b"\x1b@\x1ba\x01") and data.endswith(b"\x1dV\x42\x03")
    assert b"\x1d!\x11\x1bE\x01CASH-UP" in data                          # the heading at 2x
    table = data[data.index(b"\x1ba\x00"):]                               # left-aligned from here
    assert b"\x1bE\x01Taken " in table and b"  UPI " in table and max(data) < 0x80
    assert b"\x1bE\x01In the drawer\x1bE\x00\n\x1bE\x01  Cash " in table      # the drawer in bold too
    assert table.count(b"\x1bE\x01") == 4                                   # Taken, the drawer's 3 lines
    assert b"-" * 42 + b"\n" in slip_escpos(cash_up_of(), 42)
    assert slip_text(cash_up_of(), 48) == cash_up_text(cash_up_of(), 48)
