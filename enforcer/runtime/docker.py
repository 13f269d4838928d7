"""The Docker engine, as the enforcer uses it: a thin async adapter over the docker SDK.

Every SDK call runs in a thread pool (the SDK is synchronous) with bounded parallelism, and
every failure to reach the engine becomes `RuntimeUnavailable`, so callers can tell "the
engine is down" from "Docker refused this request" (`RuntimeRequestError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.errors
from docker.types import IPAMConfig, IPAMPool

from enforcer.reconcile.instances import MANAGED, ContainerConfig
from enforcer.reconcile.runtime import (
    ContainerDetails,
    ImageNotFound,
    ObservedContainer,
    PullStalled,
    RuntimeRequestError,
    RuntimeUnavailable,
)
from enforcer.runtime import probes
from enforcer.runtime.creation import API_VERSION, create_args, host_config_args
from enforcer.runtime.errors import translate as _translate
from enforcer.runtime.processes import kill_tree
from enforcer.runtime.streams import thread_iter
from enforcer.shared.spec.model import Probe

__all__ = [
    "ContainerDetails",
    "DockerRuntime",
    "ImageNotFound",
    "ObservedContainer",
    "PullStalled",
    "RuntimeRequestError",
    "RuntimeUnavailable",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
PULLS = 2  # image pulls in flight at once (beside the other calls' slots)
PING_TIMEOUT = 5.0
SITE_NETWORK = "edgeward.site-network"  # a network's label: its gateway (the site network)


class DockerRuntime:
    """`enforcer.reconcile.runtime.Runtime` over the Docker engine at `base_url`.

    Pulls and pings run beside the `parallelism` slots of the other calls: a slow registry
    never holds a slot, and a pull that makes no progress for `pull_stall` seconds (or runs
    past `pull_timeout`) ends with `PullStalled`."""

    def __init__(
        self,
        base_url: str,
        parallelism: int = 4,
        timeout: float = 60,
        *,
        pull_stall: float = 60.0,
        pull_timeout: float = 3600.0,
        log_size: int = 10 * 1024 * 1024,
        log_files: int = 3,
    ) -> None:
        self.base_url = base_url
        # Docker's `local` driver: compressed, rotated files, read back by `logs` as usual
        self.log_config = {
            "Type": "local",
            "Config": {"max-size": str(log_size), "max-file": str(log_files)},
        }
        self.pull_stall = pull_stall
        self.pull_timeout = pull_timeout
        self._api = docker.APIClient(base_url=base_url, version=API_VERSION, timeout=int(timeout))
        self._side_api = docker.APIClient(
            base_url=base_url, version=API_VERSION, timeout=max(1, int(pull_stall))
        )
        self._ping_api = docker.APIClient(
            base_url=base_url, version=API_VERSION, timeout=int(PING_TIMEOUT)
        )
        self._pool = ThreadPoolExecutor(max_workers=parallelism + 2, thread_name_prefix="docker")
        self._side = ThreadPoolExecutor(max_workers=PULLS + 2, thread_name_prefix="docker-pull")
        self._slots = asyncio.Semaphore(parallelism)
        self._pull_slots = asyncio.Semaphore(PULLS)
        # a site network's application network -> its gateway, its containers' DNS server
        self.dns: dict[str, str] = {}

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        async with self._slots:
            try:
                return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))
            except Exception as exc:
                raise _translate(exc) from exc

    async def _side_call(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        """A call beside the slots (pings, pulls), on threads of its own."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._side, fn), timeout)
        except TimeoutError:
            raise RuntimeUnavailable(f"Docker engine did not answer within {timeout}s") from None
        except Exception as exc:
            raise _translate(exc) from exc

    def close(self) -> None:
        self._api.close()
        self._side_api.close()
        self._ping_api.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._side.shutdown(wait=False, cancel_futures=True)

    # -- engine --------------------------------------------------------------------------
    async def ping(self) -> bool:
        """Whether the engine answers, within a few seconds, whatever the other calls do."""
        return bool(await self._side_call(self._ping_api.ping, PING_TIMEOUT + 1))

    async def info(self) -> dict[str, Any]:
        return dict(await self._call(self._api.info))

    # -- containers ----------------------------------------------------------------------
    async def list_managed(self, **label_filters: str) -> list[ObservedContainer]:
        labels = [f"{MANAGED}=true"] + [f"edgeward.{k}={v}" for k, v in label_filters.items()]
        raw = await self._call(self._api.containers, all=True, filters={"label": labels})
        return [
            ObservedContainer(
                id=c["Id"],
                name=(c.get("Names") or ["/"])[0].lstrip("/"),
                labels=dict(c.get("Labels") or {}),
                state=c.get("State", ""),
            )
            for c in raw
        ]

    async def details(self, container_id: str, network: str = "") -> ContainerDetails:
        raw = await self._call(self._api.inspect_container, container_id)
        st = raw.get("State") or {}
        nets = (raw.get("NetworkSettings") or {}).get("Networks") or {}
        ip = (nets.get(network) or {}).get("IPAddress", "") if network else ""
        return ContainerDetails(
            id=raw["Id"],
            state=st.get("Status", ""),
            running=bool(st.get("Running")),
            exit_code=st.get("ExitCode"),
            started_at=st.get("StartedAt", ""),
            finished_at=st.get("FinishedAt", ""),
            oom_killed=bool(st.get("OOMKilled")),
            error=st.get("Error", ""),
            ip=ip or "",
            pid=int(st.get("Pid") or 0),
        )

    async def create(self, cfg: ContainerConfig, image_id: str, owner_id: str | None) -> str:
        """Create (not start) a container for `cfg`; followers join `owner_id`'s namespace."""

        def create() -> str:
            host = host_config_args(cfg, owner_id, self.log_config, self.dns)
            args = create_args(cfg, image_id, self._api.create_host_config(**host))
            return str(self._api.create_container(**args)["Id"])

        return await self._call(create)

    async def start(self, container_id: str) -> None:
        await self._call(self._api.start, container_id)

    async def stop(self, container_id: str, timeout: float | None = None) -> None:
        """Stop with `timeout`, or with the container's own stop timeout (set at create)."""
        if timeout is None:
            await self._call(self._api.stop, container_id)
        else:
            await self._call(self._api.stop, container_id, timeout=int(timeout))

    async def kill(self, container_id: str) -> None:
        with contextlib.suppress(RuntimeRequestError):  # already stopped
            await self._call(self._api.kill, container_id)

    async def remove(self, container_id: str) -> None:
        try:
            await self._call(self._api.remove_container, container_id, force=True)
        except RuntimeRequestError as exc:
            if "no such container" not in str(exc).lower():
                raise

    async def exec(self, container_id: str, cmd: list[str], timeout: float) -> int:
        """Run `cmd` in the container; its exit code, or 124 when it outlives `timeout` (it is
        killed then, with what it started, so that hung probes do not pile up)."""

        exec_id: str = (
            await self._call(self._api.exec_create, container_id, cmd, stdout=False, stderr=False)
        )["Id"]
        await self._call(self._api.exec_start, exec_id, detach=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            info = await self._call(self._api.exec_inspect, exec_id)
            if not info.get("Running"):
                return int(info.get("ExitCode") or 0)
            if loop.time() > deadline:
                kill_tree(int(info.get("Pid") or 0))
                return 124
            await asyncio.sleep(0.05)

    async def probe(self, container_id: str, ip: str, probe: Probe) -> bool | None:
        return await probes.check(probe, ip, lambda cmd, t: self.exec(container_id, cmd, t))

    # -- images --------------------------------------------------------------------------
    async def image_id(self, ref: str) -> str | None:
        try:
            raw = await self._call(self._api.inspect_image, ref)
        except RuntimeRequestError:
            return None
        return str(raw["Id"])

    async def pull(self, ref: str) -> str:
        repository, tag = _split_ref(ref)
        started = time.monotonic()
        last = [started]  # the last sign of progress

        def pull() -> None:
            api: Any = self._side_api  # the SDK's pull() reads without a timeout: not used
            try:
                resp = api._post(
                    api._url("/images/create"),
                    params={"fromImage": repository, "tag": tag},
                    stream=True,
                    timeout=self.pull_stall,  # also the longest wait for the next line
                )
                api._raise_for_status(resp)
                for line in api._stream_helper(resp, decode=True):
                    if "error" in line:
                        raise RuntimeRequestError(str(line["error"]).strip())
                    last[0] = time.monotonic()
                    if last[0] - started > self.pull_timeout:
                        raise PullStalled(
                            f"pulling {ref} took longer than {self.pull_timeout:.0f}s"
                        )
            except (RuntimeRequestError, docker.errors.APIError):
                raise
            except Exception as exc:
                if time.monotonic() - last[0] >= self.pull_stall * 0.9:
                    raise PullStalled(
                        f"pulling {ref} stalled: no progress for {self.pull_stall:.0f}s"
                    ) from exc
                raise

        async with self._pull_slots:
            await self._side_call(pull)
        image = await self.image_id(ref)
        if image is None:
            raise ImageNotFound(f"{ref} not found after pulling it")
        return image

    # -- networks and volumes ------------------------------------------------------------
    async def ensure_network(
        self, name: str, bridge: str, labels: dict[str, str], subnet: str = ""
    ) -> str:
        """The network `name` (made when missing; with `subnet`: in that subnet, its first
        address the gateway — the site network's slices)."""
        found = await self._call(self._api.networks, names=[name])
        for net in found:
            if net.get("Name") == name:
                gateway = (net.get("Labels") or {}).get(SITE_NETWORK, "")
                if gateway:  # its containers ask the site network's names of the gateway
                    self.dns[name] = gateway
                return str(net["Id"])
        ipam = None
        if subnet:
            gateway = str(next(ipaddress.IPv4Network(subnet).hosts()))
            ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=subnet, gateway=gateway)])
            labels = {**labels, SITE_NETWORK: gateway}
        try:
            res = await self._call(
                self._api.create_network,
                name,
                driver="bridge",
                options={"com.docker.network.bridge.name": bridge},
                labels={MANAGED: "true", **labels},
                check_duplicate=True,
                ipam=ipam,
            )
        except RuntimeRequestError as exc:
            if "already exists" in str(exc):
                return await self.ensure_network(name, bridge, labels, subnet)
            raise
        if subnet:
            self.dns[name] = labels[SITE_NETWORK]
        return str(res["Id"])

    async def managed_networks(self) -> list[dict[str, Any]]:
        return list(await self._call(self._api.networks, filters={"label": [f"{MANAGED}=true"]}))

    async def remove_network(self, name: str) -> None:
        try:
            await self._call(self._api.remove_network, name)
        except RuntimeRequestError as exc:
            if "not found" not in str(exc).lower() and "no such" not in str(exc).lower():
                raise

    async def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        await self._call(
            self._api.create_volume, name, driver="local", labels={MANAGED: "true", **labels}
        )

    async def managed_volumes(self, **label_filters: str) -> list[str]:
        labels = [f"{MANAGED}=true"] + [f"edgeward.{k}={v}" for k, v in label_filters.items()]
        raw = await self._call(self._api.volumes, filters={"label": labels})
        return [v["Name"] for v in (raw.get("Volumes") or [])]

    async def remove_volume(self, name: str) -> None:
        try:
            await self._call(self._api.remove_volume, name, force=True)
        except RuntimeRequestError as exc:
            if "no such volume" not in str(exc).lower():
                raise

    # -- streams -------------------------------------------------------------------------
    async def logs(self, container_id: str, tail: int | None, follow: bool) -> AsyncIterator[bytes]:
        def open_stream() -> Iterator[bytes]:
            return iter(
                self._api.logs(
                    container_id,
                    stream=True,
                    follow=follow,
                    tail="all" if tail is None else tail,
                    timestamps=False,
                )
            )

        stream = await self._call(open_stream)
        async for chunk in thread_iter(stream, _translate):
            yield chunk

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Container events of managed containers, until the engine goes away."""

        def open_stream() -> Iterator[dict[str, Any]]:
            return iter(
                self._api.events(
                    decode=True,
                    filters={"type": ["container"], "label": [f"{MANAGED}=true"]},
                )
            )

        stream = await self._call(open_stream)
        async for ev in thread_iter(stream, _translate):
            yield ev


def _split_ref(ref: str) -> tuple[str, str]:
    name, _, digest = ref.partition("@")
    if digest:
        return name, digest
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = name.rsplit(":", 1)
        return repo, tag
    return name, "latest"
