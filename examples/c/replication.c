/*
 * replication.c -- cluster-wide connection counts from C.
 *
 * Usage: replication PORT_1 PORT_2 SOCKET_DIR
 *
 * Starts two nodes, r1 and r2, in one process, both replicating
 * `inbound_cidr` (a CIDR tree), `outbound_domains` (a gauge table),
 * `shared_named_throttles`, `metrics` (audit series and gauge caches) and a
 * key/value cache `c1`. Each counts its own connections through handles
 * opened once; the program waits until both nodes' cluster-wide views add
 * up, prints them, checks the error paths, then exercises a cluster-wide
 * throttle, a gauge cache, an audit series, the cache and an outbound
 * connection limit, and finally stops r2 and waits until r1's view has
 * dropped r2's share. Exits non-zero if any step fails or takes over 10
 * seconds. Built and run by scripts/c-examples.sh, which checks the exact
 * output (so only stable facts go to stdout; counts that depend on timing
 * go to stderr).
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eccluster.h"

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool check(ecc_status status, const char *what)
{
    if (status == ECC_OK)
        return true;
    fprintf(stderr, "%s: %s (%s)\n", what, ecc_status_str(status), ecc_last_error());
    return false;
}

/* Makes a stopped node from configuration text. */
static ecc_node *make_node(const char *name, unsigned port1, unsigned port2, const char *dir)
{
    char text[2048];
    int len = snprintf(text, sizeof text,
                       "[cluster]\n"
                       "nodename = \"%s\"\n"
                       "nodeaddr = \"127.0.0.1\"\n"
                       "heartbeat_start_delay = 0\n"
                       "heartbeats_per_sec = 10\n"
                       /* Down after 3 s of silence, so that valgrind's
                        * slowdown is not taken for a crash. */
                       "down_heartbeats = 30\n"
                       "[cluster.replicate.inbound_cidr]\n"
                       "max_delay = 0.1\n"
                       "[cluster.replicate.outbound_domains]\n"
                       "max_delay = 0.1\n"
                       "[cluster.replicate.shared_named_throttles]\n"
                       "max_delay = 0.1\n"
                       "[cluster.replicate.metrics]\n"
                       "parameters = \"audit_series;gauge_cache\"\n"
                       "max_delay = 0.1\n"
                       "[cluster.replicate.c1]\n"
                       "type = \"cache\"\n"
                       "parameters = \"snapshot\"\n"
                       "max_delay = 0.1\n"
                       "[msgc_server.peers]\n"
                       "r1 = \"127.0.0.1:%u\"\n"
                       "r2 = \"127.0.0.1:%u\"\n"
                       "[eccluster_listener.listen.\"127.0.0.1:%u\"]\n"
                       "[control_listener.listen.\"%s/%s.sock\"]\n",
                       name, port1, port2, strcmp(name, "r1") == 0 ? port1 : port2, dir, name);
    if (len < 0 || (size_t)len >= sizeof text) {
        fprintf(stderr, "%s: configuration text too long\n", name);
        return NULL;
    }
    ecc_config *config = NULL;
    if (!check(ecc_config_parse(text, ECC_FORMAT_TOML, &config), name))
        return NULL;
    ecc_node *node = NULL;
    check(ecc_node_new(config, &node), "ecc_node_new");
    ecc_config_free(config); /* the node keeps its own copy */
    return node;
}

/* What one node's MTA threads would hold: handles opened once. */
struct counters {
    ecc_cidr *inbound;
    ecc_gauge *domains;
};

static bool open_counters(ecc_node *node, struct counters *c)
{
    return check(ecc_cidr_open(node, "inbound_cidr", &c->inbound), "ecc_cidr_open") &&
           check(ecc_gauge_open(node, "outbound_domains", &c->domains), "ecc_gauge_open");
}

/* An inbound connection from `ip` (text) opened (+1) or closed (-1). */
static bool inbound(const struct counters *c, const char *ip, int64_t delta)
{
    unsigned char addr[16];
    size_t len = strchr(ip, ':') ? 16 : 4;
    if (inet_pton(len == 16 ? AF_INET6 : AF_INET, ip, addr) != 1) {
        fprintf(stderr, "bad address %s\n", ip);
        return false;
    }
    return check(ecc_cidr_add(c->inbound, addr, len, delta), "ecc_cidr_add");
}

