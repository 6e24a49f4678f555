"""REST routes of buyer accounts: a one-time code by SMS, then a buyer token."""

from __future__ import annotations

from aiohttp import web

from ..accounts import AccountService
from ..addresses import ClientAddresses
from ..exceptions import Forbidden, Unauthorized
from ..identity import Role, TokenSigner, User, new_user_id, validate_name
from ..rooms import is_guest
from ._base import Api, json_response

__all__ = ["AccountRoutes"]


class AccountRoutes:
    def __init__(self, api: Api, signer: TokenSigner, accounts: AccountService,
                 addresses: ClientAddresses) -> None:
        self.api = api
        self.signer = signer
        self.accounts = accounts
        self.addresses = addresses

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/session", self.guest_session)
        router.add_post("/api/accounts/otp", self.send_code)
        router.add_post("/api/accounts/verify", self.verify)
        router.add_post("/api/accounts/test-buyers", self.test_buyers)

    async def guest_session(self, request: web.Request) -> web.Response:
        """A guest: may watch and chat, not buy."""
        payload = await self.api.payload(request)
        name = validate_name(payload.raw("name"))
        await self.accounts.admit_guest_session(self.addresses.of_request(request))
        user = User(id=new_user_id(), name=name, role=Role.VIEWER)
        return json_response({"token": self.signer.issue(user), "user": user.public()}, 201)

    async def send_code(self, request: web.Request) -> web.Response:
        payload = await self.api.payload(request)
        sent = await self.accounts.request_code(payload.raw("phone"),
                                                self.addresses.of_request(request))
        return json_response({"ok": True, **sent.public()}, 202)

    async def verify(self, request: web.Request) -> web.Response:
        payload = await self.api.payload(request)
        user = await self.accounts.verify(payload.raw("phone"), payload.raw("code"),
                                          payload.raw("name"))
        # Signed in from a guest session (its token sent along): the same person.
        try:
            guest = self.api.optional_user(request)
        except Unauthorized:
            guest = None  # an old session: the account is made all the same
        if guest is not None and is_guest(guest):
            await self.accounts.remember_guest(user, guest)
        return json_response({"token": self.signer.issue(user), "user": user.public()})

    async def test_buyers(self, request: web.Request) -> web.Response:
        if not self.api.user(request).is_admin:
            raise Forbidden("test buyers are minted by an admin")
        payload = await self.api.payload(request)
        count = payload.integer("count", minimum=1, maximum=10_000)
        prefix = payload.text("prefix", max_chars=24, required=False) or "tb"
        buyers = self.accounts.test_buyers(count, prefix)
        return json_response({"buyers": [
            {"token": self.signer.issue(user), "user": user.public(), "phone": phone}
            for user, phone in buyers]}, 201)
