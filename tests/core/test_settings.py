"""Settings: one declaration per variable, docs generated from it, values typed, overridable in tests."""

import re

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tests.conftest import ROOT
from ttproject.settings.catalogue import read, render_markdown
from ttproject.settings.variables import GROUPS, VARIABLES

SOURCES = ("agent", "fleet", "localvm", "ttproject")
# A variable name in code: TTSTACK_..., or the two unprefixed ones. A name ending in "_" is a prefix that the
# code completes (e.g. f"TTSTACK_TART_TIMEOUT_{cmd}").
NAME = re.compile(r"\b(TTSTACK_[A-Z0-9_]+|DATABASE_URL|REDIS_URL)\b")


def test_docs_are_generated_from_the_declarations():
    written = (ROOT / "docs" / "settings.md").read_text()
    assert written == render_markdown(GROUPS), "docs/settings.md is stale: run `python -m ttproject.settings`"


def test_every_variable_the_code_names_is_declared():
    declared = {v.env for v in VARIABLES}
    named = {}
    for package in SOURCES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for name in NAME.findall(path.read_text()):
                named.setdefault(name, path.relative_to(ROOT))
    def is_declared(name):
        return name in declared or (name.endswith("_") and any(d.startswith(name) for d in declared))

    undeclared = {name: str(where) for name, where in named.items() if not is_declared(name)}
    assert not undeclared, f"declare these in ttproject/settings/variables.py: {undeclared}"


def test_every_declaration_is_a_setting_of_its_type():
    assert len({v.env for v in VARIABLES}) == len(VARIABLES)
    for variable in VARIABLES:
        if variable.setting:
            assert hasattr(settings, variable.setting), variable.setting
    engine_options = GROUPS[3].variables
    assert all(v.setting == "AGENT_" + v.env.removeprefix("TTSTACK_") for v in engine_options)


def _read(tmp_path, **environment):
    return read(GROUPS, {"TTSTACK_DATA_DIR": str(tmp_path), **environment})


def test_values_are_typed_with_their_defaults(tmp_path):
    values = _read(tmp_path, TTSTACK_ROLE="localvm", TTSTACK_HEARTBEAT="2.5",
                   TTSTACK_ENGINES=" docker , qemu ", TTSTACK_PORT_RANGE="30000-30010", TTSTACK_DEBUG="yes",
                   TTSTACK_API_KEY="")
    assert values["FLEET_HEARTBEAT"] == 2.5 and values["FLEET_HOST_TIMEOUT"] == 10.0
    assert values["AGENT_ENGINES"] == ["docker", "qemu"] and values["AGENT_PORT_RANGE"] == (30000, 30010)
    assert values["DEBUG"] is True and values["API_KEY"] is None  # blank counts as unset
    # Role-dependent defaults follow the role read before them.
    assert values["PORT"] == 8000 and values["TASK_TIMEOUT"] == 3700
    assert values["QUEUE_NAME"] == "ttstack-localvm"
    assert values["DATA_DIR"] == tmp_path and values["QUEUE"] == "orm"
    # The secret key is generated once, private, and kept.
    key_file = tmp_path / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and values["SECRET_KEY"] == key_file.read_text().strip()
    assert _read(tmp_path)["SECRET_KEY"] == values["SECRET_KEY"]


@pytest.mark.parametrize(("variable", "raw", "says"), [
    ("TTSTACK_HEARTBEAT", "soon", "TTSTACK_HEARTBEAT='soon'"),
    ("TTSTACK_PORT_RANGE", "9-1", "TTSTACK_PORT_RANGE='9-1'"),
    ("TTSTACK_PORT_RANGE", "20000", "TTSTACK_PORT_RANGE='20000'"),
    ("TTSTACK_ROLE", "worker", "TTSTACK_ROLE must be one of controller, agent, localvm"),
    ("TTSTACK_QEMU_ACCEL", "fast", "TTSTACK_QEMU_ACCEL must be one of auto, kvm, tcg"),
])
def test_a_bad_value_names_its_variable(tmp_path, variable, raw, says):
    with pytest.raises(ImproperlyConfigured) as refused:
        _read(tmp_path, **{variable: raw})
    assert says in str(refused.value)


def test_override_settings_reaches_every_app_conf():
    from agent import conf as agent_conf
    from fleet import conf as fleet_conf
    from localvm import conf as localvm_conf
    from localvm import tart

    with override_settings(FLEET_HEARTBEAT=0.5, AGENT_PUBLISH_ADDR="127.0.0.9", AGENT_PORT_RANGE=(4000, 4001),
                           LOCALVM_TART_BIN="/nonexistent/tart", LOCALVM_TART_TIMEOUT_GET=2.0):
        assert fleet_conf.HEARTBEAT == 0.5
        assert agent_conf.publish_addr() == "127.0.0.9" and agent_conf.port_range() == (4000, 4001)
        assert localvm_conf.TART_BIN == "/nonexistent/tart" and tart.timeout("get") == 2.0
        with pytest.raises(tart.TartMissing):
            tart.version()
    assert fleet_conf.HEARTBEAT == settings.FLEET_HEARTBEAT != 0.5
    assert agent_conf.publish_addr() != "127.0.0.9" and localvm_conf.TART_BIN != "/nonexistent/tart"


def test_engine_options_are_read_by_their_variable():
    from agent import conf

    with override_settings(AGENT_JAIL_IF="lo7"):
        assert conf.option("TTSTACK_JAIL_IF") == "lo7"
    assert conf.option("TTSTACK_JAIL_IF") == "lo1"
