"""The README's main job: control, an enforcer enrolled with it, and the example application.

Everything runs on this machine on the embedded defaults (SQLite state): a private Docker
engine (its own socket and data root, never the machine's own engine), `edge-control serve`,
`edge-enforcer run` enrolled through a one-time bundle, then the example application is pushed
and deployed to the site and its page fetched over HTTP. `scripts/quickstart.sh stop` stops
it all. Run from the repository root as `python -m scripts.quickstart` (scripts/quickstart.sh).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.engines import DockerEngine
from tests.support.http import request
from tests.support.images import import_image
from tests.support.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".state"
ENGINE_ROOT = Path("/tmp/edgeward-quickstart")  # short: unix socket paths
BIN = ROOT / ".venv" / "bin"
PIDS = STATE / "pids.json"


def sh(*cmd: str | Path, env: dict[str, str] | None = None, check: bool = True) -> str:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    if check and res.returncode != 0:
        raise SystemExit(f"quickstart: {' '.join(map(str, cmd[:3]))} failed:\n{res.stderr}")
    return res.stdout


def spawn(name: str, cmd: list[str], env: dict[str, str] | None = None) -> int:
    log = (STATE / f"{name}.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True, env=env)
    log.close()
    return proc.pid


def save_pids(pids: dict[str, int]) -> None:
    PIDS.write_text(json.dumps(pids))


def stop() -> None:
    if not PIDS.exists():
        print("quickstart: nothing is running")
        return
    pids = json.loads(PIDS.read_text())
    for name in ("enforcer", "control", "dockerd"):
        pid = pids.get(name)
        if pid is None:
            continue
        if name == "dockerd":  # containers and networks go with the engine: the quickstart's own
            engine = DockerEngine(ENGINE_ROOT)
            sh(BIN / "python", "-c", _REMOVE_ALL.format(url=engine.url), check=False)
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                os.kill(pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            pass
        if name == "dockerd":
            DockerEngine(ENGINE_ROOT)._unmount_data_root()  # a bind mount of itself
        print(f"quickstart: stopped {name} (pid {pid})")
    PIDS.unlink()
    # the enforcer keeps its outbound-policy chains when it stops (its containers run on);
    # here the containers are gone too, so the chains go with them
    import asyncio

    from enforcer.network.firewall import Firewall

    asyncio.run(Firewall(f"quickstart-host:{STATE / 'enforcer'}").remove())


# Networks before the engine stops: a network removed by a running engine takes its bridge and
# the iptables rules naming it along; an engine that stops leaves both behind.
_REMOVE_ALL = (
    "import docker; c = docker.DockerClient(base_url='{url}')\n"
    "for x in c.containers.list(all=True): x.remove(force=True)\n"
    "for n in c.networks.list():\n"
    "    if n.name not in ('bridge', 'host', 'none'): n.remove()"
)


def start() -> None:
    if PIDS.exists():
        stop()
    STATE.mkdir(exist_ok=True)
    pids: dict[str, int] = {}

    engine = DockerEngine(ENGINE_ROOT)
    engine.start()
    assert engine.proc is not None
    pids["dockerd"] = engine.proc.pid
    save_pids(pids)
    import docker

    client = docker.DockerClient(base_url=engine.url)
    import_image(client, "edgeward/hello", "1")
    print(f"quickstart: private Docker engine on {engine.socket_path}, image edgeward/hello:1")

    port = free_port()
    control_state = STATE / "control"
    (STATE / "control.toml").write_text(
        f'state-dir = "{control_state}"\nlisten = "127.0.0.1:{port}"\n'
    )
    pids["control"] = spawn(
        "control", [str(BIN / "edge-control"), "--config", str(STATE / "control.toml"), "serve"]
    )
    save_pids(pids)
    wait_for(lambda: (control_state / "admin-token").exists() and _listening(port), 30, "control")
    env = dict(
        os.environ,
        EDGEWARD_URL=f"https://127.0.0.1:{port}",
        EDGEWARD_TOKEN=(control_state / "admin-token").read_text().strip(),
        EDGEWARD_CA=str(control_state / "ca.pem"),
    )
    control = [str(BIN / "edge-control")]
    print(f"quickstart: control on https://127.0.0.1:{port}")

    bundle = sh(*control, "site", "token", "--name", "store-042", "--labels", "customer=acme",
                env=env).strip()  # fmt: skip
    enforcer_conf = STATE / "enforcer.toml"
    enforcer_conf.write_text(
        f'state-dir = "{STATE / "enforcer"}"\n'
        f'[docker]\nhost = "{engine.url}"\n'
        f'[api]\nsocket = "{STATE / "enforcer.sock"}"\n'
        '[host]\nid = "quickstart-host"\nlabels = { zone = "line-1" }\n'
        f'[control]\nenrollment = "{bundle}"\n'
    )
    enforcer = [str(BIN / "edge-enforcer"), "--config", str(enforcer_conf)]
    pids["enforcer"] = spawn("enforcer", [*enforcer, "run"])
    save_pids(pids)
    wait_for(lambda: sh(*enforcer, "status", check=False) != "", 30, "enforcer")
    print("quickstart: enforcer enrolled as site store-042 (customer=acme)")

    sh(*control, "app", "push", "-f", ROOT / "examples" / "hello.yaml", env=env)
    deployment = STATE / "deployment.yaml"
    deployment.write_text(
        "name: hello-acme\napplication: hello\nversion: latest\n"
        'placement:\n  match-site-labels: "customer = acme"\n'
    )
    sh(*control, "deploy", "-f", deployment, env=env)
    print("quickstart: pushed examples/hello.yaml and deployed it to customer = acme")

    def ready() -> bool:
        out = json.loads(sh(*enforcer, "ps", "-o", "json"))
        items = out["instances"] if isinstance(out, dict) else out
        return len(items) == 3 and all(i["state"] == "running" for i in items)

    wait_for(ready, 90, "the example application", interval=0.5)
    print()
    print(sh(*enforcer, "ps"))
    wait_for(  # the site reports its instances every few seconds
        lambda: "3/3" in sh(*control, "deployment", "status", "hello-acme", env=env),
        30,
        "the site's status at control",
        interval=0.5,
    )
    print(sh(*control, "deployment", "status", "hello-acme", env=env))
    page = _http_get(8088)
    print(f"http://127.0.0.1:8088/ says: {page.strip()}")
    print()
    print("It keeps running. Try:")
    print(f"  {BIN / 'edge-enforcer'} --config {enforcer_conf} ps")
    print(f"  DOCKER_HOST={engine.url} docker kill ew.hello.web.0.httpd   # healed in a second")
    print(f"Stop everything with: {ROOT / 'scripts' / 'quickstart.sh'} stop")


def _http_get(port: int) -> str:
    """The body of GET /."""
    return request("GET", f"http://127.0.0.1:{port}/").body.decode(errors="replace")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    if sys.argv[1:] == ["stop"]:
        stop()
    else:
        start()
