/*
 * replication.c -- cluster-wide connection counts from C.
 *
 * Usage: replication PORT_1 PORT_2 SOCKET_DIR
 *
 * Starts two nodes, r1 and r2, in one process, both replicating
 * `inbound_cidr` (a CIDR tree) and `outbound_domains` (a gauge table). Each
 * counts its own connections through handles opened once; the program waits
 * until both nodes' cluster-wide views add up, prints them, checks the error
 * paths, then stops r2 and waits until r1's view has dropped r2's share.
 * Exits non-zero if any step fails or takes over 10 seconds. Built and run
 * by scripts/c-examples.sh, which checks the exact output.
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
    char text[1024];
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
    ecc_node *r1 = make_node("r1", port1, port2, argv[3]);
    ecc_node *r2 = r1 ? make_node("r2", port1, port2, argv[3]) : NULL;
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
    ecc_node_free(r2);
    ecc_node_free(r1);
    return rc;
}
