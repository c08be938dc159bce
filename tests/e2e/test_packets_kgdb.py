"""Conformance: `--dialect kgdb` answers byte for byte as Linux 6.x's x86-64 kgdb.

Every expectation comes from the Linux sources, not from this project's
code, and names the C function that defines it: kernel/debug/gdbstub.c
(gdb_serial_stub and the gdb_cmd_* handlers), kernel/debug/debug_core.c
(dbg_set_sw_break ...), arch/x86/kernel/kgdb.c (kgdb_set_hw_break,
dbg_get_reg, sleeping_thread_to_gdb_regs), arch/x86/include/asm/kgdb.h
(NUMREGBYTES) and arch/x86/mm/maccess.c (copy_from_kernel_nofault_allowed).

One server for the module, stopped where kgdbwait leaves it: in
kgdb_breakpoint(), on init (pid 1), CPU 0. Tests that change state undo it.
"""
import re
import socket

import pytest

from gdbtools import start_server
from kgdbstub.client import SyncTarget
from kgdbstub.kernel.image import Image

RIP, NUMREGBYTES = 16, 17 * 8 + 5 * 4


@pytest.fixture(scope="module")
def stub():
    with start_server("--dialect", "kgdb") as server:
        with SyncTarget(server.address, handshake=False) as client:
            yield client, Image(server.elf), server


def ask(stub, packet: bytes) -> bytes:
    return stub[0].request(packet)


def regs_of(reply: bytes) -> bytes:
    return bytes.fromhex(reply.decode())


def quad(data: bytes, index: int) -> int:
    return int.from_bytes(data[8 * index : 8 * index + 8], "little")


def sym(stub, name: str) -> int:
    return stub[1].address_of(name)


# -- gdb_cmd_status, gdb_cmd_getregs, gdb_cmd_reg_get -------------------------------


def test_status_is_S_and_the_signal_and_removes_every_breakpoint(stub):
    # gdb_cmd_status: 'S' + hex_byte_pack(ks->signo); kgdb_breakpoint() is an int3: SIGTRAP.
    assert ask(stub, b"Z0,%x,1" % sym(stub, "do_fork")) == b"OK"
    assert ask(stub, b"?") == b"S05"
    # ... after dbg_remove_all_break(): dbg_remove_sw_break finds nothing, -ENOENT.
    assert ask(stub, b"z0,%x,1" % sym(stub, "do_fork")) == b"E02"


def test_g_is_numregbytes_with_the_pc_after_the_int3(stub):
    regs = regs_of(ask(stub, b"g"))
    assert len(regs) == NUMREGBYTES  # gdb_cmd_getregs: kgdb_mem2hex(gdb_regs, NUMREGBYTES)
    # kgdb_breakpoint's int3 traps: the pc is one byte after it (kgdb_arch_pc is not applied).
    assert quad(regs, RIP) == sym(stub, "kgdb_breakpoint") + 1
    # dbg_reg_def: eflags, cs, ss at 4 bytes; cs/ss are the kernel's selectors; ds and es
    # (offset -1) are never written by pt_regs_to_gdb_regs: zero in a fresh buffer.
    tail = regs[17 * 8 :]
    assert tail[4:8] == (0x10).to_bytes(4, "little") and tail[8:12] == (0x18).to_bytes(4, "little")
    assert tail[12:20] == bytes(8)


def test_p_reads_one_register_and_refuses_24_and_up(stub):
    regs = regs_of(ask(stub, b"g"))
    assert ask(stub, b"p10") == regs[128:136].hex().encode()  # gdb_hex_reg_helper: rip
    assert ask(stub, b"p11") == regs[136:140].hex().encode()  # eflags, 4 bytes
    assert len(ask(stub, b"p16")) == 8 and len(ask(stub, b"p17")) == 8  # fs, gs: 4 bytes each
    assert ask(stub, b"p") == regs[0:8].hex().encode()  # no number: kgdb_hex2long leaves 0, rax
    # gdb_cmd_reg_get: regnum >= DBG_MAX_REG_NUM (24) -> error_packet(-EINVAL); orig_rax too.
    for packet in (b"p18", b"p39", b"p-1"):
        assert ask(stub, packet) == b"E22"


# -- gdb_cmd_setregs, gdb_cmd_reg_set -------------------------------------------------