static int64_t prefix_count(const struct counters *c, const char *ip, uint8_t prefix_len,
                            ecc_scope scope)
{
    unsigned char addr[16];
    size_t len = strchr(ip, ':') ? 16 : 4;
    int64_t n = -1;
    if (inet_pton(len == 16 ? AF_INET6 : AF_INET, ip, addr) == 1)
        check(ecc_cidr_count(c->inbound, addr, len, prefix_len, scope, &n), "ecc_cidr_count");
    return n;
}

static int64_t domain_count(const struct counters *c, const char *domain, ecc_scope scope)
{
    int64_t n = -1;
    check(ecc_gauge_get(c->domains, (const uint8_t *)domain, strlen(domain), scope, &n),
          "ecc_gauge_get");
    return n;
}

/* Polls until `done` holds or 10 s pass. */
static bool wait_for(bool (*done)(const struct counters *), const struct counters *c,
                     const char *what)
{
    double deadline = now_seconds() + 10.0;
    while (!done(c)) {
        if (now_seconds() > deadline) {
            fprintf(stderr, "timed out waiting for %s\n", what);
            return false;
        }
        sleep_ms(20);
    }
    return true;
}

static bool everything_counted(const struct counters *c)
{
    return prefix_count(c, "10.1.0.0", 16, ECC_SCOPE_GLOBAL) == 3 &&
           prefix_count(c, "2001:db8::", 32, ECC_SCOPE_GLOBAL) == 1 &&
           domain_count(c, "aol.com", ECC_SCOPE_GLOBAL) == 3;
}

static bool only_own_share(const struct counters *c)
{
    return prefix_count(c, "10.1.0.0", 16, ECC_SCOPE_GLOBAL) == 2 &&
           prefix_count(c, "2001:db8::", 32, ECC_SCOPE_GLOBAL) == 0 &&
           domain_count(c, "aol.com", ECC_SCOPE_GLOBAL) == 1;
}

static void show(const char *name, const struct counters *c)
{
    printf("%s: 10.1.0.0/16 local %lld global %lld; 10.1.2.0/24 global %lld; "
           "2001:db8::/32 global %lld; aol.com local %lld global %lld\n",
           name, (long long)prefix_count(c, "10.1.0.0", 16, ECC_SCOPE_LOCAL),
           (long long)prefix_count(c, "10.1.0.0", 16, ECC_SCOPE_GLOBAL),
           (long long)prefix_count(c, "10.1.2.0", 24, ECC_SCOPE_GLOBAL),
           (long long)prefix_count(c, "2001:db8::", 32, ECC_SCOPE_GLOBAL),
           (long long)domain_count(c, "aol.com", ECC_SCOPE_LOCAL),
           (long long)domain_count(c, "aol.com", ECC_SCOPE_GLOBAL));
}

/* Each error is reported with its status and a message naming the cause. */
static bool error_paths(ecc_node *node, const struct counters *c)
{
    ecc_gauge *none = NULL;
    ecc_status s = ecc_gauge_open(node, "inbound_cidr", &none);
    printf("open inbound_cidr as a gauge: %s: %s\n", ecc_status_str(s), ecc_last_error());
    const unsigned char three[3] = {10, 1, 2};
    s = ecc_cidr_add(c->inbound, three, sizeof three, 1);
    printf("3-byte address: %s: %s\n", ecc_status_str(s), ecc_last_error());
    int64_t n = 0;
    s = ecc_gauge_get(c->domains, (const uint8_t *)"aol.com", 7, 7, &n);
    printf("scope 7: %s: %s\n", ecc_status_str(s), ecc_last_error());
    return none == NULL && s == ECC_INVALID_ARGUMENT;
}

/* ---- throttles, metrics, the cache and outbound limits ---------------- */

/* What one node holds for the objects below. */
struct extras {
    ecc_node *node;
    ecc_throttle *throttle;
    ecc_metrics *metrics;
    ecc_cache *cache;
};

/* Polls `done(ctx)` until it holds or 10 s pass. */
static bool wait_until(bool (*done)(const void *), const void *ctx, const char *what)
{
    double deadline = now_seconds() + 10.0;
    while (!done(ctx)) {
        if (now_seconds() > deadline) {
            fprintf(stderr, "timed out waiting for %s\n", what);
            return false;
        }
        sleep_ms(20);
    }
    return true;
}

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "10/60" counts in wall-clock windows of 60 s (every node numbers them
 * alike), and the bound holds per window: keep the test inside one. */
