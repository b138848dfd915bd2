"""The validator's pure core: challenges, grading, rewards, scores, weights, sampling, state.

No network and no ledger I/O live here; the validator loop and CLI wrap these modules.

    seeding     generators derived from the validator's secret, per purpose, step and hotkey
    checkers    problems and the exact checkers that decide correctness
    facts       the built-in table of factual questions
    tasks       task types, their registry (``register_task``) and per-miner challenges
    relevance   embedding similarity, allowed only to refine answers that passed (lazy torch)
    reward      per-query reward in [0, 1]: correctness first, latency second
    metagraph   uids, hotkeys and registration blocks; identities are (hotkey, block)
    scores      moving averages per identity
    weights     scores to the ledger's weight row (float and u16)
    sampling    which miners to query each step (least recently queried first)
    state       persistent state, written atomically
    errors      the validator branch of the exception tree
"""
