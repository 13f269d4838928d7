"""An applied application runs, labelled, wired and configured as DESIGN.md says."""

from __future__ import annotations

import socket
import subprocess

import docker

from tests.support.apps import app, container, service, sleeper, web
from tests.support.enforcer import EnforcerProc


def sh(client: docker.DockerClient, name: str, script: str) -> tuple[int, str]:
    code, out = client.containers.get(name).exec_run(["sh", "-c", script])
    return code, out.decode(errors="replace")


def http_get(host: str, port: int, path: str = "/") -> str:
    """A real HTTP request from the host."""
    try:
        with socket.create_connection((host, port), timeout=3) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            return s.recv(4096).decode(errors="replace")
    except OSError as exc:
        return f"error: {exc}"


def test_applied_app_runs_labelled_sharing_a_namespace_and_reaching_services_by_name(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str
) -> None:
    pod = service(
        "pod",
        container("web", test_image, "httpd", "-f", "-p", "8080", "-h", "/www"),
        container("side", test_image, "sleep", "100000"),
    )
    enforcer.apply(app("shop", pod, web("api", test_image, port=9090)))
    enforcer.wait_running("shop.pod.0", "shop.api.0")

    labels = docker_client.containers.get("ew.shop.pod.0.side").labels
    assert labels["edgeward.managed"] == "true"
    assert labels["edgeward.tenant"] == "system"
    assert labels["edgeward.app"] == "shop"
    assert labels["edgeward.version"] == "1"
    assert labels["edgeward.service"] == "pod"
    assert labels["edgeward.instance"] == "shop.pod.0"
    assert labels["edgeward.container"] == "side"
    assert len(labels["edgeward.spec-hash"]) >= 16

    # the sidecar reaches the web container on localhost: one network namespace
    code, out = sh(
        docker_client,
        "ew.shop.pod.0.side",
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 8080",
    )
    assert code == 0 and "200 OK" in out
    # and another service of the app by its service name
    code, out = sh(
        docker_client,
        "ew.shop.pod.0.side",
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 api 9090",
    )
    assert "200 OK" in out, out


def test_config_map_files_appear_with_variables_expanded(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str
) -> None:
    svc = service(
        "detector",
        container(
            "main", test_image, "sleep", "100000", mounts=[{"volume": "conf", "path": "/etc/det"}]
        ),
        variables=[{"name": "THRESHOLD", "value": "0.8"}],
        volumes=[
            {
                "name": "conf",
                "config-map": {
                    "items": [
                        {
                            "name": "app.conf",
                            "data": "threshold=${THRESHOLD}\nsite=${SYS_SITE}\ninstance=${SYS_INSTANCE}\n",
                        }
                    ]
                },
            }
        ],
    )
    enforcer.apply(app("vision", svc))
    enforcer.wait_running("vision.detector.0")
    code, out = sh(docker_client, "ew.vision.detector.0.main", "cat /etc/det/app.conf")
    assert code == 0
    assert out == "threshold=0.8\nsite=test-site\ninstance=vision.detector.0\n"


def test_ingress_is_published_and_outbound_is_denied_unless_allowed(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str
) -> None:
    # a listener outside the application: another app's published port on the host
    outside = web("outside", test_image, network={"ingress": [{"port": 8080, "host-port": 18731}]})
    enforcer.apply(app("other", outside))
    enforcer.wait_running("other.outside.0")
    assert "200 OK" in http_get("127.0.0.1", 18731)  # ingress works, from the host

    enforcer.apply(
        app(
            "probe",
            sleeper("denied", test_image),
            sleeper("allowed", test_image, network={"outbound": "allow"}),
        )
    )
    enforcer.wait_running("probe.denied.0", "probe.allowed.0")
    gw = docker_client.networks.get("ew.system.probe").attrs["IPAM"]["Config"][0]["Gateway"]
    other_ip = docker_client.containers.get("ew.other.outside.0.main").attrs["NetworkSettings"][
        "Networks"
    ]["ew.system.other"]["IPAddress"]
    get = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {} {}"
    for target, port in ((gw, 18731), (other_ip, 8080)):
        _, out = sh(docker_client, "ew.probe.denied.0.main", get.format(target, port))
        assert "200 OK" not in out, f"deny should block {target}:{port}"
    _, out = sh(docker_client, "ew.probe.allowed.0.main", get.format(gw, 18731))
    assert "200 OK" in out, "outbound: allow reaches a listener on the host"

    # Docker puts a new network's ACCEPT rules at the top of FORWARD and may rebuild its own
    # isolation chains (several engines share them): the policy must not depend on either
    docker_client.networks.create("not-ours-later", driver="bridge")
    saved = subprocess.run(
        ["iptables", "-S", "DOCKER-ISOLATION-STAGE-2"], capture_output=True, text=True
    ).stdout.splitlines()
    subprocess.run(["iptables", "-F", "DOCKER-ISOLATION-STAGE-2"], check=False)
    try:
        for target, port in ((gw, 18731), (other_ip, 8080)):
            _, out = sh(docker_client, "ew.probe.denied.0.main", get.format(target, port))
            assert "200 OK" not in out, f"deny should still block {target}:{port}"
    finally:
        for rule in saved:
            if rule.startswith("-A "):
                subprocess.run(["iptables", *rule.split()], check=False)
        docker_client.networks.get("not-ours-later").remove()


def test_containers_without_the_managed_label_are_never_touched(
    enforcer: EnforcerProc, docker_client: docker.DockerClient, test_image: str
) -> None:
    foreign = docker_client.containers.run(
        test_image, ["sleep", "100000"], name="not-ours", detach=True,
        labels={"edgeward.app": "shop", "edgeward.instance": "shop.web.0"},
    )  # fmt: skip
    stopped = docker_client.containers.create(test_image, ["true"], name="not-ours-stopped")
    try:
        enforcer.apply(app("shop", sleeper("web", test_image)))
        enforcer.wait_running("shop.web.0")
        assert enforcer.cli("rm", "shop", "--purge").returncode == 0
        foreign.reload()
        stopped.reload()
        assert foreign.status == "running"
        assert stopped.status == "created"
    finally:
        foreign.remove(force=True)
        stopped.remove(force=True)
