"""vswitch.ports."""
