/*
 * altroute's kernel offload of established flows: two programs sharing one hash map.
 *
 *   altroute_tc    tc program (tcx ingress of every router port): forwards a flow's frames in
 *                  the kernel with the NAT rewrite user space computed.
 *   altroute_sock  socket filter for the ETH_P_ALL taps: such a tap gets every frame before tc
 *                  ingress, so it drops exactly the frames altroute_tc forwards. Sockets bound to
 *                  an EtherType get frames after tc ingress and need no filter.
 *
 * Match (both programs, one predicate: flow_lookup): pkt_type host, no VLAN (metadata or
 * EtherType), IPv4 with IHL 5, not a fragment, TTL > 1, TCP without SYN/FIN/RST or UDP, at least
 * 54 bytes (Ethernet + IPv4 + TCP headers; shorter UDP frames stay in user space), a map hit on
 * {ifindex, saddr, daddr, sport, dport, proto}, and a non-GSO frame not longer than the out
 * link's MTU.
 *
 * On a hit the tc program rewrites MACs, addresses, ports and TTL (direct packet writes, all reads
 * done first), stamps last-seen and adds to the entry's packet and byte counters (atomic),
 * applies the entry's three precomputed checksum diffs -- bpf_l3_csum_replace (addresses + TTL),
 * bpf_l4_csum_replace with BPF_F_PSEUDO_HDR (addresses), then without it (ports): the kernel
 * applies only the pseudo-header diff to a CHECKSUM_PARTIAL skb, which is exactly right; for UDP
 * both carry BPF_F_MARK_MANGLED_0, so a zero checksum ("none") stays zero and a result of zero is
 * written as 0xffff -- and bpf_redirects the frame to the out port's egress: GSO super-frames
 * stay whole and are never copied. Anything else: TC_ACT_OK, the kernel goes on to deliver it to
 * the EtherType-bound packet sockets (user space) and to its own stack, which drops it.
 *
 * The Rust side (crates/altroute-io/src/ebpf/offload.rs) writes the map with the same layout;
 * crates/altroute-packet/src/pipeline/offload.rs `apply` is the pure Rust mirror of altroute_tc,
 * and tests/netns_ebpf.rs holds this program to it on random frames (BPF_PROG_TEST_RUN).
 *
 * Built by build.sh (clang -target bpfel); the object is committed beside this file.
 */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Ethernet + IPv4 without options + TCP without options: the bytes both programs read (for UDP
 * too: a shorter UDP frame is not offloaded, by either program). */
#define HDR_LEN (ETH_HLEN + sizeof(struct iphdr) + sizeof(struct tcphdr))

/* Frame offsets of the checksum fields. */
#define IP_CSUM_AT (ETH_HLEN + offsetof(struct iphdr, check))
#define TCP_CSUM_AT (ETH_HLEN + sizeof(struct iphdr) + offsetof(struct tcphdr, check))
#define UDP_CSUM_AT (ETH_HLEN + sizeof(struct iphdr) + 6)

/* IPv4 fragment offset and "more fragments" (network order): either set means a fragment. */
#define IP_FRAGMENT bpf_htons(0x3fff)

/* A frame as it arrives: the map key (20 bytes). */
struct flow_key {
	__u32 ifindex;  /* interface it arrives on (host order) */
	__be32 saddr;   /* the tuple as in the headers (network order) */
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;     /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad[3];    /* zero */
};

/* What to do with it, and the counters this program keeps (72 bytes). */
struct flow_action {
	__be32 saddr;         /* the new tuple (network order) */
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u32 out_ifindex;    /* egress interface */
	__u8 dst_mac[ETH_ALEN]; /* next hop */
	__u8 src_mac[ETH_ALEN]; /* the out port's */
	__u32 l3_diff;        /* checksum diffs, folded to 16 bits as the helpers want them */
	__u32 l4_addr_diff;
	__u32 l4_port_diff;
	__u32 max_len;        /* longest IPv4 total length of a non-GSO frame (the out link's MTU) */
	__u32 pad;
	__u64 last_seen_ns;   /* bpf_ktime_get_ns() of the last frame forwarded */
	__u64 packets;        /* frames forwarded (a GSO super-frame counts once) */
	__u64 bytes;          /* IPv4 total lengths forwarded */
};

_Static_assert(sizeof(struct flow_key) == 20, "the Rust side writes 20-byte keys");
_Static_assert(sizeof(struct flow_action) == 72, "the Rust side writes 72-byte values");
_Static_assert(__builtin_offsetof(struct flow_action, last_seen_ns) == 48, "counters at 48");

/* One entry per offloaded flow and direction; user space sets max_entries at load time. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2);
	__type(key, struct flow_key);
	__type(value, struct flow_action);
} altroute_flows SEC(".maps");

/* The predicate shared by both programs. `h` points at the frame's first HDR_LEN bytes (in the
 * packet for the tc program, a stack copy for the socket filter). Returns the entry, or NULL
 * when the frame stays with user space. */
