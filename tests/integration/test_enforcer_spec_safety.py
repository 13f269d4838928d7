"""No application can take a site down: a real enforcer refuses a bad reference or an
oversized spec with the path, stores nothing, and keeps running and restarting."""

from __future__ import annotations

import pytest
import yaml

from enforcer.cli.client import Client, ClientError
from tests.support.apps import app, sleeper
from tests.support.enforcer import EnforcerProc


def test_an_undefined_reference_is_refused_with_its_path_and_the_site_stays_up(
    enforcer: EnforcerProc, test_image: str
) -> None:
    bad = app(
        "bad",
        sleeper("worker", test_image, variables=[{"name": "URL", "value": "http://${NOPE}/"}]),
        sleeper("many", test_image, replicas=100_000),
    )
    refused = enforcer.cli("apply", "-f", "-", input=yaml.safe_dump(bad))
    assert refused.returncode == 1
    assert "services[0].variables[0].value: undefined variable ${NOPE}" in refused.stderr
    assert "services[1].replicas: must be at most 1000, got 100000" in refused.stderr
    assert "internal error" not in refused.stderr
    assert enforcer.app_names() == []  # nothing was stored

    enforcer.apply(app("good", sleeper("worker", test_image)))
    enforcer.wait_running("good.worker.0")
    assert enforcer.cli("rm", "bad").returncode == 1  # not found, not a 500
    enforcer.stop()
    enforcer.start()  # the enforcer starts again, with the good application
    enforcer.wait_running("good.worker.0")


def test_a_spec_without_a_name_is_refused_with_the_name_and_every_other_problem(
    enforcer: EnforcerProc, test_image: str
) -> None:
    nameless = app("x", sleeper("worker", test_image, replicas=-1))
    del nameless["name"]
    body = yaml.safe_dump(nameless)
    refused = enforcer.cli("apply", "-f", "-", input=body)  # the CLI checks before it sends
    assert refused.returncode == 1
    assert "name: required field is missing" in refused.stderr
    assert "services[0].replicas: must be at least 0, got -1" in refused.stderr
    with pytest.raises(ClientError) as caught:  # and so does the API
        Client(enforcer.socket).apply("x", body.encode(), "application/yaml")
    assert caught.value.status == 400
    assert "name: required field is missing" in caught.value.message
    assert "services[0].replicas: must be at least 0, got -1" in caught.value.message
