"""The OpenAPI schema documents the fleet API's replies as they really are: each reply, written by the resource's
serializer from its rows (fleet/api/rows.py), matches the schema drf-spectacular reads from the same serializer."""

import pytest

from fleet.choices import EnvState, HostState, VmState
from fleet.models import Environment, Host, Vm

from .helpers import agent_info, ssh_key

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.urls("ttproject.urls.controller")]

JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list,
              "object": dict}


def resolve(schema: dict, components: dict) -> dict:
    """Follow $ref and single-element allOf wrappers (spectacular's way of adding meta to a $ref, such as
    `nullable`: kept)."""
    while True:
        if "$ref" in schema:
            meta = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**components[schema["$ref"].rsplit("/", 1)[-1]], **meta}
        elif len(schema.get("allOf", ())) == 1:
            schema = {**schema["allOf"][0], **{k: v for k, v in schema.items() if k != "allOf"}}
        else:
            return schema


def check(value, schema: dict, components: dict, where: str = "$"):
    """Assert `value` (a decoded JSON reply) matches `schema`: no undocumented keys, every required key
    present, types and enums as documented, all the way down."""
    schema = resolve(schema, components)
    if value is None:
        assert schema.get("nullable"), f"{where} is null but not documented nullable"
        return
    if "type" in schema:
        assert isinstance(value, JSON_TYPES[schema["type"]]) and not (
            schema["type"] in ("integer", "number") and isinstance(value, bool)), \
            f"{where}: {value!r} is not {schema['type']}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, list):
        for i, item in enumerate(value):
            check(item, schema.get("items", {}), components, f"{where}[{i}]")
    elif isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        assert set(value) <= set(props), f"{where}: undocumented keys {sorted(set(value) - set(props))}"
        assert set(schema.get("required", ())) <= set(value), \
            f"{where}: documented as required but missing {sorted(set(schema['required']) - set(value))}"
        for key, item in value.items():
            check(item, props[key], components, f"{where}.{key}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            check(item, schema["additionalProperties"], components, f"{where}.{key}")


def reply_schema(spec: dict, path: str, method: str, code: str) -> dict:
    return spec["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"]


def test_env_reply_matches_the_documented_environment_schema(client):
    host = Host(addr="127.0.0.1:1", state=HostState.ONLINE)
    host.apply_info(agent_info())
    host.save()
    env = Environment.objects.create(id="doc-env", owner="alice", ssh_keys=[ssh_key()], lifetime=0,
                                     state=EnvState.ACTIVE)
    Vm.objects.create(id="doc-env-0", env=env, index=0, host=host, image="alpine", engine="qemu", cpu=1,
                      mem=512, disk=1024, ports=[22, 80], state=VmState.RUNNING, ip="10.0.0.5",
                      port_map={"22": 40022, "80": 40080}, publish_addr="127.0.0.1")
    Vm.objects.create(id="doc-env-1", env=env, index=1, host=None, image="t", engine="docker", cpu=1,
                      mem=64, disk=64, state=VmState.DELETED, gone=True)

    r = client.get("/api/schema/?format=json")
    assert r.status_code == 200
    spec = r.json()
    components = spec["components"]["schemas"]
    reply = client.get("/api/envs/doc-env")
    assert reply.status_code == 200
    body = reply.json()

    schema = reply_schema(spec, "/api/envs/{id}", "get", "200")
    assert schema == {"$ref": "#/components/schemas/Environment"}
    env_schema = components["Environment"]
    documented, required = set(env_schema["properties"]), set(env_schema["required"])
    assert set(body) <= documented, f"undocumented reply keys: {sorted(set(body) - documented)}"
    assert required <= set(body), f"required but not in the reply: {sorted(required - set(body))}"
    assert "ssh_keys" in body and len(body["vms"]) == 2 and body["vms"][1]["host"] is None
    check(body, schema, components)  # nested too: the VMs against the Vm schema, states against enums

    # the 404 of the same endpoint is the documented error body
    missing = client.get("/api/envs/nope")
    assert missing.status_code == 404
    check(missing.json(), reply_schema(spec, "/api/envs/{id}", "get", "404"), components)


def test_other_replies_match_their_schemas(client):
    host = Host(addr="127.0.0.1:1", state=HostState.ONLINE, last_seen=None)
    host.apply_info(agent_info())
    host.save()
    env = Environment.objects.create(id="e", ssh_keys=[ssh_key()], state=EnvState.ACTIVE)
    Vm.objects.create(id="e-0", env=env, host=host, image="alpine", engine="qemu", cpu=1, mem=512, disk=1024,
                      state=VmState.RUNNING)
    spec = client.get("/api/schema/?format=json").json()
    components = spec["components"]["schemas"]
    for path, doc_path in (("/api/envs", "/api/envs"), ("/api/vms/e-0", "/api/vms/{id}"),
                           ("/api/hosts", "/api/hosts"), (f"/api/hosts/{host.id}", "/api/hosts/{id}"),
                           ("/api/images", "/api/images"), ("/api/status", "/api/status")):
        r = client.get(path)
        assert r.status_code == 200, path
        check(r.json(), reply_schema(spec, doc_path, "get", "200"), components, path)
    r = client.post("/api/envs/e/stop")
    assert r.status_code == 202
    check(r.json(), reply_schema(spec, "/api/envs/{id}/stop", "post", "202"), components, "stop")
    r = client.post("/api/envs", {"id": "x"}, content_type="application/json")
    assert r.status_code == 400 and "errors" in r.json()
    check(r.json(), reply_schema(spec, "/api/envs", "post", "400"), components, "400")
