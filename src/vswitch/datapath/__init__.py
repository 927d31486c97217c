"""vswitch.datapath."""
