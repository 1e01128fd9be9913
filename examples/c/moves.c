/*
 * moves.c -- a message moved from one node to another (#mmove).
 *
 * Usage: moves PORT_1 PORT_2 DIR
 *
 * Starts two nodes in one process (loopback cluster ports PORT_1 and
 * PORT_2, console sockets under DIR). m2 keeps the ids of the moves it
 * accepted in DIR/m2-ids (mmove_dir) and has a move hook, a stand-in spool
 * that reads every field of the message and accepts it, or rejects one
 * without recipients. m1 moves a message to m2 and waits until m2's hook
 * accepted it; moves it again under the same id (a duplicate: the hook is
 * not asked again); moves one under a generated id; and shows each error:
 * a rejection, an unknown node, a bad id, a NULL request. Exits non-zero
 * on any failure. Built and run by scripts/c-examples.sh, which checks the
 * exact output.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eccluster.h"

#define BODY "Subject: moved\r\n\r\nHello from m1.\r\n"

/* What m2's hook saw of the last message it accepted. The hook runs on a
 * library thread while main waits in ecc_node_move_message, so it fills
 * the fields first and then counts; main reads them once the move has
 * returned (the atomic orders them). */
struct spool {
    atomic_int accepted;
    char line[4][1024];
};

/* Copies a string field into `out` ("?" when it does not fit). */
static void field(ecc_status status, char *out, size_t len)
{
    if (status != ECC_OK)
        snprintf(out, len, "?");
}

/* The move hook: runs on a library thread of its own per message. The
 * message and its strings are valid only during the call. */
