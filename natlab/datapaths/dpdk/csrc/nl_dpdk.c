/* natlab's DPDK fast path: EAL and ports, rx/tx bursts, and a session table of
 * already-decided rewrites (one entry per direction of an established session).
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

/* ---- the session table ------------------------------------------------- */

static inline uint32_t nl_hash(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
                               uint8_t side, uint8_t proto)
{
    uint64_t h = (((uint64_t)src << 32) | dst) * 0x9E3779B97F4A7C15ULL;
    h ^= ((((uint64_t)sport << 16) | dport) << 16 | ((uint64_t)side << 8) | proto)
         * 0xC2B2AE3D27D4EB4FULL;
    h ^= h >> 29;
    h *= 0x165667B19E3779F9ULL;
    h ^= h >> 32;
    return (uint32_t)h;
}

static inline struct nl_sess *nl_find(struct nl_ctx *c, uint32_t src, uint32_t dst, uint16_t sport,
                                      uint16_t dport, uint8_t side, uint8_t proto, uint32_t *slot_out)
{
    uint32_t h = nl_hash(src, dst, sport, dport, side, proto);
    uint32_t i = h & c->mask;
    for (;;) {
        struct nl_slot *sl = &c->slots[i];
        if (sl->idx == 0) {
            if (slot_out) *slot_out = i;
            return NULL;
        }
        if (sl->tag == h) {
            struct nl_sess *s = &c->sess[sl->idx - 1];
            if (s->src == src && s->dst == dst && s->sport == sport && s->dport == dport
                && s->side == side && s->proto == proto) {
                if (slot_out) *slot_out = i;
                return s;
            }
        }
        i = (i + 1) & c->mask;
    }
}

static inline uint32_t nl_fold(uint32_t sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

/* The one's complement sum of (~old + new) over 16-bit words as they lie in memory. */
static uint32_t nl_word_delta(uint32_t sum, uint16_t old, uint16_t new_)
{
    return sum + (uint16_t)~old + new_;
}

static uint32_t nl_addr_delta(uint32_t sum, uint32_t old, uint32_t new_)
{
    uint16_t o[2], n[2];
    memcpy(o, &old, 4);
    memcpy(n, &new_, 4);
    return nl_word_delta(nl_word_delta(sum, o[0], n[0]), o[1], n[1]);
}

int nl_fast_add(struct nl_ctx *c, const struct nl_entry *e)
{
    uint32_t src = htonl(e->src), dst = htonl(e->dst);
    uint16_t sport = htons(e->sport), dport = htons(e->dport);
    uint32_t slot;
    struct nl_sess *s = nl_find(c, src, dst, sport, dport, e->side, e->proto, &slot);
    if (s == NULL) {
        if (c->entries >= c->capacity || c->free_head == 0) {
            c->st.table_full++;
            return -1;
        }
        uint32_t idx = c->free_head;
        s = &c->sess[idx - 1];
        c->free_head = s->next_free;
        memset(s, 0, sizeof *s);
        s->src = src; s->dst = dst; s->sport = sport; s->dport = dport;
        s->side = e->side; s->proto = e->proto; s->used = 1;
        c->slots[slot].tag = nl_hash(src, dst, sport, dport, e->side, e->proto);
        c->slots[slot].idx = idx;
        c->entries++;
    }
    s->new_src = htonl(e->new_src);
    s->new_dst = htonl(e->new_dst);
    s->new_sport = htons(e->new_sport);
    s->new_dport = htons(e->new_dport);
    uint32_t addr = nl_addr_delta(nl_addr_delta(0, src, s->new_src), dst, s->new_dst);
    s->ip_delta = (uint16_t)nl_fold(addr + htons(0xfeff));  /* TTL - 1: the word (TTL, proto) falls by 0x0100 */
    uint32_t ports = nl_word_delta(nl_word_delta(0, sport, s->new_sport), dport, s->new_dport);
    if (e->proto == IPPROTO_ICMP)
        s->l4_delta = (uint16_t)nl_fold(ports);          /* no pseudo-header (RFC 792) */
    else
        s->l4_delta = (uint16_t)nl_fold(addr + ports);
    s->expires = e->expires;
    s->out_port = e->out_port;
    s->mtu = e->mtu;
    memcpy(s->eth, e->eth, 12);
    c->st.installs++;
    return 0;
}

/* Backward-shift deletion keeps linear probing free of tombstones; the entry goes
 * back on the free list. */
static void nl_erase(struct nl_ctx *c, uint32_t i)
{
    struct nl_sess *s = &c->sess[c->slots[i].idx - 1];
    s->used = 0;
    s->dirty = 0;           /* a stale number in the dirty list is skipped */
    s->next_free = c->free_head;
    c->free_head = c->slots[i].idx;
    c->slots[i].idx = 0;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & c->mask;
        struct nl_slot *sl = &c->slots[j];
        if (sl->idx == 0)
            break;
        uint32_t home = sl->tag & c->mask;
        int stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            c->slots[i] = *sl;
            sl->idx = 0;
            i = j;
        }
    }
    c->entries--;
}

