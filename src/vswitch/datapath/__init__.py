"""The forwarding loop: reads batches from ports, runs the core, writes; counters; ageing tick."""

from vswitch.datapath.loop import Datapath

__all__ = ["Datapath"]
