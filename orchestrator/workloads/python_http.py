"""python-http: uKontainer's cold-start program, a Python script that calls socket/listen and answers HTTP.

The program (python_http/http_server.py) runs under Debian's own interpreter, /usr/bin/python3.11,
with `-S -I` (no site, no environment), so every platform starts the same interpreter the same
way. Images hold the interpreter, its shared libraries (ldd) and only the standard-library modules
the program imports: the list comes from the program itself (`--modules`, run once on the
controller), plus os.py, which the interpreter looks for to find its library, and the encodings a
C/UTF-8 locale needs. The script is written per launch into the config directory. Readiness:
`GET /` answered with 200 and the exact body.

Bytecode: Debian's .pyc files are validated against the source's mtime, which a Linux guest's
initramfs does not keep (its entries have mtime 0), so the guest would compile every module at
each boot and the containers would not. testbed compiles the modules once into the cache as
unchecked-hash .pyc files under a `-X pycache_prefix` tree that every platform's image holds and
every launch uses: the same bytecode, never recompiled, everywhere.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import cache, cached_property
from pathlib import Path

from ..errors import MissingToolError, TestbedError
from ..tools import Tool
from .base import Connect, ImageRecipe, Workload, WorkloadOptions, expect, recv_until

PROGRAM = Path(__file__).with_name("python_http") / "http_server.py"
PYTHON = "/usr/bin/python3.11"
STDLIB = "/usr/lib/python3.11"
CACHE_TAG = "cpython-311"  # sys.implementation.cache_tag of PYTHON
BODY = b"testbed python-http ready\n"
# Found at start-up or by locale, not by the program's imports: the library landmark (os.py) and
# the codecs of the C and UTF-8 locales.
ALWAYS = ("os.py", "encodings/__init__.py", "encodings/aliases.py", "encodings/utf_8.py", "encodings/ascii.py",
          "encodings/latin_1.py")


def interpreter_argv(program: str, *args: str, pycache: str | None = None) -> list[str]:
    prefix = ["-X", f"pycache_prefix={pycache}"] if pycache else []
    return [PYTHON, "-S", "-I", "-B", *prefix, program, *args]  # -B: read the cached bytecode, never write


COMPILE = """
import importlib.util, py_compile, sys
for src in sys.argv[1:]:
    py_compile.compile(src, cfile=importlib.util.cache_from_source(src), doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def compiled_modules(sources: tuple[str, ...]) -> Path:
    """A pycache_prefix tree holding unchecked-hash .pyc files of `sources`, in the cache (built once,
    keyed by the interpreter and the sources' content)."""
    from ..images.compiled import compile_root

    h = hashlib.sha256(Path(PYTHON).resolve().read_bytes())
    for src in sources:
        h.update(b"\0" + src.encode() + b"\0" + Path(src).read_bytes())
    out = compile_root() / "compiled" / f"python-http-pycache-{h.hexdigest()[:16]}"
    if out.is_dir():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".python-http-pycache-", dir=out.parent))
    try:
        # The paths inside the tree name the final directory: compile there through the prefix of `out`.
        proc = subprocess.run(interpreter_argv("-c", COMPILE, *sources, pycache=str(tmp)),
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise TestbedError(f"compiling the python-http modules failed: {proc.stderr.strip()[-200:]}")
        try:
            os.rename(tmp, out)  # atomic; another process may have finished first
        except OSError:
            if not out.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def module_closure() -> tuple[str, ...]:
    """The standard-library source files the program imports (their bytecode: compiled_modules)."""
    if not Path(PYTHON).exists():
        raise MissingToolError(f"{PYTHON} is not installed; apt-get install python3.11-minimal (./setup.sh)")
    try:
        proc = subprocess.run(interpreter_argv(str(PROGRAM), "--modules"), capture_output=True, text=True,
                              timeout=30, cwd="/", check=False)
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"{PYTHON} {PROGRAM.name} --modules did not finish within 30 s") from exc
    if proc.returncode != 0:
        raise TestbedError(f"{PYTHON} {PROGRAM.name} --modules failed: {proc.stderr.strip()[-200:]}")
    sources = [line for line in proc.stdout.splitlines() if line.startswith(STDLIB + "/")]
    sources += [f"{STDLIB}/{rel}" for rel in ALWAYS]
    return tuple(src for src in dict.fromkeys(sources) if Path(src).exists())


def pyc_files(tree: Path, sources: tuple[str, ...]) -> tuple[str, ...]:
    """The .pyc of each source under a pycache_prefix tree (python3.11's cache tag)."""
    out = []
    for src in sources:
        path = Path(src)
        pyc = Path(f"{tree}{path.parent}") / f"{path.stem}.{CACHE_TAG}.pyc"
        if not pyc.is_file():
            raise TestbedError(f"{pyc} is missing from the compiled python-http modules; remove {tree} to rebuild")
        out.append(str(pyc))
    return tuple(out)


@cache
def program_modules() -> tuple[tuple[str, ...], Path]:
    """The program's module sources and their compiled tree, once per process (as compiled.py's
    builds): each workload instance would otherwise run the interpreter and hash it again."""
    sources = module_closure()
    return sources, compiled_modules(sources)


class PythonHttpOptions(WorkloadOptions):
    pass


class PythonHttp(Workload, kind="python-http"):
    port = 8080
    Options = PythonHttpOptions
    tools = (Tool("python3.11", "python3.11-minimal", ("python3.11", "--version"), "python-http workload"),)

    @cached_property
    def _recipe(self) -> ImageRecipe:
        sources, tree = program_modules()
        return ImageRecipe(packages=("python3.11-minimal", "libpython3.11-minimal"), binaries=(PYTHON,),
                           files=sources + pyc_files(tree, sources), directories=(f"{STDLIB}/lib-dynload", "/tmp"))

    def image_recipe(self) -> ImageRecipe:  # computed: the modules the program imports
        return self._recipe

    def write_config(self, config_dir: Path, *, config_path: str) -> None:
        shutil.copyfile(PROGRAM, config_dir / PROGRAM.name)

    def server_argv(self, config_path: str) -> list[str]:
        return interpreter_argv(f"{config_path}/{PROGRAM.name}", str(self.port), pycache=str(program_modules()[1]))

    def probe(self, connect: Connect) -> bool:
        with connect() as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: testbed\r\n\r\n")
            data = recv_until(s, BODY)
        head, _, body = data.partition(b"\r\n\r\n")
        expect(head.startswith(b"HTTP/1.1 200"), "GET /", head)
        return expect(body == BODY, "GET / (body)", body)
