"""A throwaway Kubernetes API server (etcd + kube-apiserver) on 127.0.0.1, for tests and local runs.

    with KubeApiServer() as server:
        server.kubectl("apply", "--server-side", "-f", "objects.yaml")

Objects are stored, validated, defaulted and admitted exactly as on a cluster; nothing runs them
(no controllers, no scheduler, no kubelet). Access is one static bearer token with
`--authorization-mode=AlwaysAllow`; `kubeconfig` is a file `kubectl --kubeconfig` reads.

Parts:
- `etcd` from Debian's `etcd-server` package (`scripts/install_test_services.sh` installs it);
- `kube-apiserver` built with Go from the `k8s.io/kubernetes` module by `build` below: a scratch
  module that requires `k8s.io/kubernetes` and points each of its `./staging` replacements at the
  published `k8s.io/*` module of the same minor version. About 10 minutes on 2 cores, once: the
  binary is cached in `.cache/bin/kube-apiserver-<version>`;
- `kubectl` from PATH, else built the same way beside it (`build --kubectl`);
- `openssl` for the service-account signing key.

CLI:
    python scripts/kube_apiserver.py build [--kubectl]   # print the binaries' paths
    python scripts/kube_apiserver.py run                  # foreground; prints KUBECONFIG=...
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):  # run as `python scripts/kube_apiserver.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.server_process import free_ports, terminate

VERSION = "v1.37.2"
ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
TOKEN_USER = "surgeflow-admin"


class KubeApiServerError(RuntimeError):
    """A part is missing, the build failed, or the server did not become ready."""


def staging_version(version: str) -> str:
    """`v1.37.2` → `v0.37.2`: the published version of the staging modules of a release."""
    match = re.fullmatch(r"v1\.(\d+)\.(\d+)", version)
    if match is None:
        raise KubeApiServerError(f"not a Kubernetes release version: {version}")
    return f"v0.{match.group(1)}.{match.group(2)}"


def staging_replacements(kubernetes_go_mod: str) -> list[str]:
    """The modules `k8s.io/kubernetes` replaces with its own `./staging` directories."""
    return re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", kubernetes_go_mod, re.M)


def _go(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    done = subprocess.run(
        ["go", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise KubeApiServerError(f"go {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def scratch_module(directory: Path, version: str = VERSION) -> Path:
    """Write the module that builds `version`'s commands; return its directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "go.mod").write_text("module surgeflow.local/kubebuild\n\ngo 1.26.0\n")
    info = json.loads(_go(["mod", "download", "-json", f"k8s.io/kubernetes@{version}"], directory))
    staging = staging_version(version)
    lines = [f"\t{module} => {module} {staging}" for module in staging_replacements(
        Path(info["GoMod"]).read_text()
    ) if not module.startswith("k8s.io/sample-")]  # fmt: skip
    go_mod = (
        "module surgeflow.local/kubebuild\n\ngo 1.26.0\n\n"
        f"require k8s.io/kubernetes {version}\n\nreplace (\n" + "\n".join(lines) + "\n)\n"
    )
    (directory / "go.mod").write_text(go_mod)
    return directory


def cached_binary(name: str, version: str = VERSION) -> Path:
    return CACHE / "bin" / f"{name}-{version}"


def build(name: str, version: str = VERSION) -> Path:
    """`kube-apiserver` or `kubectl` of `version`, built once into `.cache/bin`."""
    target = cached_binary(name, version)
    if target.exists():
        return target
    module = scratch_module(CACHE / "kube-build" / version, version)
    major, minor = version.lstrip("v").split(".")[:2]
    stamp = "k8s.io/component-base/version"
    ldflags = (
        f"-s -w -X {stamp}.gitVersion={version} -X {stamp}.gitMajor={major} "
        f"-X {stamp}.gitMinor={minor} -X {stamp}.gitTreeState=clean"
    )
    partial = target.with_suffix(".partial")
    _go(["build", "-o", str(partial), "-ldflags", ldflags, f"k8s.io/kubernetes/cmd/{name}"], module)
    partial.rename(target)
    return target


def kubectl_binary() -> str:
    """kubectl on PATH, else the cached build (`build --kubectl`)."""
    found = shutil.which("kubectl")
    if found is not None:
        return found
    cached = cached_binary("kubectl")
    if cached.exists():
        return str(cached)
    raise KubeApiServerError("no kubectl: run `python scripts/kube_apiserver.py build --kubectl`")


