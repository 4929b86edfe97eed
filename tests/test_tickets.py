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
