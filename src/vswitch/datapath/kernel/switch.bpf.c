// SPDX-License-Identifier: GPL-2.0
/* vswitch kernel fast path: vswitch.core.switch.SwitchCore.process in a tc clsact ingress program.
 *
 * vs_ingress runs on the ingress of every port of one switch backed by a kernel link in the
 * switch's namespace, vs_egress on the host vNIC's egress (a TAP: what the host sends leaves through
 * it; frames for the host go into its ingress, BPF_F_INGRESS, per slot VS_PF_INGRESS). One loaded
 * object per switch: its maps are that switch's tables. The stages
 * and their order are the core's, and so are the reasons: parse, ingress (admin down, reserved group,
 * bad source, VLAN admission, the DHCP and router guards: vs_guard, vswitch.core.guards; MAC spoofing off;
 * the maximum bandwidth's policer: police_excess, vswitch.core.rates), learn, decide (flood / known unicast / same port / egress down;
 * a flood over the port's storm limit: storm_excess, vswitch.core.rates),
 * egress tag edits per output port, port mirroring's copies after the outputs (vs_mirror_visit). The differential test (tests/integration/test_kernel_diff.py)
 * holds the two equal.
 *
 * Verdicts: TC_ACT_SHOT (a drop, its reason counted), TC_ACT_REDIRECT (sent: bpf_redirect to the one
 * output, or clones to all outputs but the last), TC_ACT_OK = "upcall": the program cannot decide
 * (a port only Python serves, a new MAC with the table at its cap: the core's fair eviction) and
 * sends the frame up to the Python path — redirected to the switch's upcall TAP with an S-tag naming
 * its in-slot and cause (switch.h) — counting VS_C_UPCALL and its cause. vs_downcall, on that TAP's
 * ingress, sends what Python writes back down out of the kernel port the S-tag names. A frame from an
 * ifindex that is no port of this switch is left alone (TC_ACT_OK, not counted). The entry points
 * return TC_ACT_OK as TC_ACT_UNSPEC (pass_on): the link's next filter decides — on the uplink, the
 * takeover's drop; elsewhere there is none and the frame passes.
 *
 * VLAN tags arrive at tc ingress as skb metadata (vlan_present / vlan_tci / vlan_proto); a frame
 * fed by BPF_PROG_TEST_RUN keeps its tag in the bytes. Both are read, and the egress edits work on
 * both (bpf_skb_vlan_pop removes either; bpf_skb_vlan_push puts the tag in metadata).
 *
 * Test mode (vs_config.flags VS_CFG_TEST): the clock is vs_config.test_now_ns and each output is
 * recorded in vs_test_out (slot, length, tag, first bytes) instead of cloned, so BPF_PROG_TEST_RUN
 * shows a flood's every target. The shipped object is the tested one: no build flag.
 *
 * Decision events (vs_config.flags VS_CFG_EVENTS, set while someone watches the switch): each frame
 * decided here is also one struct vs_event in the vs_events ring buffer (ev_begin, ev_out, ev_emit);
 * a full ring never waits, the event is counted in vs_state[VS_ST_EVENTS_LOST]. An upcall is not
 * reported: Python decides that frame and reports it. Sampled events (VS_CFG_SAMPLE, while only the
 * web UI's sampled stream reads the switch): at most one decision per vs_config.sample_gap_ns per CPU,
 * gated before the event is built (sample_due). MAC table events (vs_fdb_events, always on):
 * each learn and move, so Python's copy and its `events` follow the program as it learns.
 *
 * Limits: VS_MAX_PORTS (1024) slots, the largest flood. The flood and its per-slot step are global
 * functions: the verifier checks each once, not once per path of vs_ingress (inlined, the program
 * failed with "The sequence of 8193 jumps is too complex").
 *
 * Build: clang -O2 -g -target bpf -c switch.bpf.c (see the Makefile's `bpf` target).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "switch.h"

#define ETH_P_8021Q_BE  bpf_htons(0x8100)
#define ETH_P_8021AD_BE bpf_htons(0x88A8)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 9216);          /* the loader sets it: room for the largest cap + statics */
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory as entries come: a live cap increase needs no reload */
	__type(key, struct vs_fdb_key);
	__type(value, struct vs_fdb_val);
} vs_fdb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VS_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct vs_port);
} vs_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VS_MAX_PORTS);
	__type(key, __u32);                 /* ifindex */
	__type(value, __u32);               /* slot */
} vs_slot_of SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vs_config);
} vs_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VS_NR_STATE);
	__type(key, __u32);
	__type(value, __u64);
} vs_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VS_MAX_PORTS);
	__type(key, __u32);                 /* slot */
	__type(value, struct vs_counters);  /* one lookup counts a frame's rx and reason together */
} vs_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vs_test_run);
} vs_test_run SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VS_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct vs_test_out);
} vs_test_out SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, VS_EV_RING_BYTES);
} vs_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vs_event);     /* the event of the frame being decided on this CPU */
} vs_event_buf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);               /* VS_CFG_SAMPLE: this CPU reports no decision before this time */
} vs_sample_at SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, VS_FE_RING_BYTES);
} vs_fdb_events SEC(".maps");

/* The storm limit's buckets, one per slot (vswitch.core.rates): the time in ns at which the bucket is
 * full again. Not in vs_ports: Python rewrites a slot whole, the program writes this word; Python
 * zeroes it (a full bucket) when the port's limit changes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VS_MAX_PORTS);
	__type(key, __u32);                 /* slot */
	__type(value, __u64);
} vs_storm SEC(".maps");

/* The maximum bandwidth's policers, one per slot, in the same form (the time the bucket is full
 * again), zeroed by Python when the port's rate or burst changes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VS_MAX_PORTS);
	__type(key, __u32);                 /* slot */
	__type(value, __u64);
} vs_police SEC(".maps");

/* The egress side of one frame: what its tag is now and what a tagged output gets. Scalars only,
 * so the flood (a global function, verified once on its own) can take it as an argument. */
