/* natlab's DPDK fast path: EAL and ports, rx/tx bursts, and a session table of
 * already-decided rewrites (one entry per direction of an established session).
 *
 * One compilation unit in four files: nl_base.c (types, the EAL), nl_table.c (the
 * session table and the per-packet rewrite), nl_ports.c (ports, bursts, counters),
 * nl_workers.c (N worker lcores).
 *
 * Theory of operation
 * -------------------
 * Python calls nl_poll() once per loop: one rx burst per port; for each frame the
 * C code either rewrites and queues it for tx (a hit in the session table), or
 * hands it to Python (a miss: the engine decides, and may install an entry).
 * Per packet, nothing here allocates, locks or blocks: the table is open
 * addressing with linear probing over a fixed array sized at nl_open() (full:
 * the install is refused and counted); a lookup is one hash and a short probe.
 *
 * A hit is only taken when nothing per-packet is needed: IPv4 without options,
 * not a fragment, TTL > 1, length within the egress MTU, addressed to the port's
 * MAC, UDP/TCP with a whole header (TCP without SYN/FIN/RST), or ICMP echo
 * (request inside, reply outside). The rewrite adds precomputed RFC 1624
 * deltas to the IPv4 and L4 checksums (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'));
 * the TTL decrement is part of the IPv4 delta (RFC 1812 5.3.1).
 *
 * Each entry counts packets and bytes and keeps its last-seen time; Python
 * reads them back (nl_fast_collect) and folds them into the engine, which
 * stays the only authority on sessions and timers.
 */
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_errno.h>
#include <rte_dev.h>
#include <rte_bus.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#define NL_MAX_PORTS 8
#define NL_BURST 32
#define NL_SLOW_MAX (NL_BURST * NL_MAX_PORTS)

enum { NL_SIDE_INSIDE = 0, NL_SIDE_OUTSIDE = 1 };
enum { NL_MISS_ABSENT = 0, NL_MISS_EXPIRED = 1, NL_MISS_OTHER = 2 };

struct nl_sess {
    uint32_t src, dst;          /* wire key (network byte order) */
    uint16_t sport, dport;
    uint8_t side, proto, used, dirty;
    uint32_t new_src, new_dst;  /* rewrite (network byte order) */
    uint16_t new_sport, new_dport;
    uint16_t ip_delta, l4_delta;
    uint16_t out_port, mtu;
    uint8_t eth[12];            /* dst MAC, src MAC of the egress frame */
    uint32_t next_free;
    double expires;             /* CLOCK_MONOTONIC seconds */
    double last_seen;
    uint64_t packets, bytes;
};

struct nl_slot {                /* the index: open addressing over entry numbers */
    uint32_t tag;               /* the key's full hash */
    uint32_t idx;               /* entry number + 1; 0: empty */
};

struct nl_entry {               /* what Python installs (host byte order) */
    uint8_t side, proto;
    uint32_t src, dst;
    uint16_t sport, dport;
    uint32_t new_src, new_dst;
    uint16_t new_sport, new_dport;
    double expires;
    uint16_t out_port, mtu;
    uint8_t eth[12];
};

struct nl_seen {                /* what Python reads back (host byte order) */
    uint8_t side, proto;
    uint32_t src, dst;
    uint16_t sport, dport;
    double last_seen, expires;
    uint64_t packets, bytes;
};

struct nl_slow {                /* one frame for the slow path */
    uint16_t port, reason;
    uint32_t len;
    const uint8_t *data;
};

struct nl_stats {
    uint64_t rx, tx, tx_dropped, fast_hits, misses, expired, other, table_full,
             installs, removes, clears, own_echo, not_for_us, alloc_failed;
    uint32_t entries, capacity;
};

struct nl_port {
    uint16_t port_id;
    uint8_t side;
    uint8_t mac[6];
    uint16_t n_tx;
    struct rte_mbuf *tx[NL_BURST * 4];
    uint64_t rx, tx_ok, tx_dropped;
};

struct nl_ctx {
    struct rte_mempool *pool;
    struct nl_port ports[NL_MAX_PORTS];
    int n_ports;
    struct nl_sess *sess;       /* capacity entries, a free list through next_free */
    struct nl_slot *slots;      /* mask + 1 >= 2 * capacity */
    uint32_t *dirty;            /* entries hit since the last collect (2 * capacity) */
    uint32_t mask, capacity, entries, free_head, n_dirty, dirty_overflow;
    struct rte_mbuf *slow[NL_SLOW_MAX];
    int n_slow;
    uint32_t last_rx;
    uint32_t port_pool_mbufs;   /* > 0: each port's rx gets a pool of its own (workers) */
    struct rte_mempool *port_pool[NL_MAX_PORTS];
    struct nl_stats st;
    char error[256];
};

static char nl_error_buf[256];

const char *nl_last_error(void) { return nl_error_buf; }

double nl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int nl_eal_init(int argc, char **argv)
{
    int rc = rte_eal_init(argc, argv);
    if (rc < 0)
        snprintf(nl_error_buf, sizeof nl_error_buf, "rte_eal_init: %s", rte_strerror(rte_errno));
    return rc;
}

int nl_port_count(void) { return rte_eth_dev_count_avail(); }

/* Make a virtual device after the EAL started (so a failed af_xdp can fall back). */
int nl_dev_probe(const char *devargs)
{
    int rc = rte_dev_probe(devargs);
    if (rc < 0)
        snprintf(nl_error_buf, sizeof nl_error_buf, "rte_dev_probe(%s): %s", devargs, rte_strerror(-rc));
    return rc;
}

int nl_dev_remove(const char *name)
{
    return rte_eal_hotplug_remove("vdev", name);
}

int nl_port_id(const char *name)
{
    uint16_t id;
    if (rte_eth_dev_get_port_by_name(name, &id) != 0)
        return -1;
    return id;
}

