"""Each role as a real server: its API docs render from our own static files, its OpenAPI schema is valid,
and errors are JSON with a `detail`, never an HTML page."""

import re

import httpx
import pytest
import yaml
from openapi_spec_validator import validate

# A POST route of each role that parses a JSON body.
POST_ROUTE = {"controller": "/api/envs", "agent": "/api/vms", "localvm": "/api/vms/pull"}


@pytest.mark.parametrize("role", ["controller", "agent", "localvm"])
def test_role_docs_schema_and_json_errors(role_server, role):
    server = role_server(role)
    with server.client() as client:
        docs = client.get("/api/docs/")
        assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
        assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
        assert assets and all(a.startswith("/") for a in assets), f"external assets in docs page: {assets}"
        for asset in assets:
            assert client.get(asset).status_code == 200, asset

        schema = client.get("/api/schema/")
        assert schema.status_code == 200
        spec = yaml.safe_load(schema.text)
        validate(spec)
        assert any(path.startswith("/api/") for path in spec["paths"])

        missing = client.get("/api/no/such/route")
        assert missing.status_code == 404 and "detail" in missing.json()

        bad = client.post(POST_ROUTE[role], content=b"{not json", headers={"Content-Type": "application/json"})
        assert bad.status_code == 400, bad.text
        assert "JSON parse error" in bad.json()["detail"]

    denied = httpx.get(f"{server.url}/api/health")
    assert denied.status_code == 401
    assert denied.headers["content-type"].startswith("application/json") and denied.json()["detail"]
