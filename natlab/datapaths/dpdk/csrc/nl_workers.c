/* natlab's DPDK workers: N lcores, each owning its flows; Python stays the slow path.
 *
 * Theory of operation
 * -------------------
 * Every port is polled by exactly one worker (port_worker[]; in the tests the
 * inside port by worker 0 and the outside port by worker 1, so RX is asymmetric
 * on purpose). A flow belongs to the worker its *inside* tuple hashes to
 * (inside address, inside port or ICMP identifier, protocol: nl_owner()), which
 * never changes after translation. An outbound packet's owner follows from its
 * source; an inbound packet's from its destination (external) port through
 * port_owner[], which the control plane fills when it installs a session (the
 * engine allocates external ports, so the owner of a port is recorded, not
 * derived from a per-worker port range). Ownership is decided before any lookup:
 * a packet received by a non-owner is handed to the owner through the owner's
 * rte_ring (enqueue/dequeue/drop counted); only the owner looks it up, rewrites
 * and counts it (SNAT/DNAT), in its own session table (an nl_ctx each, no
 * global table). Rewritten frames go to the tx ring of their egress port, which
 * only that port's poller drains: one thread per queue, no locks.
 *
 * Whatever the owner's table misses (and what no owner is known for) goes to
 * the slow ring, read by the main lcore (Python: the engine). Python installs,
 * removes, collects and clears entries by commands on each worker's command
 * ring; the worker applies them to its own table (no cross-worker mutation) and
 * acknowledges; synchronous calls wait for the acknowledgement.
 *
 * Idle (dpdk.idle: adaptive, the default): a worker whose turns found nothing to
 * do for NL_SPIN_NS naps in ppoll() on an eventfd of its own, NL_NAP_MIN_NS at
 * first, doubling up to the cap (NL_NAP_CAP_NS); any packet, handoff, command or
 * frame to send makes the next turn full speed again. Whoever queues work for a
 * napping worker (a command, a frame for its port, a handoff) writes its eventfd,
 * so only rx from the wire waits for the nap to end (the PMDs here, af_xdp and
 * af_packet, have no rx interrupts). The main lcore (Python) naps the same way on
 * the slow ring's eventfd, which a worker writes after queuing a slow frame.
 * A napper raises its flag, fences, and looks at its rings once more; a producer
 * queues, fences, and looks at the flag: one of the two always sees the other.
 * dpdk.idle: busy never naps (a core per worker, for hardware runs).
 */
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_pause.h>
#include <rte_atomic.h>
#include <unistd.h>
#include <poll.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>

#define NL_MAX_WORKERS 8
#define NL_RING 4096
#define NL_SEEN_MAX 8192
#define NL_SPIN_NS 50000ull      /* idle this long (full-speed turns) before the first nap */
#define NL_NAP_MIN_NS 10000ull   /* the first nap; each further empty turn doubles it... */
#define NL_NAP_CAP_NS 500000ull  /* ...up to this (rx from the wire waits at most about this) */

enum { NL_CMD_ADD = 1, NL_CMD_DEL = 2, NL_CMD_COLLECT = 3, NL_CMD_CLEAR = 4, NL_CMD_BARRIER = 5 };

struct nl_cmd {
    uint32_t op, seq;
    struct nl_entry e;
};

struct nl_worker_stats {        /* what Python reads (host order; one writer: the worker) */
    uint64_t rx, handoff_enq, handoff_deq, handoff_drop, snat, dnat, misses, expired, other,
             no_owner, slow_enq, slow_drop, tx_drop, cmds, idle_sleeps, misowned, idle_us, wakeups;
    uint32_t entries, table_full;
};

struct nl_mw;