struct egress {
	__u32 in_slot;
	__u32 vlan;
	__u32 tagged_now;               /* the skb carries a tag now (after the edits so far) */
	__u32 retag;                    /* that tag is the priority tag, not yet rewritten to out_tci */
	__u32 out_proto;                /* the tag a tagged output carries (network order) */
	__u32 out_tci;
	__u32 test;                     /* test mode: record instead of sending */
	__u32 observe;                  /* VS_CFG_EVENTS: report the decision in vs_events */
	__u32 mirror;                   /* port mirroring: the destinations get copies (mirrored()) */
	__u32 only;                     /* a mirrored known unicast: its one output's slot + 1 (0: a flood) */
	__u32 isolated;                 /* the in-port is VS_PF_ISOLATED: the flood skips isolated ports */
};

/* The flood's state from one port to the next */
struct flood_state {
	struct egress eg;
	__u32 pending;                  /* slot + 1 of the output not yet sent, 0 = none */
	__u32 copies;
	__u32 failed;
	__u32 tag_failed;
	__u32 reached_src;              /* the flood reached a mirroring source (eg.mirror is then exact) */
};

/* bpf_loop's context in the flood */
struct flood_ctx {
	struct __sk_buff *skb;
	struct flood_state st;
};

static __always_inline void count(__u32 slot, __u32 counter, __u64 n)
{
	struct vs_counters *row = bpf_map_lookup_elem(&vs_counters, &slot);

	if (row && counter < VS_NR_COUNTERS)
		row->c[counter] += n;
}

/* The frame goes out of `slot` now (its tag edited for it): the port's tx, as the core counts what it
 * writes (PortCounters.tx_frames/tx_bytes). Not in test mode: nothing is sent there. */
static __always_inline void sent(struct __sk_buff *skb, __u32 slot)
{
	struct vs_counters *row = bpf_map_lookup_elem(&vs_counters, &slot);

	if (row) {
		row->c[VS_C_TX_FRAMES] += 1;
		row->c[VS_C_TX_BYTES] += skb->len + (skb->vlan_present ? 4 : 0);
	}
}

static __always_inline int vlan_bit(const __u64 *bits, __u32 vlan)
{
	return (bits[(vlan >> 6) & (VS_VLAN_WORDS - 1)] >> (vlan & 63)) & 1;
}

/* PortPolicy.classify: the VLAN of a frame (vid < 0: untagged), or 0 when not admitted. */
static __always_inline __u32 classify(const struct vs_port *p, int vid)
{
	if (!(p->flags & VS_PF_TRUNK))
		return vid <= 0 ? p->access_vlan : 0;
	if (vid <= 0)
		return p->native_vlan;
	return vlan_bit(p->allowed, vid) ? vid : 0;
}

/* PortPolicy.is_member (a private VLAN port: the VLANs it receives, in `allowed`) */
static __always_inline int is_member(const struct vs_port *p, __u32 vlan)
{
	if (p->flags & VS_PF_PVLAN)
		return vlan_bit(p->allowed, vlan);
	if (!(p->flags & VS_PF_TRUNK))
		return vlan == p->access_vlan;
	return vlan_bit(p->allowed, vlan) || vlan == p->native_vlan;
}

/* PortPolicy.egress_tagged */
static __always_inline int egress_tagged(const struct vs_port *p, __u32 vlan)
{
	return (p->flags & VS_PF_TRUNK) && vlan != p->native_vlan;
}

#define PORT_UP (VS_PF_ADMIN_UP | VS_PF_OPER_UP)

/* Bring the skb's tag to what `p` takes: the core's EDIT_* (push; pop; retag: the priority tag
 * rewritten to the VLAN keeping PCP/DEI; keep). Lazily, so a frame that goes up is unchanged.
 * 0, or -1 when a helper failed. */
static __always_inline int set_tag(struct __sk_buff *skb, struct egress *eg, const struct vs_port *p)
{
	if (egress_tagged(p, eg->vlan)) {
		if (eg->tagged_now && !eg->retag)
			return 0;
		if (eg->tagged_now && bpf_skb_vlan_pop(skb))
			return -1;
		eg->tagged_now = 0;
		eg->retag = 0;
		if (bpf_skb_vlan_push(skb, eg->out_proto, eg->out_tci))
			return -1;
		eg->tagged_now = 1;
		return 0;
	}
	if (!eg->tagged_now)
		return 0;
	if (bpf_skb_vlan_pop(skb))
		return -1;
	eg->tagged_now = 0;
	eg->retag = 0;
	return 0;
}

/* test mode: record what would leave through `slot` (the frame as it is now) instead of sending */
static __always_inline void record(struct __sk_buff *skb, __u32 slot)
{
	__u32 zero = 0, i;
	struct vs_test_run *t = bpf_map_lookup_elem(&vs_test_run, &zero);
	struct vs_test_out *o;

	if (!t)
		return;
	i = t->n_out;
	if (i >= VS_MAX_PORTS)
		return;
	o = bpf_map_lookup_elem(&vs_test_out, &i);
	if (!o)
		return;
	o->slot = slot;
	o->len = skb->len;
	o->vlan_present = skb->vlan_present;
	o->vlan_proto = skb->vlan_proto;
	o->vlan_tci = skb->vlan_tci;
	__builtin_memset(o->head, 0, VS_HEAD_BYTES);
	if (skb->len >= VS_HEAD_BYTES)
		bpf_skb_load_bytes(skb, 0, o->head, VS_HEAD_BYTES);
	else if (skb->len)          /* a shorter frame: all of it (the mask only tells the verifier) */
		bpf_skb_load_bytes(skb, 0, o->head, skb->len & (VS_HEAD_BYTES - 1));
	t->n_out = i + 1;
}

/* Decision events (VS_CFG_EVENTS). The event is built in this CPU's vs_event_buf — begun when the
 * frame is decided (before any tag edit: the head is the frame as it came), its outputs marked as
 * they are chosen — and copied into the ring by ev_emit, the one place an event leaves. Called only
 * with eg->observe set: with events off a frame pays the one test of that flag. */
