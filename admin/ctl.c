/* SPDX-License-Identifier: MIT */
/* switchyardctl: sends one admin command to one or more switchyard instances and prints each
 * answer. With several -s the command goes to every instance at once (one thread each), and
 * each answer is shown under its socket with the instance's generation and journal sequence,
 * so that an operator sees when a fleet agrees. The exit status is 0 only when every instance
 * answered ok. */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/admin_client.h"
#include "switchyard/json.h"
#include "sy_config.h"

#include "watch_internal.h"

#define EXIT_ERROR       1 /* an instance answered error */
#define EXIT_USAGE       2
#define EXIT_UNREACHABLE 3 /* an instance could not be asked */

struct instance {
    const char *socket;
    const char *line;
    bool json;
    bool fanout;
    int timeout_ms;
    int rc;
    struct sy_admin_answer answer;
    int ident_rc;
    struct sy_admin_answer ident;
    pthread_t thread;
    bool started;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: switchyardctl [-s SOCKET]... [--json] [--timeout SECONDS] COMMAND [ARG]...\n"
            "  -s, --socket PATH   an instance's admin socket; repeat to address several\n"
            "                      (default: $SWITCHYARD_SOCKET, else %s)\n"
            "  -j, --json          answers as JSON (one object per line)\n"
            "  -T, --timeout S     seconds to wait for each instance (default 10)\n"
            "  -V, --version       print the version\n"
            "`switchyardctl status --watch [--interval S] [--count N]` redraws the status\n"
            "every S seconds (default 2) until interrupted, or N times.\n"
            "`switchyardctl help` lists the commands. Exit status: 0 when every instance\n"
            "answered ok, 1 when one answered an error, 3 when one could not be reached.\n",
            SY_ADMIN_DEFAULT_SOCKET);
}

static void *ask(void *arg)
{
    struct instance *in = arg;
    in->rc = sy_admin_call(in->socket, in->line, NULL, 0, in->timeout_ms, &in->answer);
    if (in->rc == 0 && in->fanout && !in->json)
        in->ident_rc = sy_admin_call(in->socket, "json ident", NULL, 0, in->timeout_ms, &in->ident);
    return NULL;
}

/* The answer without its last line (`ok` / `error: ...`), which the caller shows itself. */
static void print_body(FILE *f, const struct sy_admin_answer *a, const char **last)
{
    size_t len = a->len;
    while (len > 0 && a->text[len - 1] == '\n')
        len--;
    size_t start = len;
    while (start > 0 && a->text[start - 1] != '\n')
        start--;
    fwrite(a->text, 1, start, f);
    *last = a->text + start;
}

/* status --watch [--interval S] [--count N]: the status page in the terminal. */
static int watch_main(int argc, char **argv, const char **sockets, size_t n, int timeout_ms)
{
    double interval = 2;
    unsigned long count = 0;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--watch") == 0)
            continue;
        if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc) {
            interval = strtod(argv[++i], &end);
            if (*end || !(interval >= 0.1 && interval <= 3600)) {
                fprintf(stderr, "switchyardctl: --interval must be 0.1..3600 seconds\n");
                return EXIT_USAGE;
            }
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            const char *s = argv[++i];
            count = strtoul(s, &end, 10);
            if (*s < '0' || *s > '9' || *end || count == 0) {
                fprintf(stderr, "switchyardctl: --count must be a positive integer\n");
                return EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "usage: switchyardctl [-s SOCKET] status --watch [--interval S] "
                            "[--count N]\n");
            return EXIT_USAGE;
        }
    }
    if (n != 1) {
        fprintf(stderr, "switchyardctl: status --watch watches one instance (one -s)\n");
        return EXIT_USAGE;
    }
    return sy_ctl_watch(sockets[0], timeout_ms, interval, count, stdout);
}

/* What the command line asked for. */
struct options {
    const char **sockets; /* n of them */
    size_t n;
    bool json;
    int timeout_ms;
};