def test_G_takes_numregbytes_and_P_accepts_orig_rax_and_ignores_rsp(stub):
    saved = regs_of(ask(stub, b"g"))
    changed = bytearray(saved)
    changed[8:16] = (0x1122334455667788).to_bytes(8, "little")  # rbx
    changed[16:24] = (0xCAFE).to_bytes(8, "little")  # rcx
    try:
        assert ask(stub, b"G" + changed.hex().encode()) == b"OK"
        assert ask(stub, b"p1") == b"8877665544332211"
        # No length check in gdb_cmd_setregs: a short G is OK, and the rest of the
        # registers come from what remcom_in_buffer held (here rcx from the last G).
        assert ask(stub, b"G" + (0x77).to_bytes(8, "little").hex().encode()) == b"OK"
        assert ask(stub, b"p0") == b"7700000000000000"
        assert ask(stub, b"p2") == changed[16:24].hex().encode()
        # gdb_cmd_reg_set -> dbg_set_reg: orig_rax (57) and rsp (7) are accepted and ignored.
        rsp = ask(stub, b"p7")
        assert ask(stub, b"P39=ffffffffffffffff") == b"OK"
        assert ask(stub, b"P7=0000000000000000") == b"OK" and ask(stub, b"p7") == rsp
        # The value is as many bytes as there are hex digits, into a zeroed buffer.
        assert ask(stub, b"P0=123") == b"OK" and ask(stub, b"p0") == b"1200000000000000"
        # '=' missing, or no such register (dbg_get_reg returns NULL): EINVAL.
        assert ask(stub, b"P10") == b"E22"
        assert ask(stub, b"P18=00") == b"E22"
        assert ask(stub, b"P-1=00") == b"E22"
    finally:
        assert ask(stub, b"G" + saved.hex().encode()) == b"OK"
    assert regs_of(ask(stub, b"g"))[:17 * 8] == saved[:17 * 8]


def test_another_tasks_registers_are_read_only_and_a_sleeping_task_shows_zeros(stub):
    client = stub[0]
    current = regs_of(ask(stub, b"g"))
    ids = ask(stub, b"qfThreadInfo")[1:].split(b",")
    pids = [int(t, 16) for t in ids if not t.startswith(b"ff")]
    sleeping = None
    for pid in pids:
        assert ask(stub, b"Hg%x" % pid) == b"OK"
        before = regs_of(ask(stub, b"p11") + ask(stub, b"p12") + ask(stub, b"p13"))
        regs = regs_of(ask(stub, b"g"))
        if quad(regs, RIP) == 0 and pid != 1:
            sleeping = (regs, before)
            # gdb_cmd_setregs / gdb_cmd_reg_set: kgdb_usethread != current -> EINVAL.
            assert ask(stub, b"G" + regs.hex().encode()) == b"E22"
            assert ask(stub, b"P0=00") == b"E22"
    assert ask(stub, b"Hg0") == b"OK"  # getthread(0): the current CPU's task again
    assert regs_of(ask(stub, b"g"))[:136] == current[:136]
    assert sleeping, "no task off the CPUs to look at"
    regs, before = sleeping
    # sleeping_thread_to_gdb_regs: rax..rdi, r8..r15 and rip are 0; rbp and rsp are saved ones.
    assert all(quad(regs, i) == 0 for i in (0, 1, 2, 3, 4, 5, *range(8, 17)))
    assert quad(regs, 7) != 0
    # Its gdb_regs32[GDB_PS/CS/SS] stores land in r8/r9 and are zeroed: eflags, cs and ss
    # keep what gdb_regs held from the register read before.
    assert regs[136:148] == before
    client.request(b"Hg0")


# -- gdb_cmd_memread, gdb_cmd_memwrite, gdb_cmd_binwrite --------------------------------


def test_m_reads_kernel_memory_and_every_failure_is_einval(stub):
    start = sym(stub, "start_kernel")
    assert ask(stub, b"m%x,4" % start) == stub[1].segments[0].data[start - stub[1].segments[0].address:][:4].hex().encode()
    assert ask(stub, b"m%x,4zz" % start) == ask(stub, b"m%x,4" % start)  # the rest is not parsed
    assert ask(stub, b"m%x,0" % start) == b""
    # copy_from_kernel_nofault_allowed: user addresses and non-canonical ones are refused;
    # gdb_cmd_memread answers EINVAL whatever kgdb_mem2hex's error was.
    for packet in (b"m%x,4" % sym(stub, "looper_main"), b"m0,8", b"m0,0", b"m8000000000000000,1",
                   b"mffffffffff600000,1", b"mffff900000000000,1", b"mzz,8", b"m%x" % start, b"m,4"):
        assert ask(stub, packet) == b"E22", packet


