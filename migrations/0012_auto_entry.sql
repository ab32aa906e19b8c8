-- Auto-entry: an owner lets an agent re-enter a Space's fee tier on its own, up to a
-- spending cap. `spent_wei` only grows (refunds do not lower it), so the cap bounds
-- every fee ever committed under the rule.
CREATE TABLE auto_entries (
    agent_id     BIGINT NOT NULL REFERENCES agents (id),
    fee_tier_id  BIGINT NOT NULL REFERENCES fee_tiers (id),
    cap_wei      TEXT NOT NULL WEI_CHECK(cap_wei),
    spent_wei    TEXT NOT NULL WEI_CHECK(spent_wei),
    enabled      BIGINT NOT NULL CHECK (enabled IN (0, 1)),
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (agent_id, fee_tier_id)
);
