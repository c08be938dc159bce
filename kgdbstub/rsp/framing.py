"""How a payload looks on the wire: checksum, escapes, run-length encoding.

A frame is '$', the body, '#' and two hex digits of the body's checksum. The
body is the payload with '$', '#', '}' and '*' escaped, so that the first
raw '#' always ends the body and a raw '$' always starts a new frame, and,
when the sender chooses, with runs of a byte compressed.
"""

import functools
import re

ESCAPE = ord("}")
ESCAPE_XOR = 0x20
MUST_ESCAPE = b"$#}*"

# 'X*n' stands for X followed by n - 29 more copies of X. Counts are
# printable characters, which gives 3 to 97 more copies; '#' and '$' are not
# usable as counts, since they would end the frame or start a new one.
COUNT_BIAS = 29
MIN_COUNT = ord(" ")
MAX_COUNT = ord("~")
UNUSABLE_COUNTS = frozenset(b"#$")

# A compressed run takes three wire bytes: only runs of four or more gain.
# A run's start is found by four equal bytes, its end by a pattern of its
# own byte: a repeated back-reference would take a step per byte in the
# regex engine, which makes a reply of 8 KiB of zeros cost a third of a ms.
_RUN_START = re.compile(rb"(.)\1\1\1", re.DOTALL)
_REPEATS: dict[int, re.Pattern] = {}

_SPECIALS = tuple(bytes([byte]) for byte in MUST_ESCAPE)
_ESCAPED = {special: bytes([ESCAPE, special[0] ^ ESCAPE_XOR]) for special in _SPECIALS}
_NEEDS_ESCAPE = re.compile(rb"[$#}*]")
_RUN_OR_SPECIAL = re.compile(rb"(.)\1\1\1|[$#}*]", re.DOTALL)


class MalformedBody(ValueError):
    """A body whose checksum is right but whose escapes or runs make no sense."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def checksum(frame_body: bytes) -> int:
    """The sum of the body's bytes, as they are on the wire, modulo 256."""
    return sum(frame_body) & 0xFF


def encode_frame(payload: bytes, run_length_encode: bool = True) -> bytes:
    """The complete frame that carries `payload`: $body#cc."""
    if type(payload) is bytes and len(payload) <= REMEMBERED_PAYLOAD:
        return _remembered_frame(payload, run_length_encode)
    return _frame(payload, run_length_encode)


def _frame(payload: bytes, run_length_encode: bool) -> bytes:
    body = encode_body(payload, run_length_encode)
    return b"$%s#%02x" % (body, checksum(body))


# A stub sends the same short replies again and again: the value gdb reads
# at each watch stop (up to three times a stop), a stop reply with the same
# registers, "OK", the thread list. Their frames are kept, the most recently
# used of them, for payloads up to this size.
REMEMBERED_PAYLOAD = 512
REMEMBERED_FRAMES = 256
_remembered_frame = functools.lru_cache(maxsize=REMEMBERED_FRAMES)(_frame)


def encode_body(payload: bytes, run_length_encode: bool = True) -> bytes:
    """`payload` escaped and, if asked, with its runs compressed."""
    if not run_length_encode:
        return escape(payload)
    if not _RUN_OR_SPECIAL.search(payload):
        return bytes(payload)  # most short replies: nothing to compress or escape
    # Most payloads that get here are hex with runs of a digit: nothing to escape.
    cleanup = escape if _needs_escape(payload) else bytes
    pieces = []
    done = 0
    for start, end, byte in _runs(payload):
        # Never compress a byte that needs escaping: the repeat would copy
        # the raw byte after '}' rather than the byte it stands for.
        if byte not in _ESCAPED:
            pieces += cleanup(payload[done:start]), compress_run(byte, end - start)
            done = end
    pieces.append(cleanup(payload[done:]))
    return b"".join(pieces)


def _runs(payload: bytes):
    """(start, end, byte) of each longest run of four or more equal bytes, left to right."""
    at = 0
    while run := _RUN_START.search(payload, at):
        byte = run[1]
        if (repeat := _REPEATS.get(byte[0])) is None:
            repeat = _REPEATS[byte[0]] = re.compile(re.escape(byte) + b"*")
        at = repeat.match(payload, run.end()).end()
        yield run.start(), at, byte


def escape(data: bytes) -> bytes:
    """`data` with '$', '#', '}' and '*' each turned into '}' and the byte ^ 0x20."""
    if _needs_escape(data):
        return _NEEDS_ESCAPE.sub(lambda special: _ESCAPED[special[0]], data)
    return bytes(data)


def _needs_escape(data: bytes) -> bool:
    # A byte search per special: several times faster than a regex's scan of a long reply.
    return any(special in data for special in _SPECIALS)


def compress_run(byte: bytes, length: int) -> bytes:
    """`length` copies of the one-byte `byte`, in as few wire bytes as counts allow."""
    # As many of the longest runs one count covers as fit, then the rest.
    full, rest = divmod(length, _MAX_RUN)
    head = (byte + _LONGEST) * full
    if rest < 4:
        return head + byte * rest
    count, plain = _ONE_COUNT[rest]
    return head + byte + count + byte * plain


# The longest run one count covers, and for each run of 4 to that many
# bytes, the '*' and count after its first byte and how many copies follow
# plain: a count that would be '#' or '$' covers one byte less.
_MAX_RUN = 1 + MAX_COUNT - COUNT_BIAS


def _one_count(length: int) -> tuple[bytes, int]:
    more = length - 1
    while more + COUNT_BIAS in UNUSABLE_COUNTS:
        more -= 1
    return b"*" + bytes([more + COUNT_BIAS]), length - 1 - more


_ONE_COUNT = {length: _one_count(length) for length in range(4, _MAX_RUN + 1)}
_LONGEST = _ONE_COUNT[_MAX_RUN][0]  # '*~': usable, so a longest run needs no plain copies
assert _ONE_COUNT[_MAX_RUN][1] == 0


def decode_body(body: bytes) -> bytes:
    """The payload a frame body carries: escapes undone, runs expanded.

    A '}' takes the next byte, whatever it is, as escaped; a '*' takes the
    next byte, whatever it is, as its count. Raises MalformedBody with
    reason 'escape' or 'run-length'.
    """
    if b"}" not in body and b"*" not in body:
        return bytes(body)
    end = len(body)
    escape_at = _find_or_end(body, b"}", 0)
    repeat_at = _find_or_end(body, b"*", 0)
    payload = bytearray()
    done = 0
    while (at := min(escape_at, repeat_at)) < end:
        payload += body[done:at]
        operand = body[at + 1 : at + 2]
        done = at + 2
        if at == escape_at:
            if not operand:
                raise MalformedBody("escape")
            payload.append(operand[0] ^ ESCAPE_XOR)
        else:
            if not payload or not operand or not MIN_COUNT <= operand[0] <= MAX_COUNT:
                raise MalformedBody("run-length")
            payload += payload[-1:] * (operand[0] - COUNT_BIAS)
        if escape_at < done:
            escape_at = _find_or_end(body, b"}", done)
        if repeat_at < done:
            repeat_at = _find_or_end(body, b"*", done)
    payload += body[done:]
    return bytes(payload)


def _find_or_end(body: bytes, marker: bytes, start: int) -> int:
    at = body.find(marker, start)
    return len(body) if at < 0 else at
