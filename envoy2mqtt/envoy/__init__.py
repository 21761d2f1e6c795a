"""Everything that talks to the gateway."""
