"""The Docker host layout: compose (server, console, TLS proxy, monitoring), the Caddyfile (validated by Caddy and
run on loopback in front of a live server), Prometheus' scrape config and the Grafana dashboard."""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml

from tests.infra.promql import exported_names, metric_names
from tests.support.live import LiveServer
from tests.support.shim import free_port
from tts_service import smoke
from tts_service.api import client_config, health, metrics, stream, tts, voices
from tts_service.app import create_app
from tts_service.config import Settings
from tts_service.engine import Engine

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
CADDYFILE = INFRA / "caddy" / "Caddyfile"
CADDY = Path(sys.executable).parent / "caddy"
DASHBOARD = INFRA / "grafana" / "dashboards" / "tts-service.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((INFRA / "compose.yaml").read_text())
    return loaded


def test_compose_runs_server_console_and_proxy_with_only_the_proxy_exposed(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"tts", "frontend", "proxy"} <= set(services)
    for name in ("tts", "frontend", "proxy"):
        assert "profiles" not in services[name], name  # the default layout
        assert services[name]["read_only"] is True, name
        assert services[name]["cap_drop"] == ["ALL"], name
        assert services[name]["security_opt"] == ["no-new-privileges:true"], name
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"proxy", "grafana"}
    assert {str(p) for p in services["proxy"]["ports"]} == {"80:80", "443:443", "443:443/udp"}
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]  # operators only, never public
    assert services["proxy"]["cap_add"] == ["NET_BIND_SERVICE"]
    # the server and the console are what the proxy forwards to
    assert services["tts"]["expose"] == ["8085"]
    assert services["tts"]["environment"]["PORT"] == "8085"
    assert services["frontend"]["expose"] == ["8080"]
    assert services["frontend"]["build"] == {"context": "../frontend"}
    env = services["proxy"]["environment"]
    assert env["TTS_UPSTREAM"] == "tts:8085"
    assert env["CONSOLE_UPSTREAM"] == "frontend:8080"
    assert services["proxy"]["depends_on"]["tts"] == {"condition": "service_healthy"}