static void nl_seen_of(const struct nl_sess *s, struct nl_seen *o)
{
    o->side = s->side; o->proto = s->proto;
    o->src = ntohl(s->src); o->dst = ntohl(s->dst);
    o->sport = ntohs(s->sport); o->dport = ntohs(s->dport);
    o->last_seen = s->last_seen; o->expires = s->expires;
    o->packets = s->packets; o->bytes = s->bytes;
}

/* Remove one entry; its unread counters go to *out (packets 0: none). 1 if found. */
int nl_fast_del(struct nl_ctx *c, uint8_t side, uint8_t proto, uint32_t src, uint16_t sport,
                uint32_t dst, uint16_t dport, struct nl_seen *out)
{
    uint32_t slot;
    struct nl_sess *s = nl_find(c, htonl(src), htonl(dst), htons(sport), htons(dport), side, proto, &slot);
    if (s == NULL)
        return 0;
    nl_seen_of(s, out);
    nl_erase(c, slot);
    c->st.removes++;
    return 1;
}

/* Entries hit since the last collect (their counters then start again from 0): up to max
 * per call; *more says call again. O(entries hit), not O(table). */
int nl_fast_collect(struct nl_ctx *c, struct nl_seen *out, int max, int *more)
{
    int n = 0;
    *more = 0;
    if (c->dirty_overflow) {        /* the list overflowed: look at every entry once */
        for (uint32_t k = 0; k < c->capacity && n < max; k++) {
            struct nl_sess *s = &c->sess[k];
            if (s->used && s->packets) {
                nl_seen_of(s, &out[n++]);
                s->packets = 0; s->bytes = 0; s->dirty = 0;
            }
        }
        if (n == max) { *more = 1; return n; }
        c->dirty_overflow = 0;
        c->n_dirty = 0;
        return n;
    }
    while (c->n_dirty > 0 && n < max) {
        struct nl_sess *s = &c->sess[c->dirty[--c->n_dirty]];
        if (!s->used || !s->dirty)
            continue;
        s->dirty = 0;
        if (!s->packets)
            continue;
        nl_seen_of(s, &out[n++]);
        s->packets = 0;
        s->bytes = 0;
    }
    *more = c->n_dirty > 0;
    return n;
}

static void nl_reset_table(struct nl_ctx *c)
{
    memset(c->slots, 0, sizeof(struct nl_slot) * ((size_t)c->mask + 1));
    memset(c->sess, 0, sizeof(struct nl_sess) * c->capacity);
    for (uint32_t k = 0; k < c->capacity; k++)
        c->sess[k].next_free = k + 2 <= c->capacity ? k + 2 : 0;
    c->free_head = c->capacity ? 1 : 0;
    c->entries = 0;
    c->n_dirty = 0;
    c->dirty_overflow = 0;
}