#define THROTTLE_PHASE_S 2.5

static bool throttle(struct extras *x1, struct extras *x2)
{
    for (int i = 0; i < 2; i++) {
        struct extras *x = i == 0 ? x1 : x2;
        if (!check(ecc_throttle_define(x->node, "shared_named_throttles", "c-demo", "10/60", 0.0,
                                       &x->throttle),
                   "ecc_throttle_define"))
            return false;
    }
    double into = wall_seconds() - 60.0 * (double)(long long)(wall_seconds() / 60.0);
    if (into < 0.5 || into > 60.0 - THROTTLE_PHASE_S - 2.0)
        sleep_ms((long)((60.0 - into + 0.5) * 1000.0) % 60000);
    long long window = (long long)(wall_seconds() / 60.0);

    /* Both nodes want more than the limit: take turns until the time is up. */
    long long admitted[2] = {0, 0};
    double end = now_seconds() + THROTTLE_PHASE_S;
    while (now_seconds() < end) {
        for (int i = 0; i < 2; i++) {
            bool ok = false;
            if (!check(ecc_throttle_consume((i == 0 ? x1 : x2)->throttle, 1, &ok),
                       "ecc_throttle_consume"))
                return false;
            admitted[i] += ok;
        }
        sleep_ms(10);
    }
    if ((long long)(wall_seconds() / 60.0) != window) {
        fprintf(stderr, "the throttle's 60 s window rolled over during the test\n");
        return false;
    }
    int64_t usage = -1;
    if (!check(ecc_throttle_usage(x1->throttle, ECC_SCOPE_LOCAL, &usage), "ecc_throttle_usage"))
        return false;
    long long total = admitted[0] + admitted[1];
    fprintf(stderr, "throttle 10/60: r1 admitted %lld (usage %lld), r2 %lld, total %lld\n",
            admitted[0], (long long)usage, admitted[1], total);
    printf("throttle 10/60: r1 admitted some: %s; r2 admitted some: %s; "
           "total at most 10 + 2 - 1: %s; r1's local usage matches: %s\n",
           admitted[0] > 0 ? "yes" : "no", admitted[1] > 0 ? "yes" : "no",
           total <= 11 ? "yes" : "no", usage == admitted[0] ? "yes" : "no");

    ecc_throttle *bad = NULL;
    ecc_status s = ecc_throttle_define(x1->node, "shared_named_throttles", "c-bad", "ten", 0.0, &bad);
    printf("throttle limit \"ten\": %s: %s\n", ecc_status_str(s), ecc_last_error());
    s = ecc_throttle_define(x1->node, "shared_named_throttles", "c-bad", "10/60", 1.5, &bad);
    printf("throttle epsilon 1.5: %s: %s\n", ecc_status_str(s), ecc_last_error());
    s = ecc_throttle_define(x1->node, "OBTM", "c-bad", "10/60", 0.0, &bad);
    printf("throttle object OBTM: %s: %s\n", ecc_status_str(s), ecc_last_error());
    return bad == NULL && admitted[0] > 0 && admitted[1] > 0 && total <= 11 &&
           usage == admitted[0];
}

static int64_t gauge_cache(const struct extras *x, ecc_scope scope)
{
    int64_t n = -1;
    check(ecc_gauge_cache_get(x->metrics, "c-conns", (const uint8_t *)"mx.example.com", 14, scope,
                              &n),
          "ecc_gauge_cache_get");
    return n;
}

static bool gauge_cache_both(const void *ctx)
{
    const struct extras *const *x = ctx;
    return gauge_cache(x[0], ECC_SCOPE_GLOBAL) == 2 && gauge_cache(x[1], ECC_SCOPE_GLOBAL) == 2;
}

static int64_t series(const struct extras *x, ecc_scope scope)
{
    int64_t n = -1;
    check(ecc_audit_series_count(x->metrics, "c-rcpt", (const uint8_t *)"alice@example.com", 17,
                                 0, 4, scope, &n),
          "ecc_audit_series_count");
    return n;
}

static bool series_both(const void *ctx)
{
    const struct extras *const *x = ctx;
    return series(x[0], ECC_SCOPE_GLOBAL) == 7 && series(x[1], ECC_SCOPE_GLOBAL) == 7;
}

