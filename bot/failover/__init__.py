"""The failover engine: the turn across (model, profile) attempts, the failure classifier and the policy table."""
