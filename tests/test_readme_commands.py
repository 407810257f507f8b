"""Every `edgeforge` command the README shows runs verbatim.

Which commands: in the README's ```sh blocks, every line starting with ``edgeforge `` (backslash continuations
joined, ``# comments`` dropped); in its plain transcript blocks, every ``$ edgeforge ...`` line, whose following
lines are the output the README promises.

How paths resolve, as the README states ("Using it"): relative to the repository root, ``../shared`` being the
shared folder beside the checkout. The test rebuilds that layout without copying anything: the working directory
is ``tmp/repo`` and ``tmp/shared`` is a symlink to the real shared folder, so ``../shared/...`` reaches the shared
models and every ``build/...`` output lands in tmp. Commands run in-process (the CLI's ``main``), unchanged.

Rules:
- a command with an UPPERCASE placeholder argument (``MODEL``, ``BUILD_DIR``) is a template and is not run;
- any other relative input path must exist as written (``build/...`` being outputs of earlier README commands),
  else the README is wrong and the test fails; without the shared folder, commands that read it are skipped;
- a command that talks to a real board (``--port`` without ``--dry-run``) runs with ``--dry-run`` where the
  command has it (``flash``), else it is skipped with the reason in NEEDS_HARDWARE;
- the exit code is 0 unless the command's comment says "exits N"; exit 69 (a tool this machine lacks: QEMU,
  a cross compiler) skips, like the other tests that need `make toolchain`;
- a transcript's output lines appear, each verbatim, in what the command prints (the first word of a
  ``would run:`` line reduced to its file name: the README cannot know where esptool is installed).

Cheap commands (no build: targets, boards, doctor, analyze) always run. Commands on a build (build, flash, bench,
run) run per build folder in README order; `make test` runs REDUCED_CHAINS (KWS for the emulated M4: build, flash,
bench; KWS for ESP32: build, and the flash dry run checked against its transcript), `make test-all` also the
compression search.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import FULL, ROOT
from edgeforge.errors import ExitCode

README = ROOT / "README.md"
SHARED = ROOT.parent / "shared"
ON_A_BUILD = {"build", "flash", "bench", "run"}
NEEDS_HARDWARE = {"bench": "bench --port talks to a real board and has no --dry-run"}
REDUCED_CHAINS = {"build/kws-esp32", "build/m4"}


@dataclass
class Command:
    line: int  # README line number, for messages
    args: list[str]  # without the leading "edgeforge"
    expect_code: int = 0
    output: list[str] = field(default_factory=list)  # transcript lines the output must contain

    @property
    def text(self) -> str:
        return "edgeforge " + shlex.join(self.args)

    @property
    def template(self) -> bool:
        return any(re.fullmatch(r"[A-Z][A-Z_]*", a) for a in self.args)

    def option(self, name: str) -> str | None:
        return self.args[self.args.index(name) + 1] if name in self.args[:-1] else None

    @property
    def build_dir(self) -> str | None:
        """The build folder this command writes or reads (None: it needs no build)."""
        if self.args[0] not in ON_A_BUILD:
            return None
        if self.args[0] == "build":
            return self.option("--out") or f"build/{self.option('--target')}"
        return self.args[1]


def _parse(line: int, command: str) -> Command:
    comment = command.split(" #", 1)[1] if " #" in command else ""
    tokens = shlex.split(command, comments=True)
    code = re.search(r"\bexits? (\d+)", comment)
    assert tokens[0] == "edgeforge", command
    return Command(line, tokens[1:], int(code.group(1)) if code else 0)


def readme_commands(text: str) -> list[Command]:
    out: list[Command] = []
    for block in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        first = text[:block.start()].count("\n") + 2
        lines = block.group(2).splitlines()
        if block.group(1) == "sh":
            i = 0
            while i < len(lines):
                start, cmd = i, lines[i]
                while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    cmd = cmd.rstrip()[:-1] + " " + lines[i].strip()
                if cmd.startswith("edgeforge "):
                    out.append(_parse(first + start, cmd))
                i += 1
        elif block.group(1) == "":
            for i, ln in enumerate(lines):
                if ln.startswith("$ edgeforge "):
                    cmd = _parse(first + i, ln[2:])
                    for follow in lines[i + 1:]:
                        if follow.startswith("$ "):
                            break
                        if follow.strip():
                            cmd.output.append(follow)
                    out.append(cmd)
    return out


COMMANDS = readme_commands(README.read_text())
CHAINS: dict[str, list[Command]] = {}
for _c in COMMANDS:
    if _c.build_dir is not None and not _c.template:
        CHAINS.setdefault(_c.build_dir, []).append(_c)


def _normalized(output: str) -> set[str]:
    lines = set()
    for ln in output.splitlines():
        if ln.startswith("would run: "):
            exe, _, rest = ln[len("would run: "):].partition(" ")
            ln = f"would run: {Path(exe).name} {rest}".rstrip()
        lines.add(ln)
    return lines


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp/repo as the working directory, tmp/shared -> the shared folder (when there is one)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED.resolve(), target_is_directory=True)
    monkeypatch.chdir(repo)
    return repo


def _run(cli, cmd: Command, repo: Path) -> None:
    args = list(cmd.args)
    if "--port" in args and "--dry-run" not in args:
        if args[0] != "flash":
            reason = NEEDS_HARDWARE.get(args[0])
            assert reason, f"README line {cmd.line}: {cmd.text} needs a board; say why in NEEDS_HARDWARE"
            pytest.skip(f"README line {cmd.line}: {reason}")
        args.append("--dry-run")
    for a in args:
        is_path = not a.startswith("-") and ("/" in a or re.search(r"\.[A-Za-z]\w*$", a))
        if is_path and not a.startswith(("/", "build/")) and not (repo / a).exists():
            if a.startswith("../shared/") and not SHARED.is_dir():
                pytest.skip("../shared is absent (only the project's own machines have it)")
            pytest.fail(f"README line {cmd.line}: {a} does not exist relative to the repository root: {cmd.text}")
    r = cli(*args)
    if r.code == ExitCode.UNAVAILABLE and cmd.expect_code != r.code:  # a toolchain this machine lacks (make toolchain)
        pytest.skip(f"README line {cmd.line}: {cmd.text}: {(r.err.strip() or 'exit 69').splitlines()[0]}")
    assert r.code == cmd.expect_code, f"README line {cmd.line}: {cmd.text} exited {r.code}\n{r.out}\n{r.err}"
    missing = [ln for ln in cmd.output if ln not in _normalized(r.out + "\n" + r.err)]
    assert not missing, f"README line {cmd.line}: {cmd.text} printed\n{r.out}{r.err}\nnot the README's\n" + \
        "\n".join(missing)


def test_the_readme_shows_commands_of_every_kind() -> None:
    """The extraction finds what the README shows (a broken fence or prompt would silently drop commands)."""
    kinds = {c.args[0] for c in COMMANDS}
    assert {"targets", "analyze", "build", "flash", "bench", "boards", "doctor"} <= kinds, kinds
    assert any(c.output for c in COMMANDS) and REDUCED_CHAINS <= set(CHAINS), sorted(CHAINS)


def test_parse_joins_continuations_and_reads_documented_exit_codes() -> None:
    cmds = readme_commands("```sh\nedgeforge build m.tflite --target esp32 \\\n    --out build/x   # exits 3\n"
                           "make demo\n```\n```\n$ edgeforge flash build/x --port /dev/ttyUSB0 --dry-run\n"
                           "would run: idf.py build\n```\n")
    assert [(c.args, c.expect_code, c.output) for c in cmds] == [
        (["build", "m.tflite", "--target", "esp32", "--out", "build/x"], 3, []),
        (["flash", "build/x", "--port", "/dev/ttyUSB0", "--dry-run"], 0, ["would run: idf.py build"])]
    assert cmds[0].build_dir == cmds[1].build_dir == "build/x"


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.build_dir is None and not c.template],
                         ids=lambda c: " ".join(c.args[:2]))
def test_readme_command_without_a_build_runs_verbatim(cli, layout: Path, cmd: Command) -> None:
    _run(cli, cmd, layout)


@pytest.mark.slow
@pytest.mark.mlperf
@pytest.mark.parametrize("build_dir", sorted(CHAINS))
def test_readme_commands_on_a_build_run_verbatim(cli, layout: Path, build_dir: str) -> None:
    """A build and the commands that use it, in README order (`make test`: REDUCED_CHAINS only)."""
    if not FULL and build_dir not in REDUCED_CHAINS:
        pytest.skip("a README build chain `make test-all` runs (EDGEFORGE_FULL_TESTS=1)")
    for cmd in CHAINS[build_dir]:
        _run(cli, cmd, layout)
    assert (layout / build_dir / "manifest.json").is_file()
