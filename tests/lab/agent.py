"""A lab node agent: stands in for the kubelet of one node, ONLY to run dnsfleet's probe pods.

The test API servers have no kubelet and no container runtime. ``NodeAgent`` watches (polls) the pods
bound to its node (``spec.nodeName``) that carry ``dnsfleet.io/probe=true`` and, for each new one, does
what a kubelet would do for that pod, no more:

- *instead of pulling the image and starting a container*: it runs the container's command
  (``python3 <program> ARGS``) with the program taken from the pod's ConfigMap volume, as
  ``python3 -`` in a fresh **lab client network namespace** (``tests/lab/net.py``): only the lab's
  addresses exist there. The interpreter is this machine's Python, i.e. **glibc**; there is no musl
  Python here, so a ``musl`` probe pod is failed with that message (the musl resolver is covered by the
  lab's C program, ``tests/lab/lookup.c``). The image, resources, user and security context are not
  applied (no container runtime); the pod's ``activeDeadlineSeconds`` is (the process is killed).
- *instead of kubelet's DNS set-up*: the namespace's ``resolv.conf`` is what kubelet writes for
  ``dnsPolicy: ClusterFirst`` (nameserver = the lab's ClusterIP, search ``<ns>.svc.lab.test
  svc.lab.test lab.test``, ``options ndots:5``) merged with the pod's ``dnsConfig`` options.
- *instead of the termination-log mount*: ``/dev/termination-log`` in the arguments becomes a file in the
  agent's work directory.
- *instead of the status manager*: it PATCHes ``pods/<name>/status`` with the phase (Succeeded/Failed)
  and the container's ``terminated`` state: exit code, reason, start/finish time and the termination
  message (``FallbackToLogsOnError``: the file, else the output's tail on failure).

It does **not** serve logs: the API server fetches ``pods/<name>/log`` from the kubelet's port on the
node's address, and the fleet's node addresses are loopback, which the API server refuses to dial. So
results come back through the termination message, and ``dnsfleet probe`` reads them from there when
the log request fails. Nothing else a kubelet does (node status, leases, other pods, volumes, probes,
eviction, deletion) is done.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dnsfleet.kube import Kube, KubeError
from tests.lab import net

PROBE_LABEL = "dnsfleet.io/probe"
TERMINATION_LOG = "/dev/termination-log"


def _ts() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolv_conf(pod: dict[str, Any]) -> str:
    """kubelet's ClusterFirst resolv.conf in the lab, with the pod's dnsConfig options merged in."""
    ns = pod["metadata"]["namespace"]
    opts: dict[str, str | None] = {"ndots": "5"}
    for o in ((pod.get("spec") or {}).get("dnsConfig") or {}).get("options") or []:
        opts[o["name"]] = o.get("value")
    words = [k if v is None else f"{k}:{v}" for k, v in opts.items()]
    return (
        f"nameserver {net.CLUSTER_IP}\n"
        f"search {ns}.svc.lab.test svc.lab.test lab.test\n"
        f"options {' '.join(words)}\n"
    )


@dataclass
class NodeAgent:
    kube: Kube
    lab: net.Lab
    node: str
    emulated: bool  # this node's client namespaces pass the race emulator
    poll_s: float = 0.5
    handled: dict[str, str] = field(default_factory=dict)  # pod uid -> outcome
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _n: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"agent-{self.node}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except KubeError as e:
                self.errors.append(str(e))
            self._stop.wait(self.poll_s)

    def sync(self) -> None:
        doc = self.kube.request(
            "GET",
            "/api/v1/pods",
            query={"fieldSelector": f"spec.nodeName={self.node}", "labelSelector": f"{PROBE_LABEL}=true"},
        )
        for pod in doc.get("items") or []:
            meta, status = pod["metadata"], pod.get("status") or {}
            if meta["uid"] in self.handled or meta.get("deletionTimestamp"):
                continue
            if status.get("phase") not in (None, "Pending"):
                continue
            self.handled[meta["uid"]] = "running"
            threading.Thread(target=self._run_pod, args=(pod,), daemon=True).start()

    def _program(self, pod: dict[str, Any]) -> str | None:
        vols = (pod.get("spec") or {}).get("volumes") or []
        cm = next(((v.get("configMap") or {}).get("name") for v in vols if v.get("configMap")), None)
        if not cm:
            return None
        doc = self.kube.request("GET", f"/api/v1/namespaces/{pod['metadata']['namespace']}/configmaps/{cm}")
        data = doc.get("data") or {}
        return next(iter(data.values()), None)

    def _run_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        started = _ts()
        try:
            code, reason, message = self._execute(pod)
        except Exception as e:  # a broken agent must show in the pod, not vanish in a thread
            code, reason, message = 1, "AgentError", f"lab node agent: {type(e).__name__}: {e}"
        phase = "Succeeded" if code == 0 else "Failed"
        c = pod["spec"]["containers"][0]
        body = {
            "status": {
                "phase": phase,
                "reason": "DeadlineExceeded" if reason == "DeadlineExceeded" else None,
                "startTime": started,
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "image": c["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "started": False,
                        "state": {
                            "terminated": {
                                "exitCode": code,
                                "reason": reason,
                                "message": message[-4096:],
                                "startedAt": started,
                                "finishedAt": _ts(),
                            }
                        },
                    }
                ],
            }
        }
        try:
            self.kube.request(
                "PATCH",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                body=body,
                content_type="application/merge-patch+json",
            )
            self.handled[meta["uid"]] = phase
        except KubeError as e:
            self.errors.append(f"status of {meta['name']}: {e}")

    def _execute(self, pod: dict[str, Any]) -> tuple[int, str, str]:
        meta = pod["metadata"]
        resolver = (meta.get("labels") or {}).get("dnsfleet.io/resolver")
        if resolver != "glibc":
            return (
                1,
                "Error",
                (
                    f"lab node agent: no {resolver} Python in the lab, only the glibc probe runs here "
                    "(the musl resolver is measured by tests/lab/lookup.c)"
                ),
            )
        program = self._program(pod)
        if program is None:
            return 1, "Error", "lab node agent: the pod mounts no ConfigMap with the probe program"
        c = pod["spec"]["containers"][0]
        args = list(c.get("args") or [])[1:]  # the first argument is the program's path
        term = self.lab.workdir / f"termination-{meta['uid']}"
        args = [str(term) if a == TERMINATION_LOG else a for a in args]
        with self._lock:  # the lab hands out addresses and namespace names one at a time
            self._n += 1
            client = self.lab.add_client(f"a{self._n}{self.node[-4:]}", resolv_conf(pod), self.emulated)
        deadline = float(pod["spec"].get("activeDeadlineSeconds") or 600)
        try:
            r = subprocess.run(
                ["ip", "netns", "exec", client.ns, sys.executable, "-", *args],
                input=program,
                capture_output=True,
                text=True,
                timeout=deadline,
            )
        except subprocess.TimeoutExpired:
            return 137, "DeadlineExceeded", "lab node agent: activeDeadlineSeconds passed, process killed"
        with contextlib.suppress(OSError):
            message = Path(term).read_text()
            if message:
                return r.returncode, "Completed" if r.returncode == 0 else "Error", message
        tail = (r.stdout + r.stderr)[-2048:] if r.returncode else ""
        return r.returncode, "Completed" if r.returncode == 0 else "Error", tail


def wait_until(pred: Any, timeout: float, step: float = 0.2) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


# The section docs/race-lab.md carries about the agent (tests/lab/run.py appends it when it regenerates the
# document, so a regenerated doc keeps it).
DOC_SECTION = """## The probe's Kubernetes side, and what the lab node agent stands in for