void nl_fast_clear(struct nl_ctx *c)
{
    nl_reset_table(c);
    c->st.clears++;
}

/* ---- ports and mbufs ---------------------------------------------------- */

/* The context and the session table (plain memory: no EAL needed, so tests can use it). */
struct nl_ctx *nl_open(uint32_t capacity)
{
    struct nl_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(nl_error_buf, sizeof nl_error_buf, "no memory for the context");
        return NULL;
    }
    if (capacity < 1)
        capacity = 1;
    uint32_t slots = 16;
    while (slots < 2 * capacity)
        slots <<= 1;
    c->slots = calloc(slots, sizeof(struct nl_slot));
    c->sess = calloc(capacity, sizeof(struct nl_sess));
    c->dirty = calloc(2 * (size_t)capacity, sizeof(uint32_t));
    if (c->slots == NULL || c->sess == NULL || c->dirty == NULL) {
        snprintf(nl_error_buf, sizeof nl_error_buf, "no memory for %u sessions", capacity);
        free(c->slots); free(c->sess); free(c->dirty); free(c);
        return NULL;
    }
    c->mask = slots - 1;
    c->capacity = capacity;
    nl_reset_table(c);
    return c;
}

/* The mbuf pool (after the EAL started). */
int nl_open_pool(struct nl_ctx *c, uint32_t n_mbufs)
{
    c->pool = rte_pktmbuf_pool_create("nl_pool", n_mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                      rte_socket_id());
    if (c->pool == NULL) {
        snprintf(nl_error_buf, sizeof nl_error_buf, "mbuf pool of %u: %s", n_mbufs,
                 rte_strerror(rte_errno));
        return -1;
    }
    return 0;
}

int nl_port_add(struct nl_ctx *c, uint16_t port_id, uint8_t side, uint16_t rx_desc, uint16_t tx_desc)
{
    if (c->n_ports >= NL_MAX_PORTS) {
        snprintf(nl_error_buf, sizeof nl_error_buf, "at most %d ports", NL_MAX_PORTS);
        return -1;
    }
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof conf);
    struct rte_mempool *pool = c->pool;
    if (c->port_pool_mbufs) {
        /* Ports polled by different lcores must not share an af_xdp umem (one mempool is
         * one umem): each port's rx has its own pool; tx across ports then copies. */
        char name[32];
        snprintf(name, sizeof name, "nl_pool_p%d", c->n_ports);
        pool = rte_pktmbuf_pool_create(name, c->port_pool_mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                       rte_socket_id());
        if (pool == NULL) {
            snprintf(nl_error_buf, sizeof nl_error_buf, "port %u mbuf pool: %s", port_id,
                     rte_strerror(rte_errno));
            return -1;
        }
        c->port_pool[c->n_ports] = pool;
    }
    int rc = rte_eth_dev_configure(port_id, 1, 1, &conf);
    if (rc == 0)
        rc = rte_eth_rx_queue_setup(port_id, 0, rx_desc, rte_eth_dev_socket_id(port_id), NULL, pool);
    if (rc == 0)
        rc = rte_eth_tx_queue_setup(port_id, 0, tx_desc, rte_eth_dev_socket_id(port_id), NULL);
    if (rc == 0)
        rc = rte_eth_dev_start(port_id);
    if (rc != 0) {
        snprintf(nl_error_buf, sizeof nl_error_buf, "port %u set-up: %s", port_id, rte_strerror(-rc));
        return -1;
    }
    rte_eth_promiscuous_enable(port_id);    /* not every PMD has it; frames are filtered by MAC here */
    struct nl_port *p = &c->ports[c->n_ports];
    memset(p, 0, sizeof *p);
    p->port_id = port_id;
    p->side = side;
    struct rte_ether_addr mac;
    rte_eth_macaddr_get(port_id, &mac);
    memcpy(p->mac, mac.addr_bytes, 6);
    return c->n_ports++;
}