static bool metrics(struct extras *x1, struct extras *x2)
{
    const struct extras *both[2] = {x1, x2};
    for (int i = 0; i < 2; i++) {
        struct extras *x = i == 0 ? x1 : x2;
        if (!check(ecc_metrics_open(x->node, "metrics", &x->metrics), "ecc_metrics_open") ||
            !check(ecc_gauge_cache_define(x->metrics, "c-conns", 100, 0, true),
                   "ecc_gauge_cache_define") ||
            !check(ecc_audit_series_define(x->metrics, "c-rcpt", "string", 60, 5, "cluster"),
                   "ecc_audit_series_define"))
            return false;
    }
    int64_t local = -1;
    if (!check(ecc_gauge_cache_inc(x1->metrics, "c-conns", (const uint8_t *)"mx.example.com", 14,
                                   &local),
               "ecc_gauge_cache_inc") ||
        !check(ecc_gauge_cache_inc(x2->metrics, "c-conns", (const uint8_t *)"mx.example.com", 14,
                                   NULL),
               "ecc_gauge_cache_inc") ||
        !wait_until(gauge_cache_both, both, "the gauge cache to count 2 on both nodes"))
        return false;
    printf("gauge cache c-conns: mx.example.com: r1 inc -> %lld; r1 local %lld global %lld; "
           "r2 local %lld global %lld\n",
           (long long)local, (long long)gauge_cache(x1, ECC_SCOPE_LOCAL),
           (long long)gauge_cache(x1, ECC_SCOPE_GLOBAL), (long long)gauge_cache(x2, ECC_SCOPE_LOCAL),
           (long long)gauge_cache(x2, ECC_SCOPE_GLOBAL));

    if (!check(ecc_audit_series_add(x1->metrics, "c-rcpt", (const uint8_t *)"alice@example.com",
                                    17, 3),
               "ecc_audit_series_add") ||
        !check(ecc_audit_series_add(x2->metrics, "c-rcpt", (const uint8_t *)"alice@example.com",
                                    17, 4),
               "ecc_audit_series_add") ||
        !wait_until(series_both, both, "the audit series to count 7 on both nodes"))
        return false;
    printf("audit series c-rcpt: alice@example.com in windows 0-4: r1 local %lld global %lld; "
           "r2 local %lld global %lld\n",
           (long long)series(x1, ECC_SCOPE_LOCAL), (long long)series(x1, ECC_SCOPE_GLOBAL),
           (long long)series(x2, ECC_SCOPE_LOCAL), (long long)series(x2, ECC_SCOPE_GLOBAL));

    int64_t n = 0;
    ecc_status s = ecc_gauge_cache_get(x1->metrics, "c-nope", (const uint8_t *)"k", 1,
                                       ECC_SCOPE_LOCAL, &n);
    printf("gauge cache c-nope: %s: %s\n", ecc_status_str(s), ecc_last_error());
    s = ecc_audit_series_define(x1->metrics, "c-bad", "strings", 60, 5, "cluster");
    printf("series type \"strings\": %s: %s\n", ecc_status_str(s), ecc_last_error());
    s = ecc_audit_series_define(x1->metrics, "c-rcpt", "string", 60, 6, "cluster");
    printf("c-rcpt redefined: %s: %s\n", ecc_status_str(s), ecc_last_error());
    return s == ECC_INVALID_ARGUMENT;
}

static const char GREY_KEY[] = "greylist:192.0.2.7";

/* The value of GREY_KEY on one node: NULL when absent, else a malloc'd,
 * NUL-terminated copy. Asks first with no buffer, as a caller that does
 * not know the length would. */
static char *cache_value(const struct extras *x, bool *failed)
{
    size_t len = 0;
    bool found = false;
    ecc_status s = ecc_cache_get(x->cache, (const uint8_t *)GREY_KEY, strlen(GREY_KEY), NULL, 0,
                                 &len, &found);
    for (;;) {
        if (s == ECC_OK) {
            if (!found)
                return NULL;
            char *empty = calloc(1, 1);
            *failed = empty == NULL;
            return empty;
        }
        if (s != ECC_BUFFER_TOO_SMALL) {
            *failed = true;
            check(s, "ecc_cache_get");
            return NULL;
        }
        char *buf = malloc(len + 1);
        if (buf == NULL) {
            *failed = true;
            return NULL;
        }
        size_t need = len;
        s = ecc_cache_get(x->cache, (const uint8_t *)GREY_KEY, strlen(GREY_KEY), (uint8_t *)buf,
                          need, &len, &found);
        if (s == ECC_OK) {
            buf[len] = '\0';
            return buf;
        }
        free(buf); /* changed meanwhile: ask again with the new length */
    }
}

