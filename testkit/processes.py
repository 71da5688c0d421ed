"""Real processes to test against: the counter server, billing-sim and a redis-server of one's
own, each on a free loopback port, to start, kill with SIGKILL and start again; and the
``counter-server`` command line run once.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .scenarios import OPEN_ALL_DAY
from .waiting import WaitTimedOut, wait_until

# The checkout this package sits in (tests read its files); children run from here.
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback port nothing listens on now, for a child process to take."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accepts(port: int) -> bool:
    """Whether something accepts connections on this loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 15.0) -> None:
    """Until ``proc`` listens on ``port``; fails at once, naming ``what``, if it exits first."""

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        return accepts(port)

    wait_until(listening, what=f"{what} to listen on port {port}", timeout=timeout)


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``counter-server ARGS`` run once, its output captured."""
    return subprocess.run([sys.executable, "-m", "counter_server", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=check,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


class ChildProcess:
    """A process the tests start and may kill. ``stop`` is a SIGKILL here, since nothing of
    billing-sim or redis-server must be saved on the way down; the server stops politely."""

    proc: subprocess.Popen | None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no flush, as when power fails or the OOM killer strikes."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@dataclass
class ServerProcess(ChildProcess):
    """``counter-server serve`` in its own process, on a loopback port."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    config: Path | None = OPEN_ALL_DAY
    extra_args: list[str] = field(default_factory=lambda: ["--rate-limit", "0"])
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def start(self, timeout: float = 15.0) -> None:
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        log = open(self.log_path, "ab")
        config = ["--config", str(self.config)] if self.config else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "counter_server", "serve", "--data-dir", str(self.data_dir),
             "--host", "127.0.0.1", "--port", str(self.port), *config, *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        try:
            wait_for_port(self.port, self.proc, "counter-server", timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}: {self.log_path.read_text()}") from exc

    def log(self) -> str:
        """What the server has logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path else ""

    def log_once(self, wanted: str, timeout: float = 5.0) -> str:
        """The log once ``wanted`` is in it (records are written as they are made), or as it
        stands after ``timeout``: the caller's checks then say what is missing."""
        try:
            return wait_until(self.log, done=lambda text: wanted in text, what=f"{wanted!r} in the log",
                              timeout=timeout)
        except WaitTimedOut as timed_out:
            return str(timed_out.last)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class BillingSimProcess(ChildProcess):
    """``billing-sim`` in its own process; its journal keeps posted payments across restarts."""

    journal: Path
    port: int = field(default_factory=free_port)
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "counter_server.billing.simulator", "--port", str(self.port),
             "--journal", str(self.journal), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        wait_for_port(self.port, self.proc, "billing-sim", timeout)


def answers_ping(port: int) -> bool:
    """Whether a Redis on this loopback port answers PING (it may accept before it loads)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisProcess(ChildProcess):
    """A ``redis-server`` of the test's own on a free loopback port, to stop and restart.

    In memory by default; with ``appendonly`` it keeps an AOF (fsync on every write) in
    ``dir``, so a restart brings the data back. Missing redis-server makes the test fail."""

    dir: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = False
    proc: subprocess.Popen | None = None
    args: list[str] = field(default_factory=list)   # more options, e.g. --replicaof HOST PORT

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
             "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log"), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: answers_ping(self.port), what=f"redis-server to answer PING on {self.port}",
                   timeout=timeout)


# The proxy configuration the project ships (docs/deploying.md): tests run nginx with exactly it.
NGINX_CONF = ROOT / "deploy" / "nginx.conf"


def nginx_site(replica_ports: list[int], listen_port: int, shipped: Path = NGINX_CONF) -> str:
    """The shipped nginx file with only the replicas' addresses changed (one ``server`` line per
    port, as an operator edits it) and its ``listen`` moved to a free loopback port."""
    lines = shipped.read_text().splitlines()
    upstream = [i for i, line in enumerate(lines) if line.strip().startswith("server 127.0.0.1:")]
    assert upstream, f"no replica lines (server 127.0.0.1:PORT ...) in {shipped}"
    template = lines[upstream[0]]
    port_in_template = template.strip().split()[1].rsplit(":", 1)[1]
    replicas = [template.replace(f":{port_in_template} ", f":{port} ", 1) for port in replica_ports]
    lines[upstream[0]:upstream[-1] + 1] = replicas
    text = "\n".join(lines) + "\n"
    listen = "listen 80 default_server;"
    assert text.count(listen) == 1, f"the shipped file should say {listen!r} once"
    return text.replace(listen, f"listen 127.0.0.1:{listen_port} default_server;")


@dataclass
class NginxProcess(ChildProcess):
    """Debian's ``nginx`` in the foreground with the shipped site file in its http block, its
    pid, logs and temporary files in ``dir``. ``available()`` says whether nginx is installed."""

    dir: Path
    replica_ports: list[int]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @staticmethod
    def binary() -> str | None:
        for candidate in ("nginx", "/usr/sbin/nginx"):
            found = shutil.which(candidate)
            if found:
                return found
        return None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        binary = self.binary()
        assert binary is not None, "nginx is not installed"
        self.dir.mkdir(parents=True, exist_ok=True)
        site = self.dir / "counter-server.conf"
        site.write_text(nginx_site(self.replica_ports, self.port))
        temp = {name: self.dir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        main = self.dir / "nginx.conf"
        # As root nginx's workers would run as nobody, who cannot enter the test's directory.
        user = "user root;\n" if os.geteuid() == 0 else ""
        main.write_text(
            f"{user}daemon off;\nworker_processes 2;\npid {self.dir / 'nginx.pid'};\n"
            f"error_log {self.dir / 'error.log'} info;\nevents {{ worker_connections 256; }}\n"
            "http {\n"
            f"  access_log {self.dir / 'access.log'};\n"
            f"  client_body_temp_path {temp['body']};\n  proxy_temp_path {temp['proxy']};\n"
            f"  fastcgi_temp_path {temp['fastcgi']};\n  uwsgi_temp_path {temp['uwsgi']};\n"
            f"  scgi_temp_path {temp['scgi']};\n"
            f"  include {site};\n"
            "}\n")
        checked = subprocess.run([binary, "-t", "-c", str(main), "-p", str(self.dir)],
                                 capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, f"nginx -t refused the shipped file: {checked.stderr}"
        self.proc = subprocess.Popen([binary, "-c", str(main), "-p", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, self.proc, "nginx", timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}: {self.error_log()}") from exc

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, nginx's fast stop: the master ends its workers (a graceful SIGQUIT would
        wait for open WebSockets; a SIGKILL would leave the workers running)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
