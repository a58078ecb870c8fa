"""The collector image, built without a daemon (``deploy/build-image.sh``: mmdebstrap + umoci) and
inspected: OCI config (non-root user, entrypoint), and the CLI run from the unpacked root filesystem
as UID 65532 (the files are root's, so only /tmp is writable to it). Cached by a hash of the sources:
a cold build takes minutes (Debian packages and wheels are downloaded), a warm one is a lookup."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dnsfleet import __version__

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("mmdebstrap") and shutil.which("umoci")),
    reason="needs root, mmdebstrap and umoci (tests/fleet/install-system-deps.sh installs them)",
)


@pytest.fixture(scope="module")
def oci() -> Path:
    p = subprocess.run(
        ["bash", str(ROOT / "deploy" / "build-image.sh")], capture_output=True, text=True, timeout=1500
    )
    if p.returncode != 0:
        pytest.fail(f"image build failed: {p.stderr[-2000:]}", pytrace=False)
    return Path(p.stdout.strip().splitlines()[-1])


def _blob(oci: Path, digest: str) -> dict:
    algo, hexd = digest.split(":", 1)
    return json.loads((oci / "blobs" / algo / hexd).read_text())


def test_image_config_and_cli_as_uid_65532(oci: Path, tmp_path: Path) -> None:
    index = json.loads((oci / "index.json").read_text())
    (desc,) = [
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == f"dnsfleet:{__version__}"
    ]
    manifest = _blob(oci, desc["digest"])
    config = _blob(oci, manifest["config"]["digest"])["config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["dnsfleet"] and "HOME=/tmp" in config["Env"]
    size = sum(layer["size"] for layer in manifest["layers"])
    assert size < 250 * 1024 * 1024, size  # compressed layers

    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{oci}:dnsfleet:{__version__}", str(bundle)],
        check=True,
        capture_output=True,
    )
    rootfs = bundle / "rootfs"
    image_path = next(
        e.split("=", 1)[1] for e in config["Env"] if e.startswith("PATH=")
    )  # as a runtime would
    assert not list(rootfs.glob("usr/local/lib/python3*/dist-packages/streamlit"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [
            shutil.which("chroot") or "/usr/sbin/chroot",
            "--userspec=65532:65532",
            str(rootfs),
            "env",
            "HOME=/tmp",
            "dnsfleet",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={"PATH": image_path})

    os.chmod(rootfs / "tmp", 0o1777)
    v = run("--version")
    assert v.returncode == 0 and __version__ in v.stdout, v.stderr
    d = run("deploy", "collector", "--cluster-name", "a", "--store", "s3://b/p?endpoint=http://127.0.0.1:9")
    assert d.returncode == 0 and "kind: CronJob" in d.stdout, d.stderr
    s = run("scan", "--in-cluster", "--cluster-name", "a")
    assert s.returncode == 2 and "KUBERNETES_SERVICE_HOST is not set" in s.stderr
