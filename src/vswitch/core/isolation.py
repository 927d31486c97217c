"""Port isolation and private VLANs: which ports a frame may leave by. Pure: no I/O.

Two rules, both about the egress port given the ingress port (docs/port-features.md):

* **Port isolation** (the Linux bridge's `isolated` flag): a frame from an isolated port never leaves
  by another isolated port — flood or known unicast, in any VLAN. An isolated port still talks to
  every port that is not isolated.
* **Private VLANs** (Hyper-V's Set-VMNetworkAdapterVlan -Isolated/-Community/-Promiscuous, RFC 5517):
  a private VLAN port sends in one VLAN and receives from a set (`PortPolicy.egress_vlans`): an
  isolated port sends in its isolated secondary and receives the primary only; a community port sends
  in its community's secondary and receives the primary and that community; a promiscuous port sends
  in the primary and receives the primary and its secondaries. A trunk carries them all as they are
  (a frame keeps the VID it was classified to: the secondary from a host, the primary from a
  promiscuous port), so a trunk to another switch extends the private VLAN. The rule is VLAN
  membership at egress; what makes it a rule of its own is *shared learning*: a primary and its
  secondaries are one learning domain (`learning_domains`), keyed by the primary, so a promiscuous
  port finds an isolated host it answers and a known-unicast frame may then find its destination on
  a port that is not a member of the frame's VLAN: `DROP_PRIVATE_VLAN`.

`refusal` is the rule; `SwitchCore` applies it to every flood (cached per ingress port: the ports it
excludes are never in the decision) and to every known-unicast frame (on its decision's cache miss).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

from vswitch.core.policy import PortPolicy, PvlanMode
from vswitch.core.reasons import Reason


def learning_domains(policies: Iterable[PortPolicy]) -> dict[int, int]:
    """Secondary VLAN → its primary, over the private VLAN ports of a switch: the VLANs whose MACs
    are learned under the primary (shared VLAN learning). A VLAN not in it is learned as itself."""
    out: dict[int, int] = {}
    for pol in policies:
        if pol.pvlan is not None:
            for s in pol.secondary_vlans:
                out[s] = pol.primary_vlan
    return out


def relearned(old: Mapping[int, int], new: Mapping[int, int]) -> set[int]:
    """The VLANs whose dynamic entries go when the learning domains change from `old` to `new`: for
    each VLAN learned under another key now, its old key and its new one (an entry learned under a
    primary from a secondary cannot be told from the primary's own, so both go)."""
    out: set[int] = set()
    for v in set(old) | set(new):
        before, after = old.get(v, v), new.get(v, v)
        if before != after:
            out |= {v, before, after}
    return out


def refusal(src: PortPolicy, dst: PortPolicy, vlan: int, shared: bool = False) -> Reason | None:
    """Why a frame of `vlan` from a port with policy `src` may not leave by one with `dst`, or None.

    `shared`: `vlan` is learned with others (a private VLAN's): a known-unicast destination may then
    be on a port that does not receive `vlan` (a flood never offers one: it visits members only)."""
    if src.isolated and dst.isolated:
        return Reason.DROP_ISOLATED
    if shared and not dst.is_member(vlan):
        return Reason.DROP_PRIVATE_VLAN
    return None


def _secondary_kind(vlan: int, policies: Mapping[Hashable, PortPolicy]) -> str:
    for pol in policies.values():
        if pol.pvlan in (PvlanMode.ISOLATED, PvlanMode.COMMUNITY) and vlan in pol.secondary_vlans:
            return str(pol.pvlan)
    return "secondary"


def reach_text(kind: str, vlan: int) -> str:
    return ("only promiscuous ports (and trunks)" if kind == "isolated"
            else f"its community {vlan} and promiscuous ports (and trunks)")


def flood_note(vlan: int, primary: int | None, policies: Mapping[Hashable, PortPolicy]) -> str:
    """What `trace` adds to a flood in a private VLAN's secondary ("" for any other VLAN)."""
    if primary is None or vlan == primary:
        return ""
    kind = _secondary_kind(vlan, policies)
    return f"private VLAN {primary}: {kind} secondary {vlan} reaches {reach_text(kind, vlan)}"


def describe(why: Reason, in_port: Hashable, out_port: Hashable, vlan: int, primary: int | None,
             policies: Mapping[Hashable, PortPolicy]) -> str:
    """`trace`'s sentence for a port the rule refuses (`primary`: `vlan`'s primary, if it has one)."""
    if why is Reason.DROP_ISOLATED:
        return f"port isolation: {in_port} and {out_port} are both isolated"
    dst = policies[out_port]
    if primary is None or vlan == primary:
        return f"private VLAN {vlan}: port {out_port} does not receive VLAN {vlan} ({dst.describe()})"
    kind = _secondary_kind(vlan, policies)
    reach = reach_text(kind, vlan)
    return (f"private VLAN {primary}: {kind} secondary {vlan} reaches {reach} — port {out_port} is "
            f"{dst.describe()}")


__all__ = ["describe", "flood_note", "learning_domains", "reach_text", "refusal", "relearned"]
