/*
 * mta_sim.c -- three simulated MTAs choosing bindings with set_binding and
 * moving messages to the node that owns their binding's DuraVIP.
 *
 * Usage: mta_sim PORT_1 PORT_2 PORT_3 DIR
 *
 * Three nodes, m1, m2 and m3, in one process (loopback cluster ports
 * PORT_1..PORT_3, console sockets in DIR, DuraVIP in dry run: addresses
 * are "plumbed" on paper only, no privileges needed) share the binding
 * group "pool": out1, out2 and out3, DuraVIPs preferring m1, m2 and m3.
 *
 * Each node is a stand-in MTA: a spool (an in-memory list under a mutex),
 * the same Lua policy (the binding an X-Binding header names, else one from
 * "pool", where this node's own DuraVIP comes first) and a move hook that
 * takes a moved message into the spool. When the message's rebind flag
 * (the receiver's unconditional_rebind) says so, the hook runs set_binding
 * again on its own node to pick the binding it will send from.
 *
 * Once every node owns its preferred address, messages are injected into
 * m1's spool. For each, m1 runs set_binding: "send" leaves it in m1's
 * spool to go out from the binding chosen; "move" hands it to the owner
 * with ecc_node_move_message and drops it from m1 only once that returned
 * success. m3's hook defers the first move it gets: the sender retries,
 * and returns only after m3 accepted. The program then prints every spool
 * and m1's `cluster show mmove`, and checks that each message is in exactly
 * one spool, with its bytes intact. Exits non-zero on any failure. Built
 * and run by scripts/c-examples.sh, which checks the exact output.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eccluster.h"

#define NODES 3
#define SPOOL_MAX 16
#define MOVE_TIMEOUT_MS 30000

/* The policy every node loads: the binding X-Binding names, else the pool. */
static const char *const policy_lua =
    "local ecc = require 'eccluster'\n"
    "ecc.register_hook('set_binding', function(msg)\n"
    "  local wanted = msg:header('X-Binding')[1]\n"
    "  if wanted then msg:binding(wanted) else msg:binding_group('pool') end\n"
    "  return ecc.DONE\n"
    "end)\n";

/* A message in a spool: what the MTA keeps to send it later. */
struct entry {
    char id[ECC_MOVE_ID_MAX];
    char from[32];    /* the node it came from; "" when injected here */
    char binding[ECC_DECISION_TEXT_MAX];
    bool rebound;     /* the binding is this node's own set_binding choice */
    uint8_t *body;    /* owned copy */
    size_t body_len;
};

/* One simulated MTA. The move hook runs on library threads while main
 * injects and reads, so every field below the lock is used under it. */
struct mta {
    const char *name;
    ecc_node *node;
    pthread_mutex_t lock;
    struct entry spool[SPOOL_MAX];
    size_t spooled;
    int defers_left; /* moves still to defer, as a busy spool would */
    int deferred;
    char failure[512]; /* the first thing the hook could not do */
};

static bool check(ecc_status status, const char *what)
{
    if (status == ECC_OK)
        return true;
    fprintf(stderr, "%s: %s (%s)\n", what, ecc_status_str(status), ecc_last_error());
    return false;
}

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

/* Adds a message to the spool; false when it is full or out of memory.
 * Called with the lock held. */
static bool spool_add(struct mta *mta, const char *id, const char *from, const char *binding,
                      bool rebound, const uint8_t *body, size_t body_len)
{
    if (mta->spooled == SPOOL_MAX)
        return false;
    uint8_t *copy = malloc(body_len > 0 ? body_len : 1);
    if (copy == NULL)
        return false;
    memcpy(copy, body, body_len);
    struct entry *e = &mta->spool[mta->spooled++];
    snprintf(e->id, sizeof e->id, "%s", id);
    snprintf(e->from, sizeof e->from, "%s", from);
    snprintf(e->binding, sizeof e->binding, "%s", binding);
    e->rebound = rebound;
    e->body = copy;
    e->body_len = body_len;
    return true;
}

