"""The shipped minikernel image: build.sh reproduces it, and it has the layout,
symbols and debug info that the host and the debugger rely on."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

elftools = pytest.importorskip("elftools", reason="pyelftools is needed to read the image")
from elftools.elf.constants import SH_FLAGS  # noqa: E402
from elftools.elf.elffile import ELFFile  # noqa: E402

TARGET = Path(__file__).resolve().parents[1] / "targets" / "minikernel"
SHIPPED = TARGET / "minikernel.elf"
BUILD = TARGET / "build.sh"

PAGE = 0x1000
KERNEL_START = 0xFFFFFFFF81000000
KERNEL_END = 0xFFFFFFFF83000000
USER_START = 0x400000
USER_END = 0x1000000

KERNEL_FUNCTIONS = [
    "start_kernel",
    "do_fork",
    "kthread_trampoline",
    "do_syscall",
    "syscall_return",
    "timer_interrupt",
    "irq_return",
    "kgdb_breakpoint",
]
KERNEL_VARIABLES = ["jiffies", "total_forks", "kgdbwait"]
USER_FUNCTIONS = ["looper_main", "looper_tick"]
USER_VARIABLES = ["looper_iterations"]
HOT_VARIABLES = ["jiffies", "total_forks", "looper_iterations"]


@pytest.fixture(scope="module")
def elf():
    with open(SHIPPED, "rb") as stream:
        yield ELFFile(stream)


@pytest.fixture(scope="module")
def symbols(elf):
    """Name -> symbol, for the named symbols of .symtab."""
    return {sym.name: sym for sym in elf.get_section_by_name(".symtab").iter_symbols() if sym.name}


def first_line(command):
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return out.splitlines()[0]


def read_bytes(elf, address, size):
    """Bytes of the file image at a virtual address."""
    for segment in elf.iter_segments("PT_LOAD"):
        start = segment["p_vaddr"]
        if start <= address and address + size <= start + segment["p_filesz"]:
            return segment.data()[address - start : address - start + size]
    raise AssertionError(f"{address:#x} is not in the file image of a PT_LOAD segment")


def banner(elf, symbols):
    sym = symbols["linux_banner"]
    return read_bytes(elf, sym["st_value"], sym["st_size"]).rstrip(b"\0").decode()


# --- reproducibility -------------------------------------------------------


def test_build_sh_reproduces_the_shipped_image(tmp_path, elf, symbols):
    for tool in ("gcc", "ld"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} on this machine: cannot rebuild the image")
    # build.sh puts the toolchain in the banner, as Linux does; another
    # toolchain is expected to give other bytes, so that is a skip, not a failure.
    gcc = first_line(["gcc", "--version"]).split(" ", 1)[1]
    toolchain = f"gcc {gcc}, {first_line(['ld', '--version'])}"
    if f"({toolchain})" not in banner(elf, symbols):
        pytest.skip(
            f"the shipped image was built by another toolchain: banner "
            f"{banner(elf, symbols).strip()!r}, this machine has {toolchain!r}"
        )

    # From a copy of the sources somewhere else, into yet another directory,
    # from a third working directory: none of these may show in the result.
    sources = tmp_path / "checkout" / "elsewhere"
    shutil.copytree(TARGET, sources, ignore=shutil.ignore_patterns("minikernel.elf"))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    for build_sh, output in [
        (BUILD, tmp_path / "out" / "minikernel.elf"),
        (sources / "build.sh", tmp_path / "out2" / "image.elf"),
    ]:
        subprocess.run(["bash", str(build_sh), str(output)], check=True, cwd=workdir, capture_output=True)
        built, shipped = output.read_bytes(), SHIPPED.read_bytes()
        if built != shipped:
            at = next((i for i, (a, b) in enumerate(zip(built, shipped)) if a != b), min(len(built), len(shipped)))
            pytest.fail(
                f"{build_sh} built an image that differs from the shipped one at byte {at:#x} "
                f"(sizes {len(built)} and {len(shipped)}): rebuild and ship it, or fix the build's determinism"
            )


# --- the ELF ----------------------------------------------------------------


def test_is_an_x86_64_executable_entered_at_start_kernel(elf, symbols):
    assert elf.elfclass == 64 and elf.little_endian
    assert elf["e_machine"] == "EM_X86_64"
    assert elf["e_type"] == "ET_EXEC"
    assert elf["e_entry"] == symbols["start_kernel"]["st_value"]


@pytest.mark.parametrize(
    "name, kind, low, high",
    [(n, "STT_FUNC", KERNEL_START, KERNEL_END) for n in KERNEL_FUNCTIONS]
    + [(n, "STT_OBJECT", KERNEL_START, KERNEL_END) for n in KERNEL_VARIABLES]
    + [(n, "STT_FUNC", USER_START, USER_END) for n in USER_FUNCTIONS]
    + [(n, "STT_OBJECT", USER_START, USER_END) for n in USER_VARIABLES],
)
def test_required_symbol_is_where_it_belongs(symbols, name, kind, low, high):
    assert name in symbols, f"{name} is missing"
    sym = symbols[name]
    assert sym["st_info"]["type"] == kind
    assert low <= sym["st_value"] < high, f"{name} at {sym['st_value']:#x}"
    if kind == "STT_OBJECT":
        assert sym["st_size"] == 8, f"{name} is not an unsigned long"


def test_segments_are_page_aligned_and_never_writable_and_executable(elf):
    loads = list(elf.iter_segments("PT_LOAD"))
    assert loads
    for seg in loads:
        start, end = seg["p_vaddr"], seg["p_vaddr"] + seg["p_memsz"]
        assert start % PAGE == 0
        assert KERNEL_START <= start and end <= KERNEL_END or USER_START <= start and end <= USER_END
        assert not (seg["p_flags"] & 1 and seg["p_flags"] & 2), f"W+X segment at {start:#x}"
    # Code and writable data never share a page, in either half.
    pages = {}
    for seg in loads:
        for page in range(seg["p_vaddr"] // PAGE, (seg["p_vaddr"] + seg["p_memsz"] + PAGE - 1) // PAGE):
            assert page not in pages, f"two segments share page {page * PAGE:#x}"
            pages[page] = seg["p_flags"]
    kinds = {(seg["p_vaddr"] >= KERNEL_START, seg["p_flags"]) for seg in loads}
    for kernel in (True, False):
        assert (kernel, 5) in kinds, "no r-x segment"
        assert (kernel, 6) in kinds, "no rw- segment"


def writable_objects(elf):
    """(name, start, end) of every data object in a writable section."""
    symtab = elf.get_section_by_name(".symtab")
    out = []
    for sym in symtab.iter_symbols():
        shndx = sym["st_shndx"]
        if sym["st_info"]["type"] != "STT_OBJECT" or not isinstance(shndx, int):
            continue
        if elf.get_section(shndx)["sh_flags"] & SH_FLAGS.SHF_WRITE:
            out.append((sym.name, sym["st_value"], sym["st_value"] + max(sym["st_size"], 1)))
    return out


def page_neighbours(elf, name):
    """The other writable objects that touch a page of object name."""
    objects = writable_objects(elf)
    (start, end), = [(s, e) for n, s, e in objects if n == name]
    first, last = start // PAGE, (end - 1) // PAGE
    return sorted(n for n, s, e in objects if n != name and s // PAGE <= last and (e - 1) // PAGE >= first)


@pytest.mark.parametrize("name", HOT_VARIABLES)
def test_hot_variable_is_alone_on_its_page(elf, name):
    assert page_neighbours(elf, name) == []


def test_page_neighbours_sees_neighbours(elf):
    # The check above would pass vacuously if it could not see other objects.
    assert page_neighbours(elf, "kgdbwait"), "kgdbwait has no neighbour on its page"


def test_kgdbwait_is_initialised_data_with_a_place_in_the_file(elf, symbols):
    sym = symbols["kgdbwait"]
    section = elf.get_section(sym["st_shndx"])
    assert section["sh_type"] == "SHT_PROGBITS"
    assert read_bytes(elf, sym["st_value"], 8) == bytes(8)


# --- debug info -------------------------------------------------------------


def test_dwarf_describes_do_fork_and_the_variables(elf, symbols):
    assert elf.has_dwarf_info()
    dwarf = elf.get_dwarf_info()
    functions, variables = {}, {}
    for cu in dwarf.iter_CUs():
        top = cu.get_top_DIE()
        for die in top.iter_children():
            if "DW_AT_declaration" in die.attributes:
                continue  # a declaration of something defined elsewhere
            # A definition of something declared earlier in the unit (by a
            # header) names it through DW_AT_specification.
            about = die
            if "DW_AT_specification" in die.attributes:
                about = die.get_DIE_from_attribute("DW_AT_specification")
            if "DW_AT_name" not in about.attributes:
                continue
            name = about.attributes["DW_AT_name"].value.decode()
            if die.tag == "DW_TAG_subprogram":
                functions[name] = top.get_full_path()
            elif die.tag == "DW_TAG_variable" and name in HOT_VARIABLES:
                type_die = about.get_DIE_from_attribute("DW_AT_type")
                variables[name] = type_die.attributes["DW_AT_name"].value.decode()
    assert functions.get("do_fork", "").endswith("kernel/fork.c")
    assert functions.get("looper_main", "").endswith("user/looper.c")
    assert variables == {name: "long unsigned int" for name in HOT_VARIABLES}


@pytest.mark.parametrize("name", ["do_fork", "do_syscall", "kthread_trampoline", "looper_main", "looper_tick"])
def test_call_frame_information_covers(elf, symbols, name):
    dwarf = elf.get_dwarf_info()
    entries = dwarf.CFI_entries() if dwarf.has_CFI() else []
    entries += dwarf.EH_CFI_entries() if dwarf.has_EH_CFI() else []
    address = symbols[name]["st_value"]
    covering = [
        fde
        for fde in entries
        if "initial_location" in fde.header
        and fde.header["initial_location"] <= address < fde.header["initial_location"] + fde.header["address_range"]
    ]
    assert covering, f"no CFI for {name}: gdb could not unwind through it"


def test_the_readme_symbol_tables_give_the_shipped_addresses(symbols):
    rows = re.findall(r"^\| `(\w+)` \| `(0x[0-9a-f]+)` \|", (TARGET / "README.md").read_text(), re.M)
    assert len(rows) >= 14
    wrong = {name: (listed, hex(symbols[name]["st_value"])) for name, listed in rows
             if int(listed, 16) != symbols[name]["st_value"]}
    assert not wrong, f"README.md lists (listed, shipped): {wrong}"
