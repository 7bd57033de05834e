"""A Ray cluster of separate hosts on one Linux machine: one network namespace per node.

A switch namespace holds a bridge; each node namespace gets one end of a veth pair (the other
end on the bridge) and a private address in 10.200.0.0/24, so nodes reach one another only
over that bridge and nothing outside the namespaces changes. Needs root and iproute2's ``ip``.
Every Ray node gets its own temp folder (so nothing is written to the shared /tmp/ray), and
token auth with a token file made here (mode 0600). The nodes share this machine's filesystem.
Teardown SIGKILLs exactly the processes inside these namespaces (never ``ray stop``, which would
stop every Ray on the machine) and deletes the namespaces.
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SUBNET = "10.200.0"  # private test addresses, only inside our own namespaces
RAY_PORT = 6379


class NamespaceError(RuntimeError):
    """Network namespaces, veth pairs or the bridge could not be made (not root, no ``ip``)."""


def _ip(*args: str) -> None:
    """Run ``ip ARGS``; a failure raises NamespaceError quoting the command and its message."""
    if shutil.which("ip") is None:
        raise NamespaceError("`ip` (iproute2) is not installed; run `apt-get install -y iproute2` "
                             "as root (CI's .ci/run does)")
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise NamespaceError(f"`ip {' '.join(args)}` failed ({done.returncode}): "
                             f"{done.stderr.strip()}; network namespaces need root (CAP_SYS_ADMIN)")


def _ip_quiet(*args: str) -> str:
    """``ip ARGS``'s output, or "" when it fails or ``ip`` is missing (for teardown)."""
    try:
        return subprocess.run(["ip", *args], capture_output=True, text=True).stdout
    except OSError:
        return ""


@dataclass
class Node:
    """One host: its namespace, address and Ray temp folder."""

    name: str
    netns: str
    address: str
    temp_dir: Path


@dataclass
class NetnsCluster:
    """A head and ``n_workers`` workers, each in its own namespace, joined by one bridge."""

    workdir: Path
    n_workers: int = 2
    worker_cpus: int = 1
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    nodes: list[Node] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ray_root: Path | None = None  # Ray temp folders, short (Unix socket paths stay < 108 bytes)

    @property
    def switch(self) -> str:
        return f"mtc-{self.tag}-sw"

    @property
    def head(self) -> Node:
        return self.nodes[0]

    @property
    def workers(self) -> list[Node]:
        return self.nodes[1:]

    @property
    def ray_address(self) -> str:
        return f"{self.head.address}:{RAY_PORT}"

    def create_network(self) -> None:
        """The switch namespace with a bridge, and one namespace per node wired to it."""
        self.ray_root = Path(tempfile.mkdtemp(prefix="mtc-"))
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        names = ["head"] + [f"worker{i}" for i in range(1, self.n_workers + 1)]
        for i, name in enumerate(names):
            ns = f"mtc-{self.tag}-{name}"
            _ip("netns", "add", ns)
            self.nodes.append(Node(name, ns, f"{SUBNET}.{i + 1}",
                                   self.ray_root / name))
            _ip("-n", self.switch, "link", "add", f"p{i}", "type", "veth",
                "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.switch, "link", "set", f"p{i}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{SUBNET}.{i + 1}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def token_path(self) -> Path:
        """The cluster's auth token, a random secret in a 0600 file made on first use."""
        token = Path(self.workdir) / "auth_token"
        if not token.exists():
            token.touch(mode=0o600)
            token.write_text(secrets.token_hex(32))
        return token

    def ray_env(self) -> dict[str, str]:
        """Environment for every process of the cluster: token auth, the token read from a file."""
        return {**os.environ, **self.env, "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(self.token_path()), "RAY_USAGE_STATS_ENABLED": "0"}

    def popen(self, node: Node, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start ``argv`` inside ``node``'s namespace with the cluster's environment."""
        return subprocess.Popen(["ip", "netns", "exec", node.netns, *argv],
                                env=kwargs.pop("env", self.ray_env()), **kwargs)

    def _ray_start(self, node: Node, *flags: str) -> None:
        node.temp_dir.mkdir(parents=True, exist_ok=True)
        ray = str(Path(sys.executable).with_name("ray"))
        argv = [ray, "start", f"--node-ip-address={node.address}", f"--temp-dir={node.temp_dir}",
                "--disable-usage-stats", *flags]
        done = self.popen(node, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = done.communicate(timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"ray start on {node.name} failed ({done.returncode}):\n"
                               f"{out[-3000:]}")

    def start_ray(self) -> None:
        """Head with 0 CPUs (only the driver runs there, as in cluster.yaml), then the workers."""
        self._ray_start(self.head, "--head", f"--port={RAY_PORT}", "--num-cpus=0",
                        "--include-dashboard=false")
        for node in self.workers:
            self._ray_start(node, f"--address={self.ray_address}", f"--num-cpus={self.worker_cpus}")
        self.wait_for_nodes(len(self.nodes))

    def wait_for_nodes(self, count: int, timeout_s: float = 120) -> None:
        """Block until ``count`` Ray nodes are alive, asked from the head's namespace."""
        code = ("import ray,sys,time; ray.init(address=sys.argv[1], configure_logging=False)\n"
                "t=time.time()\nwhile sum(n['Alive'] for n in ray.nodes()) < int(sys.argv[2]):\n"
                "    assert time.time()-t < float(sys.argv[3]), ray.nodes(); time.sleep(0.5)")
        probe = self.popen(self.head, [sys.executable, "-c", code, self.ray_address, str(count),
                                       str(timeout_s)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = probe.communicate(timeout=timeout_s + 60)
        if probe.returncode != 0:
            raise RuntimeError(f"{count} Ray nodes never came up:\n{out[-3000:]}")

    def pids(self, node: Node) -> list[int]:
        """Processes living in ``node``'s network namespace."""
        return [int(p) for p in _ip_quiet("netns", "pids", node.netns).split()]

    def raylet_pid(self, node: Node) -> int:
        """The pid of ``node``'s raylet (the process whose program is ``.../raylet``)."""
        for pid in self.pids(node):
            try:
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
            except OSError:
                continue
            if argv0.endswith(b"/raylet"):
                return pid
        raise RuntimeError(f"no raylet runs in {node.netns}")

    def kill_raylet(self, node: Node) -> int:
        """SIGKILL ``node``'s raylet, as when a host dies; returns the pid killed."""
        pid = self.raylet_pid(node)
        os.kill(pid, signal.SIGKILL)
        log.info("SIGKILLed raylet %d on %s (%s)", pid, node.name, node.address)
        return pid

    def kill_host(self, node: Node) -> list[int]:
        """SIGKILL every process of ``node`` (raylet first, then its workers), as when the host dies:
        a trial there stops at once instead of finishing on an orphaned worker."""
        pids = [self.raylet_pid(node), *self.pids(node)]
        for pid in dict.fromkeys(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.info("SIGKILLed host %s (%s): %d processes", node.name, node.address, len(set(pids)))
        return pids

    def teardown(self) -> None:
        """SIGKILL every process in our namespaces, then delete them."""
        for node in reversed(self.nodes):
            for _ in range(3):
                pids = self.pids(node)
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.5)
        for ns in [node.netns for node in self.nodes] + [self.switch]:
            _ip_quiet("netns", "del", ns)
        self.nodes.clear()
        if self.ray_root is not None:
            shutil.rmtree(self.ray_root, ignore_errors=True)

    def __enter__(self) -> NetnsCluster:
        try:
            self.create_network()
            self.start_ray()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()