void nl_port_mac(struct nl_ctx *c, int index, uint8_t *out)
{
    memcpy(out, c->ports[index].mac, 6);
}

static void nl_flush_port(struct nl_ctx *c, struct nl_port *p)
{
    uint16_t sent = 0;
    while (sent < p->n_tx) {
        uint16_t n = rte_eth_tx_burst(p->port_id, 0, p->tx + sent, p->n_tx - sent);
        if (n == 0)
            break;
        sent += n;
    }
    p->tx_ok += sent;
    c->st.tx += sent;
    if (sent < p->n_tx) {
        uint16_t lost = p->n_tx - sent;
        rte_pktmbuf_free_bulk(p->tx + sent, lost);
        p->tx_dropped += lost;
        c->st.tx_dropped += lost;
    }
    p->n_tx = 0;
}

void nl_flush(struct nl_ctx *c)
{
    for (int i = 0; i < c->n_ports; i++)
        if (c->ports[i].n_tx)
            nl_flush_port(c, &c->ports[i]);
}

static inline void nl_queue_tx(struct nl_ctx *c, int index, struct rte_mbuf *m)
{
    struct nl_port *p = &c->ports[index];
    if (p->n_tx == RTE_DIM(p->tx))
        nl_flush_port(c, p);
    p->tx[p->n_tx++] = m;
}

/* Queue a frame Python built (ARP, ICMP, what the engine forwarded or emitted). */
int nl_send(struct nl_ctx *c, int index, const uint8_t *frame, uint32_t len)
{
    if (index < 0 || index >= c->n_ports)
        return -1;
    struct rte_mbuf *m = rte_pktmbuf_alloc(c->pool);
    if (m == NULL) {
        c->st.alloc_failed++;
        return -1;
    }
    char *dst = rte_pktmbuf_append(m, (uint16_t)len);
    if (dst == NULL || len > 0xffff) {
        rte_pktmbuf_free(m);
        c->st.alloc_failed++;
        return -1;
    }
    memcpy(dst, frame, len);
    nl_queue_tx(c, index, m);
    return 0;
}

/* ---- the per-packet fast path -------------------------------------------- */

static inline uint16_t nl_apply(uint16_t check, uint16_t delta)
{
    return (uint16_t)~nl_fold((uint16_t)~check + (uint32_t)delta);
}

/* The frame rewritten in place: its egress port; or -1, for the slow path (*reason set).
 * `side` is the ingress port's, `mac` its address. */