static __always_inline void ev_begin(struct __sk_buff *skb, const struct egress *eg, __u32 len, __u32 reason)
{
	__u32 zero = 0, n = skb->len;
	struct vs_event *ev = bpf_map_lookup_elem(&vs_event_buf, &zero);

	if (!ev)
		return;
	__builtin_memset(ev->outs, 0, sizeof(ev->outs));
	ev->kind = VS_EV_DECISION;
	ev->in_slot = eg->in_slot;
	ev->reason = reason;
	ev->vlan = eg->vlan;
	ev->len = len;
	ev->ktime_ns = bpf_ktime_get_ns();
	ev->vlan_present = skb->vlan_present;
	ev->vlan_proto = skb->vlan_proto;
	ev->vlan_tci = skb->vlan_tci;
	if (n >= VS_EV_HEAD)
		n = bpf_skb_load_bytes(skb, 0, ev->head, VS_EV_HEAD) ? 0 : VS_EV_HEAD;
	else if (n == 0 || bpf_skb_load_bytes(skb, 0, ev->head, n & (VS_EV_HEAD - 1)))
		n = 0;              /* the mask only tells the verifier what the test above already did */
	ev->head_len = n;
}

/* slot is an output of the decision being reported */
static __always_inline void ev_out(__u32 slot)
{
	__u32 zero = 0;
	struct vs_event *ev = bpf_map_lookup_elem(&vs_event_buf, &zero);

	if (ev)
		ev->outs[(slot >> 6) & (VS_EV_OUT_WORDS - 1)] |= 1ULL << (slot & 63);
}

/* VS_CFG_SAMPLE: whether this frame's decision is reported — the first after sample_gap_ns on this
 * CPU. The gate is before the event exists: a frame not sampled pays this one lookup and compare. */
static __always_inline __u32 sample_due(const struct vs_config *cfg, __u64 now)
{
	__u32 zero = 0;
	__u64 *at = bpf_map_lookup_elem(&vs_sample_at, &zero);

	if (!at || now < *at)
		return 0;
	*at = now + cfg->sample_gap_ns;
	return 1;
}

/* Put the decision's event in the ring; a full ring never waits: the event is counted lost. */
static __always_inline void ev_emit(void)
{
	__u32 zero = 0, lost_k = VS_ST_EVENTS_LOST;
	struct vs_event *ev = bpf_map_lookup_elem(&vs_event_buf, &zero);
	__u64 *lost;

	if (ev && bpf_ringbuf_output(&vs_events, ev, sizeof(*ev), 0)) {
		lost = bpf_map_lookup_elem(&vs_state, &lost_k);
		if (lost)
			__sync_fetch_and_add(lost, 1);
	}
}

/* The redirect flags for an output: the host vNIC's frames go into its ingress (to the host stack),
 * every other port's out of its link. A frame going into the host stack loses its receive time (the
 * uplink's, kept through a redirect in one namespace): it is stamped again on arrival there, so the
 * host's sockets and packet taps see when it reached the host, not when it reached the switch. */
static __always_inline __u64 out_flags(struct __sk_buff *skb, const struct vs_port *p)
{
	if (!(p->flags & VS_PF_INGRESS))
		return 0;
	skb->tstamp = 0;
	return BPF_F_INGRESS;
}

/* Send a clone of the frame to the pending output (its tag edited for it). */
static __always_inline void send_pending_clone(struct __sk_buff *skb, struct flood_state *st)
{
	__u32 slot = st->pending - 1;
	struct vs_port *p = bpf_map_lookup_elem(&vs_ports, &slot);

	if (!p)
		return;
	if (set_tag(skb, &st->eg, p)) {
		st->tag_failed++;
		return;
	}
	if (st->eg.test) {
		record(skb, slot);
		st->copies++;
	} else if (bpf_clone_redirect(skb, p->ifindex, out_flags(skb, p)) == 0) {
		st->copies++;
		sent(skb, slot);
	} else {
		st->failed++;
	}
}

/* Port mirroring (SwitchCore._mirror_for): is a forwarded frame from `inp` mirrored? When it comes
 * from a source, or goes to one (`to_source`: a known unicast to a source, a flood in a VLAN with a
 * source that floods), and a destination other than the in-port is up. A switch with no destination
 * up pays the one test of mirror_dests. */
static __always_inline int mirrored(const struct vs_config *cfg, const struct vs_port *inp, int to_source)
{
	__u32 others = cfg->mirror_dests;

	if (!others)
		return 0;
	if ((inp->flags & VS_PF_MIRROR_DST) && (inp->flags & PORT_UP) == PORT_UP)
		others--;               /* never back to the port it came from */
	return others && ((inp->flags & VS_PF_MIRROR_SRC) || to_source);
}

/* One slot of the mirror pass, after the outputs: a destination port that is up, is not the in-port
 * and is no output of the frame already gets its copy (the pending scheme of the flood). A global
 * function: verified once. */
__attribute__((noinline)) int vs_mirror_visit(struct __sk_buff *skb, struct flood_state *st, __u32 slot)
{
	struct vs_port *p;

	if (!skb || !st || slot == st->eg.in_slot)
		return 0;
	p = bpf_map_lookup_elem(&vs_ports, &slot);
	if (!p || !(p->flags & VS_PF_MIRROR_DST) || (p->flags & PORT_UP) != PORT_UP)
		return 0;
	if (st->eg.only ? slot == st->eg.only - 1
	    : (p->flags & VS_PF_FLOOD) && is_member(p, st->eg.vlan)
	      && !(st->eg.isolated && (p->flags & VS_PF_ISOLATED)))
		return 0;               /* an output already (isolation kept it out of none): no second copy */
	count(slot, VS_C_MIRROR_TX, 1);
	if (st->pending)
		send_pending_clone(skb, st);
	st->pending = slot + 1;
	if (st->eg.observe)
		ev_out(slot);
	return 0;
}

static long mirror_one(__u32 i, void *ctx)
{
	struct flood_ctx *c = ctx;

	vs_mirror_visit(c->skb, &c->st, i);
	return 0;
}

/* One slot of the flood: it floods when it is another port, up, flooding and a member of the VLAN
 * (SwitchCore.flood_ports); the previous such slot gets its clone now, so the last one can take
 * the original frame. A global function: verified once, whatever the state the loop carries. */
