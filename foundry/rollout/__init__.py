"""Roll-outs decided by live model quality: shadow, canary and the post-rollout guard.

- ``routing``: which version answers a request (a hash of its request id: replicas, retries and
  labels agree without talking to each other);
- ``paired``: the anytime-valid paired tests on labelled live rows;
- ``decision``: what a roll-out does next from that evidence (promote, step up, roll back, expire);
- ``judge``: both versions' answers and the labels met row by row, and the challenger's health;
- ``manager``: the roll-out's life in the drift monitor (what is active, start, guard, state);
- ``outcomes``: what each decision does (step up, promote, roll back, expire, give way to a hand-made change).
"""

from foundry.config import PromotionConfig, RolloutMode


def target_alias(promotion: PromotionConfig) -> str:
    """The alias a version that passed the gate moves: production itself (``direct``), or the candidate
    alias whose shadow/canary roll-out the monitor then runs."""
    return promotion.alias if promotion.rollout is RolloutMode.direct else promotion.candidate_alias