struct nl_worker {
    int id;
    unsigned lcore;
    struct nl_mw *mw;
    struct nl_ctx *tab;
    struct rte_ring *in;        /* handoffs from other workers (MP/SC) */
    struct rte_ring *cmd;       /* commands from the main lcore (SP/SC) */
    struct nl_seen *seen;       /* collect/del results, read by main after the ack */
    volatile uint32_t n_seen, more;
    volatile uint32_t acked;    /* sequence number of the last command done */
    uint32_t barrier;           /* a barrier's sequence number, acknowledged at the turn's end */
    uint32_t sent_seq;          /* main's: the last command sent */
    int wake_fd;                /* eventfd: written to end this worker's nap early */
    volatile int napping;
    struct nl_worker_stats st;
};

struct nl_mw {
    struct nl_ctx *base;        /* ports and the mbuf pool */
    int n_workers;
    int port_worker[NL_MAX_PORTS];
    struct nl_worker w[NL_MAX_WORKERS];
    struct rte_ring *tx[NL_MAX_PORTS];      /* frames for a port (MP/SC: its poller drains) */
    struct rte_ring *slow;                  /* frames for Python (MP/SC) */
    uint8_t port_owner[3][65536];           /* UDP, TCP, ICMP x external port/identifier -> owner + 1 */
    struct rte_mbuf *held[NL_SLOW_MAX];
    int n_held;
    volatile int stop;
    int started;
    int busy;                   /* dpdk.idle: busy (never nap) */
    int slow_fd;                /* eventfd: a slow frame for a napping main lcore */
    volatile int main_napping;
    uint64_t main_wakeups;
};

/* After queuing work for w: end its nap if it is napping (see the theory above). */
static inline void nl_wake(struct nl_worker *w)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (w->napping) {
        uint64_t one = 1;
        if (write(w->wake_fd, &one, sizeof one) < 0) { /* full (never, in practice): it wakes */ }
    }
}

static inline void nl_wake_main(struct nl_mw *mw)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (mw->main_napping) {
        uint64_t one = 1;
        if (write(mw->slow_fd, &one, sizeof one) < 0) { /* full (never, in practice): it wakes */ }
    }
}

static inline int nl_proto_index(uint8_t proto)
{
    return proto == IPPROTO_UDP ? 0 : proto == IPPROTO_TCP ? 1 : proto == IPPROTO_ICMP ? 2 : -1;
}

/* The owner of a flow from its inside tuple (host byte order), among n workers. */
int nl_owner_of(int n, uint8_t proto, uint32_t inside_addr, uint16_t inside_port)
{
    uint64_t h = (uint64_t)inside_addr << 24 | (uint64_t)inside_port << 8 | proto;
    h ^= h >> 33;               /* splitmix64's finalizer: every input bit moves the high bits */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (int)((h >> 32) % (uint64_t)n);
}

int nl_mw_owner(struct nl_mw *mw, uint8_t proto, uint32_t inside_addr, uint16_t inside_port)
{
    return nl_owner_of(mw->n_workers, proto, inside_addr, inside_port);
}

/* The owner of a frame as it arrives, before any lookup; -1: none known, -2: a fragment
 * (both to the slow path). Fragments go there from the worker that received them, in the
 * order they came: a later fragment carries no ports, so hashing it could send it past its
 * first fragment to the engine (RFC 4787 REQ-14: the engine, not the datapath, decides
 * what an out-of-order fragment gets). */
static inline int nl_frame_owner(struct nl_mw *mw, uint8_t side, const uint8_t *f, uint32_t len)
{
    if (len < 14 + 20 + 8 || f[12] != 0x08 || f[13] != 0x00 || (f[14] >> 4) != 4)
        return -1;
    const uint8_t *ip = f + 14;
    uint32_t ihl = (uint32_t)(ip[0] & 15) * 4;
    if ((ip[6] & 0x3F) | ip[7])
        return -2;                  /* MF set or a non-zero offset */
    if (ihl < 20 || len < 14 + ihl + 8)
        return -1;
    uint8_t proto = ip[9];
    const uint8_t *l4 = ip + ihl;
    int pi = nl_proto_index(proto);
    if (pi < 0)
        return -1;
    uint16_t port;
    if (proto == IPPROTO_ICMP) {
        if ((side == NL_SIDE_INSIDE && l4[0] != 8) || (side == NL_SIDE_OUTSIDE && l4[0] != 0))
            return -1;
        port = (uint16_t)(l4[4] << 8 | l4[5]);
    } else {
        port = side == NL_SIDE_INSIDE ? (uint16_t)(l4[0] << 8 | l4[1]) : (uint16_t)(l4[2] << 8 | l4[3]);
    }
    if (side == NL_SIDE_INSIDE) {
        uint32_t src = (uint32_t)ip[12] << 24 | (uint32_t)ip[13] << 16 | (uint32_t)ip[14] << 8 | ip[15];
        return nl_mw_owner(mw, proto, src, port);
    }
    return (int)mw->port_owner[pi][port] - 1;
}