__attribute__((noinline)) int vs_flood_visit(struct __sk_buff *skb, struct flood_state *st, __u32 slot)
{
	struct vs_port *p;

	if (!skb || !st || slot == st->eg.in_slot)
		return 0;
	p = bpf_map_lookup_elem(&vs_ports, &slot);
	if (!p || (p->flags & (PORT_UP | VS_PF_FLOOD)) != (PORT_UP | VS_PF_FLOOD) || !is_member(p, st->eg.vlan))
		return 0;
	if (st->eg.isolated && (p->flags & VS_PF_ISOLATED))    /* port isolation (core/isolation.py) */
		return 0;
	if (st->pending)
		send_pending_clone(skb, st);
	st->pending = slot + 1;
	if (p->flags & VS_PF_MIRROR_SRC) {
		st->reached_src = 1;
		if (st->eg.mirror)
			count(slot, VS_C_MIRRORED, 1);  /* a source the flood reaches */
	}
	if (st->eg.observe)
		ev_out(slot);
	return 0;
}

static long flood_one(__u32 i, void *ctx)
{
	struct flood_ctx *c = ctx;

	vs_flood_visit(c->skb, &c->st, i);
	return 0;
}

/* The flood's sending: clones to every output but the last, which takes the frame itself; with port
 * mirroring (eg->mirror) a second pass adds the destinations' copies after the outputs, and a
 * mirrored known unicast (eg->only) comes here too, its one output in place of the flood's. A global
 * function, so the verifier checks it once and not once per path of vs_ingress. Returns the verdict. */
__attribute__((noinline)) int vs_flood(struct __sk_buff *skb, struct egress *eg)
{
	struct flood_ctx c = { .skb = skb };
	struct flood_state *st = &c.st;
	struct vs_port *p;
	__u32 slot, in;

	if (!skb || !eg)
		return TC_ACT_SHOT;
	__u32 zero = 0, n;
	struct vs_config *cfg = bpf_map_lookup_elem(&vs_config, &zero);

	st->eg = *eg;
	in = st->eg.in_slot;
	if (in >= VS_MAX_PORTS || !cfg)
		return TC_ACT_SHOT;
	n = cfg->n_slots;
	if (st->eg.only) {
		slot = st->eg.only - 1;
		p = bpf_map_lookup_elem(&vs_ports, &slot);
		if (!p)
			return TC_ACT_SHOT;
		st->pending = st->eg.only;
		if (p->flags & VS_PF_MIRROR_SRC)
			count(slot, VS_C_MIRRORED, 1);
		if (st->eg.observe)
			ev_out(slot);
	} else {
		bpf_loop(n < VS_MAX_PORTS ? n : VS_MAX_PORTS, flood_one, &c, 0);
	}
	if (st->eg.mirror) {
		/* a flood is mirrored for its VLAN's sources only if it reached one (isolation may have kept
		 * it from them: mirror_vlans is the VLANs' superset), as SwitchCore._mirror_for asks */
		p = bpf_map_lookup_elem(&vs_ports, &in);
		int from_src = p && (p->flags & VS_PF_MIRROR_SRC);

		if (from_src)
			count(in, VS_C_MIRRORED, 1);
		if (from_src || st->eg.only || st->reached_src)
			bpf_loop(n < VS_MAX_PORTS ? n : VS_MAX_PORTS, mirror_one, &c, 0);
	}
	if (st->eg.observe)
		ev_emit();
	if (st->failed)
		count(in, VS_C_REDIRECT_FAIL, st->failed);
	if (st->tag_failed)
		count(in, VS_C_TAG_FAIL, st->tag_failed);
	if (!st->pending) {
		if (st->copies)
			count(in, VS_C_FLOOD_COPIES, st->copies);
		return TC_ACT_SHOT;     /* flooded to no port: nothing left to send */
	}
	slot = st->pending - 1;
	p = bpf_map_lookup_elem(&vs_ports, &slot);
	if (!p || set_tag(skb, &st->eg, p)) {
		count(in, VS_C_TAG_FAIL, 1);
		count(in, VS_C_FLOOD_COPIES, st->copies);
		return TC_ACT_SHOT;
	}
	count(in, VS_C_FLOOD_COPIES, st->copies + 1);
	if (st->eg.test)
		record(skb, slot);
	else
		sent(skb, slot);
	return bpf_redirect(p->ifindex, out_flags(skb, p));
}

/* The frame was decided here with `reason`: count it as the core does (rx, then the reason; a
 * flood in `floods` too), and report it when observed (a drop at once; a flood or a forward once
 * its outputs are known). */
static __always_inline void decided(struct __sk_buff *skb, struct egress *eg, __u32 len, __u32 reason)
{
	__u32 zero = 0, slot = eg->in_slot;
	struct vs_counters *row = bpf_map_lookup_elem(&vs_counters, &slot);
	struct vs_test_run *t;

	if (row) {
		row->c[VS_C_RX_FRAMES] += 1;
		row->c[VS_C_RX_BYTES] += len;
		if (reason == VS_C_FLOOD_UNKNOWN || reason == VS_C_FLOOD_BROADCAST || reason == VS_C_FLOOD_MULTICAST)
			row->c[VS_C_FLOODS] += 1;
		if (reason < VS_NR_COUNTERS)
			row->c[reason] += 1;
	}
	if (eg->observe) {
		ev_begin(skb, eg, len, reason);
		if (reason != VS_C_FORWARD_LEARNED && reason != VS_C_FLOOD_UNKNOWN && reason != VS_C_FLOOD_BROADCAST &&
		    reason != VS_C_FLOOD_MULTICAST)
			ev_emit();
	}
	if (eg->test) {
		t = bpf_map_lookup_elem(&vs_test_run, &zero);
		if (t) {
			t->reason = reason;
			t->vlan = eg->vlan;
		}
	}
}

/* The frame goes up: to the upcall TAP with the S-tag naming its in-slot and cause (switch.h), or,
 * with no upcall TAP (and in test mode), left to the stack (TC_ACT_OK). */