def test_M_and_X_write_kernel_data_and_fault_on_text_and_user_memory(stub):
    jiffies = sym(stub, "jiffies")
    old = ask(stub, b"m%x,8" % jiffies)
    assert ask(stub, b"M%x,8:%s" % (jiffies, b"11" * 8)) == b"OK"
    assert ask(stub, b"m%x,8" % jiffies) == b"11" * 8
    assert ask(stub, b"M%x,8:%s" % (jiffies, old)) == b"OK"
    # copy_to_kernel_nofault: read-only kernel text and user memory fault -> -EFAULT.
    assert ask(stub, b"M%x,1:90" % sym(stub, "do_fork")) == b"E14"
    assert ask(stub, b"M%x,1:00" % sym(stub, "looper_iterations")) == b"E14"
    assert ask(stub, b"X%x,1:\x90" % sym(stub, "do_fork")) == b"E14"
    assert ask(stub, b"X%x,0:" % jiffies) == b"OK"  # gdb's probe for X
    # write_mem_msg: the address, ',', the length, ':' -- else -EINVAL.
    for packet in (b"M%x,1" % jiffies, b"Mzz,1:00", b"M%x:00" % jiffies, b"X%x" % jiffies):
        assert ask(stub, packet) == b"E22", packet


# -- gdb_cmd_query, gdb_cmd_task, gdb_cmd_thread --------------------------------------


def test_thread_ids_drop_leading_zero_bytes_and_the_list_ends_empty(stub):
    # pack_threadid, shadow_pid: pid 1 is "01"; CPU0's shadow -2 is "fffffffe".
    assert ask(stub, b"qC") == b"QC01"
    first = ask(stub, b"qfThreadInfo")
    assert re.fullmatch(rb"mfffffffe,fffffffd(,([1-9a-f][0-9a-f]|0[1-9a-f])([0-9a-f]{2})*)+", first), first
    assert first.split(b",")[2:4] == [b"01", b"02"]
    # The end of the list: an 'm' with nothing after it is cut to an empty reply.
    assert ask(stub, b"qsThreadInfo") == b""
    # ks->thr_query is zero at each entry: qs alone lists the tasks from the first, no shadows.
    assert ask(stub, b"qfThreadInfoXY").startswith(b"mfffffffe")  # memcmp of 10 bytes only


def test_thread_extra_info_is_the_whole_comm_or_shadow_cpu(stub):
    assert ask(stub, b"qThreadExtraInfo,1") == (b"init" + bytes(12)).hex().encode()
    assert ask(stub, b"qThreadExtraInfo,fffffffe") == b"shadowCPU0".hex().encode()
    assert ask(stub, b"qThreadExtraInfo,fffffffd") == b"shadowCPU1".hex().encode()
    # (int)threadid > 0 is false for 0: "shadowCPU%d" of -0 - 2.
    assert ask(stub, b"qThreadExtraInfo,0") == b"shadowCPU-2".hex().encode()
    assert ask(stub, b"qThreadExtraInfo,3f") == b"E22"  # getthread: no such pid


def test_queries_kgdb_does_not_know_get_the_empty_reply(stub):
    # No CONFIG_HAVE_ARCH_KGDB_QXFER_PKT on x86: qSupported and qXfer fall to `default`.
    for packet in (b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386", b"qAttached",
                   b"qXfer:features:read:target.xml:0,fff", b"QStartNoAckMode", b"vCont?",
                   b"vMustReplyEmpty", b"qOffsets", b"", b"i", b"R0", b"R1"):
        assert ask(stub, packet) == b"", packet


def test_qrcmd_goes_to_kdb_and_odd_hex_is_e01(stub):
    assert ask(stub, b"qRcmd,6") == b"E01"  # gdb_cmd_query: (len % 2) != 0 -> "E01"
    assert ask(stub, b"qRcmd,7073\x00") == b"OK"  # ... where len is strlen(): the NUL ends the digits
    assert ask(stub, b"qRcmd," + b"ps".hex().encode()) == b"OK"


def test_H_and_T_select_and_check_threads(stub):
    # gdb_cmd_task: Hg/Hc with a thread getthread() finds, or 0; -EINVAL for a missing pid.
    assert ask(stub, b"Hg1") == b"OK"
    assert ask(stub, b"Hg-1") == b"OK"
    assert ask(stub, b"Hg3f") == b"E22"
    assert ask(stub, b"Hgfffffff0") == b"E22"  # a CPU this machine cannot have
    assert ask(stub, b"Hc0") == b"OK"
    for packet in (b"H", b"Hx1"):  # neither 'g' nor 'c': nothing written
        assert ask(stub, packet) == b""
    # gdb_cmd_thread: getthread() of the id; 0 is the current CPU's task.
    for packet in (b"T1", b"T0", b"Tfffffffe", b"T"):
        assert ask(stub, packet) == b"OK", packet
    assert ask(stub, b"T3f") == b"E22"
    ask(stub, b"Hg0")


