"""The `docker` feature's image, built and run for real, without Docker.

No Docker daemon runs on CI's machines and no image registry is reachable, so the image is
built by buildah (chroot isolation, vfs storage: no daemon, no overlay mounts) on a Debian
base image made here by debootstrap, passed as the Dockerfile's `PYTHON_IMAGE`. The base is
cached under ~/.cache/fastapi-easy/ and in the container storage, so only the first run
pays for debootstrap. `buildah run` shares the host's network: the container reaches the
PostgreSQL and Redis of tests/servers.py on loopback, and the test reaches the service.
"""

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .e2e import Server, parent_pids
from .project import Project, find_python, render, tool
from .servers import PostgresServer, RedisServer, free_port
from .test_e2e import exercise_api

TOOLS = ("buildah", "podman", "debootstrap")
MISSING = [name for name in TOOLS if shutil.which(name) is None]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"building the image needs {', '.join(MISSING)} (apt-get install {' '.join(TOOLS)})",
    ),
]

# Debian releases to build the base image from, newest first, with their python3.
RELEASES = {"trixie": "3.13", "bookworm": "3.11"}
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fastapi-easy"
STORAGE = ("--storage-driver", "vfs")
SLUG = "boxed-service"
APP_UID = 10001


def run(*args: str, timeout: float = 900, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if not source.is_file() or source.suffix not in {"", ".list", ".sources"}:
            continue
        for line in source.read_text(encoding="utf-8", errors="replace").splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] or words[:1] == ["deb"]:
                for word in words[1:]:
                    if word.startswith("http") and word.rstrip("/").endswith("/debian"):
                        return word.rstrip("/")
    return "http://deb.debian.org/debian"


def release_available(mirror: str, release: str) -> bool:
    url = f"{mirror}/dists/{release}/Release"
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=20) as response:
        return response.status == 200
    return False


def image_exists(name: str) -> bool:
    probe = subprocess.run(["podman", *STORAGE, "image", "exists", name], capture_output=True)
    return probe.returncode == 0


def base_image() -> tuple[str, str]:
    """A local Debian image with python3: (its name, its Python version).

    debootstrap's root is kept as a tarball keyed by release and packages, and imported
    into the container storage once; both survive between runs.
    """
    cached = [r for r in RELEASES if image_exists(f"localhost/fastapi-easy-base:{r}")]
    if cached:
        return f"localhost/fastapi-easy-base:{cached[0]}", RELEASES[cached[0]]
    mirror = debian_mirror()
    release = next((r for r in RELEASES if release_available(mirror, r)), None)
    assert release, f"no Debian release of {list(RELEASES)} on {mirror}"
    name = f"localhost/fastapi-easy-base:{release}"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tarball = CACHE_DIR / f"debian-{release}-{BASE_PACKAGES.replace(',', '-')}.tar"
    if not tarball.exists():
        with tempfile.TemporaryDirectory(dir=CACHE_DIR) as work:
            root = Path(work) / "root"
            run(
                "debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}",
                release, str(root), mirror,
            )  # fmt: skip
            # What slim images leave out too: downloaded packages and package lists.
            for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
                shutil.rmtree(root / leftover, ignore_errors=True)
            partial = Path(work) / "root.tar"
            run("tar", "-C", str(root), "-cf", str(partial), ".")
            partial.rename(tarball)
    with tarball.open("rb") as archive:
        run("podman", *STORAGE, "import", "-", name, stdin=archive)
    return name, RELEASES[release]


def image_config(image: str, field: str) -> str:
    return run(
        "buildah", *STORAGE, "inspect", "--type", "image", "--format", field, image
    ).stdout.strip()


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc."""
    children: dict[int, list[int]] = {}
    for child, parent in parent_pids().items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def uids_of(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return {int(uid) for uid in line.split()[1:]}
    raise AssertionError(f"no Uid line for {pid}")


@pytest.fixture(scope="module")
def image(template_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image of a PostgreSQL + Redis project with docker, built from its own Dockerfile."""
    started = time.monotonic()
    base, python_version = base_image()
    print(f"\n[timing] base image {base}: {time.monotonic() - started:.1f}s")
    answers = {
        "project_name": "Boxed Service",
        "python_version": python_version,
        "database": "postgresql",
        "cache": "redis",
        "features": ["metrics", "alerts", "docker"],
    }
    project = Project(render(template_repo, tmp_path_factory.mktemp("boxed") / SLUG, answers))
    # The README asks to commit uv.lock; a fresh project has none yet.
    project.run(tool("uv"), "lock", "--python", find_python(python_version))
    # The build's RUN steps reach the package index through this machine's trust store.
    uv_toml = project.path.parent / "uv.toml"
    uv_toml.write_text("system-certs = true\n")
    tag = f"localhost/{SLUG}:test-{secrets.token_hex(4)}"
    built = time.monotonic()
    run(
        "buildah", *STORAGE, "bud", "--isolation", "chroot", "--format", "docker",
        "--build-arg", f"PYTHON_IMAGE={base}",
        "--volume", "/etc/ssl/certs:/etc/ssl/certs:ro",
        "--volume", f"{uv_toml}:/etc/uv/uv.toml:ro",
        "--tag", tag, str(project.path),
    )  # fmt: skip
    size = int(run("podman", *STORAGE, "image", "inspect", "--format", "{{.Size}}", tag).stdout)
    print(f"[timing] image build: {time.monotonic() - built:.1f}s, size {size / 2**20:.0f} MiB")
    try:
        yield tag
    finally:
        subprocess.run(["buildah", *STORAGE, "rmi", "--force", tag], capture_output=True)