static __always_inline int upcall(struct __sk_buff *skb, const struct vs_config *cfg, struct egress *eg,
				  __u32 cause)
{
	__u32 zero = 0;
	struct vs_test_run *t;

	if (eg->test) {
		t = bpf_map_lookup_elem(&vs_test_run, &zero);
		if (t)
			t->reason = cause;
	} else if (cfg->upcall_ifindex) {
		if (bpf_skb_vlan_push(skb, bpf_htons(VS_UPCALL_TPID),
				      (((cause - VS_C_UPCALL) & 7) << 13) | ((eg->in_slot + 1) & 0x0fff))) {
			count(eg->in_slot, VS_C_UPCALL_FAIL, 1);
			return TC_ACT_SHOT;
		}
		count(eg->in_slot, VS_C_UPCALL, 1);
		count(eg->in_slot, cause, 1);
		return bpf_redirect(cfg->upcall_ifindex, 0);
	}
	count(eg->in_slot, VS_C_UPCALL, 1);
	count(eg->in_slot, cause, 1);
	return TC_ACT_OK;
}

/* A learn or a move told to Python (vs_fdb_events); per learn, never per frame. */
static __always_inline void fdb_event(__u32 kind, const struct vs_fdb_key *k, __u32 slot, __u32 old_slot,
				      __u64 now)
{
	struct vs_fdb_event fe = { .vlan = k->vlan, .kind = kind, .slot = slot, .old_slot = old_slot,
				   .ktime_ns = now };
	__u32 lost_k = VS_ST_FDB_EVENTS_LOST;
	__u64 *lost;

	__builtin_memcpy(fe.mac, k->mac, 6);
	if (bpf_ringbuf_output(&vs_fdb_events, &fe, sizeof(fe), 0)) {
		lost = bpf_map_lookup_elem(&vs_state, &lost_k);
		if (lost)
			__sync_fetch_and_add(lost, 1);
	}
}

/* The guards (vswitch.core.guards: the rules, and why each one). What a packet needs to be dropped: the
 * guard bits (GUARD_DHCP 1, GUARD_ROUTER 2) of which it is a message, 0 when it is none of theirs. */
#define G_DHCP   1
#define G_ROUTER 2
#define G_ANY    (G_DHCP | G_ROUTER)

static __always_inline int byte_at(struct __sk_buff *skb, __u32 off)
{
	__u8 b;

	return bpf_skb_load_bytes(skb, off, &b, 1) ? -1 : b;
}

static __always_inline __u32 guard_ipv4(struct __sk_buff *skb, __u32 l3, __u32 n)
{
	__u8 h[20], p[2];
	__u32 end, l4;

	if (n < l3 + 20)
		return n > l3 && (byte_at(skb, l3) >> 4) == 4 ? G_ANY : 0;
	if (bpf_skb_load_bytes(skb, l3, h, 20) || (h[0] >> 4) != 4)
		return 0;
	end = l3 + (((__u32)h[2] << 8) | h[3]);
	if (end > n)
		end = n;
	l4 = l3 + (h[0] & 0x0f) * 4;
	if ((((__u32)h[6] & 0x1f) << 8) | h[7])
		return 0;                       /* a non-first fragment: no L4 header */
	if (h[9] == 17) {
		if (l4 < l3 + 20 || end < l4 + 2 || bpf_skb_load_bytes(skb, l4, p, 2))
			return G_DHCP;
		if (p[0] != 0 || p[1] != 67)
			return 0;
		if (end < l4 + 9)
			return G_DHCP;
		return byte_at(skb, l4 + 8) == 2 ? G_DHCP : 0;
	}
	if (h[9] == 1) {
		if (l4 < l3 + 20 || end < l4 + 1)
			return G_ROUTER;
		return byte_at(skb, l4) == 5 ? G_ROUTER : 0;
	}
	return 0;
}

static __always_inline __u32 guard_ipv6(struct __sk_buff *skb, __u32 l3, __u32 n)
{
	__u8 h[8];
	__u32 end, at, nh, i, t;

	if (n < l3 + 40)
		return n > l3 && (byte_at(skb, l3) >> 4) == 6 ? G_ANY : 0;
	if (bpf_skb_load_bytes(skb, l3, h, 8) || (h[0] >> 4) != 6)
		return 0;
	end = l3 + 40 + (((__u32)h[4] << 8) | h[5]);
	if (end > n)
		end = n;
	nh = h[6];
	at = l3 + 40;
	for (i = 0; i <= VS_GUARD_EXT_MAX; i++) {
		if (nh == 17) {
			if (end < at + 2 || bpf_skb_load_bytes(skb, at, h, 2))
				return G_DHCP;
			if (h[0] != 0x02 || h[1] != 0x23)   /* 547 */
				return 0;
			if (end < at + 9)
				return G_DHCP;
			t = byte_at(skb, at + 8);
			return t == 2 || t == 7 || t == 10 ? G_DHCP : 0;
		}
		if (nh == 58) {
			if (end < at + 1)
				return G_ROUTER;
			t = byte_at(skb, at);
			return t == 134 || t == 137 ? G_ROUTER : 0;
		}
		if (nh != 0 && nh != 43 && nh != 44 && nh != 60 && nh != 51)
			return 0;                   /* another upper layer */
		if (end < at + 8 || bpf_skb_load_bytes(skb, at, h, 8))
			return G_ANY;
		if (nh == 44) {
			if ((((__u32)h[2] << 8) | h[3]) & 0xfff8)
				return 0;           /* a non-first fragment */
			at += 8;
		} else if (nh == 51) {
			at += ((__u32)h[1] + 2) * 4;
		} else {
			at += ((__u32)h[1] + 1) * 8;
		}
		nh = h[0];
	}
	return G_ANY;                           /* more extension headers than VS_GUARD_EXT_MAX */
}

/* The guards' verdict on a frame from a port with a guard on: G_ROUTER (drop_router_guard), G_DHCP
 * (drop_dhcp_guard) or 0 (it passes). `l3`: where its L3 header starts (after a tag in the bytes).
 * A global function: verified once. */