/* The options before the command. Returns -1 to go on with argv[optind], else the exit
 * status (usage, version, help). */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},  {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 'T'}, {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    int opt;
    /* '+': stop at the command, so that its own words (revert --all) are not options. */
    while ((opt = getopt_long(argc, argv, "+s:jT:Vh", opts, NULL)) != -1) {
        switch (opt) {
        case 's':
            o->sockets[o->n++] = optarg;
            break;
        case 'j':
            o->json = true;
            break;
        case 'T': {
            char *end;
            double s = strtod(optarg, &end);
            if (*end || s <= 0 || s > 3600) {
                fprintf(stderr, "switchyardctl: bad timeout '%s'\n", optarg);
                return EXIT_USAGE;
            }
            o->timeout_ms = (int)(s * 1000);
            break;
        }
        case 'V':
            printf("switchyardctl %s\n", SY_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind == argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (o->n == 0) {
        const char *env = getenv("SWITCHYARD_SOCKET");
        o->sockets[o->n++] = env && *env ? env : SY_ADMIN_DEFAULT_SOCKET;
    }
    return -1;
}

/* Whether the command is `status ... --watch`. */
static bool is_watch(int argc, char **argv)
{
    if (strcmp(argv[0], "status") != 0)
        return false;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--watch") == 0)
            return true;
    return false;
}

/* The command's words as one line into `words` (`json ` first when JSON was asked for by
 * --json before or after the command). Returns 0, or EXIT_USAGE after saying why. */
static int command_line(int argc, char **argv, struct options *o, char *words, size_t size)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--json") == 0 || (i == 0 && strcmp(argv[i], "json") == 0))
            o->json = true;
    int off = 0;
    words[0] = '\0';
    if (o->json && strcmp(argv[0], "json") != 0)
        off = snprintf(words, size, "json ");
    if (sy_admin_join(argc, argv, words + off, size - (size_t)off) < 0 ||
        strlen(words) > SY_ADMIN_LINE_MAX) {
        fprintf(stderr, "switchyardctl: the command is longer than %d bytes\n", SY_ADMIN_LINE_MAX);
        return EXIT_USAGE;
    }
    return 0;
}

/* Asks every instance, at once when there are several. */
static void ask_all(struct instance *in, size_t n)
{
    if (n == 1) {
        ask(&in[0]);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        in[i].started = pthread_create(&in[i].thread, NULL, ask, &in[i]) == 0;
        if (!in[i].started)
            ask(&in[i]); /* no thread: ask in turn */
    }
    for (size_t i = 0; i < n; i++)
        if (in[i].started)
            pthread_join(in[i].thread, NULL);
}

/* The length of an answer without its trailing newlines. */
static size_t trimmed_len(const struct sy_admin_answer *a)
{
    size_t len = a->len;
    while (len > 0 && a->text[len - 1] == '\n')
        len--;
    return len;
}

/* --json: the answer as it came (one instance), or one object per instance naming it. */
static void print_json_answer(const struct instance *x, size_t n)
{
    if (n == 1 && x->rc == 0) {
        fwrite(x->answer.text, 1, x->answer.len, stdout);
        return;
    }
    struct sy_jw w;
    sy_jw_init(&w);
    sy_jw_begin_object(&w, NULL);
    sy_jw_str(&w, "socket", x->socket);
    sy_jw_bool(&w, "reachable", x->rc == 0);
    if (x->rc == 0) {
        sy_jw_raw(&w, "answer", x->answer.text, trimmed_len(&x->answer));
    } else {
        sy_jw_bool(&w, "ok", false);
        sy_jw_str(&w, "error", x->answer.why);
    }
    sy_jw_end_object(&w);
    sy_jw_append(&w, "\n", 1);
    fwrite(w.p, 1, w.len, stdout);
    sy_jw_dispose(&w);
    if (n == 1)
        fprintf(stderr, "switchyardctl: %s: %s\n", x->socket, x->answer.why);
}

/* The generation and journal sequence of an instance's `json ident` answer. */
static bool ident_numbers(const struct instance *x, uint64_t *gen, uint64_t *seq)
{
    struct sy_jv *v = NULL;
    const char *why;
    if (x->ident_rc != 0 || sy_jv_parse(x->ident.text, x->ident.len, &v, &why) != 0)
        return false;
    const struct sy_jv *g = sy_jv_get(v, "generation"), *s = sy_jv_get(v, "journal_seq");
    bool known = sy_jv_type(g) == SY_JV_UINT && sy_jv_type(s) == SY_JV_UINT;
    *gen = sy_jv_uint(g, 0);
    *seq = sy_jv_uint(s, 0);
    sy_jv_free(v);
    return known;
}

/* For people: the answer's body, with a header per instance when there are several. */
static void print_text_answer(const struct instance *x, size_t n)
{
    if (x->rc != 0) {
        if (n > 1)
            printf("== %s: UNREACHABLE: %s\n", x->socket, x->answer.why);
        else
            fprintf(stderr, "switchyardctl: %s: %s\n", x->socket, x->answer.why);
        return;
    }
    const char *last;
    if (n > 1) {
        uint64_t gen = 0, seq = 0;
        bool known = ident_numbers(x, &gen, &seq);
        size_t len = trimmed_len(&x->answer);
        size_t start = len;
        while (start > 0 && x->answer.text[start - 1] != '\n')
            start--;
        if (known)
            printf("== %s: %.*s (generation %" PRIu64 ", journal seq %" PRIu64 ")\n", x->socket,
                   (int)(len - start), x->answer.text + start, gen, seq);
        else
            printf("== %s: %.*s\n", x->socket, (int)(len - start), x->answer.text + start);
    }
    print_body(stdout, &x->answer, &last);
    if (n == 1)
        fputs(last, x->answer.ok ? stdout : stderr); /* with several, the header said it */
}

/* With several instances, for people: how many answered ok and which did not. */
static void print_summary(const struct instance *in, size_t n, size_t ok)
{
    printf("%zu of %zu instances answered ok", ok, n);
    const char *sep = ": failed ";
    for (size_t i = 0; i < n; i++) {
        if (in[i].rc == 0 && in[i].answer.ok)
            continue;
        printf("%s%s (%s)", sep, in[i].socket, in[i].rc ? "unreachable" : "error");
        sep = ", ";
    }
    printf("\n");
}

/* Sends `line` to every socket and prints the answers. Returns the exit status. */
static int run(const struct options *o, const char *line)
{
    size_t n = o->n;
    struct instance *in = calloc(n, sizeof(*in));
    for (size_t i = 0; i < n; i++) {
        in[i].socket = o->sockets[i];
        in[i].line = line;
        in[i].json = o->json;
        in[i].fanout = n > 1;
        in[i].timeout_ms = o->timeout_ms;
    }
    ask_all(in, n);
    int status = 0;
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        const struct instance *x = &in[i];
        int st = x->rc != 0 ? EXIT_UNREACHABLE : (x->answer.ok ? 0 : EXIT_ERROR);
        if (st > status)
            status = st;
        ok += st == 0;
        if (o->json)
            print_json_answer(x, n);
        else
            print_text_answer(x, n);
    }
    if (n > 1 && !o->json)
        print_summary(in, n, ok);
    for (size_t i = 0; i < n; i++) {
        sy_admin_answer_dispose(&in[i].answer);
        sy_admin_answer_dispose(&in[i].ident);
    }
    free(in);
    return status;
}

int main(int argc, char **argv)
{
    struct options o = {.timeout_ms = 10000};
    o.sockets = calloc((size_t)argc + 1, sizeof(*o.sockets));
    int rc = parse_options(argc, argv, &o);
    if (rc < 0 && is_watch(argc - optind, argv + optind)) {
        rc = watch_main(argc - optind, argv + optind, o.sockets, o.n, o.timeout_ms);
    } else if (rc < 0) {
        char words[SY_ADMIN_LINE_MAX + 16];
        rc = command_line(argc - optind, argv + optind, &o, words, sizeof(words));
        if (rc == 0)
            rc = run(&o, words);
    }
    free(o.sockets);
    return rc;
}
