"""Hall boards report their voice on their live socket; ops sees, per hall, how many boards are
connected and how many lack a Hindi voice. Junk a board sends is ignored, never fatal."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from counter_server.live.boards import BoardTally, parse_board_status

from testkit.api import Api, bearer
from testkit.live import receive_type, receive_until


async def boards_until(ops, sid: str, expected: dict[str, int]) -> dict:
    """The ops channel's boards messages until one says ``expected`` for ``sid``."""

    def says_expected(message: dict) -> bool:
        if message["type"] != "boards":
            return False
        assert message["v"] == 1
        return message["boards"].get(sid) == expected

    return await receive_until(ops, says_expected, what=f"ops told {sid}'s boards are {expected}")


def status(voice: str) -> str:
    return json.dumps({"type": "board_status", "v": 1, "voice": voice})


async def test_ops_sees_how_many_boards_lack_a_hindi_voice(api: Api):
    ops = await api.client.ws_connect("/api/v1/live", headers=bearer(api.admin))
    await receive_type(ops, "snapshot")
    first = await receive_type(ops, "boards")        # at once on connect, every hall, zeros
    assert set(first["boards"]) == {f"S{i:02d}" for i in range(1, 11)}
    assert first["boards"]["S01"] == {"connected": 0, "no_hindi_voice": 0, "chime_only": 0}

    silent = await api.client.ws_connect("/api/v1/substations/S01/live")
    await boards_until(ops, "S01", {"connected": 1, "no_hindi_voice": 0, "chime_only": 0})
    await silent.send_str(status("chime"))
    await boards_until(ops, "S01", {"connected": 1, "no_hindi_voice": 1, "chime_only": 1})

    english = await api.client.ws_connect("/api/v1/substations/S01/live")
    await english.send_str(status("en"))
    message = await boards_until(ops, "S01", {"connected": 2, "no_hindi_voice": 2, "chime_only": 1})
    assert message["boards"]["S02"]["connected"] == 0

    await english.send_str(status("hi"))             # its Hindi voice loaded late
    await boards_until(ops, "S01", {"connected": 2, "no_hindi_voice": 1, "chime_only": 1})
    await silent.close()
    await boards_until(ops, "S01", {"connected": 1, "no_hindi_voice": 0, "chime_only": 0})
    await english.close()
    await boards_until(ops, "S01", {"connected": 0, "no_hindi_voice": 0, "chime_only": 0})
    await ops.close()


async def test_junk_frames_are_ignored_and_an_oversized_one_ends_only_that_board(api: Api):
    ops = await api.client.ws_connect("/api/v1/live", headers=bearer(api.admin))
    await receive_type(ops, "snapshot")
    board = await api.client.ws_connect("/api/v1/substations/S02/live")
    await receive_type(board, "snapshot")
    junk = ["not json", "[" * 200 + "]" * 200, "null", "42", '"board_status"',
            json.dumps({"type": "board_status", "v": 1, "voice": "klingon"}),
            json.dumps({"type": "board_status", "v": 2, "voice": "en"}),
            json.dumps({"type": "board_status", "v": 1, "voice": ["en"]}),
            json.dumps({"type": "board_status", "v": 1, "voice": "en", "pad": "x" * 300}),
            json.dumps({"type": "hello"})]
    for text in junk:
        await board.send_str(text)
    await board.send_bytes(b"\x00\xff" * 10)
    await board.send_str(status("en"))               # still listened to after all that
    await boards_until(ops, "S02", {"connected": 1, "no_hindi_voice": 1, "chime_only": 0})
    token = await api.issue("S02")                   # and still fed
    delta = await receive_type(board, "delta")
    assert delta["events"][0]["token"]["number"] == token["number"]

    await board.send_str("x" * 5000)                 # past the socket's 4 KB frame limit
    async with asyncio.timeout(3):
        while (await board.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                                   aiohttp.WSMsgType.CLOSING):
            pass
    await boards_until(ops, "S02", {"connected": 0, "no_hindi_voice": 0, "chime_only": 0})
    await ops.close()


def test_a_board_changes_its_report_a_bounded_number_of_times():
    """A misbehaving board cannot make ops messages out of endless flips."""
    tally = BoardTally(["A"])
    assert tally.joined("board", "A") and not tally.joined("board", "A")
    changes = sum(tally.reported("board", "en" if i % 2 else "hi") for i in range(100))
    assert changes == 16
    assert not tally.joined("elsewhere", "Z")       # not a substation of the scenario
    assert parse_board_status(status("chime")) == "chime" and parse_board_status("{}") is None
