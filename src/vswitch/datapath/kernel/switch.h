/* vswitch kernel fast path: the numbers and structs shared by switch.bpf.c and the Python loader.
 *
 * layout.py repeats every number here and tests/unit/test_kernel_layout.py checks that the two agree
 * (it reads this file; no compiler needed); the loader checks the map key/value sizes at load time.
 * Change both together. Structs are laid out by hand with explicit padding: no hidden holes.
 */
#ifndef VSWITCH_SWITCH_H
#define VSWITCH_SWITCH_H

/* Port slots 0..VS_MAX_PORTS-1: the largest flood. The flood (bpf_loop) visits the slots in use,
 * 0..vs_config.n_slots-1; the verifier's cost of bpf_loop does not grow with the number. */
#define VS_MAX_PORTS    1024
#define VS_VLAN_WORDS   64      /* 64 x 64 bits: one bit per VLAN id 0..4095 */
#define VS_HEAD_BYTES   32      /* test mode: bytes of each output frame recorded */

/* vs_port.flags */
#define VS_PF_ADMIN_UP  0x01
#define VS_PF_OPER_UP   0x02
#define VS_PF_LEARN     0x04
#define VS_PF_FLOOD     0x08
#define VS_PF_KERNEL    0x10    /* a link in this program's namespace: redirect/clone reach it */
#define VS_PF_TRUNK     0x20    /* else access */
#define VS_PF_UPCALL    0x40    /* every frame from this port goes to Python */
#define VS_PF_INGRESS   0x80    /* send into the link's ingress (BPF_F_INGRESS): the host vNIC, a TAP
				 * whose program sits on its egress (what the host sends) */
#define VS_PF_DHCP_GUARD   0x100 /* drop DHCP server messages from this port (vswitch.core.guards) */
#define VS_PF_ROUTER_GUARD 0x200 /* drop router advertisements and redirects from this port */
#define VS_PF_MAC_LOCK     0x400 /* MAC spoofing off: only vs_port.mac may be its source (layout.pack_port
				  * sends a port with no MAC yet, or with a MAC limit, up to Python) */
#define VS_PF_MIRROR_SRC   0x10000 /* port mirroring source: its frames, in and out, are copied to every
				    * destination (SwitchCore._mirror_for) */
#define VS_PF_MIRROR_DST   0x20000 /* port mirroring destination: it gets those copies */
#define VS_PF_ISOLATED     0x800 /* port isolation: never to or from another VS_PF_ISOLATED port */
#define VS_PF_PVLAN        0x1000 /* a private VLAN port: it sends in access_vlan and receives the VLANs of
				   * vs_port.allowed (PortPolicy.egress_vlans) */
#define VS_VLAN_IDS        4096  /* vs_config.domain: one entry per VLAN id */
#define VS_PF_STORM        0x4000 /* a storm limit: its floods are metered by vs_storm (vswitch.core.rates) */
#define VS_PF_POLICE       0x8000 /* a maximum bandwidth: its frames are policed by vs_police (core.rates) */
#define VS_RATE_COST_SHIFT 16    /* core.rates.COST_SHIFT: a byte's cost in 1/65536 ns */
#define VS_GUARD_EXT_MAX   8    /* IPv6 extension headers walked by the guards (core.guards.MAX_EXT_HEADERS) */

struct vs_port {
	__u32 ifindex;              /* 0 for a port only Python serves */
	__u32 flags;
	__u16 access_vlan;
	__u16 native_vlan;          /* trunk: 0 = no native VLAN */
	__u32 pad;
	__u64 allowed[VS_VLAN_WORDS]; /* trunk: allowed VLANs */
	__u8  mac[6];               /* appended: the port's one MAC when VS_PF_MAC_LOCK */
	__u16 pad2;
	__u64 storm_interval_ns;    /* appended, VS_PF_STORM: one token per interval (core.rates.storm_bucket) */
	__u64 storm_tolerance_ns;   /* how far ahead of now the bucket's time may be: (burst - 1) x interval */
	__u64 police_cost;          /* appended, VS_PF_POLICE: a byte's cost, ns << VS_RATE_COST_SHIFT */
	__u64 police_tolerance_ns;  /* the burst's worth of ns (core.rates.police_bucket) */
	__u32 priority;             /* appended: skb->priority its frames get (an htb class of the uplink), 0: kept */
	__u32 pad3;
};

struct vs_fdb_key {
	__u8  mac[6];
	__u16 vlan;
};

#define VS_FDB_STATIC   0x01

struct vs_fdb_val {
	__u32 slot;
	__u32 flags;
	__u64 seen_ns;              /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) when last seen */
};