static inline int nl_fast_core(struct nl_ctx *c, uint8_t side, const uint8_t *mac, uint8_t *f,
                               uint32_t len, double now, uint16_t *reason)
{
    *reason = NL_MISS_OTHER;
    if (len < 14 + 20 + 8 || f[12] != 0x08 || f[13] != 0x00)
        return -1;
    if (memcmp(f, mac, 6) != 0)
        return -1;
    uint8_t *ip = f + 14;
    uint32_t tot = ((uint32_t)ip[2] << 8) | ip[3];
    if (ip[0] != 0x45 || tot < 28 || tot > len - 14 || (ip[6] & 0x3f) || ip[7] || ip[8] <= 1)
        return -1;
    {   /* the header checksum, as a router checks it (RFC 1812 5.2.2) */
        uint32_t sum = 0;
        for (int w = 0; w < 20; w += 2)
            sum += ((uint32_t)ip[w] << 8) | ip[w + 1];
        if (nl_fold(sum) != 0xffff)
            return -1;
    }
    uint8_t proto = ip[9];
    uint8_t *l4 = ip + 20;
    uint16_t sport, dport;
    uint16_t *check;
    if (proto == IPPROTO_UDP) {
        memcpy(&sport, l4, 2);
        memcpy(&dport, l4 + 2, 2);
        check = (uint16_t *)(l4 + 6);
    } else if (proto == IPPROTO_TCP) {
        if (tot < 40 || (l4[13] & 0x07))          /* FIN, SYN, RST: the engine's */
            return -1;
        memcpy(&sport, l4, 2);
        memcpy(&dport, l4 + 2, 2);
        check = (uint16_t *)(l4 + 16);
    } else if (proto == IPPROTO_ICMP) {
        if (l4[1] != 0)
            return -1;
        if (side == NL_SIDE_INSIDE && l4[0] == 8) {
            memcpy(&sport, l4 + 4, 2);
            dport = 0;
        } else if (side == NL_SIDE_OUTSIDE && l4[0] == 0) {
            sport = 0;
            memcpy(&dport, l4 + 4, 2);
        } else {
            return -1;
        }
        check = (uint16_t *)(l4 + 2);
    } else {
        return -1;
    }
    uint32_t src, dst;
    memcpy(&src, ip + 12, 4);
    memcpy(&dst, ip + 16, 4);
    struct nl_sess *s = nl_find(c, src, dst, sport, dport, side, proto, NULL);
    if (s == NULL) {
        *reason = NL_MISS_ABSENT;
        return -1;
    }
    if (now >= s->expires) {
        *reason = NL_MISS_EXPIRED;
        return -1;
    }
    if (tot > s->mtu)
        return -1;
    memcpy(ip + 12, &s->new_src, 4);
    memcpy(ip + 16, &s->new_dst, 4);
    ip[8]--;
    uint16_t ipc;
    memcpy(&ipc, ip + 10, 2);
    ipc = nl_apply(ipc, s->ip_delta);
    memcpy(ip + 10, &ipc, 2);
    if (proto == IPPROTO_ICMP) {
        if (side == NL_SIDE_INSIDE)
            memcpy(l4 + 4, &s->new_sport, 2);
        else
            memcpy(l4 + 4, &s->new_dport, 2);
    } else {
        memcpy(l4, &s->new_sport, 2);
        memcpy(l4 + 2, &s->new_dport, 2);
    }
    uint16_t l4c;
    memcpy(&l4c, check, 2);
    if (!(proto == IPPROTO_UDP && l4c == 0)) {     /* UDP without a checksum stays so */
        l4c = nl_apply(l4c, s->l4_delta);
        if (proto == IPPROTO_UDP && l4c == 0)
            l4c = 0xffff;
        memcpy(check, &l4c, 2);
    }
    memcpy(f, s->eth, 12);
    if (!s->dirty) {
        s->dirty = 1;
        if (c->n_dirty < 2 * c->capacity)
            c->dirty[c->n_dirty++] = (uint32_t)(s - c->sess);
        else
            c->dirty_overflow = 1;
    }
    s->packets++;
    s->bytes += tot;
    s->last_seen = now;
    return s->out_port;
}

/* For tests: the fast path on a frame in a buffer (no EAL, no mbuf). */
int nl_fast_frame(struct nl_ctx *c, uint8_t side, const uint8_t *mac, uint8_t *f, uint32_t len,
                  double now, uint16_t *reason)
{
    return nl_fast_core(c, side, mac, f, len, now, reason);
}


