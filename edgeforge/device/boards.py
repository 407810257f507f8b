"""Boards edgeforge starts itself, both reached as ``socket://`` serial ports so that the bench code path is
the one used for real boards:

* ``host-sim`` — the bench firmware compiled for this machine, its stdin/stdout bridged to a TCP port;
* ``pi-local`` — a Raspberry Pi / Android bundle's own runner (``run_model.py --serve``) on this machine,
  on LiteRT: the same program ``--port ssh://user@host`` starts on a real Pi;
* the emulated boards (``EMULATED``: ``qemu-cortex-m4`` on QEMU's ``mps2-an386``, and one per MCU family: M0+,
  M7, M33, M55, RISC-V rv32imc) — the real firmware cross-compiled for the board's core and run under QEMU with
  ``-icount shift=0`` (one instruction = one virtual nanosecond: latencies are *emulated* and labelled so),
  its UART exposed as a TCP serial port. Each is an ``EmulatedBoard``: what varies between them is data.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgeforge.device.transport import DeviceError
from edgeforge.errors import ToolMissingError, UsageError

INSTALL_QEMU = "apt-get install -y qemu-system-arm"


# [user@]host: a user name and a host name or IPv4/[IPv6] address; neither may start with "-", which ssh and scp
# would take as an option (ssh://-oProxyCommand=... runs a command on this machine)
_SSH_DESTINATION = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*@)?(?:[A-Za-z0-9_][A-Za-z0-9_.-]*|\[[0-9A-Fa-f:.]+\])$")


def ssh_destination(port: str) -> str:
    """The ``[user@]host`` of ``ssh://[user@]host`` (or a bare ``[user@]host``); UsageError for anything else."""
    host = port[len("ssh://"):] if port.startswith("ssh://") else port
    if not _SSH_DESTINATION.match(host):
        raise UsageError(f"--port {port!r} is not ssh://[user@]host",
                         "user and host are names or addresses that do not start with '-', "
                         "e.g. ssh://pi@raspberrypi.local")
    return host


def ssh_command(port: str, *remote: str) -> list[str]:
    """argv running ``remote`` on the host of ``port``: ``--`` ends ssh's options before the destination."""
    return ["ssh", "-o", "BatchMode=yes", "--", ssh_destination(port), *remote]


@dataclass(frozen=True)
class EmulatedBoard:
    """An emulated MCU board: the QEMU machine, the core it runs and how the bench firmware is built for it.

    ``flash_max``/``ram_max`` are the emulator's memories (an image is linked with the *target profile's* flash and
    RAM, which must fit inside them); ``stands_in_for`` lists the bundled target profiles whose core this is."""

    name: str
    summary: str
    qemu: str  # emulator binary
    machine: str  # -M
    cross: str  # compiler prefix
    cpu_flags: tuple[str, ...]
    port: str  # firmware/bench/ports/<port>
    image: str
    flash_origin: int
    ram_origin: int
    flash_max: int
    ram_max: int
    sysclk_hz: int  # the port's timer clock (emulated: with -icount shift=0 only the unit changes)
    stands_in_for: tuple[str, ...]
    cmsis_device: str | None = None  # Arm: CMSIS device name (ARMCM4...); None on other architectures
    cmsis_nn: bool = False  # CMSIS-NN's optimised kernels apply (DSP or MVE extension)
    port_defs: tuple[str, ...] = ()
    vectors_origin: int | None = None  # where the core fetches its vector table, when not at flash_origin
    ld_template: str | None = None  # the port's linker template, when not its first *.ld.in
    libc_specs: tuple[str, ...] = ("-specs=nano.specs", "-specs=nosys.specs")
    qemu_args: tuple[str, ...] = ()
    package: str = "qemu-system-arm"  # the Debian package holding the emulator
    compiler_package: str = "gcc-arm-none-eabi libnewlib-arm-none-eabi"
    no_tflm: str = ""  # why TFLM cannot be built for this board (empty: it can)

    @property
    def kernels(self) -> tuple[str, ...]:
        """TFLM kernel sets this board builds: reference everywhere, CMSIS-NN on Arm cores with DSP or MVE."""
        if self.no_tflm:
            return ()
        return ("reference", "cmsis_nn") if self.cmsis_nn else ("reference",)

    def make_variables(self) -> list[str]:
        """The bench Makefile's board variables (firmware/bench/Makefile, "The emulated board")."""
        out = [f"PORT={self.port}", f"CROSS={self.cross}", "CPU_FLAGS=" + " ".join(self.cpu_flags),
               f"IMAGE={self.image}", f"FLASH_ORIGIN={self.flash_origin:#010x}", f"RAM_ORIGIN={self.ram_origin:#010x}",
               f"FLASH_MAX={self.flash_max}", f"RAM_MAX={self.ram_max}", f"SYSCLK_HZ={self.sysclk_hz}",
               "PORT_DEFS=" + " ".join(self.port_defs), "LIBC_SPECS=" + " ".join(self.libc_specs)]
        if self.vectors_origin is not None:
            out.append(f"VECTORS_ORIGIN={self.vectors_origin:#010x}")
        if self.ld_template is not None:
            out.append(f"LD_TEMPLATE={self.ld_template}")
        return out

    def qemu_command(self, image: Path, tcp_port: int) -> list[str]:
        return [self.qemu, "-M", self.machine, *self.qemu_args, "-nographic", "-monitor", "none",
                "-icount", "shift=0", "-kernel", str(image),
                "-serial", f"tcp:127.0.0.1:{tcp_port},server=on,wait=off,nodelay=on"]

    def missing_tools(self) -> str | None:
        """Why this board cannot run here (emulator or compiler missing), or None."""
        for tool, pkg in ((self.qemu, self.package), (f"{self.cross}-gcc", self.compiler_package)):
            if shutil.which(tool) is None:
                return f"{tool} is not installed (make toolchain, or apt-get install -y {pkg})"
        return None


