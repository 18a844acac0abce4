"""The layers hold: services never reach up to an interface or to request state, models never
call a service, and the jobs services hand work to exist where their names say.

Every import counts, those inside functions included (they used to hide cycles).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"
ROOT = APP.parent
# The interfaces (their packages and modules), which depend on the services, never the reverse.
INTERFACES = ("app.admin", "app.auth", "app.public", "app.experts", "app.inbound", "app.jobs", "app.cli")
# Request state: who asks, their session and cookies belong to the interface that serves them.
REQUEST_STATE = {"flask": {"request", "session", "g"}, "flask_login": {"current_user", "login_user", "logout_user"}}


def _imports(path: Path) -> list[tuple[int, str, set[str]]]:
    """``(line, module, names)`` of every import in ``path``, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, set()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, {alias.name for alias in node.names}))
    return found


def _violations(folder: str, forbidden) -> list[str]:
    problems = []
    for path in sorted((APP / folder).rglob("*.py")):
        for line, module, names in _imports(path):
            reason = forbidden(module, names)
            if reason:
                problems.append(f"{path.relative_to(APP.parent)}:{line} imports {module} ({reason})")
    return problems


def _service_rule(module: str, names: set[str]) -> str | None:
    if any(module == top or module.startswith(top + ".") for top in INTERFACES):
        return "an interface"
    if module == "app" and names & {"admin", "jobs", "auth", "public", "experts", "inbound", "cli"}:
        return "an interface"
    state = names & REQUEST_STATE.get(module, set())
    if state:
        return f"request state: {', '.join(sorted(state))}"
    return None


def _model_rule(module: str, names: set[str]) -> str | None:
    if module.startswith("app.services") or (module == "app" and "services" in names):
        return "a service"
    return _service_rule(module, names)


def test_services_import_no_interface_and_no_request_state():
    assert _violations("services", _service_rule) == []


def test_models_import_no_service():
    assert _violations("models", _model_rule) == []


def test_the_rule_sees_what_it_forbids(tmp_path, monkeypatch):
    """Guard: the walker finds a nested import of each kind it forbids."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f():\n    from app.jobs import x\n    from flask import request\n    import app.admin.base\n"
        "    from app.services.messaging import outbox\n"
    )
    found = [(module, _service_rule(module, names), _model_rule(module, names)) for _, module, names in _imports(bad)]
    assert found == [
        ("app.jobs", "an interface", "an interface"),
        ("flask", "request state: request", "request state: request"),
        ("app.admin.base", "an interface", "an interface"),
        ("app.services.messaging", None, "a service"),
    ]


@pytest.mark.parametrize("job", __import__("app.services.queueing", fromlist=["JOBS"]).JOBS, ids=lambda job: job.path)
def test_every_job_a_service_names_is_a_job_of_app_jobs_on_its_queue(app, job):
    module, _, name = job.path.rpartition(".")
    wrapper = getattr(importlib.import_module(module), name)
    assert wrapper.queue == job.queue
    assert job.queue in app.config["RQ_QUEUES"]


def _session_calls(path: Path, names: set[str]) -> list[int]:
    """Lines of ``db.session.<name>()`` calls in ``path``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in names
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == "session"
            and isinstance(node.func.value.value, ast.Name)
            and node.func.value.value.id == "db"
        ):
            lines.append(node.lineno)
    return lines


def test_services_flush_and_the_outermost_caller_commits():
    """One transaction convention: no service commits or rolls back the caller's session (the
    helper ``services.transactions`` is where the interfaces do)."""
    found = {
        str(path.relative_to(APP.parent)): lines
        for path in sorted((APP / "services").rglob("*.py"))
        if path.name != "transactions.py" and (lines := _session_calls(path, {"commit", "rollback"}))
    }
    assert found == {}


# ---------------------------------------------------------------- what tests are told


def test_a_template_printing_an_unknown_variable_fails_under_test(app):
    """A typo in a template must fail the test that renders it, not render blank."""
    from flask import render_template_string
    from jinja2 import UndefinedError

    with app.test_request_context():
        assert render_template_string("{% if absent %}x{% endif %}ok") == "ok"  # optional parts stay optional
        with pytest.raises(UndefinedError):
            render_template_string("{{ a_typo }}")
        with pytest.raises(UndefinedError):
            render_template_string("{{ user.no_such_field }}", user=object())


def test_production_installs_no_test_or_lint_tool():
    """requirements.txt is what production installs; the tools of tests and lint live apart."""
    pins = {
        line.split("==")[0].strip().lower().replace("_", "-")
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    dev_only = {"pytest", "pytest-xdist", "pytest-timeout", "playwright", "axe-playwright-python", "aiosmtpd"}
    dev_only |= {"hypothesis", "ruff", "factory-boy", "faker", "pip-tools"}
    assert pins.isdisjoint(dev_only), pins & dev_only
    assert {"flask", "flask-admin", "sqlalchemy", "rq", "psycopg"} <= pins


def test_test_modules_share_through_the_kit_not_through_each_other():
    """What several test modules need lives in factories.py, helpers.py or conftest.py."""
    problems = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for line, module, _names in _imports(path)
        if module.split(".")[-1].startswith("test_") and module.startswith("tests.")
    ]
    assert problems == []


def test_starting_the_app_loads_no_password_dictionary():
    """zxcvbn's lists (12 MiB) are for the moment a password is chosen, not for every worker."""
    import subprocess
    import sys

    probe = "import sys; from app import create_app; create_app(); print('zxcvbn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
