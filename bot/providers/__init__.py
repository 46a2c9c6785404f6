"""Provider clients: one per API mode, behind the ``ProviderClient`` protocol."""
