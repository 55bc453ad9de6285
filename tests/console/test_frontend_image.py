"""The tts-frontend image (frontend/Dockerfile) replayed without Docker: its build stage runs frontend/build.py as
the Dockerfile says, its nginx config (rendered as the image's entrypoint renders templates) passes `nginx -t` and is
served by Debian's nginx: hashed assets cached for a year, index.html revalidated and pointed at PUBLIC_BASE_URL,
and the console from there speaks and streams with the shim as its API on another origin."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, expect

from tests.infra.dockerbuild import instructions
from tests.support.console import console_page
from tests.support.shim import REPO, Shim

CONTEXT = REPO / "frontend"
DOCKERFILE = CONTEXT / "Dockerfile"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HTML_ROOT = "/usr/share/nginx/html"
TEMPLATE = "/etc/nginx/templates/default.conf.template"
YEAR = "public, max-age=31536000, immutable"


@dataclass
class Image:
    """The replayed image: one folder per stage standing for its file system, and the final stage's settings."""

    stages: dict[str, Path]
    base: str = ""
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    expose: str = ""
    healthcheck: str = ""

    def path(self, absolute: str) -> Path:
        return self.stages["final"] / absolute.lstrip("/")


def replay(root: Path) -> Image:
    """Follow frontend/Dockerfile: FROM, WORKDIR, COPY (context or --from), RUN python, ENV, USER, EXPOSE."""
    image = Image(stages={})
    stage = root
    workdir = "/"
    for keyword, args in instructions(DOCKERFILE):
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            stage = image.stages.setdefault(name or "final", root / (name or "final"))
            stage.mkdir(parents=True)
            image.base, workdir = base.strip(), "/"
        elif keyword == "WORKDIR":
            workdir = args
        elif keyword == "COPY":
            parts = shlex.split(args)
            source_root = CONTEXT
            if parts[0].startswith("--from="):
                source_root = image.stages[parts.pop(0).removeprefix("--from=")]
            *sources, dest = parts
            target = stage / (dest if dest.startswith("/") else f"{workdir}/{dest}").lstrip("/")
            for source in sources:
                src = source_root / source.lstrip("/")
                into = target / src.name if dest.endswith("/") else target
                into.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    shutil.copytree(src, into, dirs_exist_ok=True)
                else:
                    shutil.copy2(src, into)
        elif keyword == "RUN":
            argv = shlex.split(args)
            assert argv[0] == "python", f"only python steps are replayed: {args}"
            mapped = [str(stage / a.lstrip("/")) if a.startswith("/") else a for a in argv[1:]]
            subprocess.run([sys.executable, *mapped], cwd=stage / workdir.lstrip("/"), check=True, capture_output=True)
        elif keyword == "ENV":
            for pair in shlex.split(args):
                key, value = pair.split("=", 1)
                image.env[key] = value
        elif keyword == "USER":
            image.user = args
        elif keyword == "EXPOSE":
            image.expose = args
        elif keyword == "HEALTHCHECK":
            image.healthcheck = args
        else:
            raise AssertionError(f"{keyword} is not replayed: extend the replay or the Dockerfile")
    return image


def render(template: str, env: dict[str, str]) -> str:
    """What the nginx image's entrypoint does to templates: envsubst of the variables defined in the environment."""
    return re.sub(r"\$\{(\w+)\}", lambda m: env.get(m[1], m[0]), template)


def nginx_config(image: Image, env: dict[str, str], port: int, prefix: Path) -> Path:
    """The image's rendered server block on a loopback port, inside a main config like the image's own."""
    server = render(image.path(TEMPLATE).read_text(), {**image.env, **env})
    assert server.count("listen 8080;") == 1
    assert server.count(f"root {HTML_ROOT};") == 1
    server = server.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    server = server.replace(f"root {HTML_ROOT};", f"root {image.path(HTML_ROOT)};")
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "default.conf").write_text(server)
    temp = " ".join(
        f"{kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, workers would switch to `nobody`, who cannot read pytest's private temp folders.
    user = "user root;" if os.geteuid() == 0 else ""
    main = prefix / "nginx.conf"
    main.write_text(
        f"{user} worker_processes 1; pid {prefix}/nginx.pid; error_log {prefix}/error.log warn;\n"
        "events { worker_connections 64; }\n"
        "http { include /etc/nginx/mime.types; default_type application/octet-stream; access_log off; "
        f"{temp} include {prefix}/default.conf; }}\n"
    )
    return main


def nginx_test(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NGINX, "-t", "-c", str(config), "-p", str(config.parent)], capture_output=True, text=True, timeout=30
    )


