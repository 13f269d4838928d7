"""The Debian packages, installed with apt on this Debian 12 machine, on Debian's own libraries.

`packaging/build-debs.sh` builds them (lintian must report no error), or `EDGEWARD_DEBS=DIR`
names prebuilt ones. apt installs them with their Depends (`apt-get install ./*.deb`), so the
commands run on /usr/bin/python3 with Debian's python3-* libraries, never the virtual
environment. No systemd runs here: control and the enforcer are started with their units'
ExecStart command lines (control as the unit's User=, both without new privileges), with test
configurations that point at a private dockerd, temporary state directories and socket.
Control hands out an enrollment bundle that is preseeded through debconf before edge-enforcer
is installed (zero-touch provisioning); the enforcer enrolls on its first start and runs what
control deploys, and what is applied site-locally. At the end the packages are purged and what
the test added to the machine (user, group, directories, dependencies apt pulled in) removed.

It changes the machine's packages, so it runs only with EDGEWARD_DEB_TEST=1 or CI=true, as root.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.support.engines import DockerEngine
from tests.support.http import request
from tests.support.images import import_image, push
from tests.support.processes import MissingPart, free_port
from tests.support.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
WANTED = IN_CI or os.environ.get("EDGEWARD_DEB_TEST", "") == "1"
PACKAGES = ("python3-edgeward", "edge-control", "edge-enforcer")
UNITS = Path("/lib/systemd/system")
SYSTEM_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", "--no-install-recommends"]
DEBIAN_LIBRARIES = ("docker", "aiohttp", "aiosqlite", "cryptography", "psutil", "pyudev",
                    "click", "yaml")  # fmt: skip

pytestmark = [
    pytest.mark.skipif(
        not WANTED, reason="installs system packages: set EDGEWARD_DEB_TEST=1 (or CI=true)"
    ),
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]


# --- helpers --------------------------------------------------------------------------------


def run(
    *cmd: str | Path,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 120,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """A command with the system's PATH only (no virtual environment), output captured."""
    argv = [str(c) for c in cmd]
    res = subprocess.run(
        argv,
        env={**SYSTEM_ENV, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
        check=False,
    )
    if check and res.returncode != 0:
        raise AssertionError(
            f"{shlex.join(argv)} exited {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        )
    return res


def apt(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    apt_env = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_SUSPEND": "1", **(env or {})}
    return run(*APT, *args, env=apt_env, timeout=600)


def installed(package: str) -> bool:
    res = run("dpkg-query", "-W", "-f", "${db:Status-Status}", package, check=False)
    return res.returncode == 0 and res.stdout.strip() == "installed"


def unit(name: str) -> dict[str, list[str]]:
    """The installed unit file's settings: key -> values in order."""
    settings: dict[str, list[str]] = {}
    for line in (UNITS / f"{name}.service").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def exec_start(name: str, config: Path) -> list[str]:
    """The unit's ExecStart, with our configuration instead of the one in /etc/edgeward."""
    argv = shlex.split(unit(name)["ExecStart"][0])
    at = argv.index("--config") + 1
    assert argv[at].startswith("/etc/edgeward/"), argv
    argv[at] = str(config)
    return argv


def not_found(what: str) -> None:
    pytest.fail(f"the Debian package test cannot run here: {what}", pytrace=False)


@dataclass
class Daemon:
    """A daemon started from the installed files; stopped by its pid, as systemd would."""

    name: str
    argv: list[str]
    log: Path
    umask: int = 0o022
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=dict(SYSTEM_ENV),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd="/",
                umask=self.umask,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, as `systemctl stop` sends it; the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                return None
        return proc.returncode


def wait_until(predicate: Any, timeout: float, what: str, daemon: Daemon | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if daemon is not None and not daemon.alive():
            raise AssertionError(f"{daemon.name} exited while waiting for {what}:\n"
                                 f"{daemon.output()}")  # fmt: skip
        try:
            if predicate():
                return
        except Exception as exc:  # report the last one
            last = exc
        time.sleep(0.3)
    log = f"\n{daemon.name} log:\n{daemon.output()}" if daemon is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last}){log}")


# --- the installation -------------------------------------------------------------------------


@dataclass
class Installation:
    """What the test did to the machine, so that the end undoes exactly that."""

    debs: dict[str, Path]
    new_dependencies: list[str] = field(default_factory=list)
    had_user: bool = False
    had_group: bool = False
    had_state: set[str] | None = None  # entries of /var/lib/edgeward; None: it did not exist
    policy_rc: Path | None = None

    def install(self, *packages: str) -> None:
        apt("install", *[str(self.debs[p]) for p in packages])

    def purge(self, *packages: str, purge_state: bool) -> None:
        env = {"EDGEWARD_PURGE_STATE": "1"} if purge_state else {}
        present = [p for p in packages if installed(p)]
        if present:
            apt("purge", *present, env=env)

    def undo(self) -> None:
        self.purge(*reversed(PACKAGES), purge_state=True)
        with contextlib.suppress(FileNotFoundError):
            Path("/etc/edgeward/enrollment").unlink()
        state = Path("/var/lib/edgeward")
        if self.had_state is None:
            shutil.rmtree(state, ignore_errors=True)
        elif state.is_dir():
            for entry in state.iterdir():
                if entry.name not in self.had_state:
                    shutil.rmtree(entry, ignore_errors=True)
        if not self.had_user and run("getent", "passwd", "edgeward", check=False).returncode == 0:
            run("deluser", "--system", "--quiet", "edgeward", check=False)
        if not self.had_group and run("getent", "group", "edgeward", check=False).returncode == 0:
            run("delgroup", "--system", "--quiet", "edgeward", check=False)
        leftovers = [p for p in self.new_dependencies if installed(p)]
        if leftovers:
            apt("purge", *leftovers)
        if self.policy_rc is not None:
            self.policy_rc.unlink(missing_ok=True)


def existing(directory: str) -> set[str] | None:
    path = Path(directory)
    return {p.name for p in path.iterdir()} if path.is_dir() else None


def built_packages(tmp: Path) -> dict[str, Path]:
    prebuilt = os.environ.get("EDGEWARD_DEBS", "")
    where = Path(prebuilt) if prebuilt else tmp / "debs"
    if not prebuilt:
        # the real build command, lintian included (it fails the build on an error)
        res = subprocess.run(
            [str(ROOT / "packaging" / "build-debs.sh"), str(where)],
            capture_output=True, text=True, timeout=900, env=dict(SYSTEM_ENV), check=False,
        )  # fmt: skip
        assert res.returncode == 0, (
            f"build-debs.sh failed:\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}"
        )
    debs: dict[str, Path] = {}
    for package in PACKAGES:
        found = sorted(where.glob(f"{package}_*_all.deb"))
        assert found, f"no {package}_*_all.deb in {where}"
        debs[package] = found[-1]
    return debs


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    if os.geteuid() != 0:
        not_found("it must run as root (it installs packages)")
    if not Path("/etc/debian_version").read_text().startswith("12."):
        not_found("this is not Debian 12")
    for tool in ("apt-get", "dpkg-query", "debconf-set-selections", "setpriv"):
        if shutil.which(tool, path=SYSTEM_ENV["PATH"]) is None:
            not_found(f"{tool} is missing")
    already = [p for p in PACKAGES if installed(p)]
    if already:
        not_found(f"{', '.join(already)} already installed here: the test would replace them")

    debs = built_packages(tmp_path_factory.mktemp("debs"))
    # what apt is going to add, to take exactly that away at the end
    sim = run(*APT, "install", "-s", *[str(d) for d in debs.values()])
    new = [m for m in re.findall(r"^Inst (\S+) \(", sim.stdout, re.M) if m not in PACKAGES]
    inst = Installation(
        debs=debs,
        new_dependencies=new,
        had_user=run("getent", "passwd", "edgeward", check=False).returncode == 0,
        had_group=run("getent", "group", "edgeward", check=False).returncode == 0,
        had_state=existing("/var/lib/edgeward"),
    )
    policy_rc = Path("/usr/sbin/policy-rc.d")
    if Path("/run/systemd/system").exists() and not policy_rc.exists():
        # systemd runs here: keep the postinst from starting the units on the machine's own
        # Docker engine and port 7443 while the test runs its own daemons
        policy_rc.write_text("#!/bin/sh\nexit 101\n")
        policy_rc.chmod(0o755)
        inst.policy_rc = policy_rc
    try:
        inst.install("python3-edgeward", "edge-control")
        yield inst
    finally:
        inst.undo()


# --- the parts: a private engine with the test image in a loopback registry ----------------------


@pytest.fixture(scope="module")
def engine(registry: Registry) -> Iterator[DockerEngine]:
    """The module's own dockerd (not the suite's): the packaged enforcer owns what runs on it."""
    root = Path(tempfile.mkdtemp(prefix="ewdeb-", dir="/tmp"))
    eng = DockerEngine(root / "d")
    try:
        eng.start()
    except (MissingPart, TimeoutError) as exc:
        not_found(str(exc))
    yield eng
    eng.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def client(engine: DockerEngine) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=engine.url, timeout=60)
    yield c
    c.close()


@pytest.fixture(scope="module")
def image(client: docker.DockerClient, registry: Registry) -> str:
    """A busybox image pushed to the registry and removed here: the enforcer pulls it."""
    ref = import_image(client, f"{registry.address}/edgeward/deb-test", "1")
    push(client, ref)
    client.images.remove(ref, force=True)
    return ref


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="ewdeb-", dir="/tmp"))  # short: unix socket paths
    root.chmod(0o755)  # control runs as the edgeward user and must reach its state dir
    yield root
    unmount_below(root)  # the tmpfs an enforcer put on its secrets directory
    shutil.rmtree(root, ignore_errors=True)


