"""The package as users install it: a built wheel in a venv of its own (no editable install, no source tree),
and a two-node Ray cluster on this machine started from that venv.

The wheel venv borrows the project's installed dependencies through a ``.pth`` line pointing at the project
venv's site-packages (a few seconds instead of a 6 GB install); ``.pth`` files inside that directory are not
processed, so the project's editable install of ``taosr1_verl`` is invisible there and ``import taosr1_verl``
finds only the wheel. The checks with verl's own pinned stack install everything for real
(``test_verl_pins_on_cpu.py``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel`` of the checkout (an isolated build, as ``pip install`` does)."""
    out = tmp_path_factory.mktemp("dist")
    build = tmp_path_factory.mktemp("build")
    # Build from a copy of the tracked files: an in-tree build would write build/ and *.egg-info into the checkout.
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (build / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, build / rel)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(build)], check=True, capture_output=True, text=True)
    (wheel,) = out.glob("taosr1_verl-*.whl")
    return wheel


@dataclass(frozen=True)
class WheelEnv:
    """A venv with the wheel installed (not editable) and the project's dependencies on its path."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a shell in this venv: its bin first on PATH, no project venv, no PYTHONPATH."""
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        path = [p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO))]
        env["PATH"] = os.pathsep.join([str(self.bin), *path])
        env["VIRTUAL_ENV"] = str(self.root)
        env.update(extra)
        return env

    def run(self, args: list[str], cwd: Path, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=cwd, env=self.env(**extra), capture_output=True, text=True, timeout=timeout)


def _console_script(path: Path, python: Path, module: str, func: str) -> None:
    path.write_text(f"#!{python}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
    path.chmod(0o755)


@pytest.fixture(scope="session")
def wheel_env(built_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> WheelEnv:
    root = tmp_path_factory.mktemp("wheelenv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    env = WheelEnv(root)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(root), "platbase": str(root)}))
    (site / "taosr1_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # pip of the project venv installs into the new one (--prefix), taking the wheel's files only.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--prefix", str(root),
                    "--ignore-installed", str(built_wheel)], check=True, capture_output=True, text=True)
    # pip wrote the console script with the installing interpreter's shebang: point it at this venv's.
    _console_script(env.bin / "taosr1", env.python, "taosr1_verl.cli", "main")
    # The Ray CLI from the project venv, run by this venv's interpreter (Ray starts its workers with it).
    _console_script(env.bin / "ray", env.python, "ray.scripts.scripts", "main")
    where = env.run([str(env.python), "-c", "import taosr1_verl, sys; print(taosr1_verl.__file__)"], cwd=root)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(site)), where.stdout  # the wheel, not the checkout
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RayCluster:
    """A head and one worker node on 127.0.0.1, started by the test from the wheel venv."""

    address: str
    """The job API (dashboard) address, ``http://127.0.0.1:PORT``."""
    gcs: str
    """``127.0.0.1:PORT`` of the GCS: every process of this cluster names it on its command line."""
    root: Path
    """Temp dir of the cluster (sockets, logs, the auth token)."""
    env: dict[str, str]
    """The environment of a client of this cluster (wheel venv, auth token path)."""
    pids: set[int]

    def processes(self) -> set[int]:
        """Live processes of this cluster: those naming its GCS or temp dir, and their descendants."""
        import psutil

        found = set()
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                cmd = " ".join(p.info["cmdline"] or ())
            except psutil.Error:
                continue
            if self.gcs in cmd or str(self.root) in cmd:
                found.add(p.info["pid"])
        found |= {pid for pid in self.pids if psutil.pid_exists(pid)}
        for pid in list(found):
            try:
                found |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
            except psutil.Error:
                continue
        found.discard(os.getpid())
        return found

    def workload(self) -> list[str]:
        """Command lines of this cluster's processes that are trainer, rollout or job work (not Ray's own
        daemons or idle workers): what must be gone once a job has ended."""
        import psutil

        daemons = ("gcs_server", "raylet", "multiprocessing.resource_tracker", "dashboard", "log_monitor", "monitor.py", "ray::IDLE",
                   "ray::DashboardAgent", "ray::RuntimeEnvAgent", "runtime_env/agent", "default_worker.py",
                   "ray/_private/workers")
        out = []
        for pid in self.processes():
            try:
                cmd = " ".join(psutil.Process(pid).cmdline())
            except psutil.Error:
                continue
            if cmd and not any(d in cmd for d in daemons):
                out.append(f"{pid}: {cmd[:200]}")
        return out


def _stop_all(pids: set[int]) -> None:
    from taosr1_verl.integrations.verl.supervise import stop_processes

    stop_processes(pids, grace=10)


@pytest.fixture(scope="module")
def ray_cluster(wheel_env: WheelEnv) -> Iterator[RayCluster]:
    """``ray start --head`` plus a second node joined with ``ray start --address``, each with its own resources.

    Token authentication is on (Ray's default for ``ray start``) with a token of this cluster's own
    (``RAY_AUTH_TOKEN_PATH``), so ``~/.ray`` is not touched. Torn down by killing this cluster's processes,
    never with ``ray stop`` (which would stop every Ray cluster on the machine).
    """
    root = Path(tempfile.mkdtemp(prefix=f"rc{uuid.uuid4().hex[:4]}-", dir="/tmp"))  # short: Unix socket paths
    token = root / "auth_token"
    token.write_text(uuid.uuid4().hex)
    gcs_port, dash_port = free_port(), free_port()
    env = wheel_env.env(RAY_AUTH_TOKEN_PATH=str(token), RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1",
                        TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    ray = str(wheel_env.bin / "ray")
    common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    head = [ray, "start", "--head", f"--port={gcs_port}", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash_port}", f"--ray-client-server-port={free_port()}", "--num-cpus=16",
            "--num-gpus=1", f"--temp-dir={root / 'ray'}", f"--dashboard-agent-listen-port={free_port()}",
            f"--metrics-export-port={free_port()}", *common]
    # Its own temp dir: two nodes on one machine sharing one would each forward the other's logs too.
    worker = [ray, "start", f"--address=127.0.0.1:{gcs_port}", "--num-cpus=4", "--num-gpus=0", f"--temp-dir={root / 'ray2'}",
              '--resources={"taosr1_second_node": 1}', f"--dashboard-agent-listen-port={free_port()}",
              f"--metrics-export-port={free_port()}", *common]
    # Nodes are told to use tokens, as a real cluster's are; clients get only the token path (our CLI must
    # switch token mode on by itself, as Ray's own CLI does on the head).
    node_env = env | {"RAY_AUTH_MODE": "token"}
    cluster = RayCluster(f"http://127.0.0.1:{dash_port}", f"127.0.0.1:{gcs_port}", root, env, set())
    try:
        for cmd in (head, worker):
            proc = subprocess.run(cmd, env=node_env, cwd=root, capture_output=True, text=True, timeout=180)
            assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        cluster.pids = cluster.processes()
        deadline, status = time.monotonic() + 120, ""
        while "taosr1_second_node" not in status and time.monotonic() < deadline:  # the worker registers late
            time.sleep(2)
            status = subprocess.run([ray, "status", f"--address=127.0.0.1:{gcs_port}"], env=node_env,
                                    capture_output=True, text=True, timeout=120).stdout
        assert "taosr1_second_node" in status, status  # both nodes joined
        yield cluster
    finally:
        _stop_all(cluster.processes())
        time.sleep(1)
        left = cluster.processes()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"cluster processes left: {sorted(left)}"
