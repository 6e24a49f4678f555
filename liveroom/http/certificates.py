"""REST routes of certificates: issue, revoke, verify, the public keys, the QR code."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

from trustbadges import CertificateService

from ..certification import CertificateDesk
from ..exceptions import Forbidden, HostNotAllowed, InvalidInput
from ..settings import Settings
from ._base import Api, json_response

__all__ = ["CertificateRoutes", "LinkOrigin", "default_allowed_hosts"]

# A QR code from the configured public URL is the same for everyone and changes only with the
# configuration; one built from an allowed Host header may differ per Host, so it is kept by the
# browser alone, briefly, and caches key it by Host.
PUBLIC_QR_CACHE = "public, max-age=86400"
HOST_QR_CACHE = "private, max-age=300"
DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_key(host: str, scheme: str) -> str:
    """``host:port`` lowercased, with the scheme's port when none is written."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host.partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        name += "]"
    else:
        name, _, port = host.partition(":")
    return f"{name.rstrip('.')}:{port or DEFAULT_PORTS.get(scheme, 80)}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(settings: Settings) -> tuple[str, ...]:
    """``LIVEROOM_ALLOWED_HOSTS``, or the bind address ``host:port`` (and ``localhost:port``
    when bound to loopback)."""
    if settings.allowed_hosts:
        return settings.allowed_hosts
    host = settings.host
    bound = f"[{host}]" if ":" in host else host
    hosts = [f"{bound}:{settings.port}"]
    if _is_loopback(host):
        hosts.append(f"localhost:{settings.port}")
    return tuple(dict.fromkeys(hosts))


class LinkOrigin:
    """The origin (``scheme://host[:port]``) of the links the server hands out (QR codes):
    ``LIVEROOM_PUBLIC_URL``, or else the request's ``Host`` when it is one of the allowed hosts.
    Any other ``Host`` is refused (``HostNotAllowed``) rather than answered with a link to the
    bind address: a QR code printed for a customer must point where the operator said, or
    nowhere."""

    def __init__(self, public_url: str | None, allowed_hosts: Iterable[str]) -> None:
        self.public_url = public_url.rstrip("/") if public_url else None
        self.allowed_hosts = tuple(allowed_hosts)

    def of(self, request: web.Request) -> tuple[str, bool]:
        """``(origin, from_host)``; ``from_host`` when it was built from the Host header."""
        if self.public_url is not None:
            return self.public_url, False
        scheme = request.scheme
        host = request.headers.get("Host", "")
        allowed = {_host_key(entry, scheme) for entry in self.allowed_hosts}
        if not host or _host_key(host, scheme) not in allowed:
            raise HostNotAllowed(host)
        return f"{scheme}://{host.strip().lower()}", True


class CertificateRoutes:
    def __init__(self, api: Api, certificates: CertificateService, desk: CertificateDesk,
                 links: LinkOrigin) -> None:
        self.api = api
        self.certificates = certificates
        self.desk = desk
        self.links = links

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/certificates", self.issue)
        router.add_get("/api/certificates", self.list)
        router.add_get("/api/certificates/keys", self.keys)
        router.add_get("/api/certificates/{id}", self.get)
        router.add_post("/api/certificates/{id}/revoke", self.revoke)
        router.add_get("/api/certificates/{id}/qr.svg", self.qr)
        router.add_get("/api/certificates/{id}/audit", self.audit)

    async def issue(self, request: web.Request) -> web.Response:
        user = self.api.user(request)
        payload = await self.api.payload(request)
        body = payload.raw_object()
        certificate = await self.desk.issue(user, payload, body)
        return json_response(certificate.to_dict(), 201)

    async def list(self, request: web.Request) -> web.Response:
        product = request.query.get("product")
        anchor = request.query.get("anchor")
        if product:
            found = await self.certificates.certificates_for_product(product)
        elif anchor:
            found = await self.certificates.certificates_for_anchor(
                anchor, request.query.get("category") or None)
        else:
            raise InvalidInput("name a product=ID or an anchor=ID")
        return json_response({"certificates": [v.to_dict() for v in found]})

    async def keys(self, request: web.Request) -> web.Response:
        return json_response(self.certificates.public_keys())

    async def get(self, request: web.Request) -> web.Response:
        verification = await self.certificates.get(request.match_info["id"])
        return json_response(verification.to_dict())

    async def revoke(self, request: web.Request) -> web.Response:
        user = self.api.user(request)
        reason = (await self.api.payload(request)).raw("reason")
        verification = await self.certificates.revoke(
            user.id, user.role.value, request.match_info["id"], reason)
        return json_response(verification.to_dict())

    async def audit(self, request: web.Request) -> web.Response:
        user = self.api.user(request)
        if user.role.value not in ("inspector", "admin"):
            raise Forbidden("only inspectors and admins read the audit trail")
        entries = await self.certificates.audit_trail(request.match_info["id"])
        return json_response({"audit": [entry.to_dict() for entry in entries]})

    async def qr(self, request: web.Request) -> web.Response:
        base, from_host = self.links.of(request)
        svg = await self.certificates.certificate_qr_svg(request.match_info["id"], base)
        response = web.Response(text=svg, content_type="image/svg+xml")
        if from_host:
            response.headers["Cache-Control"] = HOST_QR_CACHE
            response.headers["Vary"] = "Host"
        else:
            response.headers["Cache-Control"] = PUBLIC_QR_CACHE
        return response