/* The entry with `id`, or NULL. Called with the lock held. */
static struct entry *spool_find(struct mta *mta, const char *id)
{
    for (size_t i = 0; i < mta->spooled; i++)
        if (strcmp(mta->spool[i].id, id) == 0)
            return &mta->spool[i];
    return NULL;
}

/* Removes the entry with `id`; false when it is not there. */
static bool spool_drop(struct mta *mta, const char *id)
{
    pthread_mutex_lock(&mta->lock);
    struct entry *e = spool_find(mta, id);
    if (e != NULL) {
        free(e->body);
        *e = mta->spool[--mta->spooled];
    }
    pthread_mutex_unlock(&mta->lock);
    return e != NULL;
}

/* The set_binding view of a moved message: its envelope and header
 * fields, with the binding the sender chose as the current one. */
static ecc_message *policy_message(const ecc_moved_message *m)
{
    char text[1024], name[256];
    size_t n = 0, count = 0;
    ecc_message *msg = NULL;
    if (ecc_message_new(&msg) != ECC_OK)
        return NULL;
    bool ok = ecc_moved_message_mail_from(m, text, sizeof text, &n) == ECC_OK &&
              ecc_message_set_sender(msg, text) == ECC_OK &&
              ecc_moved_message_recipient_count(m, &count) == ECC_OK;
    for (size_t i = 0; ok && i < count; i++) {
        ok = ecc_moved_message_recipient(m, i, text, sizeof text, &n) == ECC_OK;
        const char *at = ok ? strrchr(text, '@') : NULL;
        ok = ok && (at == NULL || ecc_message_add_recipient_domain(msg, at + 1) == ECC_OK);
    }
    ok = ok && ecc_moved_message_header_count(m, &count) == ECC_OK;
    for (size_t i = 0; ok && i < count; i++)
        ok = ecc_moved_message_header_name(m, i, name, sizeof name, &n) == ECC_OK &&
             ecc_moved_message_header_value(m, i, text, sizeof text, &n) == ECC_OK &&
             ecc_message_add_header(msg, name, text) == ECC_OK;
    char group[ECC_DECISION_TEXT_MAX];
    ok = ok && ecc_moved_message_binding(m, text, sizeof text, &n) == ECC_OK &&
         ecc_moved_message_binding_group(m, group, sizeof group, &n) == ECC_OK &&
         ecc_message_set_binding(msg, text, group[0] != '\0' ? group : NULL) == ECC_OK;
    if (!ok) {
        ecc_message_free(msg);
        return NULL;
    }
    return msg;
}

/* Fails the move with a reason the sender sees, and remembers the first
 * failure for main to report. Called with the lock held. */
static ecc_move_verdict refuse(struct mta *mta, char *reason, size_t reason_len,
                               const char *why)
{
    snprintf(reason, reason_len, "451 4.3.0 %s", why);
    if (mta->failure[0] == '\0')
        snprintf(mta->failure, sizeof mta->failure, "%s", why);
    return ECC_MOVE_DEFER;
}

/* The move hook: runs on a library thread, one per message being received.
 * Holding the lock throughout keeps the spool and its defer budget
 * consistent; a real MTA would write and fsync the body before accepting. */