# -- gdb_cmd_break, dbg_set_sw_break, kgdb_set_hw_break ---------------------------------


def test_software_breakpoint_errors(stub):
    do_fork = sym(stub, "do_fork")
    assert ask(stub, b"Z0,%x,1" % do_fork) == b"OK"  # text is read-only: text_poke_kgdb
    assert ask(stub, b"Z0,%x,1" % do_fork) == b"E17"  # -EEXIST
    assert ask(stub, b"z0,%x,1" % (do_fork + 1)) == b"E02"  # -ENOENT
    assert ask(stub, b"z0,%x,1" % do_fork) == b"OK"
    assert ask(stub, b"Z0,%x,1" % sym(stub, "looper_tick")) == b"E34"  # copy_from_kernel_nofault: -ERANGE
    assert ask(stub, b"Z0,ffffffff90000000,1") == b"E14"  # unmapped: -EFAULT
    assert ask(stub, b"Z0,%x,1" % sym(stub, "entry_SYSCALL_64")) == b"E22"  # kgdb_within_blocklist
    # gdb_cmd_break's parsing: a type it does not know is the empty reply; the rest EINVAL.
    for packet, reply in ((b"Z", b""), (b"Z5,0,1", b""), (b"Za,0,1", b""), (b"Z0", b"E22"),
                          (b"Z0,zz,1", b"E22"), (b"Z0,%x" % do_fork, b"E22"), (b"Z0,%x,z" % do_fork, b"E22")):
        assert ask(stub, packet) == reply, packet


def test_removed_software_breakpoints_keep_their_entries_until_all_go(stub):
    # dbg_set_sw_break reuses a BP_REMOVED entry only for its own address: 1000
    # distinct places set and removed fill kgdb_break[], and the next is -E2BIG.
    base = sym(stub, "do_exit")  # past the blocklisted entry code
    ask(stub, b"?")
    for i in range(1000):
        assert ask(stub, b"Z0,%x,1" % (base + i)) == b"OK"
        assert ask(stub, b"z0,%x,1" % (base + i)) == b"OK"
    assert ask(stub, b"Z0,%x,1" % (base + 1000)) == b"E07"
    assert ask(stub, b"Z0,%x,1" % base) == b"OK"  # its own REMOVED entry
    assert ask(stub, b"?") == b"S05"  # dbg_remove_all_break: all UNDEFINED again
    assert ask(stub, b"Z0,%x,1" % (base + 1000)) == b"OK"
    ask(stub, b"?")


def test_hardware_breakpoints_refused_alike_with_e01(stub):
    jiffies = sym(stub, "jiffies")
    # kgdb_set_hw_break returns -1 for everything it refuses: error_packet(-1) is "E01".
    assert ask(stub, b"Z3,%x,8" % jiffies) == b"E01"  # BP_READ_WATCHPOINT: default case
    assert ask(stub, b"Z2,%x,3" % jiffies) == b"E01"  # length not 1, 2, 4, 8
    assert ask(stub, b"Z1,%x,5" % sym(stub, "do_fork")) == b"OK"  # Z1 forces len 1
    for offset in range(1, 4):  # no alignment check
        assert ask(stub, b"Z2,%x,1" % (jiffies + offset)) == b"OK"
    assert ask(stub, b"Z4,%x,8" % jiffies) == b"E01"  # all HBP_NUM entries enabled
    assert ask(stub, b"z4,%x,1" % sym(stub, "do_fork")) == b"OK"  # kgdb_remove_hw_break: the address alone
    assert ask(stub, b"z2,%x,1" % sym(stub, "do_fork")) == b"E01"
    assert ask(stub, b"?") == b"S05"
    assert ask(stub, b"z2,%x,1" % (jiffies + 1)) == b"E01"


# -- resuming: gdb_serial_stub, kgdb_arch_handle_exception, gdb_cmd_exception_pass -------


def test_a_stop_is_T_signal_and_thread_only_with_the_pc_after_the_int3(stub):
    do_timer = sym(stub, "do_timer")
    ask(stub, b"?")
    assert ask(stub, b"Z0,%x,1" % do_timer) == b"OK"
    reply = ask(stub, b"c")
    # gdb_serial_stub: 'T', the signal, "thread:", pack_threadid(shadow_pid(current->pid)), ';'.
    assert re.fullmatch(rb"T05thread:(fffffff[ef]|0[1-9a-f]|[1-9a-f][0-9a-f]);", reply), reply
    assert reply.split(b":")[1][:-1] == ask(stub, b"qC")[2:]
    # x86 kgdb leaves the pc after the int3 (GDB_ADJUSTS_BREAK_OFFSET: gdb moves it back).
    assert quad(regs_of(ask(stub, b"g")), RIP) == do_timer + 1
    assert ask(stub, b"z0,%x,1" % do_timer) == b"OK"
    regs = bytearray(regs_of(ask(stub, b"g")))
    regs[128:136] = do_timer.to_bytes(8, "little")
    assert ask(stub, b"G" + regs.hex().encode()) == b"OK"


