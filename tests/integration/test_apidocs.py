"""/docs: Swagger UI from the live OpenAPI document, every asset served by the app itself."""

from __future__ import annotations

import re


def test_docs_page_loads_swagger_ui_from_this_server_only(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/docs/assets/swagger-ui-bundle.js" in assets
    assert "/docs/assets/swagger-ui.css" in assets
    assert all(asset.startswith("/docs/assets/") for asset in assets), assets
    assert 'url: "/openapi.json"' in html


def test_every_asset_the_page_names_is_served(client):
    html = client.get("/docs").get_data(as_text=True)
    for asset in re.findall(r'(?:src|href)="([^"]+)"', html):
        with client.get(asset) as response:  # a file response: close it
            assert response.status_code == 200, asset
            assert len(response.data) > 1000, asset
    with client.get("/docs/assets/swagger-ui-bundle.js") as response:
        assert response.mimetype == "text/javascript"


def test_no_file_outside_the_assets_is_reachable(client):
    assert client.get("/docs/assets/../../__init__.py").status_code == 404
    assert client.get("/docs/assets/%2e%2e/%2e%2e/setup.cfg").status_code == 404
    assert client.get("/docs/assets/missing.js").status_code == 404


def test_the_docs_page_allows_only_its_own_script(client):
    page = client.get("/docs")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    # Exactly one inline script, allowed by its hash; 'unsafe-inline' never for scripts.
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    assert script_src.count("'sha256-") == 1 and "unsafe-inline" not in script_src
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