/* vs_config.flags */
#define VS_CFG_TEST     0x01    /* record outputs into vs_test_* instead of sending; use test_now_ns */
#define VS_CFG_EVENTS   0x02    /* report each decision in vs_events (someone watches this switch) */
#define VS_CFG_SAMPLE   0x04    /* report a decision in vs_events at most once per sample_gap_ns per CPU
				 * (only a sampled stream reads the switch: the web UI's picture) */

struct vs_config {
	__u64 ageing_ns;
	__u64 refresh_ns;           /* refresh an entry's seen_ns at most this often (0: every frame) */
	__u64 test_now_ns;
	__u32 max_dynamic;          /* the MAC table's cap: a new MAC beyond it goes up (fair eviction) */
	__u32 group_fwd_mask;       /* bit N: 01:80:C2:00:00:0N is forwarded like any multicast */
	__u32 flags;
	__u32 n_slots;              /* highest slot in use + 1: the flood visits slots 0..n_slots-1 */
	__u64 py_vlans[VS_VLAN_WORDS]; /* VLANs with a flooding member only Python serves */
	__u32 upcall_ifindex;       /* the upcall TAP: frames that go up are redirected there (0: left to the stack) */
	__u32 pad_upcall;
	/* appended, port mirroring: the VLANs with a source port that is up and floods (a flood there
	 * reaches a source), how many destination ports are up, and how many of those only Python
	 * serves (then a mirrored frame goes up: the program cannot send its copy there) */
	__u64 mirror_vlans[VS_VLAN_WORDS];
	__u32 mirror_dests;
	__u32 mirror_py;
	__u16 domain[VS_VLAN_IDS];  /* appended: a private VLAN's primary for the primary and each of its
				     * secondaries (their one learning domain, core/isolation.py); 0: a VLAN of none */
	__u64 sample_gap_ns;        /* appended, VS_CFG_SAMPLE: the least time between two reported decisions */
};

/* vs_state: two counters whose difference is the number of dynamic entries in vs_fdb. Each has one
 * writer, so neither overwrites the other: the program adds (atomically), Python removes.
 * VS_ST_EVENTS_LOST: decision events vs_events had no room for (the program adds, atomically). */
#define VS_ST_ADDED     0
#define VS_ST_REMOVED   1
#define VS_ST_EVENTS_LOST 2
#define VS_ST_FDB_EVENTS_LOST 3 /* MAC table events vs_fdb_events had no room for (atomically) */
#define VS_NR_STATE     4

/* Per-CPU counters, one row (struct vs_counters) per port slot. The first six are the core's
 * PortCounters fields; the decision block is numbered like vswitch.core.reasons.Reason. A frame
 * that goes up (VS_C_UPCALL) counts only there and in its VS_C_UPCALL_* cause (plus learned/moved
 * when it was learned first): Python counts its decision. */
enum vs_counter {
	VS_C_RX_FRAMES = 0,
	VS_C_RX_BYTES,
	VS_C_FLOODS,
	VS_C_LEARNED,
	VS_C_MOVED,
	VS_C_STATIC_REFUSED,
	VS_C_FORWARD_LEARNED,
	VS_C_FLOOD_UNKNOWN,
	VS_C_FLOOD_BROADCAST,
	VS_C_FLOOD_MULTICAST,
	VS_C_DROP_SAME_PORT,
	VS_C_DROP_RESERVED_GROUP,
	VS_C_DROP_MALFORMED,
	VS_C_DROP_INVALID_SRC,
	VS_C_DROP_VLAN_INGRESS,
	VS_C_DROP_PORT_DOWN,
	VS_C_DROP_EGRESS_DOWN,
	VS_C_UPCALL,
	VS_C_UPCALL_PORT,           /* the ingress port is VS_PF_UPCALL */
	VS_C_UPCALL_DEST,           /* known unicast to a port only Python serves */
	VS_C_UPCALL_FLOOD,          /* a flood with a member only Python serves */
	VS_C_UPCALL_TABLE_FULL,     /* a new MAC with the table at its cap */
	VS_C_FLOOD_COPIES,          /* frames sent by floods (clones + the last redirect) */
	VS_C_REDIRECT_FAIL,
	VS_C_TAG_FAIL,              /* bpf_skb_vlan_push/pop failed: the output was skipped */
	VS_C_UPCALL_FAIL,           /* a frame that had to go up could not (no S-tag pushed): dropped */
	VS_C_DOWNCALL,              /* frames Python sent down the upcall TAP out of this port */
	VS_C_TX_FRAMES,             /* frames sent out of this port (redirects, flood copies, downcalls) */
	VS_C_TX_BYTES,              /* their bytes as on the wire (a metadata tag counted: the core's tx_bytes) */
	VS_C_DROP_DHCP_GUARD,       /* decisions, appended: Reason.DROP_DHCP_GUARD */
	VS_C_DROP_ROUTER_GUARD,     /* Reason.DROP_ROUTER_GUARD */
	VS_C_DROP_SPOOFED_MAC,      /* appended: Reason.DROP_SPOOFED_MAC */
	VS_C_DROP_MAC_LIMIT,        /* Reason.DROP_MAC_LIMIT (Python's: a limited port is served there) */
	VS_C_MIRRORED,              /* appended: a source's frames (in or out) a destination got (PortCounters.mirrored) */
	VS_C_MIRROR_TX,             /* a destination's mirror copies (PortCounters.mirror_tx) */
	VS_C_DROP_ACL,              /* Reason.DROP_ACL (Python's: a port with ACLs is served there) */
	VS_C_DROP_ISOLATED,         /* appended: Reason.DROP_ISOLATED */
	VS_C_DROP_PRIVATE_VLAN,     /* Reason.DROP_PRIVATE_VLAN */
	VS_C_DROP_STORM_LIMIT,      /* appended: Reason.DROP_STORM_LIMIT */
	VS_C_DROP_MAX_BANDWIDTH,    /* appended: Reason.DROP_MAX_BANDWIDTH */
	VS_NR_COUNTERS
};

struct vs_counters {
	__u64 c[VS_NR_COUNTERS];
};

/* test mode: what the last run decided (vs_test_run[0]) and sent (vs_test_out[0..n_out-1]) */
struct vs_test_run {
	__u32 reason;               /* a VS_C_ decision or VS_C_UPCALL_* counter */
	__u32 vlan;
	__u32 n_out;
	__u32 pad;
};

struct vs_test_out {
	__u32 slot;
	__u32 len;                  /* skb->len (the metadata tag not included) */
	__u32 vlan_present;
	__u16 vlan_proto;           /* network order, as in __sk_buff */
	__u16 vlan_tci;
	__u8  head[VS_HEAD_BYTES];
};

/* vs_events (a BPF ring buffer): one record per frame the program decided, while VS_CFG_EVENTS is
 * set. Frames that go up are not reported here: Python decides (and reports) them. */
#define VS_EV_DECISION  1
#define VS_EV_HEAD      128     /* first bytes of the frame carried (as it arrived, tag in metadata) */
#define VS_EV_OUT_WORDS 16      /* output slots bitmap: 16 x 64 bits = every one of VS_MAX_PORTS */
#define VS_EV_RING_BYTES 262144  /* the ring (256 KiB): ~860 events */

struct vs_event {
	__u32 kind;                 /* VS_EV_DECISION */
	__u32 in_slot;
	__u32 reason;               /* a VS_C_ decision counter */
	__u32 vlan;                 /* the VLAN classified to, 0 when dropped before */
	__u32 len;                  /* the frame's length as the core counts it (a metadata tag included) */
	__u32 head_len;             /* bytes of head[] filled */
	__u64 ktime_ns;             /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) at the decision */
	__u32 vlan_present;         /* the frame's tag was in skb metadata (not in head[]) */
	__u16 vlan_proto;           /* network order, as in __sk_buff */
	__u16 vlan_tci;
	__u64 outs[VS_EV_OUT_WORDS]; /* bit s of word s/64: slot s is an output of the decision */
	__u8  head[VS_EV_HEAD];
};

