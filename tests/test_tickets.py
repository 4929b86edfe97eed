"""Gateway tickets: signed, short-lived, single use, bound to stack and learner."""

import time

import pytest

from hastexo_xblock.gateway import tickets

SECRET = b"k" * 32


def mint(**overrides):
    values = dict(stack_id=7, stack_name="hx-c-l", learner="anon1", protocol="ssh", port=None, read_only=False)
    values.update(overrides)
    return tickets.mint(SECRET, **values)


def test_round_trip_carries_every_binding():
    ticket = tickets.verify(SECRET, mint(port=5901, read_only=True, actor="staff1"))
    assert (ticket.stack_id, ticket.stack_name, ticket.learner) == (7, "hx-c-l", "anon1")
    assert (ticket.protocol, ticket.port, ticket.read_only, ticket.actor) == ("ssh", 5901, True, "staff1")
    assert 0 < ticket.expires - time.time() <= tickets.MAX_TTL


@pytest.mark.parametrize("position", [0, 10, -3])
def test_tampering_is_rejected(position):
    token = list(mint())
    token[position] = "A" if token[position] != "A" else "B"
    with pytest.raises(tickets.TicketError):
        tickets.verify(SECRET, "".join(token))


def test_a_changed_payload_with_the_old_signature_is_rejected():
    _body, signature = mint().split(".")
    other_body = mint(learner="anon2").split(".")[0]
    with pytest.raises(tickets.TicketError, match="signature"):
        tickets.verify(SECRET, f"{other_body}.{signature}")


def test_another_secret_is_rejected():
    with pytest.raises(tickets.TicketError):
        tickets.verify(b"other" * 8, mint())


def test_expired_tickets_are_rejected():
    token = tickets.mint(
        SECRET,
        stack_id=1,
        stack_name="n",
        learner="l",
        protocol="ssh",
        port=None,
        read_only=False,
        ttl=60,
        now=time.time() - 61,
    )
    with pytest.raises(tickets.TicketExpired):
        tickets.verify(SECRET, token)


def test_lifetime_is_capped():
    token = tickets.mint(
        SECRET, stack_id=1, stack_name="n", learner="l", protocol="ssh", port=None, read_only=False, ttl=3600
    )
    assert tickets.verify(SECRET, token).expires - time.time() <= tickets.MAX_TTL


def test_reuse_is_rejected_by_the_consumer():
    seen = set()

    def consume(ticket):
        if ticket.ticket_id in seen:
            return False
        seen.add(ticket.ticket_id)
        return True

    token = mint()
    tickets.verify(SECRET, token, consume=consume)
    with pytest.raises(tickets.TicketReused):
        tickets.verify(SECRET, token, consume=consume)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 5000, None, "e30.e30"])
def test_garbage_is_rejected(token):
    with pytest.raises(tickets.TicketError):
        tickets.verify(SECRET, token)


# --- the payload's schema: signed is not the same as well-formed --------------------------


def forge(payload: str) -> str:
    """A correctly signed ticket around an arbitrary JSON text (what a buggy minter could issue)."""
    body = tickets._b64(payload.encode())
    return f"{body}.{tickets._sign(SECRET, body)}"


def good_payload(**changes):
    import json

    values = {
        "v": 1,
        "stack_id": 7,
        "stack_name": "hx-c-l",
        "learner": "anon1",
        "protocol": "ssh",
        "port": None,
        "read_only": False,
        "expires": time.time() + 30,
        "ticket_id": "abcdefghijklmnopqrstuv",
        "actor": "anon1",
    }
    values.update(changes)
    return json.dumps({k: v for k, v in values.items() if v is not ...})


