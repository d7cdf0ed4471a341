"""Hosts for tests, each in a Linux network namespace of its own (iproute2).

``Network(3)`` makes a bridge with an address in the root namespace
(10.231.N.1/24) and three namespaces, each joined to the bridge by a veth pair and
holding one address (10.231.N.11, .12, .13) on its ``eth0``. The root namespace
reaches every host over the bridge, and the hosts reach the root namespace's bridge
address (where a test runs a forwarder to services that listen on 127.0.0.1 only).
Nothing is routed: IP forwarding, NAT and the firewall are left as they are.

Every name carries a random tag, so that what a crashed run left behind never
collides with a new run, and ``close()`` removes only what this object made: its
namespaces (with their veths and whatever still runs in them, all started by the
test) and its bridge. Needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field

SUPERNET = "10.231"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=30, check=check
    )


def available() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    try:
        _ip("netns", "list")
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"iproute2's `ip netns` does not work here: {exc}"
    return None


def _used_subnets() -> set[int]:
    """Third octets of the 10.231.x.0/24 networks on the root namespace's links."""
    used = set()
    for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
        for word in line.split():
            if word.startswith(SUPERNET + "."):
                used.add(int(word.split(".")[2]))
    return used


@dataclass
class Host:
    name: str  # the namespace
    address: str  # its address on the bridge
    veth: str  # the root namespace's end of its veth pair

    def argv(self, command: list[str]) -> list[str]:
        """``command`` run inside this host's namespace (``ip netns exec`` execs it,
        so the pid of the process started is the command's own)."""
        return ["ip", "netns", "exec", self.name, *command]

    def pids(self) -> set[int]:
        """Every process in this namespace (all of them started by the test)."""
        result = _ip("netns", "pids", self.name, check=False)
        return {int(p) for p in result.stdout.split()}

    def kill_all(self, sig: int = signal.SIGKILL) -> set[int]:
        """Signal every process in the namespace, like a host losing power."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return pids


@dataclass
class Network:
    count: int
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: list[Host] = field(default_factory=list)
    bridge: str = ""
    gateway: str = ""
    _made_bridge: bool = False

    def __enter__(self) -> Network:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _create(self) -> None:
        used = _used_subnets()
        free = [n for n in range(1, 255) if n not in used]
        if not free:
            raise RuntimeError(f"every {SUPERNET}.x.0/24 is taken on this machine")
        third = free[int(self.tag, 16) % len(free)]
        network = ipaddress.ip_network(f"{SUPERNET}.{third}.0/24")
        self.gateway = str(network[1])
        self.bridge = f"mdbr{self.tag}"  # interface names are at most 15 characters
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made_bridge = True
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for index in range(1, self.count + 1):
            host = Host(
                f"modeldock-{self.tag}-h{index}",
                str(network[10 + index]),
                f"mdv{self.tag}h{index}",
            )
            _ip("netns", "add", host.name)
            self.hosts.append(host)
            _ip(
                "link",
                "add",
                host.veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                host.name,
            )
            _ip("link", "set", host.veth, "master", self.bridge, "up")
            _ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.name, "link", "set", "eth0", "up")
            _ip("-n", host.name, "link", "set", "lo", "up")
            # As production is told (docs/production.md): a killed worker's queued
            # connections move to the other workers. A per-namespace setting.
            subprocess.run(
                host.argv(["sysctl", "-q", "-w", "net.ipv4.tcp_migrate_req=1"]),
                capture_output=True,
                timeout=30,
            )

    def close(self) -> None:
        """Remove what this object made, even after a failure half-way."""
        for host in self.hosts:
            for _ in range(50):  # processes left in it (all started by the test)
                if not host.kill_all():
                    break
                time.sleep(0.1)
            _ip("netns", "del", host.name, check=False)  # its veth pair goes too
            _ip("link", "del", host.veth, check=False)  # in case it did not
        self.hosts = []
        if self._made_bridge:
            _ip("link", "del", self.bridge, check=False)
            self._made_bridge = False
