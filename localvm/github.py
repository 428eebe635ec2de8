"""The image catalogue: cirruslabs' `macos-*` container packages and their tags, from the GitHub REST API.

The token is kept in DATA_DIR/localvm/github_token (0600 from the moment it exists, never in the database)
and never returned whole. Listings follow `Link: rel="next"` pagination and are kept in Django's cache for
GITHUB_CACHE_TTL seconds per token. Any GitHub failure raises GitHubError with a readable reason, so the
API can answer 502 instead of an empty list that looks like "no images".
"""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
from django.conf import settings
from django.core.cache import cache

from . import conf

IMAGE_PREFIX = "macos-"


class GitHubError(Exception):
    """GitHub failed or refused; the message says why."""


class TokenMissing(Exception):
    pass


def token_path() -> Path:
    return Path(settings.DATA_DIR) / "localvm" / "github_token"


def get_token() -> str | None:
    try:
        return token_path().read_text().strip() or None
    except FileNotFoundError:
        return None


def set_token(token: str | None) -> None:
    """Store the token (None or "" clears it); the catalogue is fetched again with the new one."""
    old = get_token()
    path = token_path()
    if token:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fresh = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        os.replace(fresh, path)
    else:
        path.unlink(missing_ok=True)
    cache.delete_many([_catalogue_key(t) for t in (old, token) if t])


def masked(token: str | None) -> str | None:
    if not token:
        return None
    if len(token) < 12:
        return "***"
    return f"{token[:4]}...{token[-3:]}"


def token_status() -> dict:
    token = get_token()
    return {"configured": bool(token), "masked_token": masked(token)}


def _catalogue_key(token: str) -> str:
    where = f"{conf.GITHUB_API} {conf.GITHUB_ORG} {token}"
    return "localvm.github." + hashlib.sha256(where.encode()).hexdigest()[:40]


def _reason(reply: httpx.Response) -> str:
    try:
        message = reply.json().get("message")
    except (ValueError, AttributeError):
        message = None
    message = message or reply.text[:200].strip() or reply.reason_phrase
    if reply.status_code == 401:
        return f"GitHub rejected the token (401: {message}); set a valid one with POST /api/settings/github-token"
    if reply.status_code in (403, 429) and reply.headers.get("x-ratelimit-remaining") == "0":
        return f"GitHub rate limit exceeded ({reply.status_code}: {message})"
    if reply.status_code in (403, 404):
        return (f"GitHub refused the listing ({reply.status_code}: {message}); the token needs the "
                "read:packages scope")
    return f"GitHub answered {reply.status_code}: {message}"


def _get_all(client: httpx.Client, url: str, params: dict | None) -> list:
    """Every item of a paginated listing, following Link rel="next"."""
    items: list = []
    for _ in range(conf.GITHUB_MAX_PAGES):
        try:
            reply = client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise GitHubError(f"GitHub could not be reached at {conf.GITHUB_API}: {exc}") from None
        if reply.status_code != 200:
            raise GitHubError(_reason(reply))
        try:
            page = reply.json()
        except ValueError:
            raise GitHubError(f"GitHub answered something that is not JSON from {url}") from None
        if not isinstance(page, list):
            raise GitHubError(f"GitHub answered an unexpected document from {url}")
        items.extend(page)
        following = reply.links.get("next", {}).get("url")
        if not following:
            break
        url, params = following, None  # the next link carries its own query
    return items


def _tags(client: httpx.Client, package: str) -> list[str]:
    url = f"{conf.GITHUB_API}/orgs/{quote(conf.GITHUB_ORG, safe='')}/packages/container/{quote(package, safe='')}/versions"
    tags: set[str] = set()
    for version in _get_all(client, url, {"per_page": 100}):
        container = ((version or {}).get("metadata") or {}).get("container") or {}
        tags.update(t for t in container.get("tags") or [] if isinstance(t, str))
    return sorted(tags, key=lambda t: (t != "latest", t))


def _image(package: dict, tags: list[str]) -> dict:
    name = package["name"]
    tag = "latest" if "latest" in tags or not tags else tags[0]
    description = package.get("description") or (package.get("repository") or {}).get("description")
    return {
        "name": name,
        "url": f"ghcr.io/{conf.GITHUB_ORG}/{name}:{tag}",
        "description": description,
        "tags": tags,
        "updated_at": package.get("updated_at"),
    }


def list_images(*, force: bool = False) -> list[dict]:
    """The macOS images with their tags (cached); raise TokenMissing or GitHubError."""
    token = get_token()
    if not token:
        raise TokenMissing("No GitHub token is configured: set one with POST /api/settings/github-token "
                           "(a personal access token with read:packages).")
    key = _catalogue_key(token)
    if not force and (hit := cache.get(key)) is not None:
        return hit
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
               "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "ttstack-localvm"}
    with httpx.Client(headers=headers, timeout=conf.GITHUB_TIMEOUT, follow_redirects=True) as client:
        url = f"{conf.GITHUB_API}/orgs/{quote(conf.GITHUB_ORG, safe='')}/packages"
        packages = [p for p in _get_all(client, url, {"package_type": "container", "per_page": 100})
                    if isinstance(p, dict) and str(p.get("name", "")).startswith(IMAGE_PREFIX)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            all_tags = list(pool.map(lambda p: _tags(client, p["name"]), packages))
    images = sorted((_image(p, t) for p, t in zip(packages, all_tags, strict=True)), key=lambda i: i["name"])
    cache.set(key, images, timeout=conf.GITHUB_CACHE_TTL)
    return images
