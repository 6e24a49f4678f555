// @ts-check
// The protocol's payloads (docs/protocol.md) as JSDoc types, for `tsc` (make lint-js). Nothing
// runs here: pages import the types with `/** @import { Sale } from "./types.js" */`.

/** @typedef {"viewer" | "anchor" | "inspector" | "admin"} Role */

/**
 * A signed-in person (`GET /api/me`, a session).
 * @typedef {object} User
 * @property {string} id
 * @property {string} name
 * @property {Role} role
 * @property {boolean} [phone_verified] true for a buyer account (needed to buy)
 */

/**
 * `POST /api/session` and `POST /api/accounts/verify`.
 * @typedef {object} Session
 * @property {string} token
 * @property {User} user
 */

/**
 * `POST /api/accounts/otp`.
 * @typedef {object} OtpSent
 * @property {string} phone as stored, `+<digits>`
 * @property {string} [code] only from a server with LIVEROOM_OTP_ECHO (demo, tests)
 */

/**
 * A trust badge: a certificate's, or a platform guarantee (`certificate` null).
 * @typedef {object} Badge
 * @property {string} kind
 * @property {string} label
 * @property {string | null} certificate
 * @property {string | null} [verify_url]
 */

/**
 * @typedef {object} Product
 * @property {string} id
 * @property {string} anchor_id
 * @property {string} title
 * @property {string} category
 * @property {string} brand
 * @property {number} price_cents
 * @property {number} created_at
 * @property {Badge[]} [badges]
 */

/** @typedef {"scheduled" | "live" | "sold_out" | "ended"} SaleStatus */

/**
 * A flash sale (room state `sale`, the `sale` push, the sale endpoints).
 * @typedef {object} Sale
 * @property {string} id
 * @property {string} room
 * @property {string} product
 * @property {string} title
 * @property {string} category
 * @property {SaleStatus} status
 * @property {number} stock
 * @property {number} remaining
 * @property {number} held
 * @property {number} sold
 * @property {number} price_cents
 * @property {number} per_user_limit
 * @property {number} hold_s
 * @property {number} starts_at
 * @property {number} ends_at
 * @property {"time" | "anchor" | "room_ended" | null} [ended_reason]
 * @property {Badge[]} [badges]
 * @property {number} server_time
 */

/**
 * The `stock` push.
 * @typedef {object} StockUpdate
 * @property {string} sale
 * @property {number} remaining
 * @property {number} held
 * @property {number} sold
 * @property {SaleStatus} status
 */

/**
 * A hold on units of a sale, waiting for checkout.
 * @typedef {object} Reservation
 * @property {string} id
 * @property {number} qty
 * @property {number} price_cents
 * @property {number} expires_at
 */

/**
 * The `chat` push, and the room state's `chat`. `user.role` is the speaker's role in this room:
 * pages mark the host by it, never by the name.
 * @typedef {object} ChatMessage
 * @property {string} room
 * @property {{id: string, name: string, role: Role}} user
 * @property {string} text
 * @property {number} ts
 */

/**
 * The `moderation` push.
 * @typedef {object} ModerationEvent
 * @property {"muted" | "unmuted" | "banned" | "slow_mode"} action
 * @property {string} room
 * @property {string} [user]
 * @property {number | null} [until]
 * @property {number} [seconds]
 */

/**
 * The `media` push and the room state's `media`.
 * @typedef {object} Media
 * @property {string} room
 * @property {boolean} live
 * @property {number | null} [bitrate_kbps]
 * @property {number | null} [fps]
 * @property {number} [viewers] WebRTC viewers of the broadcast
 * @property {number | null} [seats] WebRTC viewers allowed (the rest watch LL-HLS); null: no limit
 * @property {string | null} [codec]
 * @property {string | null} [audio_codec]
 * @property {number | null} [since_ms]
 */

/**
 * Given by `join`, `GET /api/rooms/{id}` and in `GET /api/rooms`.
 * @typedef {object} RoomState
 * @property {string} id
 * @property {string} title
 * @property {{id: string, name: string}} anchor
 * @property {string} status "live", or "ended"
 * @property {number} created_at
 * @property {string | null} pinned_product
 * @property {number} slow_mode_s
 * @property {number} viewers
 * @property {ChatMessage[]} [chat]
 * @property {Product | null} pinned
 * @property {Sale | null} [sale]
 * @property {Auction | null} [auction]
 * @property {Media} [media]
 * @property {LuckyBag | null} [lucky]
 * @property {CouponDrop | null} [coupon] the room's newest coupon drop
 * @property {number} [followers] the anchor's follower count
 * @property {number} server_time
 */

/**
 * An error in an ack or an HTTP answer.
 * @typedef {object} ErrorInfo
 * @property {string} code
 * @property {string} [message]
 * @property {number} [retry_after_ms]
 */