`dnsfleet probe` (`lib/dnsfleet/probe/kube.py`) creates a namespace (`pod-security.kubernetes.io/enforce:
restricted`), a ConfigMap with the probe program and one pod per node and resolver, pinned with
`spec.nodeName`, with `activeDeadlineSeconds`, no service account token, non-root, no privilege
escalation, no capabilities, read-only root file system and `RuntimeDefault` seccomp; it waits, reads
each pod's log (else its termination message) and deletes everything it created, also on Ctrl-C, SIGTERM
and failure. Before creating anything it asks SelfSubjectAccessReview for every verb it needs
(`dnsfleet probe --print-rbac`); a cluster where one is denied gets the list as its reason.

`tests/lab/test_probe_kube.py` runs this against a real kube-apiserver + etcd (`tests/fleet/`), which
has no kubelet and no container runtime. `tests/lab/agent.py` (`NodeAgent`, one per node) stands in for
the kubelet **only for dnsfleet's probe pods bound to its node**, and only for these steps:

| kubelet does | the agent does instead |
|---|---|
| pull the image, start the container | run the container's command `python3 <program> ARGS` as `python3 -` with the program from the pod's ConfigMap, with this machine's Python (glibc), in a fresh lab client network namespace (only lab addresses exist there). A `musl` pod is failed with "no musl Python in the lab" (the musl resolver is measured by `tests/lab/lookup.c`). Image, resources, user and security context are not applied |
| write resolv.conf for `dnsPolicy: ClusterFirst` | nameserver = the lab's ClusterIP, search `<ns>.svc.lab.test svc.lab.test lab.test`, `options ndots:5` plus the pod's `dnsConfig` options |
| enforce `activeDeadlineSeconds` | kill the process at the deadline, fail the pod (`DeadlineExceeded`) |
| mount `/dev/termination-log`, report the termination message | a file in the agent's work directory; its content becomes the message (`FallbackToLogsOnError`: the output's tail on failure) |
| status manager | `PATCH pods/<name>/status`: phase and the container's `terminated` state (exit code, reason, times, message) |

It does **not** serve logs: the API server fetches `pods/<name>/log` from the kubelet on the node's
address, and the fleet's node addresses are loopback, which the API server will not dial. So in the
tests `dnsfleet probe` reads every result from the termination message (its fallback when the log
request fails; the probe program writes its JSON there too, within the kubelet's 4096 bytes). Nothing
else a kubelet does (node status, leases, other pods, volumes, probes, eviction, graceful deletion) is
done; the probe deletes its pods with a grace period of 0. The namespace stays `Terminating` in the
test cluster (no namespace controller runs there); on a real cluster it is removed.

What the tests show: on the node whose client namespaces pass the race emulator every glibc probe lookup
takes >= 5 s, on the other none takes 1 s; `dnsfleet mitigate apply resolver-options -o
single-request-reopen --probe` probes before (stalls) and after, with the applied option in the probe
pods' `dnsConfig` (no stalls), and `dnsfleet mitigate verify` calls the change *improved* from the probe
runs (`test_apply_with_probe_before_and_after_then_verify`).
"""
