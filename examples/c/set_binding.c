/*
 * set_binding.c -- choosing the binding a message leaves from, with a C
 * hook and a Lua policy, across two nodes in one process.
 *
 * Usage: set_binding PORT_1 PORT_2 SOCKET_DIR
 *
 * Two nodes, s1 and s2 (loopback cluster ports PORT_1 and PORT_2, console
 * sockets in SOCKET_DIR, DuraVIP in dry run: nothing is plumbed and no
 * privileges are needed), share the binding group "pool": p1, a DuraVIP
 * that prefers s1, and p2, one that prefers s2. s1 also has "bulk", a
 * group of one plain binding.
 *
 * On s1 a C set_binding hook sends mail from bulk.example out of "bulk"
 * and ends the chain; a Lua policy, loaded through the API, chooses from
 * the group an X-Group header names. Once the DuraVIPs have settled the
 * program asks s1 to place a few messages and prints each decision: send
 * from a binding here, move the message to the node that owns the
 * binding, or unchanged. It also shows the errors a broken Lua script and
 * a choice outside a hook give. Exits non-zero on any failure, or if the
 * DuraVIPs do not settle within 10 seconds. Built and run by
 * scripts/c-examples.sh.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eccluster.h"

/* Chooses the policy for mail from bulk.example. Runs on the thread that
 * calls ecc_node_set_binding (here: main), for every message, before the
 * Lua hooks. */
static ecc_hook_flow bulk_hook(void *userdata, ecc_message *msg)
{
    const char *domain = userdata;
    char sender[256];
    size_t len = 0;
    if (ecc_message_sender(msg, sender, sizeof sender, &len) != ECC_OK)
        return ECC_HOOK_CONTINUE;
    const char *at = strrchr(sender, '@');
    if (at == NULL || strcmp(at + 1, domain) != 0)
        return ECC_HOOK_CONTINUE;
    char chosen[ECC_DECISION_TEXT_MAX];
    if (ecc_message_choose_binding_group(msg, "bulk", chosen, sizeof chosen, &len) != ECC_OK) {
        fprintf(stderr, "bulk hook: %s\n", ecc_last_error());
        return ECC_HOOK_CONTINUE;
    }
    return ECC_HOOK_DONE;
}

/* The Lua policy: the group an X-Group header names, if it is one. */
static const char *const route_lua =
    "local ecc = require 'eccluster'\n"
    "ecc.register_hook('set_binding', function(msg)\n"
    "  local group = msg:header('X-Group')[1]\n"
    "  if group then msg:binding_group(group) end\n"
    "end)\n";

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
                       "view_mature_time = 1\n"
                       "duravip_dry_run = true\n"
                       "[cluster.topology.\"10.99.1.0/24\"]\n"
                       "interface = \"demo0\"\n"
                       "[msgc_server.peers]\n"
                       "s1 = \"127.0.0.1:%u\"\n"
                       "s2 = \"127.0.0.1:%u\"\n"
                       "[eccluster_listener.listen.\"127.0.0.1:%u\"]\n"
                       "[control_listener.listen.\"%s/%s.sock\"]\n"
                       "[binding_group.pool.binding.p1]\n"
                       "bind_address = \"10.99.1.1\"\n"
                       "enable_duravip = true\n"
                       "duravip_preference = \"s1\"\n"
                       "[binding_group.pool.binding.p2]\n"
                       "bind_address = \"10.99.1.2\"\n"
                       "enable_duravip = true\n"
                       "duravip_preference = \"s2\"\n"
                       "[binding_group.bulk.binding.b1]\n"
                       "bind_address = \"10.99.2.1\"\n",
                       name, port1, port2, strcmp(name, "s1") == 0 ? port1 : port2, dir, name);
    if (len < 0 || (size_t)len >= sizeof text) {
        fprintf(stderr, "%s: configuration text too long\n", name);
        return NULL;
    }
    ecc_config *config = NULL;
    if (ecc_config_parse(text, ECC_FORMAT_TOML, &config) != ECC_OK) {
        fprintf(stderr, "%s: %s\n", name, ecc_last_error());
        return NULL;
    }
    ecc_node *node = NULL;
    if (ecc_node_new(config, &node) != ECC_OK)
        fprintf(stderr, "%s: ecc_node_new: %s\n", name, ecc_last_error());
    ecc_config_free(config); /* the node keeps its own copy */
    return node;
}

/* A message from `sender`, with the header X-Group: `group` and the
 * binding `binding` when they are not NULL. */