/* vs_fdb_events (a BPF ring buffer, always on): one record per MAC the program learned or moved, so
 * Python's copy of the table (and `events`) follows every learn and move as it happens, a flap
 * faster than the once-a-second copy included. A full ring never waits: the record is counted in
 * vs_state[VS_ST_FDB_EVENTS_LOST] and the next copy of the map catches the state up. */
#define VS_FE_LEARNED   1
#define VS_FE_MOVED     2
#define VS_FE_RING_BYTES 65536  /* 64 KiB: ~2000 records */

struct vs_fdb_event {
	__u8  mac[6];
	__u16 vlan;
	__u32 kind;                 /* VS_FE_LEARNED or VS_FE_MOVED */
	__u32 slot;                 /* where the MAC is now */
	__u32 old_slot;             /* moved: where it was (learned: = slot) */
	__u32 pad;
	__u64 ktime_ns;             /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) when learned */
};

/* The upcall path. A frame that goes up is redirected to the switch's upcall TAP (vs_config.upcall_ifindex)
 * with an 802.1ad S-tag pushed in front of its own tag, if any: VID = in-slot + 1, PCP = its cause
 * (VS_C_UPCALL_* - VS_C_UPCALL). Python writes a frame for a kernel port back into that TAP with an S-tag
 * VID = out-slot + 1 (PCP 0); vs_downcall on the TAP's ingress pops it and redirects the frame out. */
#define VS_UPCALL_TPID  0x88A8

#endif
