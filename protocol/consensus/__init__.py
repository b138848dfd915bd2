"""Yuma Consensus, the ledger's per-epoch incentive mechanism (see YUMA.md)."""

from protocol.consensus.yuma import ConsensusInputError, YumaOutput, YumaParams, yuma_epoch

__all__ = ["ConsensusInputError", "YumaOutput", "YumaParams", "yuma_epoch"]
