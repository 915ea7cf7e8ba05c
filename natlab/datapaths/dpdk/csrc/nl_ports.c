/* Ports, mbufs, the single-loop poll and the counters (see nl_base.c). */
/* ---- ports and mbufs ---------------------------------------------------- */

/* An mbuf pool whose objects lie packed, back to back from its first byte.
 *
 * DPDK 22.11's af_xdp PMD registers a pool as its UMEM from the first memory chunk's
 * start for populated_size * object size bytes. Without hugepages (--no-huge, a lab) the
 * pool's pages are 4 KiB and by default no object may cross one, so each 2368-byte mbuf
 * takes a page: the pool spans 67 MB of which the UMEM covers 39, and every frame sent
 * from an mbuf past that is an invalid descriptor the kernel skips (tx_invalid_descs):
 * TCP through a gateway stalls once its mbufs reach there. Objects that may cross pages
 * (RTE_MEMPOOL_F_NO_IOVA_CONTIG: nothing here DMAs them) lie packed, all inside the UMEM.
 * With hugepages (hardware runs) the default layout is already packed. */
static struct rte_mempool *nl_pool_create(const char *name, uint32_t n_mbufs)
{
    if (rte_eal_has_hugepages())
        return rte_pktmbuf_pool_create(name, n_mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
    struct rte_pktmbuf_pool_private priv = {.mbuf_data_room_size = RTE_MBUF_DEFAULT_BUF_SIZE};
    struct rte_mempool *mp = rte_mempool_create_empty(name, n_mbufs,
                                                      sizeof(struct rte_mbuf) + RTE_MBUF_DEFAULT_BUF_SIZE, 256,
                                                      sizeof priv, rte_socket_id(), RTE_MEMPOOL_F_NO_IOVA_CONTIG);
    if (mp == NULL)
        return NULL;
    if (rte_mempool_set_ops_byname(mp, rte_mbuf_best_mempool_ops(), NULL) != 0)
        goto fail;
    rte_pktmbuf_pool_init(mp, &priv);
    if (rte_mempool_populate_default(mp) < 0)
        goto fail;
    rte_mempool_obj_iter(mp, rte_pktmbuf_init, NULL);
    return mp;
fail:
    rte_mempool_free(mp);
    return NULL;
}

/* Whether every object of pool mp lies inside the first populated_size * object size
 * bytes of its memory: what an af_xdp UMEM over it covers (see nl_pool_create). */
static int nl_pool_packed(struct rte_mempool *mp)
{
    struct rte_mempool_memhdr *h = STAILQ_FIRST(&mp->mem_list);
    size_t span = (size_t)mp->populated_size * rte_mempool_calc_obj_size(mp->elt_size, mp->flags, NULL);
    return mp->nb_mem_chunks == 1 && h != NULL && h->len <= span + 4096;
}

/* The mbuf pool (after the EAL started). */
int nl_open_pool(struct nl_ctx *c, uint32_t n_mbufs)
{
    c->pool = nl_pool_create("nl_pool", n_mbufs);
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
        pool = nl_pool_create(name, c->port_pool_mbufs);
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

/* 1: every pool lies packed (an af_xdp UMEM over it covers all its mbufs), else 0. */
int nl_pools_packed(struct nl_ctx *c)
{
    if (c->pool && !nl_pool_packed(c->pool))
        return 0;
    for (int i = 0; i < NL_MAX_PORTS; i++)
        if (c->port_pool[i] && !nl_pool_packed(c->port_pool[i]))
            return 0;
    return 1;
}

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