static inline void nl_to_slow(struct nl_worker *w, int port_index, struct rte_mbuf *m, uint16_t reason)
{
    m->port = (uint16_t)port_index;
    m->hash.usr = reason;
    if (rte_ring_mp_enqueue(w->mw->slow, m) != 0) {
        w->st.slow_drop++;
        rte_pktmbuf_free(m);
        return;
    }
    w->st.slow_enq++;
    nl_wake_main(w->mw);
}

/* The owner's work: look up, rewrite, count, queue for the egress port's poller. */
static inline void nl_owned(struct nl_worker *w, int port_index, struct rte_mbuf *m, double now)
{
    struct nl_port *p = &w->mw->base->ports[port_index];
    uint16_t reason;
    int out = m->nb_segs == 1 ? nl_fast_core(w->tab, p->side, p->mac, rte_pktmbuf_mtod(m, uint8_t *),
                                             rte_pktmbuf_data_len(m), now, &reason) : -1;
    if (m->nb_segs != 1)
        reason = NL_MISS_OTHER;
    if (out >= 0 && out < w->mw->base->n_ports) {
        if (p->side == NL_SIDE_INSIDE) w->st.snat++; else w->st.dnat++;
        if (rte_ring_mp_enqueue(w->mw->tx[out], m) != 0) {
            w->st.tx_drop++;
            rte_pktmbuf_free(m);
        } else if (w->mw->port_worker[out] != w->id) {
            nl_wake(&w->mw->w[w->mw->port_worker[out]]);
        }
        return;
    }
    if (reason == NL_MISS_ABSENT) w->st.misses++;
    else if (reason == NL_MISS_EXPIRED) w->st.expired++;
    else w->st.other++;
    nl_to_slow(w, port_index, m, reason);
}

/* Ownership first: a non-owner hands the frame off and never looks it up. */
static inline void nl_route(struct nl_worker *w, int port_index, struct rte_mbuf *m, double now)
{
    struct nl_mw *mw = w->mw;
    struct nl_port *p = &mw->base->ports[port_index];
    uint8_t *f = rte_pktmbuf_mtod(m, uint8_t *);
    uint32_t len = rte_pktmbuf_data_len(m);
    if (len >= 12 && memcmp(f + 6, p->mac, 6) == 0) {
        rte_pktmbuf_free(m);        /* our own frame seen again */
        return;
    }
    int owner = nl_frame_owner(mw, p->side, f, len);
    if (owner < 0) {
        if (owner == -1 && p->side == NL_SIDE_OUTSIDE) w->st.no_owner++;
        nl_to_slow(w, port_index, m, NL_MISS_OTHER);
        return;
    }
    if (owner != w->id) {
        m->port = (uint16_t)port_index;
        if (rte_ring_mp_enqueue(mw->w[owner].in, m) != 0) {
            w->st.handoff_drop++;
            rte_pktmbuf_free(m);
        } else {
            w->st.handoff_enq++;
            nl_wake(&mw->w[owner]);
        }
        return;
    }
    nl_owned(w, port_index, m, now);
}

