"""The operators' own tools read what we ship: Prometheus's `promtool` lints the gateway's and
the central's /metrics and checks the alerting rules (and runs their unit tests), and every
metric the Grafana dashboard and the rules use exists in a real scrape.

The scrapes come from a real gateway and a real central after a real press: the alert is
delivered to a butler's robot (a loopback webhook), acknowledged on the console, and the
central's metrics say so (events accepted, alerts by state, press → acknowledge, deliveries
per robot, a silent gateway). promtool is Debian's (package prometheus, ./scripts/setup).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.console import REGISTRY, ConsoleClient, WebhookReceiver, admin_cli, wait_alert
from tests.helpers.support import Central, device_topic, publish, wait_for

pytestmark = [pytest.mark.system, pytest.mark.central]

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
QUIET = "gw-quiet"  # configured at the central, never heard from
PASSWORD = "correct horse battery"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: ./scripts/setup installs Debian's prometheus package")
    return found


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def watched_central(tmp_path: Path, webhook: WebhookReceiver,
                    central_database: str | None) -> Iterator[Central]:
    folder = tmp_path / "central"
    central = Central(folder, database=central_database, extra=(
        "registry_poll = 0.1\nsilent_after = 2.0\n"
        f'[[webhooks]]\nurl = "{webhook.url}/cgi-bin/webhook/send?key=wang-robot-key"\n'
        'format = "wecom"\nto = ["butler:b-wang"]\n'))
    with central.config.open("a") as config:  # the file ends with its [gateways] table
        config.write(f'{QUIET} = "quiet-key"\n')
    source = folder / "import.json"
    source.write_text(json.dumps(REGISTRY, ensure_ascii=False), encoding="utf-8")
    assert admin_cli("registry", "import", str(source), "--config",
                     str(central.config)).returncode == 0
    result = admin_cli("butler", "passwd", "b-wang", "--config", str(central.config),
                       "--password-stdin", stdin=f"{PASSWORD}\n")
    assert result.returncode == 0, result.stderr
    central.start()
    yield central
    central.kill()


@pytest.fixture
def scrapes(broker, watched_central: Central, make_gateway, webhook) -> dict[str, str]:
    """/metrics of a gateway and of the central, after a press was delivered and
    acknowledged."""
    central = watched_central
    gateway = make_gateway(central.url)
    gateway.start()
    wait_for(lambda: (gateway.data_dir / "registry.json").exists(), 30,
             what="the registry at the gateway")
    publish(broker.port, [(device_topic("btn-0007"), json.dumps({"seq": 1, "action": "long"}))])
    alert = wait_alert(central, "btn-0007")
    wait_for(lambda: webhook.at("/cgi-bin/webhook/send"), 20, what="the robot's message")
    console = ConsoleClient(central)
    assert console.login("b-wang", PASSWORD).status == 200
    assert console.act(alert["id"], "acknowledge").status == 200
    gateway_url = f"http://127.0.0.1:{gateway.http_port}"
    wait_for(lambda: value(scrape(gateway_url), "mashang_uplink_events_sent_total",
                           **{"class": "alert"}) >= 1, 20, what="the gateway to count the alert")
    wait_for(lambda: value(scrape(central.url), "mashang_central_gateway_silent",
                           gateway=QUIET) == 1, 10, what="the quiet gateway to count as silent")
    return {"gateway": scrape(gateway_url), "central": scrape(central.url)}


def test_promtool_accepts_both_scrapes(scrapes: dict[str, str]) -> None:
    for source, text in scrapes.items():
        checked = subprocess.run([promtool(), "check", "metrics"], input=text,
                                 capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0 and not checked.stdout.strip(), (
            f"promtool check metrics on the {source}'s /metrics:\n{checked.stdout}"
            f"{checked.stderr}")


def test_the_centrals_metrics_say_what_happened(scrapes: dict[str, str]) -> None:
    text = scrapes["central"]
    assert value(text, "mashang_central_events_accepted_total", gateway="gw-test",
                 kind="alert") >= 1
    assert value(text, "mashang_central_alerts", state="acknowledged", category="help") == 1
    assert value(text, "mashang_central_alerts", state="raised", category="help") == 0
    assert value(text, "mashang_central_press_to_acknowledge_seconds_count") == 1
    assert value(text, "mashang_central_press_to_acknowledge_seconds_bucket", le="+Inf") == 1
    assert value(text, "mashang_central_webhook_attempts_total", target="butler:b-wang",
                 format="wecom", outcome="delivered",
                 url=text.split('url="', 1)[1].split('"', 1)[0]) >= 1
    assert "wang-robot-key" not in text, "a robot's key leaked into /metrics"
    assert value(text, "mashang_central_gateway_silent", gateway="gw-test") == 0
    assert value(text, "mashang_central_gateway_silent", gateway=QUIET) == 1
    assert value(text, "mashang_central_gateways_silent") == 1
    assert value(scrapes["gateway"], "mashang_central_reachable") == 1


def test_promtool_checks_the_rules_and_runs_their_tests() -> None:
    checked = subprocess.run([promtool(), "check", "rules", str(DEPLOY / "prometheus-rules.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool(), "test", "rules",
                             str(DEPLOY / "prometheus-rules.test.yml")],
                            capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr


METRIC = re.compile(r"\bmashang_[a-z0-9_]+")


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8"))
    expressions = [target["expr"] for panel in dashboard["panels"]
                   for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            expressions.append(query["query"])
    return expressions


def test_the_dashboard_and_rules_use_only_metrics_a_scrape_has(
        scrapes: dict[str, str]) -> None:
    have = {name for text in scrapes.values() for name, _ in samples(text)}
    expressions = dashboard_expressions()
    panels = " ".join(expressions)
    for wanted in ("mashang_outbox_events", "mashang_uplink_events_sent_total",
                   "mashang_uplink_request_duration_seconds_bucket",
                   "mashang_central_reachable", "mashang_devices"):
        assert wanted in panels, f"the dashboard has no panel on {wanted}"
    rules = (DEPLOY / "prometheus-rules.yml").read_text(encoding="utf-8")
    used = {name for text in [*expressions, rules] for name in METRIC.findall(text)}
    assert used, "no metric found in the dashboard: the check would prove nothing"
    assert sorted(used - have) == []