static ecc_message *message(const char *sender, const char *group, const char *binding)
{
    ecc_message *msg = NULL;
    if (!check(ecc_message_new(&msg), "ecc_message_new"))
        return NULL;
    if (!check(ecc_message_set_sender(msg, sender), "set sender") ||
        !check(ecc_message_add_recipient_domain(msg, "example.net"), "add recipient") ||
        (group != NULL && !check(ecc_message_add_header(msg, "X-Group", group), "add header")) ||
        (binding != NULL && !check(ecc_message_set_binding(msg, binding, NULL), "set binding"))) {
        ecc_message_free(msg);
        return NULL;
    }
    return msg;
}

/* Asks `node` where the message goes; false on failure. */
static bool decide(const ecc_node *node, const char *sender, const char *group,
                   const char *binding, ecc_binding_decision *out)
{
    ecc_message *msg = message(sender, group, binding);
    if (msg == NULL)
        return false;
    bool ok = check(ecc_node_set_binding(node, msg, out), "ecc_node_set_binding");
    ecc_message_free(msg);
    return ok;
}

/* Places a message on `node` and prints the decision, after `what`. */
static bool place(const ecc_node *node, const char *what, const char *sender,
                  const char *group, const char *binding)
{
    ecc_binding_decision d;
    if (!decide(node, sender, group, binding, &d))
        return false;
    switch (d.kind) {
    case ECC_DECISION_SEND:
        printf("%s: send from %s\n", what, d.binding);
        break;
    case ECC_DECISION_MOVE:
        printf("%s: move to %s (%s)\n", what, d.node, d.binding);
        break;
    case ECC_DECISION_UNCHANGED:
        printf("%s: unchanged: %s\n", what, d.reason);
        break;
    default:
        printf("%s: unavailable: %s\n", what, d.reason);
        break;
    }
    return true;
}

/* Waits up to 10 s until s1 sends from p1 itself and moves p2's mail to s2. */
static bool wait_settled(const ecc_node *s1)
{
    double deadline = now_seconds() + 10.0;
    for (;;) {
        ecc_binding_decision mine, theirs;
        if (!decide(s1, "", NULL, "p1", &mine) || !decide(s1, "", NULL, "p2", &theirs))
            return false;
        if (mine.kind == ECC_DECISION_SEND && theirs.kind == ECC_DECISION_MOVE &&
            strcmp(theirs.node, "s2") == 0)
            return true;
        if (now_seconds() > deadline) {
            fprintf(stderr, "the DuraVIPs did not settle: p1 %u, p2 %u %s\n", mine.kind,
                    theirs.kind, theirs.node);
            return false;
        }
        sleep_ms(20);
    }
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
    /* The hook's userdata must outlive the node. */
    static char bulk_domain[] = "bulk.example";
    ecc_node *s1 = make_node("s1", port1, port2, argv[3]);
    ecc_node *s2 = s1 ? make_node("s2", port1, port2, argv[3]) : NULL;
    ecc_message *outside = NULL;
    if (s2 == NULL)
        goto out;

    if (!check(ecc_node_register_set_binding_hook(s1, ECC_HOOK_FIRST, bulk_hook, bulk_domain),
               "register the hook") ||
        !check(ecc_node_policy_load(s1, "route", route_lua), "load the Lua policy"))
        goto out;
    printf("policy loaded: route\n");
    /* A broken script is refused with its line; the loaded one stays. */
    ecc_status status =
        ecc_node_policy_load(s1, "broken", "eccluster.register_hook('set_binding', function(msg)\n");
    printf("broken policy: %s: %s\n", ecc_status_str(status), ecc_last_error());

    if (!check(ecc_node_start(s1), "start s1") || !check(ecc_node_start(s2), "start s2") ||
        !wait_settled(s1))
        goto out;
    printf("settled: p1 on s1, p2 on s2\n");

    if (!place(s1, "a@bulk.example", "a@bulk.example", NULL, NULL) ||
        !place(s1, "X-Group pool", "a@other.example", "pool", NULL) ||
        !place(s1, "on p2", "a@other.example", NULL, "p2") ||
        !place(s1, "X-Group nowhere", "a@other.example", "nowhere", NULL))
        goto out;

    /* Choosing is for hooks, during ecc_node_set_binding. */
    if (!check(ecc_message_new(&outside), "ecc_message_new"))
        goto out;
    status = ecc_message_choose_binding(outside, "p1");
    printf("choose outside a hook: %s: %s\n", ecc_status_str(status), ecc_last_error());

    if (!check(ecc_node_stop(s1), "stop s1") || !check(ecc_node_stop(s2), "stop s2"))
        goto out;
    printf("stopped\n");
    rc = EXIT_SUCCESS;

out:
    fflush(stdout);
    ecc_message_free(outside);
    ecc_node_free(s2);
    ecc_node_free(s1);
    return rc;
}