static void nl_worker_cmd(struct nl_worker *w, struct nl_cmd *c)
{
    w->st.cmds++;
    switch (c->op) {
    case NL_CMD_ADD: {
        /* Ownership checked again where the session lands: never on a non-owner. */
        const struct nl_entry *e = &c->e;
        int owner = e->side == NL_SIDE_INSIDE ? nl_owner_of(w->mw->n_workers, e->proto, e->src, e->sport)
                                              : nl_owner_of(w->mw->n_workers, e->proto, e->new_dst, e->new_dport);
        if (owner != w->id)
            w->st.misowned++;
        else
            nl_fast_add(w->tab, e);
        break;
    }
    case NL_CMD_DEL:
        w->n_seen = (uint32_t)nl_fast_del(w->tab, c->e.side, c->e.proto, c->e.src, c->e.sport,
                                          c->e.dst, c->e.dport, &w->seen[0]);
        break;
    case NL_CMD_COLLECT: {
        int more = 0;
        w->n_seen = (uint32_t)nl_fast_collect(w->tab, w->seen, NL_SEEN_MAX, &more);
        w->more = (uint32_t)more;
        break;
    }
    case NL_CMD_CLEAR:
        nl_fast_clear(w->tab);
        break;
    case NL_CMD_BARRIER:
        w->barrier = c->seq;    /* acknowledged after this turn's rx, handoffs and tx */
        return;
    }
    rte_smp_wmb();
    w->acked = c->seq;
}

/* Anything queued for w (commands, handoffs, frames for its ports)? Rx is not seen here. */
static int nl_worker_queued(struct nl_worker *w)
{
    struct nl_mw *mw = w->mw;
    if (rte_ring_count(w->cmd) || rte_ring_count(w->in))
        return 1;
    for (int pi = 0; pi < mw->base->n_ports; pi++)
        if (mw->port_worker[pi] == w->id && rte_ring_count(mw->tx[pi]))
            return 1;
    return 0;
}

static uint64_t nl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Nap up to ns, or until someone queues work for w. */
static void nl_nap(struct nl_worker *w, uint64_t ns)
{
    w->napping = 1;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!nl_worker_queued(w) && !w->mw->stop) {
        struct pollfd pfd = {.fd = w->wake_fd, .events = POLLIN};
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ns};
        uint64_t t0 = nl_now_ns();
        if (ppoll(&pfd, 1, &ts, NULL) > 0 && (pfd.revents & POLLIN)) {
            uint64_t v;
            if (read(w->wake_fd, &v, sizeof v) == (ssize_t)sizeof v)
                w->st.wakeups++;
        }
        w->st.idle_sleeps++;
        w->st.idle_us += (nl_now_ns() - t0) / 1000;
    }
    w->napping = 0;
}

