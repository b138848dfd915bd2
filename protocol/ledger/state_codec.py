"""Canonical encoding of the whole ledger state, its digest, and the inverse (snapshots).

Layout (docs/spec-ledger.md §9), every map sorted by key and default entries omitted::

    state   = [1, chain_id, height, issuance, burned, accounts, owners, stakes, subnets]
    account = [key, balance, nonce]                 (omitted when balance == nonce == 0)
    owner   = [hotkey, coldkey]
    stake   = [hotkey, coldkey, units]              (units > 0)
    subnet  = [netuid, owner, created_at, hyperparams, burn, registrations, pending_emission,
               epochs_run, last_epoch_block, neurons (by uid), commits]
    neuron  = [uid, hotkey, registered_at, last_update, validator_permit, active, incentive,
               dividends, trust, consensus, validator_trust, emission,
               weights (flat [uid, w, uid, w, ...]), bonds (same), endpoint | nil]
    endpoint = [host, port, protocol, block]
    commit  = [hotkey, digest, block, reveal_epoch]
"""

from __future__ import annotations

from typing import Any

from protocol.codec import Limits
from protocol.ledger.errors import DecodeError
from protocol.ledger.genesis import Genesis
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.state import Account, Commit, Endpoint, LedgerState, Neuron, Subnet
from protocol.ledger.units import MAX_SUPPLY
from protocol.ledger.wire import (
    U16_MAX,
    U64_MAX,
    decode_canonical,
    encode,
    read_bool,
    read_bytes,
    read_int,
    read_list,
    read_str,
    read_struct,
    tagged_hash,
)

__all__ = ["STATE_TAG", "decode_state", "encode_state", "state_digest"]

STATE_TAG = b"ensemblenet/state/v1"
STATE_VERSION = 1
_BIG = 1 << 62  # any container length; snapshots are our own bytes, sizes are bounded upstream
_STATE_LIMITS = Limits(max_body=1 << 31, max_str=1 << 10, max_bin=1 << 10, max_array=_BIG,
                       max_map=0, max_depth=8)


def encode_state(state: LedgerState) -> bytes:
    """The canonical encoding of ``state`` (also the snapshot format)."""
    accounts = [[key, a.balance, a.nonce] for key, a in sorted(state.accounts.items())
                if a.balance or a.nonce]
    owners = [[hot, cold] for hot, cold in sorted(state.owners.items())]
    stakes = [[hot, cold, units] for hot, per in sorted(state.stakes.items())
              for cold, units in sorted(per.items())]
    subnets = [_subnet_wire(s) for _, s in sorted(state.subnets.items())]
    return encode([STATE_VERSION, state.chain_id, state.height, state.issuance, state.burned,
                   accounts, owners, stakes, subnets])


def state_digest(state: LedgerState) -> bytes:
    """``SHA-256(STATE_TAG || encode_state(state))``."""
    return tagged_hash(STATE_TAG, encode_state(state))


def _subnet_wire(s: Subnet) -> list[Any]:
    commits = [[hot, c.digest, c.block, c.reveal_epoch] for hot, c in sorted(s.commits.items())]
    return [s.netuid, s.owner, s.created_at, s.hyperparams.to_wire(), s.burn, s.registrations,
            s.pending_emission, s.epochs_run, s.last_epoch_block,
            [_neuron_wire(n) for n in s.neurons], commits]


def _neuron_wire(n: Neuron) -> list[Any]:
    endpoint = None if n.endpoint is None else [n.endpoint.host, n.endpoint.port,
                                                n.endpoint.protocol, n.endpoint.block]
    return [n.uid, n.hotkey, n.registered_at, n.last_update, n.validator_permit, n.active,
            n.incentive, n.dividends, n.trust, n.consensus, n.validator_trust, n.emission,
            _flat(n.weights), _flat(n.bonds), endpoint]


def _flat(row: dict[int, int]) -> list[int]:
    return [x for pair in sorted(row.items()) for x in pair]


# --- decoding ---------------------------------------------------------------------------------