static bool cache_arrived(const void *ctx)
{
    bool failed = false;
    char *v = cache_value(ctx, &failed);
    bool ok = v != NULL && strcmp(v, "seen") == 0;
    free(v);
    return ok || failed;
}

static bool cache(struct extras *x1, struct extras *x2)
{
    for (int i = 0; i < 2; i++) {
        struct extras *x = i == 0 ? x1 : x2;
        if (!check(ecc_cache_open(x->node, "c1", &x->cache), "ecc_cache_open"))
            return false;
    }
    bool failed = false;
    char *before = cache_value(x2, &failed);
    if (failed)
        return false;
    printf("cache c1 on r2 before: %s\n", before == NULL ? "absent" : before);
    free(before);
    if (!check(ecc_cache_set(x1->cache, (const uint8_t *)GREY_KEY, strlen(GREY_KEY),
                             (const uint8_t *)"seen", 4, "5M"),
               "ecc_cache_set") ||
        !wait_until(cache_arrived, x2, "r2 to get the cache entry"))
        return false;
    char *after = cache_value(x2, &failed);
    if (failed || after == NULL)
        return false;
    printf("cache c1 on r2 after r1 set it: %s = %s\n", GREY_KEY, after);
    free(after);

    uint8_t small[2];
    size_t len = 0;
    bool found = false;
    ecc_status s = ecc_cache_get(x2->cache, (const uint8_t *)GREY_KEY, strlen(GREY_KEY), small,
                                 sizeof small, &len, &found);
    printf("cache get into 2 bytes: %s (needs %zu): %s\n", ecc_status_str(s), len,
           ecc_last_error());
    s = ecc_cache_set(x1->cache, (const uint8_t *)"k", 1, (const uint8_t *)"v", 1, "5X");
    printf("cache TTL \"5X\": %s: %s\n", ecc_status_str(s), ecc_last_error());
    return s == ECC_INVALID_ARGUMENT;
}

struct may_open_query {
    ecc_node *node;
    const ecc_outbound_attempt *attempt;
    const ecc_outbound_limits *limits;
    bool want;
};

static bool may_open_is(const void *ctx)
{
    const struct may_open_query *q = ctx;
    bool may = !q->want;
    if (!check(ecc_outbound_may_open(q->node, q->attempt, q->limits, &may),
               "ecc_outbound_may_open"))
        return true; /* stop waiting; the caller checks again */
    return may == q->want;
}

static bool outbound(ecc_node *r1, ecc_node *r2)
{
    const ecc_outbound_attempt attempt = {
        .binding = "b1",
        .binding_group = NULL,
        .domain = "example.net",
        .host = NULL,
        .source = NULL,
        .source_len = 0,
    };
    const ecc_outbound_limits limits = {
        .cluster_max_scope = ECC_MAX_SCOPE_DOMAIN,
        .cluster_max = 3,
        .server_max_scope = ECC_SERVER_SCOPE_GLOBAL,
        .server_max = -1,
        .scope_max_level = ECC_SCOPE_LEVEL_GLOBAL,
        .scope_max = -1,
    };
    bool may = false;
    if (!check(ecc_outbound_may_open(r1, &attempt, &limits, &may), "ecc_outbound_may_open"))
        return false;
    printf("may_open example.net (cluster_max 3) with none open: %s\n", may ? "yes" : "no");
    /* Two open on r1, one on r2. */
    if (!check(ecc_outbound_opened(r1, &attempt), "ecc_outbound_opened") ||
        !check(ecc_outbound_opened(r1, &attempt), "ecc_outbound_opened") ||
        !check(ecc_outbound_opened(r2, &attempt), "ecc_outbound_opened"))
        return false;
    struct may_open_query q = {r1, &attempt, &limits, false};
    if (!wait_until(may_open_is, &q, "r1 to count 3 connections to example.net"))
        return false;
    may = true;
    if (!check(ecc_outbound_may_open(r1, &attempt, &limits, &may), "ecc_outbound_may_open"))
        return false;
    printf("may_open example.net with 3 open in the cluster: %s: %s\n", may ? "yes" : "no",
           ecc_last_error());
    if (!check(ecc_outbound_closed(r2, &attempt), "ecc_outbound_closed"))
        return false;
    q.want = true;
    if (!wait_until(may_open_is, &q, "r1 to see r2's connection closed"))
        return false;
    printf("may_open example.net after r2 closed one: yes\n");
    if (!check(ecc_outbound_closed(r1, &attempt), "ecc_outbound_closed") ||
        !check(ecc_outbound_closed(r1, &attempt), "ecc_outbound_closed"))
        return false;

    ecc_outbound_limits by_host = limits;
    by_host.cluster_max_scope = ECC_MAX_SCOPE_HOST;
    ecc_status s = ecc_outbound_may_open(r1, &attempt, &by_host, &may);
    printf("limit per host, no host: %s: %s\n", ecc_status_str(s), ecc_last_error());
    ecc_outbound_limits binding_domain = limits;
    binding_domain.cluster_max_scope = ECC_MAX_SCOPE_BINDING_DOMAIN;
    s = ecc_outbound_may_open(r1, &attempt, &binding_domain, &may);
    printf("limit per binding and domain: %s: %s\n", ecc_status_str(s), ecc_last_error());
    ecc_outbound_limits bad = limits;
    bad.server_max_scope = 9;
    s = ecc_outbound_may_open(r1, &attempt, &bad, &may);
    printf("server scope 9: %s: %s\n", ecc_status_str(s), ecc_last_error());
    return s == ECC_INVALID_ARGUMENT;
}