static int nl_worker_main(void *arg)
{
    struct nl_worker *w = arg;
    struct nl_mw *mw = w->mw;
    struct rte_mbuf *burst[NL_BURST];
    struct nl_cmd cmds[16];
    double last_work = nl_now();
    uint64_t nap = NL_NAP_MIN_NS;
    prctl(PR_SET_TIMERSLACK, 5000UL, 0, 0, 0);  /* naps of tens of us, not the default 50 us more */
    while (!mw->stop) {
        unsigned work = rte_ring_sc_dequeue_burst_elem(w->cmd, cmds, sizeof cmds[0], 16, NULL);
        for (unsigned k = 0; k < work; k++)
            nl_worker_cmd(w, &cmds[k]);
        double now = nl_now();
        for (int pi = 0; pi < mw->base->n_ports; pi++) {
            if (mw->port_worker[pi] != w->id)
                continue;
            uint16_t n = rte_eth_rx_burst(mw->base->ports[pi].port_id, 0, burst, NL_BURST);
            w->st.rx += n;
            mw->base->ports[pi].rx += n;
            work += n;
            for (uint16_t k = 0; k < n; k++)
                nl_route(w, pi, burst[k], now);
        }
        unsigned n = rte_ring_sc_dequeue_burst(w->in, (void **)burst, NL_BURST, NULL);
        w->st.handoff_deq += n;
        work += n;
        for (unsigned k = 0; k < n; k++)
            nl_owned(w, burst[k]->port, burst[k], now);
        for (int pi = 0; pi < mw->base->n_ports; pi++) {
            if (mw->port_worker[pi] != w->id)
                continue;
            struct nl_port *p = &mw->base->ports[pi];
            unsigned t = rte_ring_sc_dequeue_burst(mw->tx[pi], (void **)burst, NL_BURST, NULL);
            uint16_t sent = 0;
            while (sent < t) {
                uint16_t k = rte_eth_tx_burst(p->port_id, 0, burst + sent, (uint16_t)(t - sent));
                if (k == 0)
                    break;
                sent += k;
            }
            p->tx_ok += sent;
            if (sent < t) {
                rte_pktmbuf_free_bulk(burst + sent, t - sent);
                p->tx_dropped += t - sent;
            }
            work += t;
        }
        w->st.entries = w->tab->entries;
        w->st.table_full = (uint32_t)w->tab->st.table_full;
        if (w->barrier) {
            rte_smp_wmb();
            w->acked = w->barrier;
            w->barrier = 0;
        }
        if (work) {
            last_work = now;
            nap = NL_NAP_MIN_NS;
        } else if (mw->busy || now - last_work < NL_SPIN_NS * 1e-9) {
            rte_pause();
        } else {
            nl_nap(w, nap);     /* an idle lab must not cost a core per worker */
            nap = nap * 2 < NL_NAP_CAP_NS ? nap * 2 : NL_NAP_CAP_NS;
        }
    }
    return 0;
}

struct nl_mw *nl_mw_open(struct nl_ctx *base, int n_workers, uint32_t capacity, const int *port_worker)
{
    if (n_workers < 1 || n_workers > NL_MAX_WORKERS || (int)rte_lcore_count() < n_workers + 1) {
        snprintf(nl_error_buf, sizeof nl_error_buf, "%d workers need %d lcores; the EAL has %u",
                 n_workers, n_workers + 1, rte_lcore_count());
        return NULL;
    }
    struct nl_mw *mw = calloc(1, sizeof *mw);
    if (mw == NULL)
        return NULL;
    mw->base = base;
    mw->n_workers = n_workers;
    mw->slow_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    for (int i = 0; i < NL_MAX_WORKERS; i++)
        mw->w[i].wake_fd = -1;
    char name[64];
    for (int pi = 0; pi < base->n_ports; pi++) {
        mw->port_worker[pi] = port_worker[pi];
        snprintf(name, sizeof name, "nl_tx%d", pi);
        mw->tx[pi] = rte_ring_create(name, NL_RING, rte_socket_id(), RING_F_SC_DEQ);
    }
    mw->slow = rte_ring_create("nl_slow", NL_RING, rte_socket_id(), RING_F_SC_DEQ);
    unsigned lcore = rte_get_next_lcore(-1, 1, 0);
    for (int i = 0; i < n_workers; i++) {
        struct nl_worker *w = &mw->w[i];
        w->id = i;
        w->mw = mw;
        w->lcore = lcore;
        lcore = rte_get_next_lcore(lcore, 1, 0);
        w->tab = nl_open(capacity);
        snprintf(name, sizeof name, "nl_in%d", i);
        w->in = rte_ring_create(name, NL_RING, rte_socket_id(), RING_F_SC_DEQ);
        snprintf(name, sizeof name, "nl_cmd%d", i);
        w->cmd = rte_ring_create_elem(name, sizeof(struct nl_cmd), NL_RING, rte_socket_id(),
                                      RING_F_SP_ENQ | RING_F_SC_DEQ);
        w->seen = calloc(NL_SEEN_MAX, sizeof(struct nl_seen));
        w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->tab == NULL || w->in == NULL || w->cmd == NULL || w->seen == NULL || w->wake_fd < 0) {
            snprintf(nl_error_buf, sizeof nl_error_buf, "worker %d: rings or table: %s", i,
                     rte_strerror(rte_errno));
            return NULL;
        }
    }
    if (mw->slow == NULL || mw->slow_fd < 0) {
        snprintf(nl_error_buf, sizeof nl_error_buf, "slow ring: %s", rte_strerror(rte_errno));
        return NULL;
    }
    return mw;
}