/* One rx burst per port; hits go out, the rest wait in `slow` for Python. */
int nl_poll(struct nl_ctx *c, struct nl_slow *slow, int max, double now)
{
    struct rte_mbuf *burst[NL_BURST];
    int n_slow = 0;
    uint32_t got = 0;
    c->n_slow = 0;
    for (int pi = 0; pi < c->n_ports; pi++) {
        struct nl_port *p = &c->ports[pi];
        int room = max - n_slow;
        if (room > NL_BURST)
            room = NL_BURST;
        if (room <= 0)
            break;
        uint16_t n = rte_eth_rx_burst(p->port_id, 0, burst, (uint16_t)room);
        p->rx += n;
        c->st.rx += n;
        got += n;
        for (uint16_t k = 0; k < n; k++) {
            struct rte_mbuf *m = burst[k];
            uint8_t *f = rte_pktmbuf_mtod(m, uint8_t *);
            if (rte_pktmbuf_data_len(m) >= 12 && memcmp(f + 6, p->mac, 6) == 0) {
                c->st.own_echo++;           /* our own frame seen again (a tap) */
                rte_pktmbuf_free(m);
                continue;
            }
            uint16_t reason;
            int out = m->nb_segs == 1 ? nl_fast_core(c, p->side, p->mac, f, rte_pktmbuf_data_len(m),
                                                     now, &reason) : -1;
            if (m->nb_segs != 1)
                reason = NL_MISS_OTHER;
            if (out >= 0 && out < c->n_ports) {
                c->st.fast_hits++;
                nl_queue_tx(c, out, m);
                continue;
            }
            if (reason == NL_MISS_ABSENT) c->st.misses++;
            else if (reason == NL_MISS_EXPIRED) c->st.expired++;
            else c->st.other++;
            slow[n_slow].port = (uint16_t)pi;
            slow[n_slow].reason = reason;
            slow[n_slow].len = rte_pktmbuf_data_len(m);
            slow[n_slow].data = rte_pktmbuf_mtod(m, const uint8_t *);
            c->slow[n_slow++] = m;
        }
    }
    c->n_slow = n_slow;
    c->last_rx = got;
    nl_flush(c);
    return n_slow;
}

/* Free the frames of the last nl_poll's slow list (Python has copied them). */
void nl_release(struct nl_ctx *c)
{
    if (c->n_slow)
        rte_pktmbuf_free_bulk(c->slow, c->n_slow);
    c->n_slow = 0;
}

uint32_t nl_last_rx(struct nl_ctx *c) { return c->last_rx; }

void nl_pool_per_port(struct nl_ctx *c, uint32_t n_mbufs) { c->port_pool_mbufs = n_mbufs; }

/* Free mbufs in the pool (all lcores' caches included): a starved pool stops rx. */
uint32_t nl_mbufs_free(struct nl_ctx *c)
{
    uint32_t n = c->pool ? rte_mempool_avail_count(c->pool) : 0;
    for (int i = 0; i < NL_MAX_PORTS; i++)
        if (c->port_pool[i])
            n += rte_mempool_avail_count(c->port_pool[i]);
    return n;
}

void nl_stats(struct nl_ctx *c, struct nl_stats *out)
{
    *out = c->st;
    out->entries = c->entries;
    out->capacity = c->capacity;
}

/* rx, tx, tx dropped (ours); imissed, ierrors (the PMD's: frames lost before a burst). */
void nl_port_stats(struct nl_ctx *c, int index, uint64_t *out5)
{
    struct rte_eth_stats st;
    memset(&st, 0, sizeof st);
    rte_eth_stats_get(c->ports[index].port_id, &st);
    out5[0] = c->ports[index].rx;
    out5[1] = c->ports[index].tx_ok;
    out5[2] = c->ports[index].tx_dropped;
    out5[3] = st.imissed;
    out5[4] = st.ierrors;
}

void nl_close(struct nl_ctx *c)
{
    if (c->pool != NULL) {
        nl_release(c);
        nl_flush(c);
    }
    for (int i = 0; i < c->n_ports; i++) {
        rte_eth_dev_stop(c->ports[i].port_id);
        rte_eth_dev_close(c->ports[i].port_id);
    }
    c->n_ports = 0;
    if (c->pool != NULL)
        rte_mempool_free(c->pool);
    for (int i = 0; i < NL_MAX_PORTS; i++)
        if (c->port_pool[i])
            rte_mempool_free(c->port_pool[i]);
    free(c->slots);
    free(c->sess);
    free(c->dirty);
    free(c);
}

int nl_eal_cleanup(void) { return rte_eal_cleanup(); }
