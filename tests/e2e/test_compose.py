"""Structural checks of docker-compose.yml (there is no Docker engine on the test machines).

It parses; every bind-mounted file, build context and Dockerfile exists; host ports do not
collide; every image is pinned (a tag that is not ``latest``, or a digest); every service has a
health check; Grafana's provisioning points at data sources and dashboards that exist.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "docker-compose.yml"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), (
        "docker-compose.yml has no services"
    )
    return doc


def _bind_sources(service: dict[str, Any]) -> list[str]:
    out = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            source = vol.split(":", 1)[0]
        else:
            if vol.get("type") != "bind":
                continue
            source = vol["source"]
        if source.startswith((".", "/")):
            out.append(source)
    return out


def _host_ports(service: dict[str, Any]) -> list[tuple[str, int, str]]:
    ports = []
    for spec in service.get("ports") or []:
        if isinstance(spec, dict):
            if spec.get("published") is not None:
                ports.append(
                    (spec.get("host_ip", "0.0.0.0"), int(spec["published"]), spec.get("protocol", "tcp"))
                )
            continue
        text = str(spec)
        proto = "tcp"
        if "/" in text:
            text, proto = text.split("/", 1)
        parts = text.split(":")
        if len(parts) == 1:
            continue  # container port only: Docker picks a random host port
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        host = parts[-2]
        if "-" in host:
            lo, hi = (int(p) for p in host.split("-"))
            ports.extend((host_ip, p, proto) for p in range(lo, hi + 1))
        else:
            ports.append((host_ip, int(host), proto))
    return ports


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    pairs = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
    return {str(k): str(v) for k, v in pairs}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> repository path of the string-form bind mounts."""
    out = {}
    for vol in service.get("volumes") or []:
        if isinstance(vol, str) and vol.startswith("./"):
            src, dst = vol.split(":")[:2]
            out[dst] = src
    return out


def test_expected_services(compose: dict[str, Any]) -> None:
    assert {"otel-collector", "jaeger", "prometheus", "grafana", "demo"} <= set(compose["services"])


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    missing = []
    for name, service in compose["services"].items():
        for source in _bind_sources(service):
            if not (REPO_ROOT / source).exists():
                missing.append(f"{name}: {source}")
    assert not missing, f"bind-mounted paths that do not exist: {missing}"


def test_build_contexts_and_dockerfiles_exist(compose: dict[str, Any]) -> None:
    builds = {n: s["build"] for n, s in compose["services"].items() if "build" in s}
    assert "demo" in builds, "the demo service must be built from the repository"
    for name, build in builds.items():
        if isinstance(build, str):
            build = {"context": build}
        context = REPO_ROOT / build.get("context", ".")
        assert context.is_dir(), f"{name}: build context {context} does not exist"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: Dockerfile {dockerfile} does not exist"
        text = dockerfile.read_text()
        assert re.search(r"^FROM\s+\S+:\S+", text, re.M), f"{dockerfile}: base image is not pinned"
        for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
            for src in line.split()[:-1]:
                if not src.startswith("--"):
                    assert (context / src).exists(), f"{dockerfile}: COPY source {src} missing"


def test_demo_runs_under_auto_instrumentation(compose: dict[str, Any]) -> None:
    demo = compose["services"]["demo"]
    command = demo["command"]
    command = command if isinstance(command, list) else command.split()
    assert command[:3] == ["opentelemetry-instrument", "chronograph", "demo"]
    env = _env(demo)
    assert env["OTEL_PYTHON_DISTRO"] == "chronograph"
    assert env["OTEL_PYTHON_CONFIGURATOR"] == "chronograph"
    assert "otel-collector:4317" in env["OTEL_EXPORTER_OTLP_ENDPOINT"]


def test_host_ports_do_not_collide(compose: dict[str, Any]) -> None:
    seen: dict[tuple[int, str], str] = {}
    for name, service in compose["services"].items():
        for _ip, port, proto in _host_ports(service):
            key = (port, proto)
            assert key not in seen, f"host port {port}/{proto} published by both {seen[key]} and {name}"
            seen[key] = name
    for port in (4317, 4318, 16686, 9090, 3000):
        assert (port, "tcp") in seen, f"expected host port {port} to be published"


def test_images_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        if image is None:
            assert "build" in service, f"{name}: neither image nor build"
            continue
        if "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        assert ":" in last, f"{name}: image {image} has no tag"
        tag = last.split(":", 1)[1]
        assert tag and tag != "latest" and not tag.startswith("latest"), (
            f"{name}: image {image} is not pinned"
        )
        assert re.search(r"\d", tag), f"{name}: image tag {tag!r} is not a version"