def test_models_are_mounted_read_only_and_images_carry_the_commit_tag(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "../models:/models:ro" in services["tts"]["volumes"]
    for name in ("tts", "frontend"):
        assert re.fullmatch(r"tts-(service|frontend):\$\{IMAGE_TAG:\?[^}]+\}", services[name]["image"]), name
    # third-party images are pinned to a version, never :latest
    for name in ("proxy", "prometheus", "grafana", "qdrant"):
        assert re.fullmatch(r"[\w./-]+:v?\d+(\.\d+)+(-alpine)?", services[name]["image"]), name


def test_compose_files_and_settings_exist_and_parse(compose: dict[str, Any]) -> None:
    text = (INFRA / "compose.yaml").read_text()
    # every interpolation is ${NAME}, ${NAME:-default} or ${NAME:?message}
    for match in re.finditer(r"\$\{([^}]*)\}", text):
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*(:?[-?].*)?", match.group(1)), match.group(0)
    # every bind-mounted file or folder is in the repository (no typo'd path mounting an empty folder)
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = re.match(r"\$\{[^}]*\}|[^:]+", volume).group(0)  # type: ignore[union-attr]
            if source.startswith("."):
                assert (INFRA / source).exists(), (name, source)
            elif source.startswith("${"):
                default = re.search(r":-([^}]+)\}", source)
                assert default, (name, source)
                assert (INFRA / default.group(1)).exists(), (name, source)
            else:
                assert source in compose["volumes"], (name, source)
    # the server's variables are Settings fields (or OpenTelemetry's standard ones)
    fields = {name.upper() for name in Settings.model_fields}
    unknown = {k for k in compose["services"]["tts"]["environment"] if k not in fields and not k.startswith("OTEL_")}
    assert unknown == set()
    # TLS keys never enter an image's build context
    assert "infra/certs/" in (REPO / ".dockerignore").read_text()


def caddy_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """Caddy's storage in tmp_path, admin endpoint off, and the layout's variables."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "CADDY_ADMIN": "off",
        **env,
    }


def caddy_on_the_caddyfile(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`caddy <command>` (validate, adapt) of the Caddyfile with the caddyfile adapter."""
    return subprocess.run(
        [str(CADDY), command, "--adapter", "caddyfile", "--config", str(CADDYFILE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_caddyfile_is_formatted() -> None:
    run = subprocess.run([str(CADDY), "fmt", str(CADDYFILE)], capture_output=True, text=True, timeout=30, check=True)
    assert run.stdout == CADDYFILE.read_text()


@pytest.mark.parametrize("mode", ["auto", "internal", "files"])
def test_caddy_validates_the_config_in_every_tls_mode(tmp_path: Path, mode: str) -> None:
    env = caddy_env(tmp_path, CADDY_TLS=mode, SITE_ADDRESS="tts.example.com")
    if mode == "files":
        ca = trustme.CA()
        cert = ca.issue_cert("tts.example.com")
        cert.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
        env |= {"TLS_CERT_FILE": str(tmp_path / "tls.crt"), "TLS_KEY_FILE": str(tmp_path / "tls.key")}
    run = caddy_on_the_caddyfile("validate", env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Valid configuration" in run.stdout + run.stderr, run.stderr[-2000:]
    # and what Caddy made of it: HTTP is redirected, the site is served with TLS
    adapted = caddy_on_the_caddyfile("adapt", env)
    assert adapted.returncode == 0, adapted.stderr[-2000:]
    config = json.loads(adapted.stdout)
    (server,) = config["apps"]["http"]["servers"].values()
    assert server["listen"] == [":443"]
    assert "automatic_https" not in server  # redirects are on
    if mode == "files":
        assert config["apps"]["tls"]["certificates"]["load_files"][0]["certificate"].endswith("tls.crt")


class ConsoleServer:
    """A stand-in for the console image: static files on loopback, with no caching headers of its own."""

    def __init__(self, root: Path) -> None:
        handler = type("Handler", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), lambda *args: handler(*args, directory=str(root))
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        return int(self.server.server_address[1])

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxied(engine: Engine, tmp_path: Path) -> Iterator[tuple[str, str, ssl.SSLContext]]:
    """Caddy with the repository's Caddyfile on loopback (its internal CA), in front of a live server and a console."""
    site = tmp_path / "console"
    (site / "assets").mkdir(parents=True)
    (site / "index.html").write_text("<!doctype html><title>console</title>")
    (site / "assets" / "app.1234abcd.js").write_text("console.log('hi')")
    app = create_app(health.router, tts.router, voices.router, stream.router, metrics.router, client_config.router)
    live = LiveServer(app)
    live.start()
    https_port, http_port = free_port(), free_port()
    env = caddy_env(
        tmp_path,
        SITE_ADDRESS=f"localhost:{https_port}",
        HTTPS_PORT=str(https_port),
        HTTP_PORT=str(http_port),
        CADDY_TLS="internal",
        TTS_UPSTREAM=f"127.0.0.1:{live.port}",
    )
    with ConsoleServer(site) as console_port:
        env["CONSOLE_UPSTREAM"] = f"127.0.0.1:{console_port}"
        proc = subprocess.Popen(
            [str(CADDY), "run", "--adapter", "caddyfile", "--config", str(CADDYFILE)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            root = tmp_path / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
            base = f"https://localhost:{https_port}"
            deadline = time.monotonic() + 60
            # Ready once it answers over TLS: the local CA's root comes first, the site's certificate after it.
            while not (root.exists() and _listening(http_port) and _answers(base, root)):
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                assert time.monotonic() < deadline, "caddy did not start"
                time.sleep(0.1)
            yield base, f"http://localhost:{http_port}", ssl.create_default_context(cafile=str(root))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stderr is not None:
                proc.stderr.close()
            live.stop()


def _answers(base: str, root: Path) -> bool:
    try:
        return httpx.get(f"{base}/health", verify=ssl.create_default_context(cafile=str(root)), timeout=5).is_success
    except (httpx.HTTPError, ssl.SSLError):
        return False


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_proxy_terminates_tls_redirects_http_and_passes_api_websockets_and_console(
    proxied: tuple[str, str, ssl.SSLContext],
) -> None:
    base, plain, trust = proxied
    with httpx.Client(verify=trust, timeout=30) as client:
        # HTTP is redirected to HTTPS
        redirect = httpx.get(f"{plain}/health", timeout=10)
        assert redirect.status_code in (301, 308)
        target = httpx.URL(redirect.headers["location"])
        assert (target.scheme, target.host, target.path) == ("https", "localhost", "/health")
        # the API answers through TLS with the security headers, and no Server banner
        answer = client.get(f"{base}/health")
        assert answer.status_code == 200
        assert answer.json() == {"status": "ok"}
        assert answer.headers["strict-transport-security"].startswith("max-age=31536000")
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert "server" not in answer.headers
        # the server's metrics stay inside
        assert client.get(f"{base}/metrics").status_code == 404
        # the console gets everything else, hashed assets cached for good, pages revalidated
        page = client.get(f"{base}/")
        assert page.status_code == 200
        assert "console" in page.text
        assert page.headers["cache-control"] == "no-cache"
        asset = client.get(f"{base}/assets/app.1234abcd.js")
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    # AND the smoke test passes through the proxy, WebSocket stream included
    options = smoke.parse([base, "--timeout", "60"])
    options.verify = trust
    lines: list[str] = []
    results = smoke.run(options, ("health", "healthz", "voices", "tts", "ws"), out=lines.append)
    assert [r.outcome for r in results] == ["PASS"] * 5, lines


def test_prometheus_scrapes_the_server_where_compose_runs_it(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["tts:8085"]
    grafana = compose["services"]["grafana"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    provider = yaml.safe_load((INFRA / "grafana/provisioning/dashboards/tts-service.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load((INFRA / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.mark.parametrize(("title", "expr"), dashboard_queries(), ids=lambda v: v[:40])
def test_every_dashboard_query_is_promql_on_metrics_the_service_exports(title: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, expr
    assert names <= exported_names(), (title, names - exported_names())


def test_the_dashboard_covers_the_incident_section_of_the_guide() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for wanted in (
        "request rate",
        "latency",
        "error ratio",
        "cache hit",
        "synthesis duration",
        "real-time factor",
        "time to first audio",
        "in-flight",
        "cpu",
    ):
        assert wanted in titles, wanted
    datasource = yaml.safe_load((INFRA / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {uid}
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
