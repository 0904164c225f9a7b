"""A jupyter_client kernel provisioner that runs the kernel as a Cybershuttle runtime.

Kernelspecs written by `cybershuttle compute kernelspec install R` name this
provisioner, so JupyterLab's launcher, nbclient and papermill start notebooks
directly on resource R: the same runtime machinery as the magics (a Slurm job
or an SSH process, ports chosen remotely, CurveZMQ keys, in-process forwards),
behind jupyter_client's ordinary KernelManager.
"""
from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import KernelProvisionerBase
from traitlets import Any as AnyTrait
from traitlets import Bool, Float, Integer, Unicode

PROVISIONER_NAME = "cybershuttle-provisioner"
#: how long a job may take to end after its kernel exited by itself before it is cancelled
_EXIT_GRACE_S = 5.0
_REQUEST_KEYS = ("cpus", "memory", "gpus", "walltime", "partition", "account", "qos", "setup_file")


class CybershuttleProvisioner(KernelProvisionerBase):  # type: ignore[misc]
    """Starts, watches and stops one runtime per kernel.

    The kernelspec's `metadata.kernel_provisioner.config` sets the traits below.
    """

    resource = Unicode("", help="the compute resource to start kernels on")
    cpus = Integer(None, allow_none=True)
    memory = AnyTrait(None, allow_none=True, help="MB, or a size such as 4G")
    gpus = Integer(None, allow_none=True)
    walltime = AnyTrait(None, allow_none=True, help="minutes, or a Slurm time")
    partition = Unicode(None, allow_none=True)
    account = Unicode(None, allow_none=True)
    qos = Unicode(None, allow_none=True)
    setup_file = Unicode(None, allow_none=True)
    timeout = Float(600.0, help="seconds to wait for the runtime to start")
    encrypt = Bool(True, help="private kernel sockets: Unix sockets, or CurveZMQ on TCP (off only for benchmarks)")

    runtime_name: str | None = None
    _alive_checked_at: float = 0.0
    _exit_code: int | None = None
    _stopping: bool = False  # a shutdown request was sent: the kernel is about to exit

    @property
    def has_process(self) -> bool:
        return self.runtime_name is not None and self._exit_code is None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("cmd", self.kernel_spec.argv)
        return await super().pre_launch(**kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        from .. import runtime

        resource = self.resource
        if not resource:
            raise RuntimeError("this Cybershuttle kernelspec names no resource: reinstall it with "
                               "`cybershuttle compute kernelspec install R`")
        self.runtime_name = f"kernel-{(self.kernel_id or 'x')[:12]}"
        options = {k: getattr(self, k) for k in _REQUEST_KEYS if getattr(self, k) is not None}
        await asyncio.to_thread(runtime.request, self.runtime_name, resource, encrypt=self.encrypt, **options)
        await asyncio.to_thread(runtime.wait, self.runtime_name, self.timeout)
        self._exit_code = None
        self._stopping = False
        info = await asyncio.to_thread(runtime.connection_info, self.runtime_name)
        info["key"] = info["key"].encode()  # KernelManager compares it with its session key (bytes)
        self.connection_info = info
        return self.connection_info

    async def shutdown_requested(self, restart: bool = False) -> None:
        self._stopping = True

    async def poll(self) -> int | None:
        if self.runtime_name is None or self._exit_code is not None:
            return self._exit_code
        if self._stopping:
            # KernelManager polls every 0.1 s until the kernel has exited. Once it has, the server
            # refuses a channel to its heartbeat port: one SSH round trip, no remote process.
            from .. import runtime
            from .forward import forwarder

            hb = runtime.forward_key(self.connection_info, "hb_port")
            listening = await asyncio.to_thread(forwarder().probe, hb)
            if listening is False:
                self._exit_code = 0
                return self._exit_code
            if time.monotonic() - self._alive_checked_at < 0.5:  # else ask the scheduler too: a transport
                return None  # whose channels open before reaching the kernel cannot tell by refusing
        elif time.monotonic() - self._alive_checked_at < 5:  # the restarter polls often; SSH is not free
            return None
        self._alive_checked_at = time.monotonic()
        from .. import runtime
        from ..errors import CybershuttleError

        try:
            state = (await asyncio.to_thread(runtime.status, self.runtime_name))["state"]
        except CybershuttleError:
            return None  # unreachable for now is not dead
        if state not in runtime.LIVE_STATES:
            self._exit_code = 1
        return self._exit_code

    async def wait(self) -> int | None:
        while await self.poll() is None:
            await asyncio.sleep(0.5)
        return self._exit_code

    async def send_signal(self, signum: int) -> None:
        # Interrupts travel as messages (the kernelspec says interrupt_mode "message");
        # a terminating signal stops the runtime; others have no remote meaning.
        if signum in (signal.SIGTERM, signal.SIGKILL):
            await self.terminate()

    async def kill(self, restart: bool = False) -> None:
        await self.terminate(restart)

    async def terminate(self, restart: bool = False) -> None:
        from .. import compute, runtime
        from ..errors import CybershuttleError

        if self.runtime_name is None:
            return
        try:
            if self._exit_code is not None:
                # The kernel exited by itself (a shutdown request): its job ends within moments. Cancelling it
                # meanwhile would only race that exit, so wait for it briefly; `stop` then finds nothing to cancel.
                try:
                    job_id = (await asyncio.to_thread(runtime.get, self.runtime_name)).job_id
                    await asyncio.to_thread(compute.wait, job_id, _EXIT_GRACE_S)
                except CybershuttleError:
                    pass  # `stop` below says what is wrong
            await asyncio.to_thread(runtime.stop, self.runtime_name)
        except CybershuttleError as exc:
            self.log.warning("stopping runtime %s: %s", self.runtime_name, exc)
        self._exit_code = 0

    async def cleanup(self, restart: bool = False) -> None:
        """After the kernel ended (or was stopped): release the job, forwards and files."""
        if self.runtime_name is not None:
            await self.terminate(restart)

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info.update({"runtime_name": self.runtime_name, "resource": self.resource})
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.runtime_name = provisioner_info.get("runtime_name")

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return max(recommended, 15.0)

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        return max(recommended, 30.0)


def install_kernelspec(resource: str, *, name: str | None = None, display_name: str | None = None,
                       **request: Any) -> str:
    """Write a kernelspec that starts notebooks on `resource`; returns its directory."""
    import json
    import sys
    import tempfile
    from pathlib import Path

    from jupyter_client.kernelspec import KernelSpecManager

    from .. import compute, names

    res = compute.get(resource)
    kernel_name = names.validate(name or f"cybershuttle-{res.name}".lower(), "kernel name")
    config = {"resource": res.name, **{k: v for k, v in request.items() if v is not None}}
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": display_name or f"Python on {res.name} (Cybershuttle)",
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {"kernel_provisioner": {"provisioner_name": PROVISIONER_NAME, "config": config}},
    }
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kernel.json").write_text(json.dumps(spec, indent=2))
        return KernelSpecManager().install_kernel_spec(tmp, kernel_name, user=True)


def remove_kernelspec(resource: str, name: str | None = None) -> str:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    from ..errors import NotFoundError

    kernel_name = (name or f"cybershuttle-{resource}").lower()
    try:
        return KernelSpecManager().remove_kernel_spec(kernel_name)
    except (NoSuchKernel, KeyError):
        raise NotFoundError(f"no kernelspec {kernel_name!r}: see `jupyter kernelspec list`") from None
