"""Endpoints: a registered hotkey publishes where it serves on a subnet."""

from __future__ import annotations

from protocol.keys import encode_address
from protocol.ledger.calls import Serve
from protocol.ledger.errors import Reason, TxRejected
from protocol.ledger.events import Event, Served
from protocol.ledger.state import Endpoint, LedgerState
from protocol.ledger.subnets import require_subnet

__all__ = ["apply_serve"]


def apply_serve(state: LedgerState, signer: bytes, call: Serve, height: int) -> list[Event]:
    """Store the signer hotkey's endpoint on the subnet where it holds a uid."""
    subnet = require_subnet(state, call.netuid)
    neuron = subnet.neuron_of(signer)
    if neuron is None:
        raise TxRejected(Reason.UNKNOWN_HOTKEY, f"the hotkey holds no uid on {call.netuid}")
    neuron.endpoint = Endpoint(call.host, call.port, call.protocol, height)
    return [Served(call.netuid, neuron.uid, encode_address(signer), call.host, call.port,
                   call.protocol)]