def unmount_below(root: Path) -> None:
    """Unmount every mount point under `root` (ours only), deepest first."""
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point.startswith(f"{root}/"):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        run("umount", point, check=False)


# --- control, as edge-control.service runs it -------------------------------------------------


@dataclass
class Control:
    daemon: Daemon
    config: Path
    state: Path
    port: int

    def cli(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("/usr/bin/edge-control", "--config", self.config, *args, check=check)


@pytest.fixture(scope="module")
def control(installation: Installation, workdir: Path) -> Iterator[Control]:
    settings = unit("edge-control")
    user, group = settings["User"][0], settings["Group"][0]
    state = workdir / "control"
    state.mkdir(mode=0o700)
    shutil.chown(state, user, group)  # what StateDirectory= does
    port = free_port()
    config = workdir / "control.toml"
    config.write_text(f'state-dir = "{state}"\nlisten = "127.0.0.1:{port}"\n')
    config.chmod(0o644)
    argv = ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups", "--no-new-privs",
            "--", *exec_start("edge-control", config)]  # fmt: skip
    daemon = Daemon("edge-control", argv, workdir / "control.log",
                    umask=int(settings["UMask"][0], 8))  # fmt: skip
    daemon.start()

    def ready() -> bool:
        ctx = ssl.create_default_context(cafile=str(state / "ca.pem"))
        request("GET", f"https://127.0.0.1:{port}/v1/health", context=ctx, timeout=2)
        return True

    try:
        wait_until(ready, 60, "control's API", daemon)
        yield Control(daemon, config, state, port)
    finally:
        daemon.stop()


