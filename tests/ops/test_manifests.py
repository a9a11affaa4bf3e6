"""The Prometheus, Grafana and Kubernetes files cannot drift from the code.

No cluster, Prometheus or Grafana runs in CI, so this reads the files: every metric an
alert or a panel queries must be one the processor exports, the Deployment's arguments
must parse with the real CLI, every SLUICEGATE_ variable must name a setting, the mounted
config must validate, and probes, Service, scrape annotations and the ScaledObject must
agree with it. Where a real validator is installed (promtool, kubectl, kubernetes-validate,
kubeconform) it runs too; each of those checks is skipped, alone, when its tool is absent.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream import config
from stream.cli import commands as cli
from stream.cli.demo import PARTITIONS, SAMPLES
from stream.routes import build_routes
from tests.test_deploy_files import KNOWN_OTHER_ENV, OURS, environment

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "ops"
PROMETHEUS = OPS / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
GRAFANA = OPS / "grafana"
DASHBOARD = GRAFANA / "sluicegate-dashboard.json"
K8S = OPS / "k8s"
MANIFEST_DIRS = (PROMETHEUS, GRAFANA, K8S)

# Exposed names of families that stream/telemetry/metrics.py builds without a literal name the
# scan below can see (the ``histogram()`` helper takes the name as an argument). Keep in
# step with /metrics; an entry that the scan also finds is harmless.
EXPORTED_ALSO = frozenset(
    {
        "sluicegate_model_seconds_bucket",
        "sluicegate_model_seconds_sum",
        "sluicegate_model_seconds_count",
    }
)
# Series Prometheus makes itself.
PROMETHEUS_OWN = frozenset({"up"})


# --- what the code exports ------------------------------------------------------------


def _exposed(constructor: str, name: str) -> set[str]:
    """The series names a family constructed as ``constructor(name, ...)`` shows."""
    if "Counter" in constructor:
        return {name.removesuffix("_total") + "_total"}
    if "Histogram" in constructor:
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if "Summary" in constructor:
        return {f"{name}_sum", f"{name}_count"}
    return {name}


class _FamilyScan(ast.NodeVisitor):
    """Names of the families stream/telemetry/metrics.py builds: literal first arguments, and
    f"sluicegate_{x}" inside ``for x in ("a", "b")`` loops."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.loops: dict[str, list[str]] = {}
        self.seen: set[int] = set()  # names already read as a family's first argument

    def visit_For(self, node: ast.For) -> None:
        values = getattr(node.iter, "elts", None)
        if isinstance(node.target, ast.Name) and values is not None:
            words = [v.value for v in values if isinstance(v, ast.Constant)]
            if all(isinstance(w, str) for w in words):
                self.loops[node.target.id] = [str(w) for w in words]
                self.generic_visit(node)
                del self.loops[node.target.id]
                return
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        constructor = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        first = node.args[0] if node.args else None
        self.seen.add(id(first))
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            if re.fullmatch(r"sluicegate_[a-z_]+", first.value):
                self.names |= _exposed(constructor, first.value)
        elif isinstance(first, ast.JoinedStr):
            for name in self._expand(first):
                self.names |= _exposed(constructor, name)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        """Any other literal name (a family built some other way) counts as it is."""
        if id(node) in self.seen or not isinstance(node.value, str):
            return
        if re.fullmatch(r"sluicegate_[a-z_]+", node.value):
            self.names.add(node.value)

    def _expand(self, text: ast.JoinedStr) -> list[str]:
        parts = text.values
        if (
            len(parts) == 2
            and isinstance(parts[0], ast.Constant)
            and parts[0].value == "sluicegate_"
            and isinstance(parts[1], ast.FormattedValue)
            and isinstance(parts[1].value, ast.Name)
        ):
            return [f"sluicegate_{w}" for w in self.loops.get(parts[1].value.id, [])]
        return []


def exported_metrics() -> set[str]:
    scan = _FamilyScan()
    scan.visit(ast.parse((REPO / "stream" / "telemetry" / "metrics.py").read_text()))
    return scan.names | EXPORTED_ALSO


