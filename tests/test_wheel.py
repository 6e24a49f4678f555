"""The wheel carries the pages: built with ``pip wheel`` from the source tree (after ``npm ci``),
installed into a fresh venv with no source tree in sight, ``liveroom serve --demo`` serves the
landing page, the demo room's page, the socket.io client and the static scripts from it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

from liveroom.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
SOCKET_IO_CLIENT = ROOT / "web/node_modules/socket.io-client/dist/socket.io.min.js"


def _run(*args: str | Path, cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _source_tree(into: Path) -> Path:
    """The project as a clean clone has it (tracked and new files, nothing git ignores), with
    the installed npm packages (``npm ci``) linked in: no build output of earlier runs."""
    listed = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    (into / "web" / "node_modules").symlink_to(ROOT / "web" / "node_modules")
    return into


def _fresh_venv(path: Path) -> Path:
    """A venv without pip whose third-party packages are those of the project's venv (a ``.pth``
    naming its site-packages, whose own ``.pth`` files, the editable install among them, are not
    run): liveroom and web can only come from what is installed into it."""
    _run(sys.executable, "-m", "venv", "--without-pip", path, cwd=path.parent)
    python = path / "bin" / "python"
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                   cwd=path.parent).strip()
    Path(purelib, "project_venv_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_the_installed_wheel_serves_the_pages(tmp_path: Path) -> None:
    assert SOCKET_IO_CLIENT.is_file(), "npm ci first (make web-deps)"
    source = _source_tree(tmp_path / "src")
    _run(sys.executable, "-m", "pip", "wheel", source, "--no-deps", "-q", "-w", tmp_path / "dist",
         cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("liveroom-*.whl")
    python = _fresh_venv(tmp_path / "venv")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
         "--no-index", wheel, cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = _run(python, "-c", "import liveroom, web; print(liveroom.__file__, web.__file__)",
                 cwd=elsewhere).split()
    assert all(Path(f).is_relative_to(tmp_path / "venv") for f in found), found

    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LIVEROOM_", "PYTHON", "VIRTUAL_ENV"))}
    server = subprocess.Popen(
        [str(python.parent / "liveroom"), "serve", "--demo", "--data-dir", str(tmp_path / "data"),
         "--port", str(port)], cwd=elsewhere, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        printed = ""
        while "serving on" not in printed:
            line = server.stdout.readline()
            assert line, f"the server exited early:\n{printed}"
            printed += line
        room = re.search(r"viewer room:\s+\S+/r/(r_[A-Za-z0-9_-]+)", printed)
        assert room, printed
        base = f"http://127.0.0.1:{port}"
        served = {path: _get(base + path) for path in (
            "/", f"/r/{room[1]}", "/assets/socket.io.min.js", "/static/room.js",
            "/static/style.css")}
        assert {path: status for path, (status, _) in served.items()} == dict.fromkeys(served, 200)
        assert served["/"][1] == (ROOT / "web/pages/index.html").read_bytes()
        assert served[f"/r/{room[1]}"][1] == (ROOT / "web/pages/room.html").read_bytes()
        assert served["/assets/socket.io.min.js"][1] == SOCKET_IO_CLIENT.read_bytes()
        assert served["/static/room.js"][1] == (ROOT / "web/static/room.js").read_bytes()
        assert served["/static/style.css"][1] == (ROOT / "web/static/style.css").read_bytes()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode == 0