__attribute__((noinline)) int vs_guard(struct __sk_buff *skb, __u32 l3, __u32 ethertype, __u32 port_flags)
{
	__u32 need = 0, hit = 0;

	if (!skb)
		return 0;
	if (ethertype == 0x0800)
		need = guard_ipv4(skb, l3, skb->len);
	else if (ethertype == 0x86dd)
		need = guard_ipv6(skb, l3, skb->len);
	if ((need & G_DHCP) && (port_flags & VS_PF_DHCP_GUARD))
		hit |= G_DHCP;
	if ((need & G_ROUTER) && (port_flags & VS_PF_ROUTER_GUARD))
		hit |= G_ROUTER;
	if (!hit)
		return 0;
	return hit & G_ROUTER ? G_ROUTER : G_DHCP;
}

/* SwitchCore.process's learn stage (MacTable.learn / learn_outcome). 0, or 1 when the frame must go
 * up because a new MAC meets a full table (the core evicts fairly; this map cannot). */
static __always_inline int learn(const struct vs_config *cfg, __u32 in_slot, __u32 vlan, const __u8 *src,
				 __u64 now)
{
	struct vs_fdb_key k = { .vlan = vlan };
	struct vs_fdb_val *e, nv = { .slot = in_slot, .seen_ns = now };
	__u32 added_k = VS_ST_ADDED, removed_k = VS_ST_REMOVED;
	__u64 *added, *removed;

	__builtin_memcpy(k.mac, src, 6);
	e = bpf_map_lookup_elem(&vs_fdb, &k);
	if (!e) {
		added = bpf_map_lookup_elem(&vs_state, &added_k);
		removed = bpf_map_lookup_elem(&vs_state, &removed_k);
		if (!added || !removed || *added - *removed >= cfg->max_dynamic)
			return 1;
		/* NOEXIST: when two CPUs learn the same MAC at once, one counts it */
		if (bpf_map_update_elem(&vs_fdb, &k, &nv, BPF_NOEXIST) == 0) {
			__sync_fetch_and_add(added, 1);
			count(in_slot, VS_C_LEARNED, 1);
			fdb_event(VS_FE_LEARNED, &k, in_slot, in_slot, now);
		}
		return 0;
	}
	if (e->flags & VS_FDB_STATIC) {
		if (e->slot != in_slot)
			count(in_slot, VS_C_STATIC_REFUSED, 1); /* pinned elsewhere: never moved */
		return 0;
	}
	if (e->slot != in_slot) {
		__u32 old_slot = e->slot;

		/* a move replaces the element whole: a reader never sees the new port with the old time */
		if (bpf_map_update_elem(&vs_fdb, &k, &nv, BPF_EXIST) == 0) {
			count(in_slot, VS_C_MOVED, 1);
			fdb_event(VS_FE_MOVED, &k, in_slot, old_slot, now);
		}
		return 0;
	}
	/* refresh at most every refresh_ns: a busy MAC does not write its cache line on every frame */
	if (now != e->seen_ns && now - e->seen_ns >= cfg->refresh_ns)
		e->seen_ns = now;
	return 0;
}

/* The storm limit (vswitch.core.rates.take): 1 when a flood from `slot` at `now` is over its limit, else
 * 0 with the frame's token taken. The bucket is one 64-bit word shared by every CPU: a compare-and-swap
 * takes the token, so two CPUs never take the same one and the limit is exact (each frame that passes
 * moved the word by one interval); a CPU that loses the race VS_STORM_TRIES times in a row counts its
 * frame over the limit (only when other CPUs are taking this port's tokens at that moment). */
#define VS_STORM_TRIES 4

/* core.rates.take / take_bytes on the bucket `tat`: 1 when over (the bucket unchanged), else 0 with
 * `cost` ns taken. The compare-and-swap above, for both buckets. */
static __always_inline int bucket_excess(__u64 *tat, __u64 now, __u64 cost, __u64 tolerance)
{
	__u64 old, start;
	int i;

	for (i = 0; i < VS_STORM_TRIES; i++) {
		old = *(volatile __u64 *)tat;
		start = old > now ? old : now;
		if (start - now > tolerance)
			return 1;
		if (__sync_val_compare_and_swap(tat, old, start + cost) == old)
			return 0;
	}
	return 1;
}

static __always_inline int storm_excess(__u32 slot, const struct vs_port *p, __u64 now)
{
	__u64 *tat = bpf_map_lookup_elem(&vs_storm, &slot);

	return tat ? bucket_excess(tat, now, p->storm_interval_ns, p->storm_tolerance_ns) : 0;
}

/* The maximum bandwidth (core.rates.take_bytes): a frame of `len` bytes (as the core counts them,
 * a metadata tag included) over the port's rate. */
static __always_inline int police_excess(__u32 slot, const struct vs_port *p, __u64 now, __u32 len)
{
	__u64 *tat = bpf_map_lookup_elem(&vs_police, &slot);

	return tat ? bucket_excess(tat, now, ((__u64)len * p->police_cost) >> VS_RATE_COST_SHIFT,
				   p->police_tolerance_ns) : 0;
}