def test_a_forged_well_formed_payload_verifies():
    # The baseline for the cases below: only the one changed field makes them fail.
    assert tickets.verify(SECRET, forge(good_payload())).stack_id == 7


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(good_payload(stack_id="7"), id="string-stack-id"),
        pytest.param(good_payload(stack_id=True), id="bool-stack-id"),
        pytest.param(good_payload(stack_id=0), id="zero-stack-id"),
        pytest.param(good_payload(stack_id=2**64), id="huge-stack-id"),
        pytest.param(good_payload(stack_id=7.0), id="float-stack-id"),
        pytest.param(good_payload(ticket_id=["abcdefghijklmnopqrstuv"]), id="list-ticket-id"),
        pytest.param(good_payload(ticket_id="short"), id="short-ticket-id"),
        pytest.param(good_payload(ticket_id="a b" * 10), id="ticket-id-charset"),
        pytest.param(good_payload(stack_name=""), id="empty-name"),
        pytest.param(good_payload(stack_name="n" * 256), id="long-name"),
        pytest.param(good_payload(learner=None), id="null-learner"),
        pytest.param(good_payload(actor=5), id="int-actor"),
        pytest.param(good_payload(protocol="SSH"), id="protocol-case"),
        pytest.param(good_payload(protocol=""), id="empty-protocol"),
        pytest.param(good_payload(port=0), id="port-0"),
        pytest.param(good_payload(port=70000), id="port-70000"),
        pytest.param(good_payload(port="22"), id="string-port"),
        pytest.param(good_payload(port=True), id="bool-port"),
        pytest.param(good_payload(read_only="false"), id="string-read-only"),
        pytest.param(good_payload(read_only=0), id="int-read-only"),
        pytest.param(good_payload(expires="soon"), id="string-expires"),
        pytest.param(good_payload(expires=True), id="bool-expires"),
        # Only the value of expires changes: refused for that, not for an extra key.
        pytest.param(good_payload(expires=0.5).replace('"expires": 0.5', '"expires": NaN'), id="nan-expires"),
        pytest.param(good_payload(expires=0.5).replace('"expires": 0.5', '"expires": Infinity'), id="infinite-expires"),
        pytest.param(good_payload(expires=0.5).replace('"expires": 0.5', '"expires": 1e999'), id="overflowing-expires"),
        pytest.param(good_payload(expires=-1), id="negative-expires"),
        pytest.param(good_payload(v=True), id="bool-version"),
        pytest.param(good_payload(v=2), id="version-2"),
        pytest.param(good_payload(v=...), id="no-version"),
        pytest.param(good_payload(actor=...), id="missing-field"),
        pytest.param(good_payload(admin=True), id="extra-field"),
        pytest.param(good_payload()[:-1] + ', "stack_id": 8}', id="duplicate-key"),
        pytest.param("[" * 2000, id="deep-nesting"),
        pytest.param("[1, 2]", id="a-list"),
        pytest.param("null", id="null"),
    ],
)
def test_payloads_outside_the_schema_are_rejected(payload):
    token = forge(payload)
    assert len(token) <= 4096  # reaches the parser
    with pytest.raises(tickets.TicketError, match=r"malformed ticket payload|ticket version"):
        tickets.verify(SECRET, token)


@pytest.mark.parametrize(
    "overrides",
    [{"stack_id": "7"}, {"port": 0}, {"port": "22"}, {"protocol": "ssh\n"}, {"learner": ""}, {"stack_name": 5}],
)
def test_mint_refuses_values_outside_the_schema(overrides):
    with pytest.raises(tickets.TicketError):
        mint(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {"stack_id": "7"},
        {"ticket_id": ["abcdefghijklmnopqrstuv"]},
        {"expires": float("nan")},
        {"expires": float("inf")},
        {"port": 22.0},
    ],
)
def test_the_ticket_schema_itself_refuses_wrong_types(overrides):
    """The schema check, not the JSON parser, refuses these (a ticket built in code passes no parser)."""
    values = dict(
        stack_id=7,
        stack_name="hx-c-l",
        learner="anon1",
        protocol="ssh",
        port=None,
        read_only=False,
        expires=time.time() + 30,
        ticket_id="abcdefghijklmnopqrstuv",
    )
    tickets.Ticket(**values)  # the baseline is accepted
    with pytest.raises(tickets.TicketError, match="malformed ticket payload: bad"):
        tickets.Ticket(**{**values, **overrides})