EXPORTED = exported_metrics()


# --- PromQL ---------------------------------------------------------------------------

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_PROMQL_WORDS |= {"unless", "offset", "bool", "inf", "nan", "atan2"}


def promql_metrics(expr: str) -> set[str]:
    """The metric (and recorded series) names a PromQL expression selects."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers, $variables in them
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.:])[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        if word.lower() in _PROMQL_WORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (job) (rate(a_total{x="y", z=~"$v"}[5m])) / on (job) b', {"a_total", "b"}),
        ("histogram_quantile(0.95, sum by (le) (rate(h_bucket[$__rate_interval]))) > 5",
         {"h_bucket"}),
        ("ns:rec:sum > 0.10 * max_over_time(g[1d]) and deriv(r:x[15m:1m]) > 1e3",
         {"ns:rec:sum", "g", "r:x"}),
        ('absent(up{job="a"}) or vector(0)', {"up"}),
    ],
)  # fmt: skip
def test_promql_name_extraction(expr: str, names: set[str]) -> None:
    """The extractor the checks below rely on finds selectors and nothing else."""
    assert promql_metrics(expr) == names


def test_exported_metrics_are_found_in_the_code() -> None:
    """The scan of stream/telemetry/metrics.py sees literal and loop-built families, so the checks
    against EXPORTED are not vacuous."""
    found = exported_metrics() - EXPORTED_ALSO
    assert {"sluicegate_in_flight_events", "sluicegate_model_breaker_state"} <= found
    assert {"sluicegate_retries_total", "sluicegate_commits_total"} <= found
    assert "sluicegate_model_cost_usd_total" in found
    assert "sluicegate_model_cost_usd" not in found, "counters show as *_total only"


# --- every file parses ----------------------------------------------------------------


def _files(*suffixes: str) -> list[Path]:
    return sorted(p for d in MANIFEST_DIRS for p in d.rglob("*") if p.suffix in suffixes)


@pytest.mark.parametrize("path", _files(".yml", ".yaml", ".json"), ids=lambda p: str(p.name))
def test_every_file_parses(path: Path) -> None:
    text = path.read_text()
    docs = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
    assert docs
    assert all(isinstance(doc, dict) for doc in docs), f"{path}: a document is not a mapping"


# --- Prometheus -----------------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


RULES = _rules()
RECORDED = {str(rule["record"]) for rule in RULES if "record" in rule}
ALERT_RULES = {str(rule["alert"]): rule for rule in RULES if "alert" in rule}


@pytest.mark.parametrize("rule", RULES, ids=lambda r: str(r.get("alert") or r.get("record")))
def test_rules_query_exported_metrics(rule: dict[str, Any]) -> None:
    """Each expression selects only series the processor exports, Prometheus makes, or a
    rule in the same file records."""
    names = promql_metrics(rule["expr"])
    assert names, f"{rule['expr']!r} selects nothing"
    unknown = names - EXPORTED - PROMETHEUS_OWN - RECORDED
    assert not unknown, f"unknown series {sorted(unknown)}; exported: {sorted(EXPORTED)}"


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_alerts_have_severity_and_text(name: str) -> None:
    rule = ALERT_RULES[name]
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert rule["annotations"]["summary"].strip()
    assert rule["annotations"]["description"].strip()
    assert re.fullmatch(r"\d+[smh]", str(rule.get("for", "0s")))


def test_alerts_cover_the_failure_modes() -> None:
    """Lag, breaker, 429s, DLQ cap, budget, a stuck consumer, a dead process, latency."""
    exprs = {name: rule["expr"] for name, rule in ALERT_RULES.items()}

    def alerting_on(metric: str) -> bool:
        return any(metric in expr for expr in exprs.values())

    for metric in (
        "sluicegate:consumer_lag",
        "sluicegate_model_breaker_state",
        'status="rate_limited"',
        "sluicegate_dlq_window_ratio",
        "sluicegate_budget_remaining_usd",
        'outcome="consumed"',
        "up{",
        'stage="handle"',
    ):
        assert alerting_on(metric), f"no alert looks at {metric}"


def test_prometheus_scrapes_the_compose_processor() -> None:
    """prometheus.yml loads alerts.yml and scrapes the compose service on the port its
    metrics server listens on, under the job name the alerts match."""
    conf = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert [PROMETHEUS / f for f in conf["rule_files"]] == [ALERTS]
    (job,) = conf["scrape_configs"]
    assert job["job_name"] == "sluicegate"
    assert 'up{job="sluicegate"}' in ALERT_RULES["SluicegateDown"]["expr"]
    port = environment(OURS["sluicegate"]).get("SLUICEGATE_METRICS__PORT")
    expected = f"sluicegate:{port or config.MetricsSettings().port}"
    assert [t for sc in job["static_configs"] for t in sc["targets"]] == [expected]


def _run(*command: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _tool(name: str) -> str:
    """A validator on PATH or in Go's bin directory, else skip this check."""
    gobin = Path(os.environ.get("GOPATH") or Path.home() / "go") / "bin"
    found = shutil.which(name) or shutil.which(name, path=str(gobin))
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def test_promtool_accepts_rules_config_and_rule_tests() -> None:
    """`promtool check` on both files, and the rule unit tests in alerts_test.yml (each
    alert fires on made-up series, and stays quiet where it should)."""
    promtool = _tool("promtool")
    for command in (
        ("check", "rules", "alerts.yml"),
        ("check", "config", "prometheus.yml"),
        ("test", "rules", "alerts_test.yml"),
    ):
        result = _run(promtool, *command, cwd=PROMETHEUS)
        assert result.returncode == 0, (
            f"promtool {' '.join(command)}:\n{result.stdout}{result.stderr}"
        )