/* dpdk.idle: busy (1) never naps; adaptive (0) naps when idle. Before nl_mw_start. */
void nl_mw_set_busy(struct nl_mw *mw, int busy) { mw->busy = busy; }

/* The eventfd the main lcore waits on (readable: slow frames were queued while it napped). */
int nl_mw_slow_fd(struct nl_mw *mw) { return mw->slow_fd; }

/* The main lcore is about to nap: the slow frames already waiting (> 0: do not nap). */
int nl_mw_nap_begin(struct nl_mw *mw)
{
    mw->main_napping = 1;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    int waiting = (int)rte_ring_count(mw->slow);
    if (waiting)
        mw->main_napping = 0;
    return waiting;
}

void nl_mw_nap_end(struct nl_mw *mw)
{
    mw->main_napping = 0;
    uint64_t v;
    if (read(mw->slow_fd, &v, sizeof v) == (ssize_t)sizeof v)
        mw->main_wakeups++;
}

uint64_t nl_mw_main_wakeups(struct nl_mw *mw) { return mw->main_wakeups; }

int nl_mw_start(struct nl_mw *mw)
{
    for (int i = 0; i < mw->n_workers; i++) {
        int rc = rte_eal_remote_launch(nl_worker_main, &mw->w[i], mw->w[i].lcore);
        if (rc != 0) {
            snprintf(nl_error_buf, sizeof nl_error_buf, "launching worker %d on lcore %u: %s", i,
                     mw->w[i].lcore, rte_strerror(-rc));
            mw->stop = 1;
            rte_eal_mp_wait_lcore();
            return -1;
        }
    }
    mw->started = 1;
    return 0;
}

void nl_mw_stop(struct nl_mw *mw)
{
    mw->stop = 1;
    for (int i = 0; i < mw->n_workers; i++)
        nl_wake(&mw->w[i]);
    if (mw->started)
        rte_eal_mp_wait_lcore();
    mw->started = 0;
}

/* The frames waiting for Python (freed by nl_mw_release). */
int nl_mw_poll(struct nl_mw *mw, struct nl_slow *slow, int max)
{
    if (max > NL_SLOW_MAX)
        max = NL_SLOW_MAX;
    int n = (int)rte_ring_sc_dequeue_burst(mw->slow, (void **)mw->held, (unsigned)max, NULL);
    for (int k = 0; k < n; k++) {
        struct rte_mbuf *m = mw->held[k];
        slow[k].port = m->port;
        slow[k].reason = (uint16_t)m->hash.usr;
        slow[k].len = rte_pktmbuf_data_len(m);
        slow[k].data = rte_pktmbuf_mtod(m, const uint8_t *);
    }
    mw->n_held = n;
    return n;
}

void nl_mw_release(struct nl_mw *mw)
{
    if (mw->n_held)
        rte_pktmbuf_free_bulk(mw->held, mw->n_held);
    mw->n_held = 0;
}

int nl_mw_send(struct nl_mw *mw, int index, const uint8_t *frame, uint32_t len)
{
    if (index < 0 || index >= mw->base->n_ports || len > 0xffff)
        return -1;
    struct rte_mbuf *m = rte_pktmbuf_alloc(mw->base->pool);
    if (m == NULL)
        return -1;
    char *dst = rte_pktmbuf_append(m, (uint16_t)len);
    if (dst == NULL) {
        rte_pktmbuf_free(m);
        return -1;
    }
    memcpy(dst, frame, len);
    if (rte_ring_mp_enqueue(mw->tx[index], m) != 0) {
        rte_pktmbuf_free(m);
        return -1;
    }
    nl_wake(&mw->w[mw->port_worker[index]]);
    return 0;
}

