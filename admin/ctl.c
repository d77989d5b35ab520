/* SPDX-License-Identifier: MIT */
/* switchyardctl: sends one admin command to one or more switchyard instances and prints each
 * answer. With several -s the command goes to every instance at once (one thread each), and
 * each answer is shown under its socket with the instance's generation and journal sequence,
 * so that an operator sees when a fleet agrees. The exit status is 0 only when every instance
 * answered ok. */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/admin.h"
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

/* A JSON string of our own text (a socket path, a reason). */
static void print_json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

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

/* A number member of a JSON answer we wrote ourselves ("key":123). */
static bool json_number(const char *text, const char *key, unsigned long long *out)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(text, pat);
    if (!p)
        return false;
    return sscanf(p + strlen(pat), "%llu", out) == 1;
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

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},  {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 'T'}, {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    const char **sockets = calloc((size_t)argc + 1, sizeof(*sockets));
    size_t n = 0;
    bool json = false;
    int timeout_ms = 10000;
    int opt;
    /* '+': stop at the command, so that its own words (revert --all) are not options. */
    while ((opt = getopt_long(argc, argv, "+s:jT:Vh", opts, NULL)) != -1) {
        switch (opt) {
        case 's':
            sockets[n++] = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'T': {
            char *end;
            double s = strtod(optarg, &end);
            if (*end || s <= 0 || s > 3600) {
                fprintf(stderr, "switchyardctl: bad timeout '%s'\n", optarg);
                return EXIT_USAGE;
            }
            timeout_ms = (int)(s * 1000);
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
    if (n == 0) {
        const char *env = getenv("SWITCHYARD_SOCKET");
        sockets[n++] = env && *env ? env : SY_ADMIN_DEFAULT_SOCKET;
    }
    if (strcmp(argv[optind], "status") == 0) {
        for (int i = optind + 1; i < argc; i++) {
            if (strcmp(argv[i], "--watch") == 0) {
                int rc = watch_main(argc - optind, argv + optind, sockets, n, timeout_ms);
                free(sockets);
                return rc;
            }
        }
    }
    for (int i = optind; i < argc; i++)
        if (strcmp(argv[i], "--json") == 0 || (i == optind && strcmp(argv[i], "json") == 0))
            json = true;
    char words[SY_ADMIN_LINE_MAX + 16];
    int off = 0;
    if (json && strcmp(argv[optind], "json") != 0)
        off = snprintf(words, sizeof(words), "json ");
    if (sy_admin_join(argc - optind, argv + optind, words + off, sizeof(words) - (size_t)off) < 0 ||
        strlen(words) > SY_ADMIN_LINE_MAX) {
        fprintf(stderr, "switchyardctl: the command is longer than %d bytes\n", SY_ADMIN_LINE_MAX);
        return EXIT_USAGE;
    }

    struct instance *in = calloc(n, sizeof(*in));
    for (size_t i = 0; i < n; i++) {
        in[i].socket = sockets[i];
        in[i].line = words;
        in[i].json = json;
        in[i].fanout = n > 1;
        in[i].timeout_ms = timeout_ms;
    }
    if (n == 1) {
        ask(&in[0]);
    } else {
        for (size_t i = 0; i < n; i++) {
            in[i].started = pthread_create(&in[i].thread, NULL, ask, &in[i]) == 0;
            if (!in[i].started)
                ask(&in[i]); /* no thread: ask in turn */
        }
        for (size_t i = 0; i < n; i++)
            if (in[i].started)
                pthread_join(in[i].thread, NULL);
    }

    int status = 0;
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        struct instance *x = &in[i];
        int st = x->rc != 0 ? EXIT_UNREACHABLE : (x->answer.ok ? 0 : EXIT_ERROR);
        if (st > status)
            status = st;
        ok += st == 0;
        if (json) {
            if (n == 1 && x->rc == 0) {
                fwrite(x->answer.text, 1, x->answer.len, stdout);
            } else if (x->rc == 0) {
                size_t len = x->answer.len;
                while (len > 0 && x->answer.text[len - 1] == '\n')
                    len--;
                printf("{\"socket\":");
                print_json_str(x->socket);
                printf(",\"reachable\":true,\"answer\":%.*s}\n", (int)len, x->answer.text);
            } else {
                printf("{\"socket\":");
                print_json_str(x->socket);
                printf(",\"reachable\":false,\"ok\":false,\"error\":");
                print_json_str(x->answer.why);
                printf("}\n");
                if (n == 1)
                    fprintf(stderr, "switchyardctl: %s: %s\n", x->socket, x->answer.why);
            }
            continue;
        }
        if (x->rc != 0) {
            if (n > 1)
                printf("== %s: UNREACHABLE: %s\n", x->socket, x->answer.why);
            else
                fprintf(stderr, "switchyardctl: %s: %s\n", x->socket, x->answer.why);
            continue;
        }
        const char *last;
        if (n > 1) {
            unsigned long long gen = 0, seq = 0;
            bool known = x->ident_rc == 0 && json_number(x->ident.text, "generation", &gen) &&
                         json_number(x->ident.text, "journal_seq", &seq);
            size_t len = x->answer.len;
            while (len > 0 && x->answer.text[len - 1] == '\n')
                len--;
            size_t start = len;
            while (start > 0 && x->answer.text[start - 1] != '\n')
                start--;
            if (known)
                printf("== %s: %.*s (generation %llu, journal seq %llu)\n", x->socket,
                       (int)(len - start), x->answer.text + start, gen, seq);
            else
                printf("== %s: %.*s\n", x->socket, (int)(len - start), x->answer.text + start);
        }
        print_body(stdout, &x->answer, &last);
        if (n == 1)
            fputs(last, x->answer.ok ? stdout : stderr); /* with several, the header said it */
    }
    if (n > 1 && !json) {
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
    for (size_t i = 0; i < n; i++) {
        sy_admin_answer_dispose(&in[i].answer);
        sy_admin_answer_dispose(&in[i].ident);
    }
    free(in);
    free(sockets);
    return status;
}
