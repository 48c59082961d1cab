"""python-http: uKontainer's cold-start program, a Python script that calls socket/listen and answers HTTP.

The program (python_http/http_server.py) runs under Debian's own interpreter, /usr/bin/python3.11,
with `-S -I` (no site, no environment), so every platform starts the same interpreter the same
way. Images hold the interpreter, its shared libraries (ldd) and only the standard-library modules
the program imports, with their compiled .pyc files: the list comes from the program itself
(`--modules`, run once on the controller), plus os.py, which the interpreter looks for to find its
library, and the encodings a C/UTF-8 locale needs. The script is written per launch into the
config directory. Readiness: `GET /` answered with 200 and the exact body.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from functools import cached_property
from pathlib import Path

from ..errors import MissingToolError, TestbedError
from ..tools import Tool
from .base import Connect, ImageRecipe, Workload, WorkloadOptions, expect, recv_until

PROGRAM = Path(__file__).with_name("python_http") / "http_server.py"
PYTHON = "/usr/bin/python3.11"
STDLIB = "/usr/lib/python3.11"
BODY = b"testbed python-http ready\n"
# Found at start-up or by locale, not by the program's imports: the library landmark (os.py) and
# the codecs of the C and UTF-8 locales.
ALWAYS = ("os.py", "encodings/__init__.py", "encodings/aliases.py", "encodings/utf_8.py", "encodings/ascii.py",
          "encodings/latin_1.py")


def interpreter_argv(program: str, *args: str) -> list[str]:
    return [PYTHON, "-S", "-I", program, *args]


def module_closure() -> tuple[str, ...]:
    """The standard-library files the program needs, with their .pyc files where Debian compiled them."""
    if not Path(PYTHON).exists():
        raise MissingToolError(f"{PYTHON} is not installed; apt-get install python3.11-minimal (./setup.sh)")
    try:
        proc = subprocess.run(interpreter_argv(str(PROGRAM), "--modules"), capture_output=True, text=True,
                              timeout=30, cwd="/")
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"{PYTHON} {PROGRAM.name} --modules did not finish within 30 s") from exc
    if proc.returncode != 0:
        raise TestbedError(f"{PYTHON} {PROGRAM.name} --modules failed: {proc.stderr.strip()[-200:]}")
    sources = [line for line in proc.stdout.splitlines() if line.startswith(STDLIB + "/")]
    sources += [f"{STDLIB}/{rel}" for rel in ALWAYS]
    files: list[str] = []
    for src in dict.fromkeys(sources):
        if not Path(src).exists():
            continue
        files.append(src)
        if src.endswith(".py"):
            pyc = importlib.util.cache_from_source(src)
            if Path(pyc).exists():
                files.append(pyc)
    return tuple(files)


class PythonHttpOptions(WorkloadOptions):
    pass


class PythonHttp(Workload, kind="python-http"):
    port = 8080
    Options = PythonHttpOptions
    tools = (Tool("python3.11", "python3.11-minimal", ("python3.11", "--version"), "python-http workload"),)

    @cached_property
    def _recipe(self) -> ImageRecipe:
        return ImageRecipe(packages=("python3.11-minimal", "libpython3.11-minimal"), binaries=(PYTHON,),
                           files=module_closure(), directories=(f"{STDLIB}/lib-dynload", "/tmp"))

    def image_recipe(self) -> ImageRecipe:  # computed: the modules the program imports
        return self._recipe

    def write_config(self, config_dir: Path, *, config_path: str) -> None:
        shutil.copyfile(PROGRAM, config_dir / PROGRAM.name)

    def server_argv(self, config_path: str) -> list[str]:
        return interpreter_argv(f"{config_path}/{PROGRAM.name}", str(self.port))

    def probe(self, connect: Connect) -> bool:
        with connect() as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: testbed\r\n\r\n")
            data = recv_until(s, BODY)
        head, _, body = data.partition(b"\r\n\r\n")
        expect(head.startswith(b"HTTP/1.1 200"), "GET /", head)
        return expect(body == BODY, "GET / (body)", body)