static int nl_mw_wait(struct nl_mw *mw, int owner, uint32_t seq)
{
    struct nl_worker *w = &mw->w[owner];
    double deadline = nl_now() + 2.0;
    unsigned spins = 0;
    while (w->acked != seq) {
        if (nl_now() > deadline) {
            snprintf(nl_error_buf, sizeof nl_error_buf, "worker %d did not answer a command", owner);
            return -1;
        }
        if (++spins < 2000 || mw->busy) {
            rte_pause();
        } else {
            /* the worker may be waiting for this CPU (2 cores, many processes): give it up */
            struct timespec ts = {.tv_sec = 0, .tv_nsec = 20000};
            nanosleep(&ts, NULL);
        }
    }
    rte_smp_rmb();
    return 0;
}

static int nl_mw_command(struct nl_mw *mw, int owner, uint32_t op, const struct nl_entry *e, int wait)
{
    struct nl_worker *w = &mw->w[owner];
    struct nl_cmd c;
    memset(&c, 0, sizeof c);
    c.op = op;
    c.seq = ++w->sent_seq;
    if (e != NULL)
        c.e = *e;
    if (rte_ring_sp_enqueue_elem(w->cmd, &c, sizeof c) != 0)
        return -1;
    nl_wake(w);
    return wait ? nl_mw_wait(mw, owner, c.seq) : 0;
}

/* Every frame the ports held when this was called has been through its worker (rewritten
 * and queued for tx, or in the slow ring): two rounds of a barrier every worker acknowledges
 * after a whole turn (the second for what the first round handed off). */
int nl_mw_barrier(struct nl_mw *mw)
{
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < mw->n_workers; i++)
            if (nl_mw_command(mw, i, NL_CMD_BARRIER, NULL, 0) != 0)
                return -1;
        for (int i = 0; i < mw->n_workers; i++)
            if (nl_mw_wait(mw, i, mw->w[i].sent_seq) != 0)
                return -1;
    }
    return 0;
}

/* Install on the owner; the external port now names that owner. */
int nl_mw_install(struct nl_mw *mw, const struct nl_entry *e, int owner, uint16_t external_port)
{
    int pi = nl_proto_index(e->proto);
    if (pi >= 0)
        mw->port_owner[pi][external_port] = (uint8_t)(owner + 1);
    return nl_mw_command(mw, owner, NL_CMD_ADD, e, 0);
}

int nl_mw_del(struct nl_mw *mw, int owner, const struct nl_entry *key, struct nl_seen *out)
{
    if (nl_mw_command(mw, owner, NL_CMD_DEL, key, 1) != 0)
        return -1;
    if (mw->w[owner].n_seen)
        *out = mw->w[owner].seen[0];
    return (int)mw->w[owner].n_seen;
}

/* One worker's entries hit since the last collect; *more: ask again. */
int nl_mw_collect(struct nl_mw *mw, int owner, struct nl_seen *out, int max, int *more)
{
    if (nl_mw_command(mw, owner, NL_CMD_COLLECT, NULL, 1) != 0)
        return -1;
    struct nl_worker *w = &mw->w[owner];
    int n = (int)w->n_seen < max ? (int)w->n_seen : max;
    memcpy(out, w->seen, sizeof(struct nl_seen) * (size_t)n);
    *more = (int)w->more;
    return n;
}

int nl_mw_clear(struct nl_mw *mw)
{
    for (int i = 0; i < mw->n_workers; i++)
        if (nl_mw_command(mw, i, NL_CMD_CLEAR, NULL, 1) != 0)
            return -1;
    memset(mw->port_owner, 0, sizeof mw->port_owner);
    return 0;
}

void nl_mw_stats(struct nl_mw *mw, int owner, struct nl_worker_stats *out)
{
    *out = mw->w[owner].st;
}

int nl_mw_lcore(struct nl_mw *mw, int owner) { return (int)mw->w[owner].lcore; }