/**
 * Every ack: `{"ok": true, ...T}`, or `{"ok": false, "error"}` (with whatever of T the event
 * still tells, e.g. a refused buy's `status`).
 * @template T
 * @typedef {({ok: true} & T) | ({ok: false, error: ErrorInfo, retry_after_ms?: number} & Partial<T>)} Ack
 */

/**
 * The `buy` ack's fields.
 * @typedef {object} BuyAnswer
 * @property {"reserved" | "sold_out" | "limit_reached" | "not_started" | "ended"
 *   | "verification_required" | "banned" | "rate_limited" | "invalid"} status
 * @property {string} sale
 * @property {Reservation | null} reservation
 * @property {number} remaining
 */

/**
 * The `auction` push to the room: what moves while bidding. Sent to the winner's (or the
 * runner-up's) own sockets with `offer` and the `reservation` to check out.
 * @typedef {object} AuctionPush
 * @property {string} id
 * @property {string} room
 * @property {"scheduled" | "live" | "ended"} status
 * @property {number} price_cents 0 before the first bid
 * @property {number} min_next_cents the lowest bid that can lead now
 * @property {number} bids
 * @property {string | null} leader_name
 * @property {number} ends_at moves when a late bid extends the auction
 * @property {number} server_time
 * @property {"won" | "second_chance"} [offer]
 * @property {Reservation} [reservation]
 */

/**
 * A live auction (`GET /api/auctions/{id}`, the room state's `auction`).
 * @typedef {AuctionPush & {sale: string, product: string, title: string, start_cents: number,
 *   starts_at: number, extend_s: number, sudden_death: boolean, hold_s: number,
 *   ended_reason: string | null, second_chance: string | null,
 *   reservation?: Reservation}} Auction
 */

/**
 * The `bid` ack.
 * @typedef {object} BidAnswer
 * @property {"leading" | "outbid" | "too_low" | "already_leading" | "not_started" | "ended"
 *   | "banned" | "not_in_room" | "verification_required" | "rate_limited" | "invalid"} status
 * @property {string | null} auction
 * @property {number | null} price_cents
 * @property {number | null} min_next_cents
 * @property {number | null} ends_at
 */

/**
 * @typedef {object} Address
 * @property {string} name
 * @property {string} phone
 * @property {string} line1
 * @property {string} city
 */

/**
 * @typedef {"created" | "paid" | "confirmed" | "shipped" | "delivered" | "completed"
 *   | "cancelled" | "return_requested" | "returned" | "refunded"} OrderStatus
 */

/**
 * @typedef {object} OrderItem
 * @property {string} product
 * @property {string} title
 * @property {string} category
 * @property {string} brand
 * @property {number} qty
 * @property {number} unit_price_cents
 */

/**
 * What the viewer may do with an order now: a buyer's `pay`, `cancel`, `complete`, `return`,
 * `refund_no_return`, `counterfeit`, `warranty`, `buyback`; a seller's or admin's `ship`,
 * `deliver`, `return_received`, `cancel`.
 * @typedef {"pay" | "cancel" | "complete" | "return" | "refund_no_return" | "counterfeit"
 *   | "warranty" | "buyback" | "ship" | "deliver" | "return_received"} OrderActionName
 */

/**
 * One action the server allows on an order, and until when (`until` null: no deadline).
 * @typedef {object} OrderAction
 * @property {OrderActionName} name
 * @property {number | null} until
 * @property {number} [compensation_cents] `counterfeit`: paid if the claim is upheld
 */

/**
 * @typedef {object} Payment
 * @property {string} id
 * @property {"pending" | "approved" | "declined" | "refunded"} status
 * @property {string | null} [reason] why a payment was declined (the provider's word)
 */

/**
 * An after-sales claim (`201 {"claim"}`).
 * @typedef {object} Claim
 * @property {string} id
 * @property {string} order_id
 * @property {"return" | "refund_no_return" | "counterfeit" | "warranty"} kind
 * @property {string} status
 * @property {number} amount_cents
 * @property {number | null} pickup_at
 * @property {string | null} [return_shipping_payer]
 * @property {string} [reason]
 * @property {number} created_at
 */

/**
 * The order object (`GET /api/orders`, the checkout answer, the `order` push).
 * @typedef {object} Order
 * @property {string} id
 * @property {OrderStatus} status
 * @property {number} total_cents what is paid: the subtotal less the coupon's discount
 * @property {number} [subtotal_cents]
 * @property {number} [discount_cents]
 * @property {string | null} [coupon] the coupon applied at checkout
 * @property {OrderItem[]} items
 * @property {"cod" | "online"} payment_method
 * @property {string} reservation
 * @property {string} sale
 * @property {string} room
 * @property {Address} address
 * @property {number} created_at
 * @property {number | null} placed_at set once the order is paid or confirmed
 * @property {number | null} [shipped_at]
 * @property {number | null} [delivered_at]
 * @property {number | null} warranty_ends_at
 * @property {OrderAction[]} [actions] what the caller may do now (a server that does not
 *   send it offers nothing)
 */