/* The switch, for a frame that came in on `ifindex`; the verdict (TC_ACT_OK: left to Python). */
static __always_inline int vs_switch(struct __sk_buff *skb, __u32 ifindex)
{
	__u32 zero = 0, *sp, out, len, domain, fid;
	struct vs_port *inp, *op;
	struct vs_config *cfg;
	struct vs_test_run *t;
	struct vs_fdb_key k = {};
	struct vs_fdb_val *e;
	struct egress eg = {};
	__u8 hdr[18];
	__u8 *dst = hdr, *src = hdr + 6;
	__u64 now;
	int vid = -1, tagged_in = 0;

	sp = bpf_map_lookup_elem(&vs_slot_of, &ifindex);
	if (!sp)
		return TC_ACT_OK;
	eg.in_slot = *sp;
	if (eg.in_slot >= VS_MAX_PORTS)
		return TC_ACT_OK;
	inp = bpf_map_lookup_elem(&vs_ports, &eg.in_slot);
	cfg = bpf_map_lookup_elem(&vs_config, &zero);
	if (!inp || !cfg)
		return TC_ACT_OK;
	if (cfg->flags & VS_CFG_TEST) {
		eg.test = 1;
		t = bpf_map_lookup_elem(&vs_test_run, &zero);
		if (t) {
			t->n_out = 0;
			t->vlan = 0;
		}
		now = cfg->test_now_ns;
	} else {
		now = bpf_ktime_get_ns();
	}
	if (cfg->flags & VS_CFG_EVENTS)
		eg.observe = 1;
	else if (cfg->flags & VS_CFG_SAMPLE)
		eg.observe = sample_due(cfg, now);
	if (inp->flags & VS_PF_ISOLATED)
		eg.isolated = 1;
	if (inp->flags & VS_PF_UPCALL)
		return upcall(skb, cfg, &eg, VS_C_UPCALL_PORT);
	if (inp->priority)      /* --min-bandwidth-weight: its class on the uplink's htb (a redirect keeps it) */
		skb->priority = inp->priority;

	/* parse. The core sees a metadata tag back in the bytes (PACKET_AUXDATA): count it there too. */
	len = skb->len + (skb->vlan_present ? 4 : 0);
	if (skb->len < ETH_HLEN || bpf_skb_load_bytes(skb, 0, hdr, ETH_HLEN)) {
		decided(skb, &eg, len, VS_C_DROP_MALFORMED);
		return TC_ACT_SHOT;
	}

	/* ingress */
	if (!(inp->flags & VS_PF_ADMIN_UP)) {
		decided(skb, &eg, len, VS_C_DROP_PORT_DOWN);
		return TC_ACT_SHOT;
	}
	if (dst[0] == 0x01 && dst[1] == 0x80 && dst[2] == 0xc2 && dst[3] == 0 && dst[4] == 0 && dst[5] < 16 &&
	    !((cfg->group_fwd_mask >> dst[5]) & 1)) {
		decided(skb, &eg, len, VS_C_DROP_RESERVED_GROUP);
		return TC_ACT_SHOT;
	}
	if ((src[0] & 1) || !(src[0] | src[1] | src[2] | src[3] | src[4] | src[5])) {
		decided(skb, &eg, len, VS_C_DROP_INVALID_SRC);
		return TC_ACT_SHOT;
	}
	if (skb->vlan_present) {
		tagged_in = 1;
		eg.out_proto = skb->vlan_proto;
		eg.out_tci = skb->vlan_tci;
	} else if ((hdr[12] == 0x81 && hdr[13] == 0x00) || (hdr[12] == 0x88 && hdr[13] == 0xa8)) {
		if (skb->len < ETH_HLEN + 4 || bpf_skb_load_bytes(skb, 0, hdr, 18)) {
			decided(skb, &eg, len, VS_C_DROP_MALFORMED);
			return TC_ACT_SHOT;
		}
		tagged_in = 1;
		eg.out_proto = hdr[12] == 0x81 ? ETH_P_8021Q_BE : ETH_P_8021AD_BE;
		eg.out_tci = ((__u32)hdr[14] << 8) | hdr[15];
	}
	if (tagged_in)
		vid = eg.out_tci & 0x0fff;
	eg.vlan = classify(inp, vid);
	if (!eg.vlan) {
		decided(skb, &eg, len, VS_C_DROP_VLAN_INGRESS);
		return TC_ACT_SHOT;
	}
	eg.tagged_now = tagged_in;
	if (!tagged_in) {
		eg.out_proto = ETH_P_8021Q_BE;          /* push_vlan: 802.1Q, PCP 0, DEI 0 */
		eg.out_tci = eg.vlan;
	} else if (vid == 0) {
		eg.out_tci = (eg.out_tci & 0xf000) | eg.vlan;
		eg.retag = 1;
	}
	if (inp->flags & (VS_PF_DHCP_GUARD | VS_PF_ROUTER_GUARD)) {     /* the ports with none pay this test */
		__u32 in_bytes = tagged_in && !skb->vlan_present, why;

		why = vs_guard(skb, in_bytes ? 18 : 14,
			       in_bytes ? ((__u32)hdr[16] << 8) | hdr[17] : ((__u32)hdr[12] << 8) | hdr[13], inp->flags);
		if (why) {     /* each with its constant: the verifier bounds the counter index */
			decided(skb, &eg, len, why == G_ROUTER ? VS_C_DROP_ROUTER_GUARD : VS_C_DROP_DHCP_GUARD);
			return TC_ACT_SHOT;
		}
	}
	if ((inp->flags & VS_PF_MAC_LOCK) &&    /* MAC spoofing off (SwitchCore._source_check); others pay the test */
	    (src[0] != inp->mac[0] || src[1] != inp->mac[1] || src[2] != inp->mac[2] || src[3] != inp->mac[3] ||
	     src[4] != inp->mac[4] || src[5] != inp->mac[5])) {
		decided(skb, &eg, len, VS_C_DROP_SPOOFED_MAC);
		return TC_ACT_SHOT;
	}
	if ((inp->flags & VS_PF_POLICE) && police_excess(eg.in_slot, inp, now, len)) {  /* others pay the test */
		decided(skb, &eg, len, VS_C_DROP_MAX_BANDWIDTH);
		return TC_ACT_SHOT;
	}

	/* learn */
	/* the learning domain: a private VLAN's VLANs are learned and looked up under its primary */
	domain = cfg->domain[eg.vlan & (VS_VLAN_IDS - 1)];
	fid = domain ? domain : eg.vlan;
	if ((inp->flags & VS_PF_LEARN) && learn(cfg, eg.in_slot, fid, src, now))
		return upcall(skb, cfg, &eg, VS_C_UPCALL_TABLE_FULL);

	/* decide */
	if (dst[0] & 1) {
		if (vlan_bit(cfg->py_vlans, eg.vlan))
			return upcall(skb, cfg, &eg, VS_C_UPCALL_FLOOD);
		if ((inp->flags & VS_PF_STORM) && storm_excess(eg.in_slot, inp, now)) {  /* others pay the test */
			decided(skb, &eg, len, VS_C_DROP_STORM_LIMIT);
			return TC_ACT_SHOT;
		}
		eg.mirror = cfg->mirror_dests && mirrored(cfg, inp, vlan_bit(cfg->mirror_vlans, eg.vlan));
		if (eg.mirror && cfg->mirror_py)       /* a copy for a port only Python serves */
			return upcall(skb, cfg, &eg, VS_C_UPCALL_FLOOD);
		if ((dst[0] & dst[1] & dst[2] & dst[3] & dst[4] & dst[5]) == 0xff)
			decided(skb, &eg, len, VS_C_FLOOD_BROADCAST);
		else
			decided(skb, &eg, len, VS_C_FLOOD_MULTICAST);
		return vs_flood(skb, &eg);
	}
	__builtin_memcpy(k.mac, dst, 6);
	k.vlan = fid;
	e = bpf_map_lookup_elem(&vs_fdb, &k);
	if (!e || (!(e->flags & VS_FDB_STATIC) && now - e->seen_ns > cfg->ageing_ns)) {
		if (vlan_bit(cfg->py_vlans, eg.vlan))
			return upcall(skb, cfg, &eg, VS_C_UPCALL_FLOOD);
		if ((inp->flags & VS_PF_STORM) && storm_excess(eg.in_slot, inp, now)) {
			decided(skb, &eg, len, VS_C_DROP_STORM_LIMIT);
			return TC_ACT_SHOT;
		}
		eg.mirror = cfg->mirror_dests && mirrored(cfg, inp, vlan_bit(cfg->mirror_vlans, eg.vlan));
		if (eg.mirror && cfg->mirror_py)
			return upcall(skb, cfg, &eg, VS_C_UPCALL_FLOOD);
		decided(skb, &eg, len, VS_C_FLOOD_UNKNOWN);
		return vs_flood(skb, &eg);
	}
	out = e->slot;
	if (out == eg.in_slot) {
		decided(skb, &eg, len, VS_C_DROP_SAME_PORT);
		return TC_ACT_SHOT;
	}
	op = out < VS_MAX_PORTS ? bpf_map_lookup_elem(&vs_ports, &out) : NULL;
	if (!op || (op->flags & PORT_UP) != PORT_UP) {
		decided(skb, &eg, len, VS_C_DROP_EGRESS_DOWN);
		return TC_ACT_SHOT;
	}
	if (inp->flags & op->flags & VS_PF_ISOLATED) {  /* both isolated (isolation.refusal); others pay the test */
		decided(skb, &eg, len, VS_C_DROP_ISOLATED);
		return TC_ACT_SHOT;
	}
	if (domain && !is_member(op, eg.vlan)) {        /* shared learning found a port that does not receive it */
		decided(skb, &eg, len, VS_C_DROP_PRIVATE_VLAN);
		return TC_ACT_SHOT;
	}
	/* A port only Python serves, or one whose frames Python decides (VS_PF_UPCALL: e.g. its ACLs, whose
	 * "in" direction filters what it is delivered): Python decides the delivery too. */
	if (!(op->flags & VS_PF_KERNEL) || (op->flags & VS_PF_UPCALL))
		return upcall(skb, cfg, &eg, VS_C_UPCALL_DEST);
	eg.mirror = mirrored(cfg, inp, op->flags & VS_PF_MIRROR_SRC);
	if (eg.mirror) {                        /* the one output and the destinations' copies */
		if (cfg->mirror_py)
			return upcall(skb, cfg, &eg, VS_C_UPCALL_DEST);
		decided(skb, &eg, len, VS_C_FORWARD_LEARNED);
		eg.only = out + 1;
		return vs_flood(skb, &eg);
	}
	decided(skb, &eg, len, VS_C_FORWARD_LEARNED);
	if (eg.observe) {
		ev_out(out);
		ev_emit();
	}
	if (set_tag(skb, &eg, op)) {
		count(eg.in_slot, VS_C_TAG_FAIL, 1);
		return TC_ACT_SHOT;
	}
	if (eg.test)
		record(skb, out);
	else
		sent(skb, out);
	return bpf_redirect(op->ifindex, out_flags(skb, op));
}

