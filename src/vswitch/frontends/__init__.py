"""vswitch.frontends."""