# --- the enforcer, as edge-enforcer.service runs it ---------------------------------------------


@dataclass
class Enforcer:
    daemon: Daemon
    config: Path
    state: Path

    def cli(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("/usr/bin/edge-enforcer", "--config", self.config, *args, check=check)

    def start(self) -> None:
        self.daemon.start()
        wait_until(lambda: self.cli("status", "-o", "json").returncode == 0, 60,
                   "the enforcer's API", self.daemon)  # fmt: skip

    def instances(self) -> dict[str, dict[str, Any]]:
        data = json.loads(self.cli("ps", "-o", "json").stdout)
        items = data["instances"] if isinstance(data, dict) else data
        return {i["id"]: i for i in items}

    def wait_running(self, *ids: str, timeout: float = 90) -> None:
        def running() -> bool:
            have = self.instances()
            return all(i in have and have[i]["state"] == "running" for i in ids)

        wait_until(running, timeout, f"{', '.join(ids)} running", self.daemon)


def installed_config_sections() -> set[str]:
    """The sections the installed enforcer's configuration knows."""
    probe = "import enforcer.config.model as c; print(*c.EnforcerConfig.__dataclass_fields__)"
    return set(run("/usr/bin/python3", "-I", "-c", probe).stdout.split())


def enforcer_config(path: Path, state: Path, engine: DockerEngine, enrollment: str) -> Path:
    run_dir = path.parent / "run"
    text = (
        f'state-dir = "{state}"\n'
        f'[docker]\nhost = "{engine.url}"\n'
        f'[api]\nsocket = "{run_dir / "enforcer.sock"}"\n'
        f'[host]\nid = "deb-{path.stem}"\nlabels = {{ zone = "line-1" }}\n'
        f"[control]\nenrollment = {json.dumps(enrollment)}\n"
    )
    if "secrets" in installed_config_sections():  # not the machine's /run/edgeward/secrets
        text += f'[secrets]\ndir = "{run_dir / "secrets"}"\n'
    path.write_text(text)
    return path


def enforcer_daemon(name: str, config: Path, log: Path) -> Daemon:
    settings = unit("edge-enforcer")
    argv = exec_start("edge-enforcer", config)
    if settings.get("NoNewPrivileges") == ["yes"]:
        argv = ["setpriv", "--no-new-privs", "--", *argv]
    return Daemon(name, argv, log, umask=int(settings.get("UMask", ["0022"])[0], 8))


@pytest.fixture(scope="module")
def bundle(control: Control) -> str:
    """A one-time enrollment bundle from the installed `edge-control site token`."""
    res = control.cli("site", "token", "--name", "store-042", "--labels", "customer=acme")
    return res.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def enforcer_installed(installation: Installation, bundle: str) -> Installation:
    """edge-enforcer installed with the bundle preseeded, as zero-touch provisioning does."""
    run(
        "debconf-set-selections",
        stdin=f"edge-enforcer edge-enforcer/enrollment password {bundle}\n",
    )
    installation.install("edge-enforcer")
    return installation


@pytest.fixture(scope="module")
def enforcer(
    enforcer_installed: Installation, workdir: Path, engine: DockerEngine, image: str
) -> Iterator[Enforcer]:
    """The enforcer with the shipped [control] enrollment, which is the preseeded bundle."""
    shipped = tomllib.loads(Path("/etc/edgeward/enforcer.toml").read_text())
    root = workdir / "site"
    root.mkdir()
    state = root / "state"
    config = enforcer_config(root / "enforcer.toml", state, engine,
                             shipped["control"]["enrollment"])  # fmt: skip
    enf = Enforcer(enforcer_daemon("edge-enforcer", config, root / "enforcer.log"), config, state)
    enf.start()
    yield enf
    enf.daemon.stop()


def managed(client: docker.DockerClient, app: str | None = None) -> dict[str, str]:
    """Container name -> status of the Edgeward containers (of `app`) on the module's engine."""
    labels = ["edgeward.managed=true", *([f"edgeward.app={app}"] if app else [])]
    found = client.containers.list(all=True, filters={"label": labels})
    return {str(c.name): str(c.status) for c in found}


# --- the tests, in the order a machine lives through them ----------------------------------------


def test_the_commands_run_on_debians_own_python_and_libraries(installation: Installation) -> None:
    probe = (
        "import importlib, json, sys\n"
        f"names = {[*DEBIAN_LIBRARIES, 'enforcer', 'control']!r}\n"
        "mods = {n: importlib.import_module(n) for n in names}\n"
        "print(json.dumps({'python': sys.executable,\n"
        "  'files': {n: m.__file__ for n, m in mods.items()},\n"
        "  'versions': {n: getattr(m, '__version__', '') for n, m in mods.items()}}))\n"
    )
    found = json.loads(run("/usr/bin/python3", "-I", "-c", probe).stdout)
    for name, path in found["files"].items():
        assert path.startswith("/usr/lib/python3/dist-packages/"), (name, path)
    print("Debian's libraries:", found["versions"])  # shown with -s: the versions tested
    assert Path("/usr/bin/edge-control").read_text().startswith("#!/usr/bin/python3\n")
    assert "Usage: edge-control" in run("/usr/bin/edge-control", "--help").stdout
    console = Path("/usr/lib/python3/dist-packages/control/console/static")  # the web console
    assert {"index.html", "console.js", "console.css"} <= {p.name for p in console.iterdir()}


def test_a_broken_config_file_stops_the_daemons_naming_file_and_line(
    enforcer_installed: Installation, workdir: Path
) -> None:
    unknown = workdir / "bad-key.toml"
    unknown.write_text('state-dir = "/tmp/nowhere"\n[docker]\nhots = "unix:///x.sock"\n')
    res = run(*exec_start("edge-enforcer", unknown), check=False)
    assert res.returncode != 0
    assert res.stderr.startswith(f"edge-enforcer: error: {unknown}:3: "), res.stderr
    assert "hots" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr

    syntax = workdir / "bad-syntax.toml"
    syntax.write_text('[docker]\nhost = "unix:///x.sock\n')
    res = run(*exec_start("edge-enforcer", syntax), check=False)
    assert res.returncode != 0
    assert f"{syntax}: " in res.stderr and "line 2" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr

    control_conf = workdir / "bad-control.toml"
    control_conf.write_text('# control\nlisen = "0.0.0.0:7443"\n')
    res = run(*exec_start("edge-control", control_conf), check=False)
    assert res.returncode != 0
    assert f"{control_conf}:2" in res.stderr and "lisen" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_the_enforcer_starts_site_locally_while_its_enrollment_file_is_missing(
    enforcer_installed: Installation, workdir: Path, engine: DockerEngine
) -> None:
    # the shipped enforcer.toml names @/etc/edgeward/enrollment, which provisioning may never
    # place: a missing bundle file must leave the enforcer running site-locally, not crash it
    root = workdir / "no-bundle"
    root.mkdir()
    config = enforcer_config(root / "enforcer.toml", root / "state", engine,
                             f"@{root / 'enrollment'}")  # fmt: skip
    enf = Enforcer(enforcer_daemon("edge-enforcer", config, root / "enforcer.log"), config,
                   root / "state")  # fmt: skip
    try:
        enf.start()
        status = json.loads(enf.cli("status", "-o", "json").stdout)
        assert status["health"]["healthy"] is True, status
    finally:
        enf.daemon.stop()


def test_the_preseeded_bundle_is_placed_where_the_shipped_config_looks(
    enforcer_installed: Installation, bundle: str
) -> None:
    shipped = tomllib.loads(Path("/etc/edgeward/enforcer.toml").read_text())
    assert shipped["control"]["enrollment"] == "@/etc/edgeward/enrollment"
    placed = Path("/etc/edgeward/enrollment")
    assert placed.read_text().strip() == bundle
    assert placed.stat().st_mode & 0o777 == 0o600
    # debconf forgets the secret once it is written
    answer = run("debconf-communicate", "edge-enforcer",
                 stdin="GET edge-enforcer/enrollment\n").stdout  # fmt: skip
    assert answer.strip() == "0", answer
    assert run("getent", "group", "edgeward").returncode == 0


def test_the_enrolled_enforcer_runs_what_control_deploys(
    enforcer: Enforcer, control: Control, client: docker.DockerClient, image: str, workdir: Path
) -> None:
    def enrolled() -> bool:
        site = json.loads(enforcer.cli("status", "-o", "json").stdout)["site"]
        return bool(site["name"] == "store-042" and isinstance(site["control"], dict))

    wait_until(enrolled, 60, "enrollment as store-042", enforcer.daemon)
    spec = workdir / "hello.yaml"
    spec.write_text(
        "name: deb-hello\nversion: '1'\nservices:\n"
        "  - name: web\n"
        "    volumes:\n"
        "      - {name: site, config-map: {items: [{name: index.html, "
        'data: "hello from ${SYS_SITE}\\n"}]}}\n'
        "    containers:\n"
        f"      - {{name: httpd, image: '{image}', cmd: [httpd, -f, -p, '8080', -h, /www],\n"
        "         mounts: [{volume: site, path: /www}], stop-timeout: 1s}\n"
    )
    deployment = workdir / "deployment.yaml"
    deployment.write_text(
        "name: deb-hello-acme\napplication: deb-hello\nversion: latest\n"
        'placement:\n  match-site-labels: "customer = acme"\n'
    )
    control.cli("app", "push", "-f", spec)
    control.cli("deploy", "-f", deployment)

    enforcer.wait_running("deb-hello.web.0")
    assert set(managed(client, "deb-hello").values()) == {"running"}
    name = next(iter(managed(client, "deb-hello")))
    code, raw = client.containers.get(name).exec_run(["wget", "-qO-", "http://127.0.0.1:8080/"])
    page = raw.decode() if isinstance(raw, bytes) else ""
    assert code == 0 and page.startswith("hello from "), page

    sites = json.loads(control.cli("site", "ls", "-o", "json").stdout)
    assert [s["name"] for s in sites] == ["store-042"]
    # SYS_SITE is the enrolled site's name (DESIGN.md), not the hostname it ran under before
    assert page == "hello from store-042\n", page


def test_a_site_local_application_runs_beside_control_s(
    enforcer: Enforcer, client: docker.DockerClient, image: str, workdir: Path
) -> None:
    spec = workdir / "local.yaml"
    spec.write_text(
        "name: deb-local\nversion: '1'\nservices:\n"
        f"  - name: main\n    containers:\n      - {{name: main, image: '{image}', "
        "cmd: [sleep, '100000'], stop-timeout: 1s}\n"
    )
    assert "deb-local" in enforcer.cli("apply", "-f", spec).stdout
    enforcer.wait_running("deb-local.main.0")
    assert set(managed(client, "deb-local").values()) == {"running"}


def test_stopping_the_enforcer_leaves_its_containers_running_and_a_restart_adopts_them(
    enforcer: Enforcer, client: docker.DockerClient
) -> None:
    before = {c.name: c.id for c in client.containers.list(
        filters={"label": "edgeward.managed=true"})}  # fmt: skip
    assert len(before) >= 2, before
    timeout = float(unit("edge-enforcer")["TimeoutStopSec"][0].rstrip("s"))
    assert enforcer.daemon.stop(timeout=timeout) == 0, enforcer.daemon.output()
    time.sleep(2)
    assert set(managed(client).values()) == {"running"}

    enforcer.start()
    enforcer.wait_running("deb-hello.web.0", "deb-local.main.0")
    time.sleep(3)  # a resync or two: adopted containers stay, none is recreated
    after = {c.name: c.id for c in client.containers.list(
        filters={"label": "edgeward.managed=true"})}  # fmt: skip
    assert after == before


def test_purge_removes_the_configuration_and_removes_state_only_when_asked(
    installation: Installation, enforcer: Enforcer, control: Control, client: docker.DockerClient
) -> None:
    enforcer.daemon.stop()
    control.daemon.stop()
    installation.purge("edge-enforcer", purge_state=False)
    assert not Path("/usr/bin/edge-enforcer").exists()
    assert not Path("/etc/edgeward/enforcer.toml").exists()
    assert not Path("/etc/edgeward/enrollment").exists()
    assert Path("/etc/edgeward/control.toml").exists()  # edge-control's
    assert Path("/var/lib/edgeward/enforcer").is_dir()  # kept: not asked

    installation.purge("edge-control", "python3-edgeward", purge_state=True)
    assert not Path("/etc/edgeward").exists()
    assert not Path("/var/lib/edgeward/control").exists()  # asked: EDGEWARD_PURGE_STATE=1
    assert not any(installed(p) for p in PACKAGES)
    # removing the packages stopped none of the containers
    assert set(managed(client).values()) == {"running"}


def _enforcer_chains() -> set[str]:
    out = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    return {line.split()[1] for line in out.splitlines() if line.startswith("-N EW-")}


@pytest.fixture(scope="module", autouse=True)
def _remove_installed_enforcers_chains() -> Iterator[None]:
    """The installed enforcers program iptables chains of their own (they outlive the daemon,
    by design); the module removes the ones that appeared while it ran."""
    before = _enforcer_chains()
    yield
    for chain in sorted(_enforcer_chains() - before):
        parent = "INPUT" if chain.startswith("EW-IN-") else "DOCKER-USER"
        while subprocess.run(["iptables", "-D", parent, "-j", chain], capture_output=True).returncode == 0:
            pass
        subprocess.run(["iptables", "-F", chain], check=False)
        subprocess.run(["iptables", "-X", chain], check=False)
