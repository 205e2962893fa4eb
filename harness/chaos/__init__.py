"""Chaos: faults with guaranteed restore, a crash-safe ledger, guardrails, failover timing."""