# --- Grafana --------------------------------------------------------------------------

DASH: dict[str, Any] = json.loads(DASHBOARD.read_text())


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


PANELS = list(_panels(DASH["panels"]))
DATA_PANELS = [p for p in PANELS if p["type"] != "row"]


def test_dashboard_has_a_prometheus_datasource_variable() -> None:
    assert DASH["schemaVersion"] >= 36
    variables = {v["name"]: v for v in DASH["templating"]["list"]}
    ds = variables["DS_PROMETHEUS"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    for panel in DATA_PANELS:
        sources = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        assert all(s == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"} for s in sources), panel[
            "title"
        ]


def test_dashboard_panel_ids_are_unique_and_fit_the_grid() -> None:
    ids = [p["id"] for p in PANELS]
    assert len(ids) == len(set(ids))
    for panel in PANELS:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


@pytest.mark.parametrize("panel", DATA_PANELS, ids=lambda p: str(p["title"]))
def test_dashboard_queries_exported_metrics(panel: dict[str, Any]) -> None:
    assert panel["targets"], "a panel without a query"
    refs = [t["refId"] for t in panel["targets"]]
    assert len(refs) == len(set(refs))
    for target in panel["targets"]:
        names = promql_metrics(target["expr"])
        assert names, target["expr"]
        unknown = names - EXPORTED - RECORDED
        assert not unknown, f"{panel['title']}: unknown series {sorted(unknown)}"


def test_dashboard_variables_query_exported_metrics() -> None:
    for variable in DASH["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\((\w+)(?:\{[^}]*\})?,\s*(\w+)\)", text)
        assert match, text
        assert match.group(1) in EXPORTED


def test_dashboard_covers_the_runtime() -> None:
    """Throughput, backpressure, lag, latency, the model client, cost, budget, DLQ, alerts."""
    queried = {n for p in DATA_PANELS for t in p["targets"] for n in promql_metrics(t["expr"])}
    wanted = {
        "sluicegate_events_total",
        "sluicegate_in_flight_events",
        "sluicegate_paused_partitions",
        "sluicegate_consumer_lag",
        "sluicegate_stage_seconds_bucket",
        "sluicegate_model_requests_total",
        "sluicegate_model_rate_limited_total",
        "sluicegate_model_concurrency_limit",
        "sluicegate_model_requests_budget",
        "sluicegate_model_tokens_budget",
        "sluicegate_model_breaker_state",
        "sluicegate_model_tokens_total",
        "sluicegate_model_cost_usd_total",
        "sluicegate_budget_remaining_usd",
        "sluicegate_dlq_window_ratio",
        "sluicegate_dlq_max_ratio",
        "sluicegate_alerts_total",
    }
    assert wanted <= queried, sorted(wanted - queried)


def test_grafana_provisioning() -> None:
    """A Prometheus datasource (default, so DS_PROMETHEUS resolves) and a file provider."""
    prov = GRAFANA / "provisioning"
    sources = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["isDefault"] is True
    assert re.fullmatch(r"https?://[\w.-]+:\d+", source["url"])
    boards = yaml.safe_load((prov / "dashboards" / "sluicegate.yml").read_text())
    (provider,) = boards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


# --- Kubernetes -----------------------------------------------------------------------

KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
K8S_FILES = [K8S / name for name in KUSTOMIZATION["resources"]]
OBJECTS: list[tuple[Path, dict[str, Any]]] = [
    (path, doc) for path in K8S_FILES for doc in yaml.safe_load_all(path.read_text()) if doc
]


def the(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in OBJECTS if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


DEPLOYMENT = the("Deployment")
POD = DEPLOYMENT["spec"]["template"]
(CONTAINER,) = POD["spec"]["containers"]


def test_kustomization_lists_every_manifest() -> None:
    on_disk = {p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert set(K8S_FILES) == on_disk


@pytest.mark.parametrize("obj", [d for _, d in OBJECTS], ids=lambda d: f"{d['kind']}")
def test_objects_are_named_kubernetes_objects(obj: dict[str, Any]) -> None:
    assert re.fullmatch(r"([a-z0-9.-]+/)?v\d\w*", obj["apiVersion"])
    assert re.fullmatch(r"[A-Z]\w+", obj["kind"])
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", obj["metadata"]["name"])


def test_container_args_parse_with_the_real_cli() -> None:
    """The image's entrypoint is `sluicegate`; the container gives it these arguments."""
    assert "command" not in CONTAINER, "keep the image's ENTRYPOINT"
    args = cli.build_parser().parse_args(CONTAINER["args"])
    assert args.command == "run"
    assert str(args.config) == "/etc/sluicegate/sluicegate.toml"


def _env_sources() -> dict[str, str]:
    """Every variable the container gets, with the value it would have."""
    env: dict[str, str] = {}
    for source in CONTAINER.get("envFrom", []):
        if "configMapRef" in source:
            env |= the("ConfigMap", source["configMapRef"]["name"])["data"]
        else:
            env |= the("Secret", source["secretRef"]["name"])["stringData"]
    for var in CONTAINER.get("env", []):
        ref = var.get("valueFrom", {})
        if "secretKeyRef" in ref:
            secret = the("Secret", ref["secretKeyRef"]["name"])
            env[var["name"]] = secret["stringData"][ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            cm = the("ConfigMap", ref["configMapKeyRef"]["name"])
            env[var["name"]] = cm["data"][ref["configMapKeyRef"]["key"]]
        else:
            env[var["name"]] = str(var["value"])
    return env


def test_environment_names_real_settings() -> None:
    """Every variable given to the container, every Secret key, and every SLUICEGATE_
    name in the manifests' comments (the optional SASL/TLS variables) sets something."""
    names = set(_env_sources()) | set(the("Secret")["stringData"])
    names |= {m for p in K8S_FILES for m in re.findall(r"\bSLUICEGATE_[A-Z0-9_]+", p.read_text())}
    for name in sorted(names):
        if name.startswith(config.ENV_PREFIX):
            assert config.settings_path(name) is not None, f"{name} names no setting"
        else:
            assert name in KNOWN_OTHER_ENV, f"{name} is read by nothing"


def test_secret_holds_only_placeholders() -> None:
    secret = the("Secret")
    assert "data" not in secret
    assert all("REPLACE-ME" in value for value in secret["stringData"].values())


def _mounted_config() -> tuple[str, str]:
    """The TOML text the container runs with, and the path it finds it at."""
    path = Path(CONTAINER["args"][CONTAINER["args"].index("--config") + 1])
    for mount in CONTAINER["volumeMounts"]:
        if Path(mount["mountPath"]) in (path, path.parent):
            (volume,) = [v for v in POD["spec"]["volumes"] if v["name"] == mount["name"]]
            key = mount.get("subPath") or next(
                i["key"] for i in volume["configMap"].get("items", []) if i["path"] == path.name
            )
            return the("ConfigMap", volume["configMap"]["name"])["data"][key], str(path)
    raise AssertionError(f"nothing is mounted at {path}")


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> config.Settings:
    """The effective settings of the container: the mounted TOML plus its environment."""
    for name in list(os.environ):
        if name.startswith(config.ENV_PREFIX) or name in KNOWN_OTHER_ENV:
            monkeypatch.delenv(name)
    for name, value in _env_sources().items():
        monkeypatch.setenv(name, value)
    text, _ = _mounted_config()
    path = tmp_path / "sluicegate.toml"
    path.write_text(text)
    return config.load(path)


def test_mounted_config_validates(settings: config.Settings) -> None:
    """As `sluicegate config check` does: settings, then every route's handler options."""
    assert settings.routes, "the ConfigMap defines no route"
    assert len(build_routes(settings)) == len(settings.routes)
    assert settings.model.api_key is not None, "the API key reaches the settings"


def test_commented_config_keys_exist() -> None:
    """The optional keys shown commented out in the TOML (SASL, TLS) are real settings."""
    text, _ = _mounted_config()
    section: str | None = None
    value = r'("|\[|\{|\d|true\b|false\b)'
    for line in text.splitlines():
        if header := re.fullmatch(r"\s*\[(\w+)\]\s*", line):
            section = header.group(1)
        elif (key := re.match(rf"\s*#\s*(\w+)\s*=\s*{value}", line)) and section:
            fields = config.Settings.model_fields[section].annotation
            assert fields is not None
            assert key.group(1) in fields.model_fields, f"{section}.{key.group(1)}"


def _container_port(port: int | str) -> int:
    if isinstance(port, int):
        return port
    (named,) = [p["containerPort"] for p in CONTAINER["ports"] if p["name"] == port]
    return int(named)


def test_probes_and_scraping_use_the_metrics_port(settings: config.Settings) -> None:
    port = settings.metrics.port
    probes = {k: CONTAINER[k]["httpGet"] for k in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    if "startupProbe" in CONTAINER:
        probes["startupProbe"] = CONTAINER["startupProbe"]["httpGet"]
    assert {_container_port(p["port"]) for p in probes.values()} == {port}
    annotations = POD["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"
    (service_port,) = the("Service")["spec"]["ports"]
    assert _container_port(service_port["targetPort"]) == port


def test_selectors_match_the_pods() -> None:
    labels = POD["metadata"]["labels"]
    selectors = [
        DEPLOYMENT["spec"]["selector"]["matchLabels"],
        the("Service")["spec"]["selector"],
        the("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= labels.items()


def test_pod_is_locked_down() -> None:
    """Non-root (the image's user), read-only root filesystem, no privilege escalation,
    resources set, and no injected service variables."""
    pod, box = POD["spec"]["securityContext"], CONTAINER["securityContext"]
    dockerfile_user = re.findall(r"^USER (\S+)", (REPO / "Dockerfile").read_text(), re.M)[-1]
    assert pod["runAsNonRoot"] is True
    assert str(pod["runAsUser"]) == dockerfile_user
    assert box["readOnlyRootFilesystem"] is True
    assert box["allowPrivilegeEscalation"] is False
    assert box["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= CONTAINER["resources"]["requests"].keys()
    assert "memory" in CONTAINER["resources"]["limits"]
    # Service links would add <SERVICE>_* variables; a Service whose name starts with
    # "sluicegate" would then put SLUICEGATE_* names in front of the config loader.
    assert POD["spec"]["enableServiceLinks"] is False


def test_grace_period_outlasts_the_drain(settings: config.Settings) -> None:
    """Kubernetes waits longer than the processor's drain before it sends SIGKILL."""
    grace = POD["spec"]["terminationGracePeriodSeconds"]
    assert grace >= settings.processing.shutdown_timeout_s + 15


def test_scaled_object_scales_the_deployment_on_its_group(settings: config.Settings) -> None:
    scaled = the("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    assert (target.get("kind", "Deployment"), target["name"]) == (
        "Deployment",
        DEPLOYMENT["metadata"]["name"],
    )
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == settings.kafka.group_id
    assert meta["bootstrapServers"] == settings.kafka.bootstrap_servers
    assert int(meta["lagThreshold"]) > 0
    lo, hi = scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]
    assert 1 <= lo <= hi
    assert "replicas" not in DEPLOYMENT["spec"], "KEDA owns the replica count"
    inputs = {t for route in settings.routes for t in route.input_topics}
    if inputs <= {s.topic for s in SAMPLES}:  # the demo topics: their partitions are known
        assert hi <= PARTITIONS * len(inputs), "more replicas than partitions sit idle"


def test_kustomize_builds() -> None:
    kubectl = _tool("kubectl")
    result = _run(kubectl, "kustomize", str(K8S))
    assert result.returncode == 0, result.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(result.stdout) if d)
    assert kinds == sorted(d["kind"] for _, d in OBJECTS)


BUILTIN_FILES = [p for p in K8S_FILES if "keda.sh/" not in p.read_text()]


def test_manifests_match_the_kubernetes_schemas() -> None:
    """kubernetes-validate (bundled JSON schemas, strict: unknown fields fail), as a
    module or a command; the KEDA object has no schema there."""
    try:
        module: Any = importlib.import_module("kubernetes_validate")
    except ImportError:
        command = _tool("kubernetes-validate")
        result = _run(command, "--strict", *map(str, BUILTIN_FILES))
        assert result.returncode == 0, result.stdout + result.stderr
        return
    for path in BUILTIN_FILES:
        for doc in yaml.safe_load_all(path.read_text()):
            module.validate(doc, module.latest_version(), strict=True)


def test_kubeconform() -> None:
    """kubeconform, where it can fetch its schemas (it downloads them on first use)."""
    kubeconform = _tool("kubeconform")
    result = _run(kubeconform, "-strict", "-summary", "-skip", "ScaledObject", *map(str, K8S_FILES))
    if "failed downloading schema" in result.stdout + result.stderr:
        pytest.skip("kubeconform cannot download its schemas here")
    assert result.returncode == 0, result.stdout + result.stderr


# --- the image's HEALTHCHECK ----------------------------------------------------------


def _healthcheck() -> list[str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    (line,) = re.findall(r"^HEALTHCHECK .*$", text, re.MULTILINE)
    command: list[str] = json.loads(line.split(" CMD ", 1)[1])
    return command


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *_args: Any) -> None:
        pass


def _probe(status: int | None) -> int:
    """Exit code of the HEALTHCHECK command against a server answering ``status`` on
    /healthz (None: nothing listens)."""
    handler = type("Handler", (_Health,), {"status": status or 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    if status is None:
        server.server_close()
    else:
        thread.start()
    try:
        python, *rest = _healthcheck()
        env = {**os.environ, "SLUICEGATE_METRICS__PORT": str(port)}
        done = subprocess.run(
            [sys.executable, *rest], env=env, capture_output=True, timeout=30, check=False
        )
        assert python == "python"
        return done.returncode
    finally:
        if status is not None:
            server.shutdown()
            server.server_close()


def test_healthcheck_gets_healthz_with_the_stdlib() -> None:
    """Healthy on a 200 from /healthz; unhealthy on an error answer or a closed port."""
    command = " ".join(_healthcheck())
    assert "/healthz" in command
    assert "127.0.0.1" in command
    assert "9464" in command
    assert _probe(200) == 0
    assert _probe(503) != 0
    assert _probe(None) != 0
