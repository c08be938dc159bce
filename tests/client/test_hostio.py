"""Host I/O and exec-file in the session, packet by packet, with no machine."""
import errno
import struct
from types import SimpleNamespace

import pytest

from kgdbstub.gdbstub.hostio import MAX_OPEN_FILES, REPLY_LIMIT
from kgdbstub.rsp import encode_frame
from kgdbstub.gdbstub.actions import Reply
from kgdbstub.gdbstub.dialects import KGDB, MODERN
from kgdbstub.gdbstub.session import Session


def session_for(path, dialect=MODERN) -> Session:
    debugger = SimpleNamespace(kernel=SimpleNamespace(image=SimpleNamespace(path=path)), stop=None)
    return dialect.session(debugger, dialect)


def ask(session: Session, packet: bytes) -> bytes:
    reply = session.handle(packet)
    assert isinstance(reply, Reply)
    return reply.payload


def hex_name(path) -> bytes:
    return str(path).encode().hex().encode()


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "image.elf"
    path.write_bytes(b"\x7fELF" + bytes(range(256)) * 40)
    return path


def test_modern_advertises_exec_file_and_kgdb_has_neither(image):
    assert b"qXfer:exec-file:read+" in ask(session_for(image), b"qSupported:swbreak+").split(b";")
    kgdb = session_for(image, KGDB)
    assert ask(kgdb, b"qXfer:exec-file:read::0,100") == b""
    assert ask(kgdb, b"vFile:open:%s,0,0" % hex_name(image)) == b""


def test_exec_file_names_the_image_in_chunks(image):
    session = session_for(image)
    name = str(image).encode()
    assert ask(session, b"qXfer:exec-file:read::0,1000") == b"l" + name
    assert ask(session, b"qXfer:exec-file:read:1:0,4") == b"m" + name[:4], "a pid annex: the same image"
    assert ask(session, b"qXfer:exec-file:read::4,1000") == b"l" + name[4:]
    assert ask(session, b"qXfer:exec-file:read::%x,10" % len(name)) == b"l"
    assert ask(session, b"qXfer:exec-file:read::zz") == b"E00"


def test_the_image_opens_read_only_and_nothing_else_opens(image, tmp_path):
    session = session_for(image)
    assert ask(session, b"vFile:setfs:0") == b"F0"
    assert ask(session, b"vFile:open:%s,0,1c0" % b"just probing".hex().encode()) == b"F-1,%x" % errno.ENOENT
    assert ask(session, b"vFile:open:%s,0,0" % hex_name("/etc/passwd")) == b"F-1,%x" % errno.ENOENT
    link = tmp_path / "link.elf"
    link.symlink_to(image)
    assert ask(session, b"vFile:open:%s,0,0" % hex_name(link)) == b"F-1,%x" % errno.ENOENT, "the name, not a link to it"
    for flags in (b"1", b"2", b"601"):
        assert ask(session, b"vFile:open:%s,%s,1a4" % (hex_name(image), flags)) == b"F-1,%x" % errno.EACCES
    assert ask(session, b"vFile:open:%s,0,0" % hex_name(image)) == b"F0"
    assert ask(session, b"vFile:open:%s,0,0" % hex_name(image)) == b"F1"


def test_pread_fstat_close(image):
    session = session_for(image)
    data = image.read_bytes()
    fd = ask(session, b"vFile:open:%s,0,0" % hex_name(image))[1:]
    assert ask(session, b"vFile:pread:%s,10,0" % fd) == b"F10;" + data[:16]
    assert ask(session, b"vFile:pread:%s,100,%x" % (fd, len(data) - 5)) == b"F5;" + data[-5:]
    assert ask(session, b"vFile:pread:%s,100,%x" % (fd, len(data) + 7)) == b"F0;", "past the end: nothing"
    stat = ask(session, b"vFile:fstat:%s" % fd)
    assert stat.startswith(b"F40;") and len(stat) == 4 + 64
    mode, size = struct.unpack(">I", stat[4 + 8 : 4 + 12])[0], struct.unpack(">Q", stat[4 + 28 : 4 + 36])[0]
    assert (mode & 0o170000, size) == (0o100000, len(data))
    assert ask(session, b"vFile:pwrite:%s,0,00" % fd) == b"F-1,%x" % errno.EBADF
    assert ask(session, b"vFile:close:%s" % fd) == b"F0"
    for packet in (b"vFile:close:%s", b"vFile:pread:%s,1,0", b"vFile:fstat:%s"):
        assert ask(session, packet % fd) == b"F-1,%x" % errno.EBADF


def test_a_chunk_full_of_bytes_to_escape_still_fits_a_packet(tmp_path):
    image = tmp_path / "dollars.elf"
    image.write_bytes(b"$#}*" * 10000)
    session = session_for(image)
    ask(session, b"vFile:open:%s,0,0" % hex_name(image))
    reply = ask(session, b"vFile:pread:0,4000,0")
    count, _, data = reply.partition(b";")
    assert int(count[1:], 16) == len(data) == REPLY_LIMIT // 2, "as much as fits, not less"
    assert len(encode_frame(reply, run_length_encode=False)) <= REPLY_LIMIT + 16
    mixed = tmp_path / "mixed.elf"
    mixed.write_bytes(b"ab$" * 10000)
    session = session_for(mixed)
    ask(session, b"vFile:open:%s,0,0" % hex_name(mixed))
    reply = ask(session, b"vFile:pread:0,4000,0")
    count, _, data = reply.partition(b";")
    wire = len(data) + data.count(b"$")
    assert int(count[1:], 16) == len(data) and REPLY_LIMIT - 2 <= wire <= REPLY_LIMIT


def test_bad_arguments_unknown_operations_and_too_many_files(image):
    session = session_for(image)
    assert ask(session, b"vFile:pread:zz,1,0") == b"F-1,%x" % errno.EINVAL
    assert ask(session, b"vFile:open:%s" % hex_name(image)) == b"F-1,%x" % errno.EINVAL
    assert ask(session, b"vFile:unlink:%s" % hex_name(image)) == b"", "not implemented"
    for fd in range(MAX_OPEN_FILES):
        assert ask(session, b"vFile:open:%s,0,0" % hex_name(image)) == b"F%x" % fd
    assert ask(session, b"vFile:open:%s,0,0" % hex_name(image)) == b"F-1,%x" % errno.EMFILE


def test_each_session_has_its_own_files(image):
    first, second = session_for(image), session_for(image)
    assert ask(first, b"vFile:open:%s,0,0" % hex_name(image)) == b"F0"
    assert ask(second, b"vFile:pread:0,1,0") == b"F-1,%x" % errno.EBADF
