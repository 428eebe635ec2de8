"""The agent's OpenAPI schema says what the server does: error replies, patterns and limits."""

from __future__ import annotations

import re

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator(urlconf="ttproject.urls.agent").get_schema(request=None, public=True)


def responses(schema, path: str, method: str) -> dict:
    return schema["paths"][path][method]["responses"]


def test_every_endpoint_documents_its_errors_with_the_error_body(schema):
    expected = {("/api/info", "get"): {"401"}, ("/api/images", "get"): {"401"}, ("/api/vms", "get"): {"401"},
                ("/api/vms", "post"): {"400", "401", "409", "422", "500"},
                ("/api/vms/{id}", "get"): {"401", "404"}, ("/api/vms/{id}", "delete"): {"401", "404", "502"},
                ("/api/vms/{id}/stop", "post"): {"401", "404", "409", "422", "502"},
                ("/api/vms/{id}/start", "post"): {"401", "404", "409", "422", "502"}}
    for (path, method), codes in expected.items():
        documented = responses(schema, path, method)
        assert codes <= set(documented), (path, method, sorted(documented))
        for code in codes - {"500"}:
            ref = documented[code]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/ApiError"  # the one error body of every role
    assert schema["components"]["schemas"]["ApiError"]["required"] == ["detail"]
    error_bodies = [name for name, component in schema["components"]["schemas"].items()
                    if set(component.get("properties", ())) == {"detail", "errors"}]
    assert error_bodies == ["ApiError"]
    failed = responses(schema, "/api/vms", "post")["500"]["content"]["application/json"]["schema"]["$ref"]
    assert set(schema["components"]["schemas"][failed.rsplit("/", 1)[1]]["properties"]) == {"detail", "vm"}


def test_create_request_patterns_and_minimums_match_the_server(schema):
    props = schema["components"]["schemas"]["CreateVmRequest"]["properties"]
    name, hostname = re.compile(props["id"]["pattern"]), re.compile(props["hostname"]["pattern"])
    assert name.search("web-1") and not name.search(".dot") and not name.search("a/b")
    assert hostname.search("web-1") and not hostname.search("-web") and not hostname.search("web.example")
    assert props["hostname"]["maxLength"] == 63 and props["id"]["maxLength"] == 128
    assert (props["cpu"]["minimum"], props["mem"]["minimum"], props["disk"]["minimum"]) == (1, 16, 0)  # 0: docker
    assert props["ports"]["maxItems"] == 256 and props["ports"]["items"]["maximum"] == 65535
    engine = props["engine"].get("$ref") or props["engine"]["allOf"][0]["$ref"]
    assert schema["components"]["schemas"][engine.rsplit("/", 1)[1]]["enum"] == [
        "qemu", "firecracker", "docker", "bhyve", "jail"]
