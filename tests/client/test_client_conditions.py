"""kgdbstub.client attaching agent expressions to breakpoints (Z0/Z1 condition and command lists)."""
import errno

import pytest

from agent_programs import assemble
from gdbtools import start_server
from kgdbstub.client import BreakpointRefused, SyncTarget, Unsupported, connect
from kgdbstub.kernel.image import Image


def forks_are(total_forks: int, n: int) -> bytes:
    return assemble(("const64", total_forks), ("ref64",), ("const8", n), ("equal",), ("end",))


async def test_a_breakpoint_with_a_condition_stops_where_it_holds(server):
    async with await connect(server.address) as target:
        total_forks = await target.symbol("total_forks")
        start = await target.read_int(total_forks)
        do_fork = await target.symbol("do_fork")
        await target.insert_breakpoint(do_fork, conditions=[forks_are(total_forks, start + 3),
                                                            forks_are(total_forks, start + 2)])
        stop = await target.resume()
        assert (stop.reason, stop.pc) == ("swbreak", do_fork)
        assert await target.read_int(total_forks) == start + 2, "the first of the two that holds"
        hardware = await target.insert_breakpoint(await target.symbol("looper_tick"), "hardware",
                                                  conditions=[forks_are(total_forks, start + 4)])
        await target.remove_breakpoint(await target.insert_breakpoint(do_fork))  # plain, then gone
        stop = await target.resume()
        assert stop.reason == "hwbreak" and await target.read_int(total_forks) == start + 4
        await target.remove_breakpoint(hardware)


async def test_commands_print_as_console_output_and_do_not_stop(server):
    async with await connect(server.address) as target:
        total_forks = await target.symbol("total_forks")
        start = await target.read_int(total_forks)
        printf = assemble(("const64", total_forks), ("ref64",), ("const8", 0), ("const8", 0),
                          ("printf", 1, b"fork %lu\\n"), ("end",))
        await target.insert_breakpoint(await target.symbol("do_fork"), commands=[printf])
        await target.insert_breakpoint(await target.symbol("looper_tick"),
                                       conditions=[forks_are(total_forks, start + 3)])
        stop = await target.resume()
        console = "looper: running\n"  # the kernel console, which comes as O packets too
        assert stop.output.replace(console, "") == "".join(f"fork {n}\n" for n in range(start, start + 3))


async def test_a_program_the_stub_cannot_run_is_refused(server):
    async with await connect(server.address) as target:
        getv = assemble(("getv", 1), ("end",))  # a trace state variable
        with pytest.raises(BreakpointRefused) as refused:
            await target.insert_breakpoint(await target.symbol("do_fork"), conditions=[getv])
        assert refused.value.errno == errno.EOPNOTSUPP


def test_a_stub_that_does_not_offer_conditions_gets_none():
    with start_server("--dialect", "kgdb") as server, SyncTarget(server.address) as target:
        do_fork = Image(server.elf).address_of("do_fork")
        with pytest.raises(Unsupported, match="ConditionalBreakpoints"):
            target.insert_breakpoint(do_fork, conditions=[assemble(("const8", 0), ("end",))])
        with pytest.raises(Unsupported, match="BreakpointCommands"):
            target.insert_breakpoint(do_fork, commands=[assemble(("end",))])