def decode_state(data: bytes, genesis: Genesis) -> LedgerState:
    """Rebuild a state from :func:`encode_state` bytes of a chain with this ``genesis``.

    Raises:
        DecodeError: not a canonical state encoding, or one of another chain.
    """
    fields = decode_canonical(data, _STATE_LIMITS)
    (version, chain_id, height, issuance, burned, accounts, owners, stakes,
     subnets) = read_struct(fields, 9, "state")
    read_int(version, STATE_VERSION, STATE_VERSION, "state version")
    if chain_id != genesis.chain_id:
        raise DecodeError("state belongs to another chain")
    state = LedgerState(genesis=genesis, chain_id=genesis.chain_id,
                        height=_u64(height), issuance=_units(issuance), burned=_units(burned))
    for item in read_list(accounts, _BIG, "accounts"):
        key, balance, nonce = read_struct(item, 3, "account")
        state.accounts[_key(key)] = Account(_units(balance), _u64(nonce))
    for item in read_list(owners, _BIG, "owners"):
        hot, cold = read_struct(item, 2, "owner")
        state.owners[_key(hot)] = _key(cold)
    for item in read_list(stakes, _BIG, "stakes"):
        hot, cold, units = read_struct(item, 3, "stake")
        state.stakes.setdefault(_key(hot), {})[_key(cold)] = _units(units)
    for item in read_list(subnets, _BIG, "subnets"):
        subnet = _subnet(item)
        state.subnets[subnet.netuid] = subnet
    return state


def _subnet(value: Any) -> Subnet:
    (netuid, owner, created, hyper, burn, regs, pending, epochs, last_epoch, neurons,
     commits) = read_struct(value, 11, "subnet")
    subnet = Subnet(netuid=read_int(netuid, 0, U16_MAX, "netuid"), owner=_key(owner),
                    created_at=_u64(created), hyperparams=SubnetHyperparams.from_wire(hyper),
                    burn=_units(burn), registrations=_u64(regs), pending_emission=_units(pending),
                    epochs_run=_u64(epochs), last_epoch_block=_u64(last_epoch))
    for uid, item in enumerate(read_list(neurons, _BIG, "neurons")):
        neuron = _neuron(item)
        if neuron.uid != uid:
            raise DecodeError("neurons out of uid order")
        subnet.place(neuron)
    for item in read_list(commits, _BIG, "commits"):
        hot, digest, block, reveal = read_struct(item, 4, "commit")
        subnet.commits[_key(hot)] = Commit(read_bytes(digest, 32, 32, "digest"), _u64(block),
                                           _u64(reveal))
    return subnet


def _neuron(value: Any) -> Neuron:
    (uid, hotkey, registered, last_update, permit, active, incentive, dividends, trust,
     consensus, vtrust, emission, weights, bonds, endpoint) = read_struct(value, 15, "neuron")
    return Neuron(uid=read_int(uid, 0, U16_MAX, "uid"), hotkey=_key(hotkey),
                  registered_at=_u64(registered), last_update=_u64(last_update),
                  validator_permit=read_bool(permit, "permit"), active=read_bool(active, "active"),
                  incentive=_u16(incentive), dividends=_u16(dividends), trust=_u16(trust),
                  consensus=_u16(consensus), validator_trust=_u16(vtrust),
                  emission=_units(emission), weights=_row(weights), bonds=_row(bonds),
                  endpoint=None if endpoint is None else _endpoint(endpoint))


def _endpoint(value: Any) -> Endpoint:
    host, port, protocol, block = read_struct(value, 4, "endpoint")
    return Endpoint(read_str(host, 1, 255, "host"), read_int(port, 1, U16_MAX, "port"),
                    read_int(protocol, 0, U16_MAX, "protocol"), _u64(block))


def _row(value: Any) -> dict[int, int]:
    flat = [_u16(x) for x in read_list(value, _BIG, "row")]
    if len(flat) % 2:
        raise DecodeError("row: odd length")
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _key(value: Any) -> bytes:
    return read_bytes(value, 32, 32, "key")


def _u64(value: Any) -> int:
    return read_int(value, 0, U64_MAX, "integer")


def _u16(value: Any) -> int:
    return read_int(value, 0, U16_MAX, "u16")


def _units(value: Any) -> int:
    return read_int(value, 0, MAX_SUPPLY, "units")
