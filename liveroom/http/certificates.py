"""REST routes of certificates: issue, revoke, verify, the public keys, the QR code."""

from __future__ import annotations

from aiohttp import web

from trustbadges import CertificateService

from ..certification import CertificateDesk
from ..exceptions import Forbidden, InvalidInput
from ._base import Api, json_response

__all__ = ["CertificateRoutes"]


class CertificateRoutes:
    def __init__(self, api: Api, certificates: CertificateService, desk: CertificateDesk,
                 public_url: str | None) -> None:
        self.api = api
        self.certificates = certificates
        self.desk = desk
        self.public_url = public_url

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
        base = self.public_url or f"{request.scheme}://{request.host}"
        svg = await self.certificates.certificate_qr_svg(request.match_info["id"], base)
        return web.Response(text=svg, content_type="image/svg+xml")