/* What the switch leaves undecided goes on to the link's next filter (TC_ACT_UNSPEC) rather than
 * straight to the stack (TC_ACT_OK ends the filter chain): on an External switch's uplink that is
 * the takeover's drop, so the host stack never sees a frame from the NIC; on any other link there is
 * no next filter and the frame passes, as with TC_ACT_OK. */
static __always_inline int pass_on(int verdict)
{
	return verdict == TC_ACT_OK ? TC_ACT_UNSPEC : verdict;
}

/* On a link's ingress (veth ends, the uplink NIC, a TAP QEMU opened): the frame came in on that link. */
SEC("tc")
int vs_ingress(struct __sk_buff *skb)
{
	return pass_on(vs_switch(skb, skb->ingress_ifindex));
}

/* On the host vNIC's egress: what the host stack sends out of the TAP enters the switch there
 * (skb->ingress_ifindex is where a routed frame came from, or 0: the TAP itself is the in-port). */
SEC("tc")
int vs_egress(struct __sk_buff *skb)
{
	return pass_on(vs_switch(skb, skb->ifindex));
}

/* On the upcall TAP's ingress: a frame Python wrote there for a kernel port. Its S-tag (in skb metadata
 * by now) names the out-slot; the tag is popped and the frame redirected out of that port's link as
 * it is (Python's core already edited its own VLAN tag for that port). Anything else is dropped. */
SEC("tc")
int vs_downcall(struct __sk_buff *skb)
{
	__u32 slot;
	struct vs_port *p;

	if (!skb->vlan_present || skb->vlan_proto != bpf_htons(VS_UPCALL_TPID))
		return TC_ACT_SHOT;
	slot = (skb->vlan_tci & 0x0fff) - 1;
	if (slot >= VS_MAX_PORTS)
		return TC_ACT_SHOT;
	p = bpf_map_lookup_elem(&vs_ports, &slot);
	if (!p || !(p->flags & VS_PF_KERNEL) || !p->ifindex || bpf_skb_vlan_pop(skb))
		return TC_ACT_SHOT;
	count(slot, VS_C_DOWNCALL, 1);
	sent(skb, slot);
	return bpf_redirect(p->ifindex, out_flags(skb, p));
}

char LICENSE[] SEC("license") = "GPL";