static ecc_move_verdict take(void *userdata, const ecc_moved_message *m, char *reason,
                             size_t reason_len)
{
    struct mta *mta = userdata;
    char id[ECC_MOVE_ID_MAX], from[32], binding[ECC_DECISION_TEXT_MAX];
    size_t n = 0;
    const uint8_t *body = NULL;
    size_t body_len = 0;
    bool redelivery = false, rebind = false;
    ecc_move_verdict verdict = ECC_MOVE_ACCEPT;
    pthread_mutex_lock(&mta->lock);
    if (mta->defers_left > 0) {
        mta->defers_left--;
        mta->deferred++;
        snprintf(reason, reason_len, "451 4.3.1 spool busy, try again");
        verdict = ECC_MOVE_DEFER;
        goto out;
    }
    if (ecc_moved_message_id(m, id, sizeof id, &n) != ECC_OK ||
        ecc_moved_message_from(m, from, sizeof from, &n) != ECC_OK ||
        ecc_moved_message_binding(m, binding, sizeof binding, &n) != ECC_OK ||
        ecc_moved_message_body(m, &body, &body_len) != ECC_OK ||
        ecc_moved_message_redelivery(m, &redelivery) != ECC_OK ||
        ecc_moved_message_rebind(m, &rebind) != ECC_OK) {
        verdict = refuse(mta, reason, reason_len, "cannot read the moved message");
        goto out;
    }
    /* Seen before without learning our verdict: accept what is spooled. */
    if (redelivery && spool_find(mta, id) != NULL)
        goto out;
    if (rebind) {
        ecc_message *msg = policy_message(m);
        ecc_binding_decision d;
        bool decided = msg != NULL && ecc_node_set_binding(mta->node, msg, &d) == ECC_OK;
        ecc_message_free(msg);
        if (!decided) {
            verdict = refuse(mta, reason, reason_len, "set_binding failed on the moved message");
            goto out;
        }
        /* Sending from elsewhere would mean moving it on: not in this sim. */
        if (d.kind != ECC_DECISION_SEND) {
            verdict = refuse(mta, reason, reason_len, "rebinding did not send from here");
            goto out;
        }
        snprintf(binding, sizeof binding, "%s", d.binding);
    }
    if (!spool_add(mta, id, from, binding, rebind, body, body_len))
        verdict = refuse(mta, reason, reason_len, "the spool is full");
out:
    pthread_mutex_unlock(&mta->lock);
    return verdict;
}

/* Makes a stopped node from configuration text. */
static ecc_node *make_node(int index, const unsigned ports[NODES], const char *dir)
{
    char text[4096];
    int len = snprintf(text, sizeof text,
                       "[cluster]\n"
                       "nodename = \"m%d\"\n"
                       "nodeaddr = \"127.0.0.1\"\n"
                       "heartbeat_start_delay = 0\n"
                       "heartbeats_per_sec = 10\n"
                       /* Down after 3 s of silence, so that valgrind's
                        * slowdown is not taken for a crash. */
                       "down_heartbeats = 30\n"
                       "view_mature_time = 1\n"
                       "duravip_dry_run = true\n"
                       "[cluster.topology.\"10.99.3.0/24\"]\n"
                       "interface = \"sim0\"\n"
                       "[msgc_server.peers]\n"
                       "m1 = \"127.0.0.1:%u\"\n"
                       "m2 = \"127.0.0.1:%u\"\n"
                       "m3 = \"127.0.0.1:%u\"\n"
                       "[eccluster_listener.listen.\"127.0.0.1:%u\"]\n"
                       "[control_listener.listen.\"%s/m%d.sock\"]\n"
                       "[binding_group.pool.binding.out1]\n"
                       "bind_address = \"10.99.3.1\"\n"
                       "enable_duravip = true\n"
                       "duravip_preference = \"m1\"\n"
                       "[binding_group.pool.binding.out2]\n"
                       "bind_address = \"10.99.3.2\"\n"
                       "enable_duravip = true\n"
                       "duravip_preference = \"m2\"\n"
                       "[binding_group.pool.binding.out3]\n"
                       "bind_address = \"10.99.3.3\"\n"
                       "enable_duravip = true\n"
                       "duravip_preference = \"m3\"\n",
                       index + 1, ports[0], ports[1], ports[2], ports[index], dir, index + 1);
    if (len < 0 || (size_t)len >= sizeof text) {
        fprintf(stderr, "m%d: configuration text too long\n", index + 1);
        return NULL;
    }
    ecc_config *config = NULL;
    if (!check(ecc_config_parse(text, ECC_FORMAT_TOML, &config), "ecc_config_parse"))
        return NULL;
    ecc_node *node = NULL;
    check(ecc_node_new(config, &node), "ecc_node_new");
    ecc_config_free(config); /* the node keeps its own copy */
    return node;
}

