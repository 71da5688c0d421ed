"""Every module of the project imports on its own: no import cycle hides behind the order in
which some other module happens to load things (``import counter_server.live.handlers`` once
failed alone and worked only because the app factory had imported ``api`` first). And reading
the configuration stays light: it needs no web framework, store engine or database library.

A new interpreter for each of a hundred modules would spend half a minute importing the same
libraries again and again. So one new interpreter (the runner, ``python -m tests.test_imports``)
imports the libraries the project names, and no module of the project, and then forks one child
per module: each child starts with none of the project loaded, as a new interpreter would, and
imports just its one module. A module that needs a library the runner must not load first (see
``NOT_LOADED_AHEAD``) gets a new interpreter of its own.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("counter_server", "kiosk_client", "display_board", "loadtests", "benchmarks")
# Not loaded ahead by the runner: importing locust patches the standard library with gevent's,
# which no other module should start from.
NOT_LOADED_AHEAD = frozenset({"locust", "gevent"})
SERVER_PARTS = ("aiohttp", "redis", "sqlite_utils")
# Modules that need a setup.cfg extra the tests do not install (``load``: locust and
# websocket-client): they must import whenever it is installed, and may lack only its libraries
# when it is not.
NEEDS_EXTRA = {"loadtests.locustfile": ("locust", "websocket")}
MAX_REPORT = 4000


def project_modules() -> list[str]:
    """Every module of the packages by its dotted name, found on disk (nothing is imported).
    ``__main__`` modules are left out: importing one runs its program."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            in_packages = all((ROOT.joinpath(*parts[:depth]) / "__init__.py").exists()
                              for depth in range(1, len(parts)))
            if path.name == "__main__.py" or not in_packages:
                continue
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def names_imported(module: str) -> set[str]:
    """The absolute module names ``module``'s source imports, anywhere in it."""
    path = ROOT.joinpath(*module.split("."))
    source = (path / "__init__.py") if path.is_dir() else path.with_suffix(".py")
    named: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            named.add(node.module)
    return named


def _library(name: str) -> bool:
    """Another project's module: neither the standard library's nor one in this checkout."""
    top = name.split(".")[0]
    return top not in sys.stdlib_module_names and not (ROOT / top).exists() and not (ROOT / f"{top}.py").exists()


def needs_own_interpreter(module: str) -> bool:
    return any(name.split(".")[0] in NOT_LOADED_AHEAD for name in names_imported(module))


def libraries_named(modules: list[str]) -> list[str]:
    """The modules of other projects that the project's own modules import by name."""
    named = set().union(*(names_imported(module) for module in modules))
    return sorted(name for name in named if _library(name) and name.split(".")[0] not in NOT_LOADED_AHEAD)


def import_alone(module: str) -> str | None:
    """``module`` imported by a new interpreter of its own; why it failed, or None."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    return done.stderr[-MAX_REPORT:] or f"exit status {done.returncode}" if done.returncode else None


def _import_in_child(module: str) -> tuple[int, int]:
    """Fork a child whose whole life is to import ``module`` (its output silenced); returns the
    child's pid and the pipe its traceback comes back on."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        return pid, read_end
    os.close(read_end)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    status = 0
    try:
        importlib.import_module(module)
    except BaseException:  # noqa: BLE001 - whatever stops the import is the finding
        os.write(write_end, traceback.format_exc()[-MAX_REPORT:].encode("utf-8", "replace"))
        status = 1
    os._exit(status)


def import_each(modules: list[str], jobs: int) -> dict[str, str]:
    """Each module imported in a child of its own, ``jobs`` at a time: {module: why it failed}."""
    waiting, running, failed = list(reversed(modules)), {}, {}
    while waiting or running:
        while waiting and len(running) < jobs:
            module = waiting.pop()
            pid, report = _import_in_child(module)
            running[pid] = (module, report)
        pid, status = os.wait()
        module, report = running.pop(pid)
        with os.fdopen(report, "rb") as pipe:
            why = pipe.read().decode("utf-8", "replace")
        if status != 0:
            failed[module] = why or f"the child ended with status {status}"
    return failed


def _runner() -> None:
    """``python -m tests.test_imports``: load the libraries, import each module, print JSON."""
    modules = project_modules()
    alone = [module for module in modules if needs_own_interpreter(module)]
    for library in libraries_named(modules):
        try:
            importlib.import_module(library)
        except Exception:  # noqa: BLE001 - not installed, or not a module: the child will say
            pass
    assert not [m for m in sys.modules if not _library(m) and m.split(".")[0] not in sys.stdlib_module_names
                and m not in ("__main__", "tests", "tests.test_imports")], "the runner loaded the project"
    failed = import_each([m for m in modules if m not in alone], jobs=2 * (os.cpu_count() or 1))
    failed.update({module: why for module in alone if (why := import_alone(module)) is not None})
    print(json.dumps({"modules": modules, "failed": failed}))


def test_every_module_imports_on_its_own():
    done = subprocess.run([sys.executable, "-m", "tests.test_imports"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-MAX_REPORT:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert {"counter_server.app", "counter_server.routes", "kiosk_client.app"} <= set(result["modules"])
    failed = {module: why for module, why in result["failed"].items()
              if not _lacks_only_its_extra(module, why)}
    assert not failed, "\n\n".join(f"import {module} alone fails:\n{why}" for module, why in failed.items())


def _lacks_only_its_extra(module: str, why: str) -> bool:
    """The import failed only because the extra ``module`` needs is not installed here."""
    last = why.strip().splitlines()[-1] if why.strip() else ""
    return any(last == f"ModuleNotFoundError: No module named '{name}'" for name in NEEDS_EXTRA.get(module, ()))


def test_reading_the_configuration_imports_no_server_parts():
    """The CLI, the simulations and the store read the configuration; none should pay for the
    server's web framework, store engines or database library just to do so."""
    probe = ("import json, sys, counter_server.config; "
             f"print(json.dumps([m for m in {SERVER_PARTS!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-MAX_REPORT:]
    assert json.loads(done.stdout) == []


if __name__ == "__main__":
    _runner()