def test_c_is_refused_when_hc_chose_another_task(stub):
    ids = [int(t, 16) for t in ask(stub, b"qfThreadInfo")[1:].split(b",") if not t.startswith(b"ff")]
    other = next(pid for pid in ids if b"QC%02x" % pid != ask(stub, b"qC"))
    assert ask(stub, b"Hc%x" % other) == b"OK"
    # gdb_serial_stub: kgdb_contthread && kgdb_contthread != current -> "Can't switch threads".
    assert ask(stub, b"c") == b"E22"
    assert ask(stub, b"s") == b"E22"
    assert ask(stub, b"Hc0") == b"OK"


def test_single_step_stops_with_T05(stub):
    before = quad(regs_of(ask(stub, b"g")), RIP)
    assert re.fullmatch(rb"T05thread:[0-9a-f]+;", ask(stub, b"s"))
    assert quad(regs_of(ask(stub, b"g")), RIP) != before


# -- the wire: get_packet and put_packet --------------------------------------------------


def frame(payload: bytes) -> bytes:
    return b"$%s#%02x" % (payload, sum(payload) & 0xFF)


def read_until(sock, needle: bytes) -> bytes:
    data = b""
    while needle not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before {needle!r}; got {data!r}"
        data += chunk
    return data


@pytest.fixture
def wire(server):
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        sock.settimeout(20)
        yield sock


@pytest.mark.server_args("--dialect", "kgdb")
def test_replies_are_never_run_length_encoded_and_put_packet_naks_a_frame_in_place_of_an_ack(wire):
    wire.sendall(frame(b"P0=0000000000000000"))
    read_until(wire, frame(b"OK"))
    wire.sendall(b"+" + frame(b"p0"))
    data = read_until(wire, frame(b"0000000000000000"))
    assert b"*" not in data  # put_packet writes every byte: no "0*" run
    wire.sendall(b"+")
    # put_packet: a '$' where the '+' was due is answered '-', and the reply is dropped;
    # get_packet then waits for the next '$': the packet that came is dropped too.
    wire.sendall(frame(b"qC"))
    read_until(wire, frame(b"QC01"))
    wire.sendall(frame(b"qC"))
    data = read_until(wire, b"-")
    wire.sendall(frame(b"T1"))  # gdb sends its packet again on the '-'
    data += read_until(wire, frame(b"OK"))
    assert data.count(frame(b"QC01")) <= 1 and b"-" in data


@pytest.mark.server_args("--dialect", "kgdb")
def test_k_is_acknowledged_and_not_answered(wire):
    wire.sendall(frame(b"k"))
    data = b""
    while chunk := wire.recv(65536):
        data += chunk
    assert data == b"+"  # get_packet acks it; gdb_cmd_detachkill sends nothing for k


@pytest.mark.server_args("--dialect", "kgdb")
def test_escapes_and_runs_are_undone_in_x_alone(wire, server):
    jiffies = Image(server.elf).address_of("jiffies")

    def ask_raw(body: bytes) -> bytes:
        """The reply to a frame whose body goes as it is (the client would escape it)."""
        wire.sendall(frame(body))
        data = b""
        while not (reply := re.search(rb"\$([^#]*)#[0-9a-f]{2}", data)):
            chunk = wire.recv(65536)
            assert chunk, f"closed; got {data!r}"
            data += chunk
        wire.sendall(b"+")
        return reply[1]

    old = ask_raw(b"m%x,8" % jiffies)
    # kgdb_ebin2mem: a '}' makes the next byte ^ 0x20 ('}\x03' is '#', '}\x5d' is '}').
    assert ask_raw(b"X%x,3:}\x03}\x5d*" % jiffies) == b"OK"
    assert ask_raw(b"m%x,3" % jiffies) == b"237d2a"
    # get_packet undoes neither elsewhere: kgdb_hex2long stops at the '*', so this
    # reads one byte (a decoder would take "1*!" as ",11111", 0x11111 bytes).
    assert ask_raw(b"m%x,1*!" % jiffies) == b"23"
    assert ask_raw(b"M%x,8:%s" % (jiffies, old)) == b"OK"