/* Asks `node` where a message on `binding` goes; false on failure. */
static bool decide_binding(const ecc_node *node, const char *binding, ecc_binding_decision *out)
{
    ecc_message *msg = NULL;
    if (!check(ecc_message_new(&msg), "ecc_message_new"))
        return false;
    bool ok = check(ecc_message_add_header(msg, "X-Binding", binding), "add header") &&
              check(ecc_node_set_binding(node, msg, out), "ecc_node_set_binding");
    ecc_message_free(msg);
    return ok;
}

/* Waits up to 20 s until every node sends from its own binding and moves
 * the others' mail to their owners. */
static bool wait_settled(struct mta mtas[NODES])
{
    static const char *const bindings[NODES] = {"out1", "out2", "out3"};
    double deadline = now_seconds() + 20.0;
    for (;;) {
        bool settled = true;
        for (int i = 0; i < NODES && settled; i++) {
            for (int j = 0; j < NODES && settled; j++) {
                ecc_binding_decision d;
                if (!decide_binding(mtas[i].node, bindings[j], &d))
                    return false;
                settled = i == j ? d.kind == ECC_DECISION_SEND
                                 : d.kind == ECC_DECISION_MOVE &&
                                       strcmp(d.node, mtas[j].name) == 0;
            }
        }
        if (settled)
            return true;
        if (now_seconds() > deadline) {
            fprintf(stderr, "the DuraVIPs did not settle within 20 s\n");
            return false;
        }
        sleep_ms(20);
    }
}

/* A message the simulation injects into m1. */
struct injected {
    const char *id;
    const char *mail_from;
    const char *rcpt;
    const char *x_binding; /* NULL: no X-Binding header */
    char body[128];
};

/* The node named `name`, or NULL. */
static struct mta *mta_named(struct mta mtas[NODES], const char *name)
{
    for (int i = 0; i < NODES; i++)
        if (strcmp(mtas[i].name, name) == 0)
            return &mtas[i];
    return NULL;
}

/* Places one message spooled on m1: sends it from m1 or moves it to the
 * owner of its binding, and prints what happened. */
static bool place(struct mta mtas[NODES], const struct injected *in)
{
    struct mta *m1 = &mtas[0];
    ecc_message *msg = NULL;
    if (!check(ecc_message_new(&msg), "ecc_message_new"))
        return false;
    const char *at = strrchr(in->rcpt, '@');
    ecc_binding_decision d;
    char group[ECC_DECISION_TEXT_MAX] = "";
    size_t n = 0;
    bool ok = check(ecc_message_set_sender(msg, in->mail_from), "set sender") &&
              check(ecc_message_add_recipient_domain(msg, at + 1), "add recipient") &&
              (in->x_binding == NULL ||
               check(ecc_message_add_header(msg, "X-Binding", in->x_binding), "add header")) &&
              check(ecc_node_set_binding(m1->node, msg, &d), "ecc_node_set_binding");
    /* A binding chosen on its own has no group. */
    if (ok && ecc_message_binding_group(msg, group, sizeof group, &n) != ECC_OK)
        group[0] = '\0';
    ecc_message_free(msg);
    if (!ok)
        return false;

    char what[128];
    if (in->x_binding != NULL)
        snprintf(what, sizeof what, "%s, X-Binding %s", in->id, in->x_binding);
    else
        snprintf(what, sizeof what, "%s, no X-Binding", in->id);
    if (d.kind == ECC_DECISION_SEND) {
        pthread_mutex_lock(&m1->lock);
        struct entry *e = spool_find(m1, in->id);
        if (e != NULL)
            snprintf(e->binding, sizeof e->binding, "%s", d.binding);
        pthread_mutex_unlock(&m1->lock);
        printf("%s: send from %s%s%s on m1\n", what, d.binding, group[0] ? " in " : "", group);
        return e != NULL;
    }
    if (d.kind != ECC_DECISION_MOVE) {
        printf("%s: %s: %s\n", what, d.kind == ECC_DECISION_UNCHANGED ? "unchanged" : "unavailable",
               d.reason);
        return false;
    }
    struct mta *owner = mta_named(mtas, d.node);
    if (owner == NULL) {
        fprintf(stderr, "%s: move to an unknown node %s\n", in->id, d.node);
        return false;
    }
    const char *recipients[] = {in->rcpt};
    const char *header_names[] = {"X-Binding"};
    const char *header_values[] = {in->x_binding};
    ecc_move_request request = {
        .id = in->id,
        .mail_from = in->mail_from,
        .recipients = recipients,
        .recipient_count = 1,
        .binding = d.binding,
        .binding_group = group,
        .header_names = header_names,
        .header_values = header_values,
        .header_count = in->x_binding != NULL ? 1 : 0,
        .body = (const uint8_t *)in->body,
        .body_len = strlen(in->body),
    };
    ecc_move_receipt receipt;
    if (!check(ecc_node_move_message(m1->node, d.node, &request, MOVE_TIMEOUT_MS, &receipt),
               "ecc_node_move_message"))
        return false;
    /* Success means the owner's hook accepted it: it is spooled there
     * already, so m1 may forget it. */
    pthread_mutex_lock(&owner->lock);
    bool there = spool_find(owner, in->id) != NULL;
    pthread_mutex_unlock(&owner->lock);
    printf("%s: move to %s (%s), %s after %u attempt%s, in %s's spool: %s\n", what, d.node,
           d.binding, receipt.duplicate ? "duplicate" : "accepted", receipt.attempts,
           receipt.attempts == 1 ? "" : "s", d.node, there ? "yes" : "NO");
    if (!there || !spool_drop(m1, in->id)) {
        fprintf(stderr, "%s: not where it belongs after the move\n", in->id);
        return false;
    }
    return true;
}