@contextlib.contextmanager
def running_nginx(config: Path, origin: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [NGINX, "-c", str(config), "-p", str(config.parent), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{origin}/healthz", timeout=2).status_code == 200:
                    break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "nginx exited"
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.1)
        yield origin
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    if not Path(NGINX).exists():
        pytest.fail("nginx is missing: `apt-get install nginx` (.ci/run installs it) validates and serves the image")
    return replay(tmp_path_factory.mktemp("frontend-image"))


@pytest.fixture(scope="module")
def nginx(image: Image, shim: Shim, frontend_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image's nginx serving its build at `frontend_origin`, with PUBLIC_BASE_URL naming the shim."""
    port = int(frontend_origin.rsplit(":", 1)[1])
    config = nginx_config(image, {"PUBLIC_BASE_URL": shim.base}, port, tmp_path_factory.mktemp("nginx"))
    with running_nginx(config, frontend_origin) as origin:
        yield origin


def test_the_build_stage_hashes_every_asset_and_names_them_in_the_page(image: Image) -> None:
    html = image.path(HTML_ROOT)
    sources = sorted(p.name for p in (CONTEXT / "assets").iterdir())
    built = sorted((html / "assets").iterdir())
    # one file per source file, each named by the hash of what it holds
    assert len(built) == len(sources)
    for path in built:
        stem, digest, ext = path.name.rsplit(".", 2)
        assert f"{stem}.{ext}" in sources
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    # every file the page or a module names exists under its hashed name; no source name is left
    page = (html / "index.html").read_text()
    named = re.findall(r'(?:href|src)="assets/([^"]+)"', page)
    named += [m for p in built if p.suffix == ".js" for m in re.findall(r'from "\./([^"]+)"', p.read_text())]
    assert named
    assert all((html / "assets" / n).is_file() for n in named)
    assert not set(named) & set(sources)


def test_a_changed_module_renames_the_modules_that_import_it(tmp_path: Path) -> None:
    # Loaded by path under a name of its own: `build` is also the name of a PyPI package.
    spec = importlib.util.spec_from_file_location("frontend_build", CONTEXT / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    build = module.build
    source = tmp_path / "src"
    shutil.copytree(CONTEXT, source, ignore=shutil.ignore_patterns("Dockerfile", "nginx"))
    before = build(source, tmp_path / "a")
    api = source / "assets" / "api.js"
    api.write_text(api.read_text() + "\n// changed\n")
    after = build(source, tmp_path / "b")
    # api.js and everything that imports it, directly or not, get new names; the stylesheet keeps its name
    assert after["api.js"] != before["api.js"]
    assert after["app.js"] != before["app.js"]
    assert after["speak.js"] != before["speak.js"]
    assert after["style.css"] == before["style.css"]
    assert after["audio.js"] == before["audio.js"]


def test_the_image_is_nginx_unprivileged_with_a_healthcheck(image: Image) -> None:
    assert image.base.startswith("nginxinc/nginx-unprivileged:1.")
    assert not image.base.endswith(":latest")
    assert image.user not in ("", "0", "root")
    assert image.expose == "8080"
    assert "/healthz" in image.healthcheck
    assert "8080" in image.healthcheck
    assert image.env == {"PUBLIC_BASE_URL": ""}


@pytest.mark.parametrize("base_url", ["", "https://tts.example.com"], ids=["same-origin", "public-base-url"])
def test_nginx_accepts_the_rendered_config(image: Image, base_url: str, tmp_path: Path) -> None:
    run = nginx_test(nginx_config(image, {"PUBLIC_BASE_URL": base_url}, 8080, tmp_path / "nginx"))
    assert run.returncode == 0, run.stderr
    assert "test is successful" in run.stderr


def test_nginx_serves_hashed_assets_for_a_year_and_the_page_fresh(image: Image, nginx: str, shim: Shim) -> None:
    page = httpx.get(f"{nginx}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # the page is revalidated every time and names the API's base URL, which its CSP allows and nothing else
    assert page.headers["cache-control"] == "no-cache"
    assert f'<meta name="tts-api-base" content="{shim.base}">' in page.text
    csp = page.headers["content-security-policy"]
    assert f"connect-src 'self' {shim.base} {shim.base.replace('http', 'ws')};" in csp
    assert "script-src 'self';" in csp
    assert httpx.get(f"{nginx}/index.html").text == page.text
    for name in re.findall(r'(?:href|src)="(assets/[^"]+)"', page.text):
        asset = httpx.get(f"{nginx}/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["cache-control"] == YEAR, name
        assert asset.content == image.path(f"{HTML_ROOT}/{name}").read_bytes()
    module = next(p for p in (image.path(HTML_ROOT) / "assets").iterdir() if p.name.startswith("app."))
    assert "javascript" in httpx.get(f"{nginx}/assets/{module.name}").headers["content-type"]
    # only the build is served
    for missing in ("/assets/app.js", "/Dockerfile", "/build.py", "/nginx/default.conf.template"):
        assert httpx.get(f"{nginx}{missing}").status_code == 404, missing
    assert httpx.get(f"{nginx}/healthz").text == "ok\n"


@pytest.mark.browser
def test_the_image_console_speaks_and_streams_with_the_api_on_another_origin(
    browser: Browser, nginx: str, shim: Shim
) -> None:
    with console_page(browser, nginx) as console:
        page = console.open("speak")
        expect(page.locator("#api-base")).to_have_text(shim.base)
        expect(page.locator("#speak-voice option")).not_to_have_count(0)
        page.fill("#speak-text", "Served by the frontend image.")
        page.click("#speak-go")
        page.wait_for_function("() => document.getElementById('speak-audio').duration > 0", timeout=60_000)
        page.click("#tab-stream")
        page.fill("#stream-text", "Across origins, the socket still opens.")
        page.click("#stream-go")
        expect(page.locator("#stream-state")).to_have_text(re.compile(r"^done: "), timeout=60_000)
        console.screenshot("frontend-image")
        # the page's files came from nginx, its API calls and WebSocket went to the shim, and nowhere else
        assert any(u.startswith(shim.base + "/tts") for u in console.watch.urls)
        assert any(u.startswith(shim.base.replace("http", "ws") + "/ws/tts") for u in console.watch.urls)
        assert all(u.startswith(nginx) for u in console.watch.urls if "/assets/" in u)
        console.assert_clean(api_origin=shim.base)


def test_compose_and_kubernetes_run_the_image_hardened_as_it_needs(image: Image) -> None:
    # Kubernetes: the image's user and port, probes on its /healthz, read-only root with its two writable folders
    docs = list(yaml.safe_load_all((REPO / "infra/k8s/frontend.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert str(pod["securityContext"]["runAsUser"]) == image.user
    assert pod["securityContext"]["runAsNonRoot"]
    assert container["ports"][0]["containerPort"] == int(image.expose)
    assert container["readinessProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/etc/nginx/conf.d"}
    assert {e["name"] for e in container["env"]} == set(image.env)
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # compose: the same, behind the TLS proxy (one origin for the console and the API, so no CORS is needed)
    compose = yaml.safe_load((REPO / "infra/compose.yaml").read_text())["services"]
    frontend = compose["frontend"]
    assert frontend["build"]["context"] == "../frontend"
    assert frontend["read_only"] is True
    assert frontend["cap_drop"] == ["ALL"]
    assert {t.split(":")[0] for t in frontend["tmpfs"]} == {"/tmp", "/etc/nginx/conf.d"}
    assert "ports" not in frontend
    assert frontend["expose"] == [str(image.expose)]
    assert compose["proxy"]["environment"]["CONSOLE_UPSTREAM"] == f"frontend:{image.expose}"