static ecc_move_verdict take(void *userdata, const ecc_moved_message *m, char *reason,
                             size_t reason_len)
{
    struct spool *spool = userdata;
    size_t n = 0, count = 0, headers = 0;
    char id[ECC_MOVE_ID_MAX], from[64], mail_from[256], rcpt[2][256], binding[64], group[64],
        name[64], value[256];
    if (ecc_moved_message_recipient_count(m, &count) != ECC_OK || count == 0) {
        snprintf(reason, reason_len, "550 5.5.1 no recipients");
        return ECC_MOVE_REJECT;
    }
    field(ecc_moved_message_id(m, id, sizeof id, &n), id, sizeof id);
    field(ecc_moved_message_from(m, from, sizeof from, &n), from, sizeof from);
    field(ecc_moved_message_mail_from(m, mail_from, sizeof mail_from, &n), mail_from,
          sizeof mail_from);
    for (size_t i = 0; i < 2; i++) {
        if (i < count)
            field(ecc_moved_message_recipient(m, i, rcpt[i], sizeof rcpt[i], &n), rcpt[i],
                  sizeof rcpt[i]);
        else
            rcpt[i][0] = '\0';
    }
    field(ecc_moved_message_binding(m, binding, sizeof binding, &n), binding, sizeof binding);
    field(ecc_moved_message_binding_group(m, group, sizeof group, &n), group, sizeof group);
    name[0] = value[0] = '\0';
    if (ecc_moved_message_header_count(m, &headers) == ECC_OK && headers > 0) {
        field(ecc_moved_message_header_name(m, 0, name, sizeof name, &n), name, sizeof name);
        field(ecc_moved_message_header_value(m, 0, value, sizeof value, &n), value,
              sizeof value);
    }
    const uint8_t *body = NULL;
    size_t body_len = 0;
    bool redelivery = true, rebind = true;
    if (ecc_moved_message_body(m, &body, &body_len) != ECC_OK ||
        ecc_moved_message_redelivery(m, &redelivery) != ECC_OK ||
        ecc_moved_message_rebind(m, &rebind) != ECC_OK) {
        snprintf(reason, reason_len, "451 cannot read the message");
        return ECC_MOVE_DEFER;
    }
    /* A real spool would write the body and fsync it here. */
    snprintf(spool->line[0], sizeof spool->line[0],
             "id %s from %s, mail from <%s>, %zu recipients: %s, %s", id, from, mail_from, count,
             rcpt[0], rcpt[1]);
    snprintf(spool->line[1], sizeof spool->line[1], "binding %s in group %s, %zu header: %s: %s",
             binding, group, headers, name, value);
    snprintf(spool->line[2], sizeof spool->line[2], "%zu bytes, %s", body_len,
             body_len == strlen(BODY) && memcmp(body, BODY, body_len) == 0 ? "as sent"
                                                                            : "DIFFERENT");
    snprintf(spool->line[3], sizeof spool->line[3], "redelivery %s, rebind %s",
             redelivery ? "yes" : "no", rebind ? "yes" : "no");
    atomic_fetch_add(&spool->accepted, 1);
    return ECC_MOVE_ACCEPT;
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
    bool m2 = strcmp(name, "m2") == 0;
    char mmove[1100] = "";
    if (m2)
        snprintf(mmove, sizeof mmove, "mmove_dir = \"%s/m2-ids\"\nunconditional_rebind = false\n",
                 dir);
    int len = snprintf(text, sizeof text,
                       "[cluster]\n"
                       "nodename = \"%s\"\n"
                       "nodeaddr = \"127.0.0.1\"\n"
                       "heartbeat_start_delay = 0\n"
                       "heartbeats_per_sec = 10\n"
                       /* Down after 3 s of silence rather than 0.5 s, so
                        * that valgrind's slowdown is not taken for a crash. */
                       "down_heartbeats = 30\n"
                       "%s"
                       "[msgc_server.peers]\n"
                       "m1 = \"127.0.0.1:%u\"\n"
                       "m2 = \"127.0.0.1:%u\"\n"
                       "[eccluster_listener.listen.\"127.0.0.1:%u\"]\n"
                       "[control_listener.listen.\"%s/%s.sock\"]\n",
                       name, mmove, port1, port2, m2 ? port2 : port1, dir, name);
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

/* Prints a failed move's status and error text. */
static void show_error(const char *what, ecc_status status)
{
    printf("%s: %s: %s\n", what, ecc_status_str(status), ecc_last_error());
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT_1 PORT_2 DIR\n", argv[0]);
        return 2;
    }
    unsigned port1 = (unsigned)strtoul(argv[1], NULL, 10);
    unsigned port2 = (unsigned)strtoul(argv[2], NULL, 10);
    const char *dir = argv[3];
    int rc = EXIT_FAILURE;
    /* Must outlive the nodes: the hook may run until ecc_node_stop. */
    struct spool spool = {.line = {{0}}};
    atomic_init(&spool.accepted, 0);
    ecc_node *m1 = make_node("m1", port1, port2, dir);
    ecc_node *m2 = m1 ? make_node("m2", port1, port2, dir) : NULL;
    if (m2 == NULL)
        goto out;
    if (!check(ecc_node_register_move_hook(m2, take, &spool), "hook on m2") ||
        !check(ecc_node_start(m1), "start m1") || !check(ecc_node_start(m2), "start m2"))
        goto out;

    const char *recipients[] = {"a@example.net", "b@example.org"};
    const char *header_names[] = {"X-Spool-Id"};
    const char *header_values[] = {"1F/00-4711"};
    ecc_move_request request = {
        .id = "c-move-1",
        .mail_from = "sender@example.com",
        .recipients = recipients,
        .recipient_count = 2,
        .binding = "out1",
        .binding_group = "default",
        .header_names = header_names,
        .header_values = header_values,
        .header_count = 1,
        .body = (const uint8_t *)BODY,
        .body_len = strlen(BODY),
    };
    ecc_move_receipt receipt;
    /* The first move waits, retrying, until the link between the nodes is
     * up and m2's host accepted it. */
    if (!check(ecc_node_move_message(m1, "m2", &request, 30000, &receipt), "move"))
        goto out;
    printf("moved %s to m2: %s\n", receipt.id, receipt.duplicate ? "duplicate" : "accepted");
    for (int i = 0; i < 4; i++)
        printf("m2 hook: %s\n", spool.line[i]);

    if (!check(ecc_node_move_message(m1, "m2", &request, 30000, &receipt), "move again"))
        goto out;
    printf("moved %s again: %s, the hook ran %d time(s)\n", receipt.id,
           receipt.duplicate ? "duplicate" : "accepted", atomic_load(&spool.accepted));

    request.id = NULL;
    if (!check(ecc_node_move_message(m1, "m2", &request, 30000, &receipt), "generated id"))
        goto out;
    printf("moved a message with a generated id of %zu hex digits\n",
           strspn(receipt.id, "0123456789abcdef"));

    request.id = "c-move-2";
    request.recipient_count = 0;
    show_error("no recipients", ecc_node_move_message(m1, "m2", &request, 30000, &receipt));
    request.recipient_count = 2;
    show_error("unknown node", ecc_node_move_message(m1, "m9", &request, 30000, &receipt));
    request.id = "a/b";
    show_error("bad id", ecc_node_move_message(m1, "m2", &request, 30000, &receipt));
    show_error("NULL request", ecc_node_move_message(m1, "m2", NULL, 30000, &receipt));
    show_error("NULL hook", ecc_node_register_move_hook(m1, NULL, NULL));

    /* m2's own view: m1 out (nothing sent) and in. */
    char shown[2048];
    size_t shown_len = 0;
    if (!check(ecc_console_exec(m2, "cluster show mmove", shown, sizeof shown, &shown_len),
               "cluster show mmove"))
        goto out;
    printf("m2 cluster show mmove:\n%s", shown);

    if (!check(ecc_node_stop(m1), "stop m1") || !check(ecc_node_stop(m2), "stop m2"))
        goto out;
    printf("stopped\n");
    rc = EXIT_SUCCESS;

out:
    fflush(stdout);
    ecc_node_free(m2);
    ecc_node_free(m1);
    return rc;
}