/* Prints a node's spool and counts each injected message found in it,
 * checking its bytes; false on a stranger or changed bytes. */
static bool show_spool(struct mta *mta, const struct injected *msgs, size_t count,
                       int *found)
{
    bool ok = true;
    pthread_mutex_lock(&mta->lock);
    printf("%s spool: %zu message%s\n", mta->name, mta->spooled, mta->spooled == 1 ? "" : "s");
    for (size_t i = 0; i < mta->spooled; i++) {
        const struct entry *e = &mta->spool[i];
        size_t k = 0;
        while (k < count && strcmp(msgs[k].id, e->id) != 0)
            k++;
        bool intact = k < count && e->body_len == strlen(msgs[k].body) &&
                      memcmp(e->body, msgs[k].body, e->body_len) == 0;
        if (k < count)
            found[k]++;
        ok = ok && intact;
        if (e->from[0] == '\0')
            printf("  %s: injected here, sends from %s, bytes %s\n", e->id, e->binding,
                   intact ? "intact" : "CHANGED");
        else
            printf("  %s: moved from %s, %s %s, bytes %s\n", e->id, e->from,
                   e->rebound ? "rebound to" : "kept", e->binding, intact ? "intact" : "CHANGED");
    }
    pthread_mutex_unlock(&mta->lock);
    return ok;
}

/* Sorts a spool by id, so that the order threads accepted in does not
 * show. */