_MIB = 1024 * 1024
_MPS2 = {"qemu": "qemu-system-arm", "port": "mps2-an386", "flash_origin": 0, "ram_origin": 0x20000000,
         "flash_max": 4 * _MIB, "ram_max": 4 * _MIB, "sysclk_hz": 25_000_000}
# Sources: QEMU hw/arm/mps2.c (AN385/AN386/AN500: 4 MiB ZBT SSRAM1 at 0x0, 4 MiB SSRAM2/3 at 0x20000000, CMSDK
# UART0 at 0x40004000, 25 MHz) and hw/arm/mps2-tz.c (AN505: init-svtor 0x10000000, SSRAM1 4 MiB at 0x0 aliased at
# 0x10000000, SSRAM2+3 4 MiB at 0x28000000 aliased at 0x38000000, UART0 at 0x40200000, 20 MHz; AN547:
# init-svtor 0x0 = the 512 KiB ITCM, 2 MiB SRAM at 0x01000000, 4 MiB SRAM at 0x21000000, UART0 at 0x49303000,
# 32 MHz CPU / 25 MHz APB, 512 KiB DTCM at 0x20000000); hw/riscv/virt.c (RAM at 0x80000000, NS16550A UART at 0x10000000, CLINT at
# 0x02000000 with a 10 MHz mtime). After reset the v8-M cores run Secure with the SAU off, so every address is
# Secure and the Non-secure aliases reach the memories and the UART.
EMULATED: tuple[EmulatedBoard, ...] = (
    EmulatedBoard("qemu-cortex-m0plus", "ARMv6-M code (Cortex-M0+ instruction set) on QEMU mps2-an385",
                  machine="mps2-an385", cross="arm-none-eabi", cpu_flags=("-mcpu=cortex-m0plus", "-mthumb"),
                  image="ef_bench_m0plus.elf", stands_in_for=("rp2040",), cmsis_device="ARMCM0plus", **_MPS2),
    EmulatedBoard("qemu-cortex-m4", "Cortex-M4F on QEMU mps2-an386", machine="mps2-an386", cross="arm-none-eabi",
                  cpu_flags=("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
                  image="ef_bench_an386.elf", stands_in_for=("cortex-m4",), cmsis_device="ARMCM4", cmsis_nn=True,
                  **_MPS2),
    EmulatedBoard("qemu-cortex-m7", "Cortex-M7F on QEMU mps2-an500", machine="mps2-an500", cross="arm-none-eabi",
                  cpu_flags=("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"),
                  image="ef_bench_m7.elf", stands_in_for=("cortex-m7",), cmsis_device="ARMCM7", cmsis_nn=True,
                  **_MPS2),
    EmulatedBoard("qemu-cortex-m33", "Cortex-M33F on QEMU mps2-an505", qemu="qemu-system-arm", machine="mps2-an505",
                  cross="arm-none-eabi",
                  cpu_flags=("-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"),
                  port="mps2-an386", image="ef_bench_m33.elf", flash_origin=0x10000000, ram_origin=0x28000000,
                  flash_max=4 * _MIB, ram_max=4 * _MIB, sysclk_hz=20_000_000, stands_in_for=("cortex-m33",),
                  cmsis_device="ARMCM33", cmsis_nn=True, port_defs=("-DEF_UART0_BASE=0x40200000u",)),
    EmulatedBoard("qemu-cortex-m55", "Cortex-M55 with Helium (MVE) on QEMU mps3-an547", qemu="qemu-system-arm",
                  machine="mps3-an547", cross="arm-none-eabi",
                  cpu_flags=("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"), port="mps2-an386",
                  ld_template="an547.ld.in", image="ef_bench_m55.elf", flash_origin=0x01000000,
                  ram_origin=0x20000000, flash_max=2 * _MIB, ram_max=512 * 1024, sysclk_hz=32_000_000, stands_in_for=("cortex-m55",), cmsis_device="ARMCM55",
                  cmsis_nn=True, vectors_origin=0,
                  port_defs=("-DEF_UART0_BASE=0x49303000u", "-DEF_UART_PCLK_HZ=25000000u")),
    EmulatedBoard("qemu-riscv32", "RISC-V rv32imc (ESP32-C3/C6 class) on QEMU virt", qemu="qemu-system-riscv32",
                  machine="virt", cross="riscv64-unknown-elf",
                  cpu_flags=("-march=rv32imc", "-mabi=ilp32", "-misa-spec=2.2"), port="riscv-virt", image="ef_bench_rv32.elf",
                  flash_origin=0x80000000, ram_origin=0x84000000, flash_max=64 * _MIB, ram_max=64 * _MIB,
                  sysclk_hz=10_000_000, stands_in_for=("esp32c3",), libc_specs=("--specs=picolibc.specs",),
                  qemu_args=("-bios", "none"),
                  package="qemu-system-misc", compiler_package="gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf",
                  no_tflm="Debian's bare-metal RISC-V toolchain (gcc-riscv64-unknown-elf, picolibc) has no C++ "
                          "standard library, which TensorFlow Lite Micro needs"),
)
EMULATED_BY_NAME = {b.name: b for b in EMULATED}
BOARDS = ("host-sim", *EMULATED_BY_NAME, "pi-local")


def emulated_board(name: str) -> EmulatedBoard | None:
    return EMULATED_BY_NAME.get(name)


@dataclass(frozen=True)
class RunningBoard:
    url: str
    emulated: bool  # latency comes from an emulator's instruction count, not a real clock
    description: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bridge(proc: subprocess.Popen[bytes], server: socket.socket, stop: threading.Event) -> None:
    """Accept one client at a time and copy bytes between it and the process."""
    assert proc.stdin is not None and proc.stdout is not None
    server.settimeout(0.2)
    while not stop.is_set() and proc.poll() is None:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        except OSError:  # the server socket was closed: the board is shutting down
            return
        conn.settimeout(0.05)

        def pump_out(c: socket.socket = conn) -> None:
            assert proc.stdout is not None
            while not stop.is_set():
                data = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(1)
                if not data:
                    break
                try:
                    c.sendall(data)
                except OSError:
                    break

        t = threading.Thread(target=pump_out, daemon=True)
        t.start()
        while not stop.is_set() and proc.poll() is None:
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                break
        conn.close()


@contextlib.contextmanager
def host_sim(executable: Path) -> Iterator[RunningBoard]:
    with process_board([str(executable)], f"host-sim ({executable.name} on this machine)") as board:
        yield board


@contextlib.contextmanager
def process_board(cmd: list[str], description: str) -> Iterator[RunningBoard]:
    """Any program speaking the bench protocol on stdin/stdout (host-sim firmware, a bundle's runner locally
    or over ssh), exposed as a TCP serial port."""
    port = free_port()
    server = socket.create_server(("127.0.0.1", port))
    # stderr: the runner's own logs (e.g. LiteRT's delegate banner) stay off the user's terminal
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    stop = threading.Event()
    thread = threading.Thread(target=_bridge, args=(proc, server, stop), daemon=True)
    thread.start()
    try:
        yield RunningBoard(f"socket://127.0.0.1:{port}", False, description)
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            server.close()
        proc.kill()
        proc.wait(5)
        thread.join(2)


def qemu_available() -> bool:
    return shutil.which("qemu-system-arm") is not None


@contextlib.contextmanager
def qemu_cortex_m4(elf: Path, boot_timeout: float = 10.0) -> Iterator[RunningBoard]:
    with qemu_board(EMULATED_BY_NAME["qemu-cortex-m4"], elf, boot_timeout) as running:
        yield running


@contextlib.contextmanager
def qemu_board(board: EmulatedBoard, elf: Path, boot_timeout: float = 10.0) -> Iterator[RunningBoard]:
    if shutil.which(board.qemu) is None:
        raise ToolMissingError(f"{board.qemu} is not installed", f"apt-get install -y {board.package}")
    port = free_port()
    cmd = board.qemu_command(elf, port)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + boot_timeout
        while True:  # wait until QEMU listens
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise DeviceError(f"QEMU did not start: {out.strip()[-300:]}", "run the command by hand: "
                                  + " ".join(cmd))
            time.sleep(0.05)
        yield RunningBoard(f"socket://127.0.0.1:{port}", True,
                           f"{board.name} (QEMU {board.machine}, -icount shift=0: emulated instruction counts)")
    finally:
        proc.kill()
        proc.wait(5)
