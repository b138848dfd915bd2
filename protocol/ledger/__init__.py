"""The ledger ("chain"): identities, stake, endpoints and weights, with a Yuma epoch per subnet.

Layers (docs/spec-ledger.md):

* pure core, no I/O: ``wire`` (canonical msgpack), ``hyperparams``, ``genesis``, ``calls`` and
  ``tx`` (transactions), ``state`` and ``state_codec``, the transitions (``accounts``,
  ``subnets``, ``registration``, ``serving``, ``weights``, ``epoch``), ``machine`` (apply a
  transaction or a block body), ``block`` (headers), ``replay`` (checked re-application);
* adapter: ``store`` (SQLite), ``verify`` (offline check of a database);
* engine and clients: ``chain`` (:class:`Chain`), ``interface`` (async :class:`Ledger`,
  :class:`EmbeddedLedger`), ``builders`` (:class:`TxBuilder`), ``metagraph``, ``views``.
"""

from protocol.ledger.builders import TxBuilder, weights_to_u16
from protocol.ledger.chain import BlockResult, Chain, ChainConfig, TxReceipt
from protocol.ledger.errors import (
    ChainClosedError,
    CorruptChainError,
    DecodeError,
    HyperparamError,
    LedgerError,
    NoSuchItemError,
    Reason,
    SchemaVersionError,
    StoreError,
    TxRejected,
    WaitTimeout,
)
from protocol.ledger.genesis import Genesis, NetworkParams
from protocol.ledger.hyperparams import HYPERPARAM_SPECS, SubnetHyperparams
from protocol.ledger.interface import EmbeddedLedger, Ledger, submit_and_wait
from protocol.ledger.machine import TxOutcome
from protocol.ledger.metagraph import Metagraph
from protocol.ledger.tx import Tx, decode_tx
from protocol.ledger.units import UNITS_PER_TOKEN
from protocol.ledger.verify import VerifyReport, verify
from protocol.ledger.views import AccountInfo, NeuronInfo, SubnetInfo

__all__ = [
    "HYPERPARAM_SPECS",
    "UNITS_PER_TOKEN",
    "AccountInfo",
    "BlockResult",
    "Chain",
    "ChainClosedError",
    "ChainConfig",
    "CorruptChainError",
    "DecodeError",
    "EmbeddedLedger",
    "Genesis",
    "HyperparamError",
    "Ledger",
    "LedgerError",
    "Metagraph",
    "NetworkParams",
    "NeuronInfo",
    "NoSuchItemError",
    "Reason",
    "SchemaVersionError",
    "StoreError",
    "SubnetHyperparams",
    "SubnetInfo",
    "Tx",
    "TxBuilder",
    "TxOutcome",
    "TxReceipt",
    "TxRejected",
    "VerifyReport",
    "WaitTimeout",
    "decode_tx",
    "submit_and_wait",
    "verify",
    "weights_to_u16",
]