static int by_id(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->id, ((const struct entry *)b)->id);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s PORT_1 PORT_2 PORT_3 DIR\n", argv[0]);
        return 2;
    }
    unsigned ports[NODES];
    for (int i = 0; i < NODES; i++)
        ports[i] = (unsigned)strtoul(argv[i + 1], NULL, 10);
    const char *dir = argv[4];
    int rc = EXIT_FAILURE;

    struct injected msgs[] = {
        {"msg-1", "alice@example.com", "bob@example.net", NULL, ""},
        {"msg-2", "alice@example.com", "carol@example.org", "out2", ""},
        {"msg-3", "news@example.com", "dave@example.net", "out3", ""},
        {"msg-4", "bounce@example.com", "erin@example.org", NULL, ""},
        {"msg-5", "alice@example.com", "frank@example.net", "out1", ""},
        {"msg-6", "news@example.com", "grace@example.org", "out3", ""},
    };
    const size_t count = sizeof msgs / sizeof msgs[0];
    for (size_t i = 0; i < count; i++)
        snprintf(msgs[i].body, sizeof msgs[i].body,
                 "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nHello.\r\n", msgs[i].mail_from,
                 msgs[i].rcpt, msgs[i].id);

    /* Must outlive the nodes: the hooks may run until ecc_node_stop. */
    static struct mta mtas[NODES] = {{.name = "m1"}, {.name = "m2"}, {.name = "m3"}};
    for (int i = 0; i < NODES; i++)
        pthread_mutex_init(&mtas[i].lock, NULL);
    mtas[2].defers_left = 1;
    for (int i = 0; i < NODES; i++) {
        mtas[i].node = make_node(i, ports, dir);
        if (mtas[i].node == NULL ||
            !check(ecc_node_register_move_hook(mtas[i].node, take, &mtas[i]), "move hook") ||
            !check(ecc_node_policy_load(mtas[i].node, "pick", policy_lua), "load the policy"))
            goto out;
    }
    printf("policy pick loaded on m1, m2, m3\n");
    for (int i = 0; i < NODES; i++)
        if (!check(ecc_node_start(mtas[i].node), mtas[i].name))
            goto out;
    if (!wait_settled(mtas))
        goto out;
    printf("settled: out1 on m1, out2 on m2, out3 on m3\n");

    /* "Receive" every message into m1's spool, then place each. */
    pthread_mutex_lock(&mtas[0].lock);
    bool injected = true;
    for (size_t i = 0; i < count; i++)
        injected = injected && spool_add(&mtas[0], msgs[i].id, "", "", false,
                                         (const uint8_t *)msgs[i].body, strlen(msgs[i].body));
    pthread_mutex_unlock(&mtas[0].lock);
    if (!injected) {
        fprintf(stderr, "cannot inject into m1's spool\n");
        goto out;
    }
    printf("injected %zu messages into m1\n", count);
    for (size_t i = 0; i < count; i++)
        if (!place(mtas, &msgs[i]))
            goto out;

    /* The nodes keep running: lock each spool to read it. */
    int found[sizeof msgs / sizeof msgs[0]] = {0};
    bool intact = true;
    for (int i = 0; i < NODES; i++) {
        pthread_mutex_lock(&mtas[i].lock);
        qsort(mtas[i].spool, mtas[i].spooled, sizeof mtas[i].spool[0], by_id);
        pthread_mutex_unlock(&mtas[i].lock);
        intact = show_spool(&mtas[i], msgs, count, found) && intact;
    }
    size_t once = 0;
    for (size_t i = 0; i < count; i++)
        once += found[i] == 1;
    printf("in exactly one spool: %zu of %zu messages\n", once, count);
    pthread_mutex_lock(&mtas[2].lock);
    printf("m3 deferred %d move(s)\n", mtas[2].deferred);
    pthread_mutex_unlock(&mtas[2].lock);
    for (int i = 0; i < NODES; i++) {
        pthread_mutex_lock(&mtas[i].lock);
        bool failed = mtas[i].failure[0] != '\0';
        if (failed)
            fprintf(stderr, "%s's move hook: %s\n", mtas[i].name, mtas[i].failure);
        pthread_mutex_unlock(&mtas[i].lock);
        intact = intact && !failed;
    }
    if (!intact || once != count)
        goto out;

    char shown[4096];
    size_t shown_len = 0;
    if (!check(ecc_console_exec(mtas[0].node, "cluster show mmove", shown, sizeof shown,
                                &shown_len),
               "cluster show mmove"))
        goto out;
    printf("m1 cluster show mmove:\n%s", shown);

    for (int i = 0; i < NODES; i++)
        if (!check(ecc_node_stop(mtas[i].node), mtas[i].name))
            goto out;
    printf("stopped\n");
    rc = EXIT_SUCCESS;

out:
    fflush(stdout);
    for (int i = 0; i < NODES; i++) {
        ecc_node_free(mtas[i].node); /* stops it first: no hook runs after */
        for (size_t k = 0; k < mtas[i].spooled; k++)
            free(mtas[i].spool[k].body);
        pthread_mutex_destroy(&mtas[i].lock);
    }
    return rc;
}