/**
 * `GET /api/orders/{id}`: the order with its history.
 * @typedef {Order & {payments?: Payment[], claims?: Claim[]}} OrderDetail
 */

/**
 * A room's live figures (`GET /api/rooms/{id}/figures`, the `figures` push).
 * @typedef {object} Figures
 * @property {string} [room]
 * @property {number} gmv_cents
 * @property {number} orders
 * @property {number} average_order_value_cents
 * @property {number | null} [conversion]
 */

/**
 * A signed certificate.
 * @typedef {object} Certificate
 * @property {string} id
 * @property {"vault" | "inspection" | "refund_no_return"} kind
 * @property {{product_id?: string, anchor_id?: string, category?: string}} subject
 * @property {Record<string, unknown>} details
 * @property {number} issued_at
 * @property {number} valid_from
 * @property {number | null} expires_at
 * @property {{id: string, role: string}} [issuer]
 * @property {string} key_id
 */

/**
 * `GET /api/certificates/{id}`.
 * @typedef {object} Verification
 * @property {Certificate | null} certificate
 * @property {boolean} valid
 * @property {string | null} reason
 * @property {{revoked_at: number, reason: string} | null} [revocation]
 * @property {number} checked_at
 */

export {};

/**
 * The lucky draw's commitment, signed at announcement (docs/verification.md, "Lucky draws").
 * @typedef {object} LuckyCommitment
 * @property {string} format "liveroom.lucky.commitment.v1"
 * @property {string} lucky_bag
 * @property {number} winners
 * @property {number} draw_at
 * @property {string} seed_sha256
 * @property {string} key_id
 * @property {string} signature
 */

/**
 * The published draw, signed after it.
 * @typedef {object} LuckyDraw
 * @property {string} format "liveroom.lucky.draw.v1"
 * @property {string} lucky_bag
 * @property {string} seed_sha256
 * @property {string} seed
 * @property {string[]} entries
 * @property {string} entries_sha256
 * @property {string[]} winners
 * @property {number} closed_at
 * @property {string} key_id
 * @property {string} signature
 */

/**
 * A lucky bag (`GET /api/lucky-bags/{id}`, the `lucky` push, the room state's `lucky`).
 * @typedef {object} LuckyBag
 * @property {string} id
 * @property {string} room
 * @property {string} anchor
 * @property {string} product
 * @property {string} title
 * @property {number} winners_count
 * @property {number} units_each
 * @property {{kind: "passphrase" | "watched" | "follower", minutes?: number}} condition
 * @property {"open" | "drawing" | "drawn"} status
 * @property {number} entries
 * @property {number} announced_at
 * @property {number} draw_at
 * @property {LuckyCommitment} commitment
 * @property {string | null} seed
 * @property {string | null} entries_sha256
 * @property {{id: string, name: string}[] | null} winners
 * @property {number} server_time
 * @property {LuckyDraw | null} [draw] GET only
 * @property {{entered: boolean, won: boolean, reservation: string | null,
 *   prize: Reservation | null}} [you] GET with a token
 */

/**
 * `POST`/`DELETE /api/anchors/{id}/follow`.
 * @typedef {object} FollowState
 * @property {string} anchor
 * @property {boolean} following
 * @property {number} followers
 */

/**
 * `GET /api/anchors/{id}`.
 * @typedef {object} AnchorProfile
 * @property {string} id
 * @property {string | null} name
 * @property {number} followers
 * @property {boolean | null} following
 * @property {{id: string, title: string}[]} live_rooms
 */

/**
 * A coupon drop (`POST /api/rooms/{id}/coupons`, `GET /api/coupon-drops/{id}`, the `coupon`
 * push, the room state's `coupon`).
 * @typedef {object} CouponDrop
 * @property {string} id
 * @property {string} room
 * @property {string} anchor
 * @property {number} count
 * @property {number} left
 * @property {"live" | "gone" | "expired"} status
 * @property {number | null} off_cents
 * @property {number | null} percent_off
 * @property {number} min_spend_cents
 * @property {number} expires_at
 * @property {number} server_time
 */

/**
 * A coupon in the caller's wallet (`GET /api/coupons`).
 * @typedef {object} Coupon
 * @property {string} id
 * @property {string} drop
 * @property {string} room
 * @property {number | null} off_cents
 * @property {number | null} percent_off
 * @property {number} min_spend_cents
 * @property {number} expires_at
 * @property {number} [granted_at]
 * @property {"unused" | "used" | "expired"} [state]
 * @property {string | null} [order]
 */

/**
 * The `coupon:grab` answer.
 * @typedef {object} GrabAnswer
 * @property {string} status
 * @property {string | null} drop
 * @property {Coupon | null} coupon
 * @property {number | null} left
 */