class KubeApiServer:
    """etcd and kube-apiserver on loopback ports; `kubeconfig` points kubectl at them."""

    def __init__(self, *, apiserver: Optional[Path] = None, kubectl: Optional[str] = None) -> None:
        self._apiserver = apiserver or cached_binary("kube-apiserver")
        self._kubectl = kubectl
        self._dir: Optional[Path] = None
        self._etcd: Optional[subprocess.Popen[bytes]] = None
        self._server: Optional[subprocess.Popen[bytes]] = None
        self.token = ""
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        if self._dir is None:
            raise KubeApiServerError("not started")
        return self._dir / "kubeconfig"

    @property
    def running(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self._etcd, self._server))

    def start(self, timeout: float = 120.0) -> KubeApiServer:
        etcd = shutil.which("etcd")
        if etcd is None:
            raise KubeApiServerError("etcd not found: install Debian's etcd-server package")
        if not self._apiserver.exists():
            raise KubeApiServerError(
                f"{self._apiserver} missing: run `python scripts/kube_apiserver.py build`"
            )
        self._kubectl = self._kubectl or kubectl_binary()
        self._dir = Path(tempfile.mkdtemp(prefix="surgeflow-kube-"))
        atexit.register(self.stop)
        client, peer, self.port = free_ports(3)
        with (self._dir / "etcd.log").open("wb") as log:
            self._etcd = subprocess.Popen(
                [etcd, "--name", "surgeflow", "--data-dir", str(self._dir / "etcd"),
                 "--listen-client-urls", f"http://127.0.0.1:{client}",
                 "--advertise-client-urls", f"http://127.0.0.1:{client}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-cluster", f"surgeflow=http://127.0.0.1:{peer}",
                 "--log-level", "warn", "--quota-backend-bytes", str(256 << 20)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        key = self._dir / "service-account.key"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(key), "2048"], capture_output=True, check=True
        )
        self.token = os.urandom(16).hex()
        tokens = self._dir / "tokens.csv"
        tokens.write_text(f"{self.token},{TOKEN_USER},{TOKEN_USER},system:masters\n")
        tokens.chmod(0o600)
        with (self._dir / "kube-apiserver.log").open("wb") as log:
            self._server = subprocess.Popen(
                [str(self._apiserver),
                 f"--etcd-servers=http://127.0.0.1:{client}",
                 "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                 f"--secure-port={self.port}", f"--cert-dir={self._dir / 'certs'}",
                 f"--token-auth-file={tokens}", "--authorization-mode=AlwaysAllow",
                 f"--service-account-issuer={self.url}",
                 f"--service-account-key-file={key}",
                 f"--service-account-signing-key-file={key}",
                 "--service-cluster-ip-range=10.96.0.0/16",
                 "--endpoint-reconciler-type=none", "--v=0"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._write_kubeconfig()
        self._wait_ready(timeout)
        return self

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "local", "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}
            ],
            "users": [{"name": TOKEN_USER, "user": {"token": self.token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": TOKEN_USER}}],
            "current-context": "local",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    def _wait_ready(self, timeout: float) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # a self-signed serving certificate on loopback
        request = urllib.request.Request(
            f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.token}"}
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise KubeApiServerError(f"exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(request, timeout=5, context=context) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        raise KubeApiServerError(f"not ready after {timeout} s:\n{tail}")

    def kubectl(
        self, *args: str, input: Optional[str] = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this server; `check` raises with its stderr on a failure."""
        if self._kubectl is None:
            raise KubeApiServerError("not started")
        done = subprocess.run(
            [self._kubectl, f"--kubeconfig={self.kubeconfig}", *args],
            input=input, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise KubeApiServerError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done

    def version(self) -> str:
        """The server's `gitVersion`, as `kubectl version` reads it."""
        done = self.kubectl("version", "-o", "json")
        server: dict[str, str] = json.loads(done.stdout)["serverVersion"]
        return f"kube-apiserver {server['gitVersion']}"

    def log_tail(self, lines: int = 30) -> str:
        if self._dir is None:
            return ""
        out = []
        for name in ("etcd.log", "kube-apiserver.log"):
            log = self._dir / name
            if log.exists():
                out += [f"--- {name}", *log.read_text(errors="replace").splitlines()[-lines:]]
        return "\n".join(out)

    def stop(self) -> None:
        for process in (self._server, self._etcd):
            if process is not None:
                terminate(process, 15.0)
        self._server = self._etcd = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build_command = sub.add_parser("build", help="build kube-apiserver into .cache/bin (once)")
    build_command.add_argument(
        "--kubectl", action="store_true", help="also build kubectl when none is on PATH"
    )
    sub.add_parser("run", help="start one in the foreground until Ctrl-C")
    args = parser.parse_args()
    if args.command == "build":
        started = time.monotonic()
        print(build("kube-apiserver"), flush=True)
        if args.kubectl and shutil.which("kubectl") is None:
            print(build("kubectl"), flush=True)
        print(f"built or cached in {time.monotonic() - started:.0f} s", flush=True)
        return
    with KubeApiServer() as server:
        print(f"KUBECONFIG={server.kubeconfig}", flush=True)
        try:
            while server.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
