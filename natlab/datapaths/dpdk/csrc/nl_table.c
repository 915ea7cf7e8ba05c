/* The session table and the per-packet fast path (see nl_base.c). */
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