@contextlib.contextmanager
def container(image: str) -> Iterator[str]:
    name = f"{SLUG}-{secrets.token_hex(4)}"
    run("buildah", *STORAGE, "from", "--name", name, image)
    try:
        yield name
    finally:
        subprocess.run(["buildah", *STORAGE, "rm", name], capture_output=True)


def in_container(name: str, env: dict[str, str], *command: str) -> list[str]:
    flags = [f"--env={key}={value}" for key, value in env.items()]
    return ["buildah", *STORAGE, "run", "--isolation", "chroot", *flags, name, "--", *command]


def test_image_migrates_and_serves_as_non_root(
    image: str, postgres: PostgresServer, redis: RedisServer
) -> None:
    """One test, so that xdist builds the image once."""
    assert image_config(image, "{{.Docker.Config.User}}") == f"{APP_UID}:{APP_UID}"
    config_env = image_config(image, "{{range .Docker.Config.Env}}{{println .}}{{end}}")
    assert "HOST=0.0.0.0" in config_env.splitlines()
    assert "ENVIRONMENT=production" in config_env.splitlines()

    started = time.monotonic()
    port = free_port()
    env = {
        "DATABASE_URL": postgres.create_database("boxed"),
        "REDIS_URL": redis.url(6),
        "SECRET_KEY": secrets.token_hex(32),
        "PORT": str(port),
    }
    # The image's own commands, as Compose and Kubernetes run them.
    serve_command = image_config(image, "{{range .Docker.Config.Cmd}}{{println .}}{{end}}")
    health_test = image_config(
        image, "{{range .Docker.Config.Healthcheck.Test}}{{println .}}{{end}}"
    ).splitlines()
    assert health_test[0] == "CMD-SHELL"
    health_command = ("/bin/sh", "-c", health_test[1])
    with container(image) as name:
        # The runtime stage has the virtual environment only: no uv, no sources.
        leftovers = (
            "import os, shutil; "
            "print([p for p in ('/opt/uv', '/app/src') if os.path.exists(p)], shutil.which('uv'))"
        )
        found = run(*in_container(name, env, "python3", "-c", leftovers)).stdout.split()
        assert found == ["[]", "None"]
        run(*in_container(name, env, "alembic", "upgrade", "head"))
        # Nothing serves yet: the health check must say so.
        down = subprocess.run(in_container(name, env, *health_command), capture_output=True)
        assert down.returncode != 0

        log = Path(tempfile.mkstemp(prefix="boxed-", suffix=".log")[1])
        with log.open("wb") as out:
            process = subprocess.Popen(
                in_container(name, env, *serve_command.split()),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(f"http://127.0.0.1:{port}", process)
        servers: list[int] = []
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, f"exited {process.returncode}:\n{log.read_text()}"
                with contextlib.suppress(OSError):
                    ready = server.get("/readyz")
                    if ready.status == 200:
                        break
                assert time.monotonic() < deadline, f"not ready after 60s:\n{log.read_text()}"
                time.sleep(0.3)
            print(f"\n[timing] container ready: {time.monotonic() - started:.1f}s")
            assert ready.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}

            servers = [
                pid
                for pid in descendants(process.pid)
                if SLUG.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
                and b"buildah" not in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]
            assert servers, "no server process found under buildah run"
            for pid in servers:
                assert uids_of(pid) == {APP_UID}, f"process {pid} runs as {uids_of(pid)}"

            up = subprocess.run(in_container(name, env, *health_command), capture_output=True)
            assert up.returncode == 0, up.stderr
            exercise_api(server)
            assert server.get("/metrics").status == 200
        finally:
            # SIGTERM to the service itself, as a container runtime sends it to PID 1: buildah
            # answers a SIGTERM of its own by killing its child outright.
            for pid in servers or [-process.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            try:
                process.wait(30)
                stopped = True
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                stopped = False
            output = log.read_text()
            log.unlink()
        assert stopped, f"still running 30s after SIGTERM:\n{output}"
        # granian, the default server, once its workers have run the lifespan's shutdown.
        assert "Granian shutdown completed" in output, output
        assert "malformed" not in output, output
    print(f"[timing] migrate, serve, call and stop: {time.monotonic() - started:.1f}s")