def test_healthchecks(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        hc = service.get("healthcheck")
        assert hc and not hc.get("disable"), f"{name}: no healthcheck"
        test = hc["test"]
        assert test and (isinstance(test, str) or test[0] in ("CMD", "CMD-SHELL")), (
            f"{name}: bad healthcheck {test}"
        )


def test_depends_on_known_services(compose: dict[str, Any]) -> None:
    services = set(compose["services"])
    for name, service in compose["services"].items():
        deps = service.get("depends_on") or []
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_collector_uses_repo_config(compose: dict[str, Any]) -> None:
    collector = compose["services"]["otel-collector"]
    assert any(s.startswith("./collector-config/") for s in _bind_sources(collector))
    assert "opentelemetry-collector-contrib" in collector["image"]


def test_prometheus_scrapes_collector(compose: dict[str, Any]) -> None:
    prom = compose["services"]["prometheus"]
    sources = [s for s in _bind_sources(prom) if s.endswith((".yml", ".yaml"))]
    assert sources, "prometheus has no mounted configuration"
    cfg = yaml.safe_load((REPO_ROOT / sources[0]).read_text())
    targets = [
        t for job in cfg["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]
    ]
    assert "otel-collector:8889" in targets, targets


def test_grafana_provisioning(compose: dict[str, Any]) -> None:
    mounts = {dst: REPO_ROOT / src for dst, src in _mounts(compose["services"]["grafana"]).items()}
    ds_dir = mounts["/etc/grafana/provisioning/datasources"]
    types = set()
    uids = set()
    for f in ds_dir.glob("*.y*ml"):
        for ds in yaml.safe_load(f.read_text()).get("datasources", []):
            types.add(ds["type"])
            uids.add(ds.get("uid"))
    assert {"prometheus", "jaeger"} <= types, types

    dash_prov = mounts["/etc/grafana/provisioning/dashboards"]
    paths = [
        p["options"]["path"]
        for f in dash_prov.glob("*.y*ml")
        for p in yaml.safe_load(f.read_text())["providers"]
    ]
    assert paths, "no dashboard provider"
    for path in paths:
        assert path in mounts, f"dashboard provider path {path} is not mounted"
        dashboards = list(mounts[path].glob("*.json"))
        assert dashboards, f"no dashboards in {mounts[path]}"
        for d in dashboards:
            doc = json.loads(d.read_text())
            assert doc.get("panels"), f"{d}: no panels"
            for panel in doc["panels"]:
                if panel.get("type") == "row":
                    continue
                ds = panel.get("datasource") or {}
                uid = ds.get("uid") if isinstance(ds, dict) else ds
                assert uid in uids or (uid or "").startswith("$"), (
                    f"{d}: panel {panel.get('title')} uses unknown datasource {uid}"
                )


def test_published_ports_bind_loopback_only(compose: dict[str, Any]) -> None:
    """Like the servers themselves, the stack is reachable from this machine only by default."""
    for name, service in compose["services"].items():
        for ip, port, _proto in _host_ports(service):
            assert ip == "127.0.0.1", f"{name}: host port {port} is published on {ip or 'all interfaces'}"


def test_gateway_profile(compose: dict[str, Any]) -> None:
    """--profile gateway: the load-balancing Collector in front of two `chronograph gateway`s."""
    services = compose["services"]
    profiled = {n for n, s in services.items() if "gateway" in (s.get("profiles") or [])}
    gateways = sorted(n for n in profiled if n.startswith("chronograph-gateway"))
    assert profiled == {"otel-collector-lb", *gateways} and len(gateways) == 2, profiled

    instance_ids = set()
    for name in gateways:
        gw = services[name]
        assert gw["command"] == ["chronograph", "gateway", "--config", "/etc/chronograph/gateway.yaml"]
        assert _mounts(gw)["/etc/chronograph/gateway.yaml"] == "./collector-config/chronograph-gateway.yaml"
        env = _env(gw)
        assert env["CHRONOGRAPH_GATEWAY_GRPC_ENDPOINT"] == "0.0.0.0:5317"
        assert env["CHRONOGRAPH_GATEWAY_EXPORT_ENDPOINT"].split(":")[0] in services
        instance_ids.add(env["OTEL_RESOURCE_ATTRIBUTES"])
    assert len(instance_ids) == 2, "the gateways' metric series would overwrite each other"

    lb = services["otel-collector-lb"]
    config = "/etc/otelcol-contrib/loadbalancing.yaml"
    assert lb["command"] == [f"--config={config}"]
    assert _mounts(lb)[config] == "./collector-config/loadbalancing.yaml"
    assert lb["image"] == services["otel-collector"]["image"]
    assert _env(lb)["CHRONOGRAPH_GATEWAYS"].split(",") == [f"{g}:5317" for g in gateways]
    assert set(lb["depends_on"]) == set(gateways)
    assert {port for _ip, port, _proto in _host_ports(lb)} == {4327, 4328}


def test_default_services_need_no_profile(compose: dict[str, Any]) -> None:
    """`docker compose up` without a profile: no default service depends on a profiled one."""
    services = compose["services"]
    profiled = {n for n, s in services.items() if s.get("profiles")}
    for name, service in services.items():
        if name in profiled:
            continue
        deps = service.get("depends_on") or []
        assert not set(deps) & profiled, f"{name} depends on profiled services {set(deps) & profiled}"
