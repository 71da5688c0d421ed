"""Redis with Sentinel on loopback: a primary, its replicas and Sentinels, as real processes.

Fast failover for tests: a primary unanswered for 1 s is down, and the Sentinels (a quorum of
two) promote a replica within a few seconds.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .processes import ChildProcess, RedisProcess, answers_ping, free_port
from .waiting import wait_until

MASTER = "counter-redis"


def replica_of(primary: RedisProcess, dir: Path) -> RedisProcess:
    """A redis-server replicating ``primary`` (in memory, like it)."""
    return RedisProcess(dir=dir, args=["--replicaof", "127.0.0.1", str(primary.port)])


@dataclass
class SentinelProcess(ChildProcess):
    """``redis-server --sentinel`` watching the primary on ``primary_port`` as MASTER."""

    dir: Path
    primary_port: int
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "sentinel.conf"   # Sentinel rewrites its own file as it learns
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nlogfile {self.dir / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 5000\n"
            f"sentinel parallel-syncs {MASTER} 1\n")
        self.proc = subprocess.Popen(["redis-server", str(conf), "--sentinel"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: answers_ping(self.port), what=f"Sentinel to answer PING on {self.port}",
                   timeout=timeout)