static void free_extras(struct extras *x)
{
    ecc_throttle_free(x->throttle);
    ecc_metrics_free(x->metrics);
    ecc_cache_free(x->cache);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT_1 PORT_2 SOCKET_DIR\n", argv[0]);
        return 2;
    }
    unsigned port1 = (unsigned)strtoul(argv[1], NULL, 10);
    unsigned port2 = (unsigned)strtoul(argv[2], NULL, 10);
    int rc = EXIT_FAILURE;
    struct counters c1 = {0}, c2 = {0};
    struct extras x1 = {0}, x2 = {0};
    ecc_node *r1 = make_node("r1", port1, port2, argv[3]);
    ecc_node *r2 = r1 ? make_node("r2", port1, port2, argv[3]) : NULL;
    x1.node = r1;
    x2.node = r2;
    if (r2 == NULL || !open_counters(r1, &c1) || !open_counters(r2, &c2))
        goto out;
    if (!check(ecc_node_start(r1), "start r1") || !check(ecc_node_start(r2), "start r2"))
        goto out;

    /* r1: two connections from 10.1.2.0/24, one to aol.com; r2: one from
     * 10.1.9.9 and one from 2001:db8::25, two to aol.com. */
    if (!inbound(&c1, "10.1.2.3", 1) || !inbound(&c1, "10.1.2.4", 1) ||
        !inbound(&c2, "10.1.9.9", 1) || !inbound(&c2, "2001:db8::25", 1))
        goto out;
    if (!check(ecc_gauge_add(c1.domains, (const uint8_t *)"aol.com", 7, 1, NULL), "add") ||
        !check(ecc_gauge_add(c2.domains, (const uint8_t *)"aol.com", 7, 2, NULL), "add"))
        goto out;
    if (!wait_for(everything_counted, &c1, "r1 to count everything") ||
        !wait_for(everything_counted, &c2, "r2 to count everything"))
        goto out;
    show("r1", &c1);
    show("r2", &c2);
    if (!error_paths(r1, &c1))
        goto out;
    if (!throttle(&x1, &x2) || !metrics(&x1, &x2) || !cache(&x1, &x2) || !outbound(r1, r2))
        goto out;

    if (!check(ecc_node_stop(r2), "stop r2"))
        goto out;
    if (!wait_for(only_own_share, &c1, "r1 to drop r2's share"))
        goto out;
    printf("r2 stopped\n");
    show("r1", &c1);
    if (!check(ecc_node_stop(r1), "stop r1"))
        goto out;
    printf("stopped\n");
    rc = EXIT_SUCCESS;

out:
    fflush(stdout);
    ecc_cidr_free(c1.inbound);
    ecc_gauge_free(c1.domains);
    ecc_cidr_free(c2.inbound);
    ecc_gauge_free(c2.domains);
    free_extras(&x1);
    free_extras(&x2);
    ecc_node_free(r2);
    ecc_node_free(r1);
    return rc;
}