static __always_inline struct flow_action *flow_lookup(struct __sk_buff *skb, const void *h)
{
	const __be16 *ethertype = h + 2 * ETH_ALEN;
	const struct iphdr *ip = h + ETH_HLEN;
	const struct tcphdr *tcp = h + ETH_HLEN + sizeof(struct iphdr);
	struct flow_key key = {};
	struct flow_action *act;

	if (skb->pkt_type != 0 /* PACKET_HOST */ || skb->vlan_present)
		return NULL;
	if (*ethertype != bpf_htons(ETH_P_IP))
		return NULL;
	if (ip->version != 4 || ip->ihl != 5 || (ip->frag_off & IP_FRAGMENT) || ip->ttl <= 1)
		return NULL;
	if (ip->protocol == IPPROTO_TCP) {
		if (tcp->syn || tcp->fin || tcp->rst)
			return NULL;
	} else if (ip->protocol != IPPROTO_UDP) {
		return NULL;
	}

	key.ifindex = skb->ifindex;
	key.saddr = ip->saddr;
	key.daddr = ip->daddr;
	/* Both ports in one copy (the UDP ports are at the same offsets). */
	__builtin_memcpy(&key.sport, &tcp->source, sizeof(key.sport) + sizeof(key.dport));
	key.proto = ip->protocol;
	act = bpf_map_lookup_elem(&altroute_flows, &key);
	if (!act)
		return NULL;

	/* A frame the kernel will not segment must fit the out link. */
	if (skb->gso_size == 0 && bpf_ntohs(ip->tot_len) > act->max_len)
		return NULL;
	return act;
}

/* The destination and source MACs, as three words (struct ethhdr is packed: through it the
 * compiler copies byte by byte). */
static __always_inline void copy_macs(void *frame, const struct flow_action *act)
{
	__u32 *to = frame;
	const __u32 *from = (const __u32 *)act->dst_mac;

	to[0] = from[0];
	to[1] = from[1];
	to[2] = from[2];
}

SEC("classifier")
int altroute_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (data + HDR_LEN > data_end) {
		/* Headers not all in the linear part: pull them in (the socket filter reads them
		 * with bpf_skb_load_bytes, so both programs must see the same frame). */
		bpf_skb_pull_data(skb, HDR_LEN);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		if (data + HDR_LEN > data_end)
			return TC_ACT_OK;
	}

	struct flow_action *act = flow_lookup(skb, data);
	if (!act)
		return TC_ACT_OK;

	struct iphdr *ip = data + ETH_HLEN;
	struct tcphdr *tcp = data + ETH_HLEN + sizeof(struct iphdr);
	__u64 len = bpf_ntohs(ip->tot_len);
	int udp = ip->protocol == IPPROTO_UDP;

	/* The rewrite (every read above is done). */
	copy_macs(data, act);
	ip->saddr = act->saddr;
	ip->daddr = act->daddr;
	tcp->source = act->sport;
	tcp->dest = act->dport;
	ip->ttl--;

	act->last_seen_ns = bpf_ktime_get_ns();
	__sync_fetch_and_add(&act->packets, 1);
	__sync_fetch_and_add(&act->bytes, len);

	/* Checksums, by offset: these helpers invalidate the packet pointers. */
	if (bpf_l3_csum_replace(skb, IP_CSUM_AT, 0, act->l3_diff, 0))
		return TC_ACT_SHOT;
	__u32 at = udp ? UDP_CSUM_AT : TCP_CSUM_AT;
	__u64 mangled0 = udp ? BPF_F_MARK_MANGLED_0 : 0;
	if (bpf_l4_csum_replace(skb, at, 0, act->l4_addr_diff, BPF_F_PSEUDO_HDR | mangled0))
		return TC_ACT_SHOT;
	if (bpf_l4_csum_replace(skb, at, 0, act->l4_port_diff, mangled0))
		return TC_ACT_SHOT;

	return bpf_redirect(act->out_ifindex, 0);
}

/* Returns 0 (the socket gets nothing) for exactly the frames altroute_tc forwards, the whole
 * frame otherwise. On a SOCK_RAW packet socket the skb data starts at the MAC header. */
SEC("socket")
int altroute_sock(struct __sk_buff *skb)
{
	/* The copy starts 2 bytes into an aligned buffer so that the IPv4 header is 4-byte
	 * aligned: the verifier refuses misaligned stack access. */
	__u8 buf[2 + HDR_LEN] __attribute__((aligned(8)));
	const void *h = buf + 2;

	if (bpf_skb_load_bytes(skb, 0, buf + 2, HDR_LEN))
		return -1;
	return flow_lookup(skb, h) ? 0 : -1;
}

char LICENSE[] SEC("license") = "GPL";
