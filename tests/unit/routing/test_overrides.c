/* SPDX-License-Identifier: MIT */
/* Unit tests for the overrides journal: append and replay, the torn last line a crash leaves,
 * damage that must stop the start (and the explicit discard), sequence gaps, compaction and
 * the history it keeps, the lock, a failed write that must leave no trace, a state directory
 * others can write, what compaction finds at its temporary path (a planted symlink, a crash's
 * leftover), a failed fsync of the directory after compaction, and the record parser's
 * refusals (table-driven). Each test works in its own temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "switchyard/overrides.h"

#include "fixture.h"

/* The one fault the file system will not make on demand: a failed fsync of a directory. This
 * definition takes the place of libc's for the whole test executable (the journal is linked in
 * statically), and passes every other fsync through to the kernel. */
static bool fail_dir_fsync;

int fsync(int fd)
{
    struct stat st;
    if (fail_dir_fsync && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fsync, fd);
}

struct fx {
    struct sy_fixture_dir tmp;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (sy_fixture_dir_make(&f->tmp, "journal", "state") != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sy_fixture_dir_remove(&f->tmp);
    free(f);
    return 0;
}

static const struct sy_journal_opts create_opts = {.create = true, .no_sync = true};

static struct sy_journal *open_ok(const char *path, const struct sy_journal_opts *o)
{
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_journal *j = NULL;
    int rc = sy_journal_open(path, o, &d, &j);
    if (rc != 0) {
        char line[512];
        for (size_t i = 0; i < d.n; i++) {
            sy_diag_format(&d.v[i], line, sizeof(line));
            fprintf(stderr, "%s\n", line);
        }
    }
    assert_int_equal(rc, 0);
    sy_diags_dispose(&d);
    return j;
}

/* Sets `app` to blue=b, green=g. */
static void set(struct sy_journal *j, const char *app, unsigned b, unsigned g, const char *cmd)
{
    struct sy_route_weight w[2] = {{"blue", b}, {"green", g}};
    struct sy_route_weight from[2] = {{"blue", 50}, {"green", 50}};
    struct sy_override_change ch = {
        .app = app, .weights = w, .n_weights = 2, .from = from, .n_from = 2, .to = w, .n_to = 2};
    struct sy_actor who = {1700000000123ull, 1000, 42, cmd};
    char err[256];
    assert_int_equal(sy_journal_append(j, &who, &ch, 1, err, sizeof(err)), 0);
}

static void release(struct sy_journal *j, const char *app)
{
    struct sy_override_change ch = {.app = app, .release = true};
    struct sy_actor who = {1700000000456ull, 0, 7, "release"};
    char err[256];
    assert_int_equal(sy_journal_append(j, &who, &ch, 1, err, sizeof(err)), 0);
}

static unsigned weight_of(const struct sy_override *o, const char *cluster)
{
    for (size_t i = 0; i < o->n_weights; i++)
        if (strcmp(o->weights[i].cluster, cluster) == 0)
            return o->weights[i].weight;
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char *buf = calloc(1, 1 << 20);
    *len = fread(buf, 1, (1 << 20) - 1, fp);
    fclose(fp);
    return buf;
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, len, fp), len);
    fclose(fp);
}

static size_t count_lines(const char *path)
{
    size_t len, n = 0;
    char *t = read_file(path, &len);
    for (size_t i = 0; i < len; i++)
        n += t[i] == '\n';
    free(t);
    return n;
}

/* -- opening ------------------------------------------------------------------------------- */

static void test_missing_journal_is_not_found_unless_created(void **state)
{
    struct fx *f = *state;
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_journal *j = NULL;
    struct sy_journal_opts o = {.no_sync = true};
    assert_int_equal(sy_journal_open(f->tmp.path, &o, &d, &j), SY_ERR_NOTFOUND);
    assert_null(j);
    j = open_ok(f->tmp.path, &create_opts);
    assert_int_equal(sy_journal_seq(j), 0);
    assert_int_equal(sy_journal_overrides(j)->n, 0);
    struct stat st;
    assert_int_equal(stat(f->tmp.path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    sy_journal_close(j);
    sy_diags_dispose(&d);
}

static void test_replay_restores_overrides_with_who_and_when(void **state)
{
    struct fx *f = *state;
    struct sy_journal *j = open_ok(f->tmp.path, &create_opts);
    set(j, "chat", 90, 10, "weights chat blue=90 green=10");
    set(j, "web", 0, 100, "switch web green");
    set(j, "chat", 100, 0, "revert chat");
    release(j, "web");
    assert_int_equal(sy_journal_seq(j), 4);
    sy_journal_close(j);

    j = open_ok(f->tmp.path, &create_opts);
    assert_int_equal(sy_journal_seq(j), 4);
    const struct sy_overrides *ov = sy_journal_overrides(j);
    assert_int_equal(ov->n, 1);
    const struct sy_override *o = sy_overrides_find(ov, "chat");
    assert_non_null(o);
    assert_null(sy_overrides_find(ov, "web"));
    assert_int_equal(weight_of(o, "blue"), 100);
    /* Zero weights are not kept: a cluster not named gets 0 anyway. */
    assert_int_equal(o->n_weights, 1);
    assert_int_equal(o->seq, 3);
    assert_int_equal(o->uid, 1000);
    assert_int_equal(o->pid, 42);
    assert_int_equal(o->time_ms, 1700000000123ull);
    assert_string_equal(o->command, "revert chat");
    sy_journal_close(j);
}

/* A change from the fleet (#17): its etcd revision and replica, or --local, survive replay and
 * compaction, and the journal knows the last fleet revision it holds (a restart resumes the
 * fleet's watch from it). */
static void fleet_set(struct sy_journal *j, const char *app, unsigned b, uint64_t rev,
                      const char *instance, bool local)
{
    struct sy_route_weight w[2] = {{"blue", b}, {"green", 100 - b}};
    struct sy_override_change ch = {.app = app, .weights = w, .n_weights = 2, .to = w, .n_to = 2};
    struct sy_actor who = {1700000000123ull, 1000, 42, "revert web", rev, instance, local};
    char err[256];
    assert_int_equal(sy_journal_append(j, &who, &ch, 1, err, sizeof(err)), 0);
}

static void test_fleet_origin_survives_replay_and_compaction(void **state)
{
    struct fx *f = *state;
    struct sy_journal_opts o = create_opts;
    o.compact_after = 3;
    struct sy_journal *j = open_ok(f->tmp.path, &o);
    assert_int_equal(sy_journal_fleet_rev(j), 0);
    fleet_set(j, "web", 100, 41, "replica-b", false);
    fleet_set(j, "chat", 20, 0, "replica-a", true);
    assert_int_equal(sy_journal_fleet_rev(j), 41);
    sy_journal_close(j);
    for (int pass = 0; pass < 2; pass++) { /* replayed, then compacted into a snapshot */
        j = open_ok(f->tmp.path, &o);
        assert_int_equal(sy_journal_fleet_rev(j), pass ? 57 : 41);
        const struct sy_override *web = sy_overrides_find(sy_journal_overrides(j), "web");
        const struct sy_override *chat = sy_overrides_find(sy_journal_overrides(j), "chat");
        assert_non_null(web);
        assert_non_null(chat);
        assert_int_equal(web->rev, pass ? 57 : 41);
        assert_string_equal(web->instance, "replica-b");
        assert_false(web->local);
        assert_int_equal(chat->rev, 0);
        assert_true(chat->local);
        assert_string_equal(chat->instance, "replica-a");
        if (!pass) { /* the fourth record compacts the journal (more than 3) */
            fleet_set(j, "chat", 30, 0, "replica-a", true);
            fleet_set(j, "web", 0, 57, "replica-b", false);
            assert_int_equal(count_lines(f->tmp.path), 1);
        }
        sy_journal_close(j);
    }
}

static void test_each_record_is_one_checksummed_line(void **state)
{
    struct fx *f = *state;
    struct sy_journal *j = open_ok(f->tmp.path, &create_opts);
    set(j, "chat", 100, 0, "weights chat \"quoted\" \\ back");
    sy_journal_close(j);
    size_t len;
    char *t = read_file(f->tmp.path, &len);
    assert_true(len > 0 && t[len - 1] == '\n');
    assert_non_null(strstr(t, "\"seq\":1,"));
    assert_non_null(strstr(t, ",\"crc\":\""));
    assert_ptr_equal(strchr(t, '\n'), t + len - 1);
    struct sy_journal_record r;
    const char *why;
    assert_int_equal(sy_journal_parse_line(t, len - 1, &r, &why), 0);
    assert_string_equal(r.command, "weights chat \"quoted\" \\ back");
    assert_int_equal(r.n_changes, 1);
    assert_string_equal(r.changes[0].app, "chat");
    assert_int_equal(r.changes[0].n_from, 2);
    sy_journal_record_dispose(&r);
    free(t);
}

static void test_revert_of_many_apps_is_one_record(void **state)
{
    struct fx *f = *state;
    struct sy_journal *j = open_ok(f->tmp.path, &create_opts);
    struct sy_route_weight w = {"blue", 100};
    struct sy_override_change ch[3] = {
        {.app = "a", .weights = &w, .n_weights = 1},
        {.app = "b", .weights = &w, .n_weights = 1},
        {.app = "c", .weights = &w, .n_weights = 1},
    };
    struct sy_actor who = {1, 0, 1, "revert --all"};
    char err[256];
    assert_int_equal(sy_journal_append(j, &who, ch, 3, err, sizeof(err)), 0);
    assert_int_equal(sy_journal_seq(j), 1);
    assert_int_equal(sy_journal_overrides(j)->n, 3);
    sy_journal_close(j);
    assert_int_equal(count_lines(f->tmp.path), 1);
}

/* -- crashes and damage --------------------------------------------------------------------- */

static void test_torn_last_line_is_ignored_and_cut_off(void **state)
{
    struct fx *f = *state;
    struct sy_journal *j = open_ok(f->tmp.path, &create_opts);
    set(j, "chat", 100, 0, "one");
    set(j, "web", 100, 0, "two");
    sy_journal_close(j);
    size_t good;
    char *t = read_file(f->tmp.path, &good);
    /* A third record cut short by a crash: no newline. */
    FILE *fp = fopen(f->tmp.path, "ab");
    fputs("{\"v\":1,\"type\":\"change\",\"seq\":3,\"ti", fp);
    fclose(fp);

    j = open_ok(f->tmp.path, &create_opts);
    assert_int_equal(sy_journal_seq(j), 2);
    assert_int_equal(sy_journal_overrides(j)->n, 2);
    struct stat st;
    assert_int_equal(stat(f->tmp.path, &st), 0);
    assert_int_equal((size_t)st.st_size, good);
    /* The next record starts on a clean line and replays. */
    set(j, "chat", 0, 100, "three");
    sy_journal_close(j);
    j = open_ok(f->tmp.path, &create_opts);
    assert_int_equal(sy_journal_seq(j), 3);
    assert_int_equal(weight_of(sy_overrides_find(sy_journal_overrides(j), "chat"), "green"), 100);
    sy_journal_close(j);
    free(t);
}

static void test_nul_filled_tail_is_a_torn_write(void **state)
{
    struct fx *f = *state;
    struct sy_journal *j = open_ok(f->tmp.path, &create_opts);
    set(j, "chat", 100, 0, "one");
    sy_journal_close(j);
    char zeros[4096] = {0};
    FILE *fp = fopen(f->tmp.path, "ab");
    fwrite(zeros, 1, sizeof(zeros), fp);
    fclose(fp);
    j = open_ok(f->tmp.path, &create_opts);
    assert_int_equal(sy_journal_seq(j), 1);
    sy_journal_close(j);
}

static void test_damaged_record_stops_the_open_with_file_and_line(void **state)
{
    struct fx *f = *state;
    struct sy_journal *j = open_ok(f->tmp.path, &create_opts);
    set(j, "chat", 100, 0, "one");
    set(j, "web", 100, 0, "two");
    set(j, "api", 100, 0, "three");
    sy_journal_close(j);
    size_t len;
    char *t = read_file(f->tmp.path, &len);
    char *second = strchr(t, '\n') + 1;
    char *w = strstr(second, "\"web\"");
    w[1] = 'x'; /* "xeb": still JSON, but the checksum no longer matches */
    write_file(f->tmp.path, t, len);

    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_journal *out = NULL;
    assert_int_equal(sy_journal_open(f->tmp.path, &create_opts, &d, &out), SY_ERR_INVALID);
    assert_null(out);
    assert_int_equal(d.n, 1);
    char line[512];
    sy_diag_format(&d.v[0], line, sizeof(line));
    assert_string_equal(d.v[0].file, f->tmp.path);
    assert_int_equal(d.v[0].line, 2);
    assert_non_null(strstr(line, "checksum"));
    sy_diags_dispose(&d);
    /* The file is left as it was, for a person to look at. */
    size_t len2;
    char *t2 = read_file(f->tmp.path, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(t2, t, len);
    free(t2);
    free(t);
}

static void test_discard_moves_a_damaged_journal_aside(void **state)
{
    struct fx *f = *state;
    write_file(f->tmp.path, "not a journal\n", 14);
    struct sy_journal_opts o = create_opts;
    o.discard = true;
    struct sy_journal *j = open_ok(f->tmp.path, &o);
    assert_int_equal(sy_journal_seq(j), 0);
    assert_int_equal(sy_journal_overrides(j)->n, 0);
    set(j, "chat", 100, 0, "after");
    sy_journal_close(j);
    DIR *d = opendir(f->tmp.dir);
    struct dirent *e;
    bool aside = false;
    while ((e = readdir(d)))
        aside |= strncmp(e->d_name, "state.corrupt-", 14) == 0;
    closedir(d);
    assert_true(aside);
    j = open_ok(f->tmp.path, &create_opts);
    assert_int_equal(sy_journal_seq(j), 1);
    sy_journal_close(j);
}

static void test_sequence_gap_is_damage(void **state)
{
    struct fx *f = *state;
    struct sy_journal *j = open_ok(f->tmp.path, &create_opts);
    set(j, "chat", 100, 0, "one");
    set(j, "chat", 90, 10, "two");
    set(j, "chat", 80, 20, "three");
    sy_journal_close(j);
    size_t len;
    char *t = read_file(f->tmp.path, &len);
    /* Drop the middle record (a lost write): 1 then 3. */
    char *l2 = strchr(t, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    memmove(l2, l3, len - (size_t)(l3 - t));
    write_file(f->tmp.path, t, len - (size_t)(l3 - l2));
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_journal *out = NULL;
    assert_int_equal(sy_journal_open(f->tmp.path, &create_opts, &d, &out), SY_ERR_INVALID);
    assert_int_equal(d.v[0].line, 2);
    assert_non_null(strstr(d.v[0].msg, "sequence jumps from 1 to 3"));
    sy_diags_dispose(&d);
    free(t);
}

/* Upgrade: a released journal is closed and unlocked (another process opens it), refuses
 * appends and keeps its overrides; it is taken back once the other process has closed it,
 * and a file changed meanwhile makes it refuse changes rather than write over them. */
static void test_released_journal_is_unlocked_refuses_appends_and_is_taken_back(void **state)
{
    struct fx *f = *state;
    struct sy_journal *j = open_ok(f->tmp.path, &create_opts);
    set(j, "chat", 90, 10, "weights chat blue=90 green=10");
    sy_journal_release(j);
    struct sy_route_weight w[1] = {{"blue", 100}};
    struct sy_override_change ch = {.app = "web", .weights = w, .n_weights = 1};
    struct sy_actor who = {1, 0, 1, "weights web blue=100"};
    char err[256];
    assert_int_equal(sy_journal_append(j, &who, &ch, 1, err, sizeof(err)), SY_ERR_AGAIN);
    assert_non_null(strstr(err, "handed over"));
    assert_int_equal(sy_journal_overrides(j)->n, 1);
    /* A ramp (its plan or a step's count) and the guard switch are refused alike. */
    struct sy_ramp rp = {.app = (char *)"web",
                         .cluster = (char *)"green",
                         .steps = {50, 100},
                         .n_steps = 2,
                         .every_ms = 1000};
    err[0] = '\0';
    assert_int_equal(sy_journal_append_ramp(j, &who, &rp, err, sizeof(err)), SY_ERR_AGAIN);
    assert_non_null(strstr(err, "handed over"));
    assert_int_equal(sy_journal_ramps(j)->n, 0);
    assert_int_equal(sy_journal_append_guard(j, &who, true, err, sizeof(err)), SY_ERR_AGAIN);
    assert_false(sy_journal_guard_pause(j)->paused);

    struct sy_journal *k = open_ok(f->tmp.path, &create_opts); /* the new process */
    assert_int_equal(sy_journal_seq(k), 1);
    assert_int_equal(sy_journal_retake(j), SY_ERR_AGAIN);
    sy_journal_close(k);
    assert_int_equal(sy_journal_retake(j), 0);
    set(j, "web", 0, 100, "switch web green");
    assert_int_equal(sy_journal_seq(j), 2);

    /* Changed while released: taken back, but no longer written. */
    sy_journal_release(j);
    k = open_ok(f->tmp.path, &create_opts);
    set(k, "api", 50, 50, "weights api blue=50 green=50");
    sy_journal_close(k);
    assert_int_equal(sy_journal_retake(j), 0);
    assert_int_not_equal(sy_journal_append(j, &who, &ch, 1, err, sizeof(err)), 0);
    sy_journal_close(j);
}

static void test_second_open_of_a_locked_journal_is_refused(void **state)
{
    struct fx *f = *state;
    struct sy_journal *j = open_ok(f->tmp.path, &create_opts);
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_journal *k = NULL;
    assert_int_equal(sy_journal_open(f->tmp.path, &create_opts, &d, &k), SY_ERR_AGAIN);
    assert_null(k);
    assert_non_null(strstr(d.v[0].msg, "locked"));
    sy_diags_dispose(&d);
    sy_journal_close(j);
}

static void test_failed_write_leaves_no_trace(void **state)
{
    struct fx *f = *state;
    struct sy_journal *j = open_ok(f->tmp.path, &create_opts);
    set(j, "chat", 100, 0, "one");
    struct stat st;
    assert_int_equal(stat(f->tmp.path, &st), 0);
    /* The file may not grow past a few more bytes: the write fails half-way (EFBIG). */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)st.st_size + 20;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    struct sy_route_weight w = {"green", 100};
    struct sy_override_change ch = {.app = "web", .weights = &w, .n_weights = 1};
    struct sy_actor who = {1, 0, 1, "switch web green"};
    char err[256] = "";
    assert_int_equal(sy_journal_append(j, &who, &ch, 1, err, sizeof(err)), SY_ERR_SYS);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_non_null(strstr(err, "cannot write"));
    assert_int_equal(sy_journal_seq(j), 1);
    assert_null(sy_overrides_find(sy_journal_overrides(j), "web"));
    struct stat st2;
    assert_int_equal(stat(f->tmp.path, &st2), 0);
    assert_int_equal(st2.st_size, st.st_size);
    /* And the journal goes on. */
    set(j, "web", 0, 100, "again");
    sy_journal_close(j);
    j = open_ok(f->tmp.path, &create_opts);
    assert_int_equal(sy_journal_seq(j), 2);
    sy_journal_close(j);
}

/* -- the state directory and compaction's temporary file ------------------------------------ */

static void test_state_dir_writable_by_others_is_refused(void **state)
{
    struct fx *f = *state;
    static const mode_t unsafe[] = {0777, 01777, 0770, 0702};
    for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++) {
        assert_int_equal(chmod(f->tmp.dir, unsafe[i]), 0);
        struct sy_diags d;
        sy_diags_init(&d);
        struct sy_journal *j = NULL;
        assert_int_not_equal(sy_journal_open(f->tmp.path, &create_opts, &d, &j), 0);
        assert_null(j);
        assert_int_equal(d.n, 1);
        char line[512], mode[16];
        sy_diag_format(&d.v[0], line, sizeof(line));
        snprintf(mode, sizeof(mode), "mode %04o", (unsigned)unsafe[i]);
        assert_non_null(strstr(line, f->tmp.dir));
        assert_non_null(strstr(line, mode));
        assert_non_null(strstr(line, "writable by"));
        sy_diags_dispose(&d);
        /* Nothing was made there. */
        assert_int_equal(access(f->tmp.path, F_OK), -1);
    }
    assert_int_equal(chmod(f->tmp.dir, 0755), 0);
    sy_journal_close(open_ok(f->tmp.path, &create_opts));
}

/* `switchyard -t` run by root on the packaged config, whose state directory belongs to the
 * service's user: the owner is named, not refused, while a directory others may write in is
 * still refused and the daemon's own check still refuses another user's directory. */
static void test_check_dir_any_owner_names_the_owner(void **state)
{
    struct fx *f = *state;
    uid_t other = geteuid() == 0 ? 65534 : geteuid();
    assert_int_equal(chmod(f->tmp.dir, 0750), 0);
    if (geteuid() == 0)
        assert_int_equal(chown(f->tmp.dir, other, (gid_t)-1), 0);
    struct sy_diags d;
    sy_diags_init(&d);
    uid_t owner = 12345;
    assert_int_equal(sy_journal_check_dir_any_owner(f->tmp.path, &owner, &d), 0);
    assert_int_equal(owner, other);
    assert_int_equal(d.n, 0);
    if (geteuid() == 0) {
        assert_int_not_equal(sy_journal_check_dir(f->tmp.path, &d), 0);
        assert_int_equal(d.n, 1);
        char line[512];
        sy_diag_format(&d.v[0], line, sizeof(line));
        assert_non_null(strstr(line, "belongs to uid 65534"));
        d.n = 0;
    }
    assert_int_equal(chmod(f->tmp.dir, 0770), 0);
    owner = 12345;
    assert_int_not_equal(sy_journal_check_dir_any_owner(f->tmp.path, &owner, &d), 0);
    assert_int_equal(owner, 12345);
    assert_int_equal(d.n, 1);
    char line[512];
    sy_diag_format(&d.v[0], line, sizeof(line));
    assert_non_null(strstr(line, "writable by its group"));
    sy_diags_dispose(&d);
    if (geteuid() == 0)
        assert_int_equal(chown(f->tmp.dir, 0, (gid_t)-1), 0);
    assert_int_equal(chmod(f->tmp.dir, 0755), 0);
}

static void test_compaction_does_not_follow_a_symlink_at_the_temp_path(void **state)
{
    struct fx *f = *state;
    char victim[256], tmp[256];
    snprintf(victim, sizeof(victim), "%s/victim", f->tmp.dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", f->tmp.path);
    write_file(victim, "precious\n", 9);
    assert_int_equal(symlink(victim, tmp), 0);
    struct sy_journal_opts o = create_opts;
    o.compact_after = 3;
    struct sy_journal *j = open_ok(f->tmp.path, &o);
    for (unsigned i = 0; i < 6; i++)
        set(j, "chat", 100 - i, i, "weights"); /* acknowledged, compaction or not */
    sy_journal_close(j);

    size_t len;
    char *t = read_file(victim, &len);
    assert_int_equal(len, 9);
    assert_memory_equal(t, "precious\n", 9);
    free(t);
    struct stat st;
    assert_int_equal(lstat(f->tmp.path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    j = open_ok(f->tmp.path, &o);
    assert_int_equal(sy_journal_seq(j), 6);
    assert_int_equal(weight_of(sy_overrides_find(sy_journal_overrides(j), "chat"), "green"), 5);
    sy_journal_close(j);
}

static void test_stale_temp_file_of_a_crash_does_not_stop_compaction(void **state)
{
    struct fx *f = *state;
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s.tmp", f->tmp.path);
    write_file(tmp, "half a snapsh", 13);
    struct sy_journal_opts o = create_opts;
    o.compact_after = 3;
    struct sy_journal *j = open_ok(f->tmp.path, &o);
    for (unsigned i = 0; i < 4; i++)
        set(j, "chat", 100 - i, i, "weights");
    sy_journal_close(j);
    assert_int_equal(count_lines(f->tmp.path), 1); /* the snapshot */
    assert_int_equal(access(tmp, F_OK), -1);
    j = open_ok(f->tmp.path, &o);
    assert_int_equal(sy_journal_seq(j), 4);
    sy_journal_close(j);
}

static void test_failed_directory_fsync_after_compaction_refuses_the_next_change(void **state)
{
    struct fx *f = *state;
    struct sy_journal_opts o = {.create = true, .compact_after = 3};
    struct sy_journal *j = open_ok(f->tmp.path, &o);
    for (unsigned i = 0; i < 3; i++)
        set(j, "chat", 100 - i, i, "weights");
    /* The 4th record is fsynced in the file before the compaction: it is durable whichever
     * name the directory keeps after a crash, and acknowledged. */
    fail_dir_fsync = true;
    set(j, "chat", 50, 50, "weights");
    assert_int_equal(count_lines(f->tmp.path), 1);
    /* But the new file's name is not durable: a record in it could vanish with it. */
    struct sy_route_weight w = {"green", 100};
    struct sy_override_change ch = {.app = "web", .weights = &w, .n_weights = 1};
    struct sy_actor who = {1, 0, 1, "switch web green"};
    char err[256] = "";
    assert_int_equal(sy_journal_append(j, &who, &ch, 1, err, sizeof(err)), SY_ERR_SYS);
    assert_non_null(strstr(err, f->tmp.dir));
    assert_non_null(strstr(err, "fsync"));
    assert_int_equal(sy_journal_seq(j), 4);
    assert_null(sy_overrides_find(sy_journal_overrides(j), "web"));
    assert_int_equal(count_lines(f->tmp.path), 1);
    /* Once the directory syncs again, changes are taken again. */
    fail_dir_fsync = false;
    set(j, "web", 0, 100, "again");
    sy_journal_close(j);
    j = open_ok(f->tmp.path, &o);
    assert_int_equal(sy_journal_seq(j), 5);
    assert_int_equal(weight_of(sy_overrides_find(sy_journal_overrides(j), "web"), "green"), 100);
    sy_journal_close(j);
}

/* -- compaction and history ----------------------------------------------------------------- */

struct seen {
    uint64_t seqs[64];
    size_t n;
};

static void seen_cb(const struct sy_journal_record *r, void *arg)
{
    struct seen *s = arg;
    assert_false(r->compact);
    if (s->n < 64)
        s->seqs[s->n++] = r->seq;
}

static void test_compaction_keeps_the_overrides_and_bounds_the_file(void **state)
{
    struct fx *f = *state;
    struct sy_journal_opts o = create_opts;
    o.compact_after = 5;
    struct sy_journal *j = open_ok(f->tmp.path, &o);
    for (unsigned i = 0; i < 23; i++)
        set(j, i % 2 ? "chat" : "web", 100 - i, i, "weights");
    release(j, "web");
    assert_int_equal(sy_journal_seq(j), 24);
    sy_journal_close(j);
    /* A snapshot and the changes since: never more than compact_after + 1 lines. */
    assert_true(count_lines(f->tmp.path) <= 6);
    char old[256];
    snprintf(old, sizeof(old), "%s.old", f->tmp.path);
    assert_int_equal(access(old, R_OK), 0);

    j = open_ok(f->tmp.path, &o);
    assert_int_equal(sy_journal_seq(j), 24);
    const struct sy_overrides *ov = sy_journal_overrides(j);
    assert_int_equal(ov->n, 1);
    const struct sy_override *c = sy_overrides_find(ov, "chat");
    assert_int_equal(weight_of(c, "blue"), 100 - 21);
    assert_int_equal(c->seq, 22);
    assert_int_equal(c->uid, 1000);

    /* History reaches back into the file the compaction set aside. */
    struct seen s = {0};
    assert_int_equal(sy_journal_history(j, 8, seen_cb, &s), 0);
    assert_int_equal(s.n, 8);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(s.seqs[i], 17 + i);
    sy_journal_close(j);
}

/* -- maintenance --------------------------------------------------------------------------- */

static void maint(struct sy_journal *j, const char *app, bool on, unsigned retry_after,
                  const char *message, uint64_t time_ms)
{
    struct sy_maint m = {
        .app = (char *)app, .on = on, .retry_after = retry_after, .message = (char *)message};
    struct sy_actor who = {time_ms, 1000, 42, on ? "maintenance on" : "maintenance off"};
    char err[256];
    assert_int_equal(sy_journal_append_maintenance(j, &who, &m, err, sizeof(err)), 0);
}

static void test_maintenance_records_replay_with_their_start_and_message(void **state)
{
    struct fx *f = *state;
    struct sy_journal *j = open_ok(f->tmp.path, &create_opts);
    set(j, "chat", 90, 10, "weights chat blue=90 green=10");
    maint(j, "chat", true, 0, NULL, 1000);
    maint(j, "web", true, 300, "back at \"four\"", 2000);
    maint(j, "chat", true, 60, "soon", 3000); /* again: updated, its start kept */
    maint(j, "web", false, 0, NULL, 4000);
    assert_int_equal(sy_journal_seq(j), 5);
    sy_journal_close(j);

    j = open_ok(f->tmp.path, &create_opts);
    assert_int_equal(sy_journal_seq(j), 5);
    const struct sy_maints *ms = sy_journal_maintenance(j);
    assert_int_equal(ms->n, 1);
    assert_null(sy_maints_find(ms, "web"));
    const struct sy_maint *m = sy_maints_find(ms, "chat");
    assert_non_null(m);
    assert_int_equal(m->since_ms, 1000);
    assert_int_equal(m->time_ms, 3000);
    assert_int_equal(m->seq, 4);
    assert_int_equal(m->retry_after, 60);
    assert_string_equal(m->message, "soon");
    assert_string_equal(m->command, "maintenance on");
    /* The weights are another matter: maintenance leaves the override alone. */
    assert_non_null(sy_overrides_find(sy_journal_overrides(j), "chat"));

    /* History has them, as maintenance records. */
    struct seen s = {0};
    assert_int_equal(sy_journal_history(j, 10, seen_cb, &s), 0);
    assert_int_equal(s.n, 5);
    sy_journal_close(j);
}

static void test_compaction_keeps_the_apps_in_maintenance(void **state)
{
    struct fx *f = *state;
    struct sy_journal_opts o = create_opts;
    o.compact_after = 3;
    struct sy_journal *j = open_ok(f->tmp.path, &o);
    maint(j, "web", true, 120, "upgrading", 1000);
    maint(j, "chat", true, 0, NULL, 2000);
    for (unsigned i = 0; i < 7; i++)
        set(j, "chat", 100 - i, i, "weights");
    maint(j, "chat", false, 0, NULL, 3000);
    maint(j, "api", true, 5, NULL, 4000);
    assert_int_equal(sy_journal_seq(j), 11);
    sy_journal_close(j);
    assert_true(count_lines(f->tmp.path) <= 4);

    j = open_ok(f->tmp.path, &o);
    const struct sy_maints *ms = sy_journal_maintenance(j);
    assert_int_equal(ms->n, 2);
    const struct sy_maint *w = sy_maints_find(ms, "web");
    assert_non_null(w);
    assert_int_equal(w->since_ms, 1000);
    assert_int_equal(w->seq, 1);
    assert_int_equal(w->retry_after, 120);
    assert_string_equal(w->message, "upgrading");
    assert_non_null(sy_maints_find(ms, "api"));
    assert_null(sy_maints_find(ms, "chat"));
    sy_journal_close(j);
}

static void test_parser_reads_a_maintenance_record_and_refuses_a_bad_one(void **state)
{
    (void)state;
    static const char *good = "{\"v\":1,\"type\":\"maintenance\",\"seq\":3,\"time\":5,\"uid\":0,"
                              "\"pid\":1,\"cmd\":\"maintenance web on\",\"app\":\"web\",\"on\":"
                              "true,\"retry_after\":0,\"message\":null";
    static const char *bad[] = {
        /* no "on" */
        "{\"v\":1,\"type\":\"maintenance\",\"seq\":3,\"time\":5,\"uid\":0,\"pid\":1,"
        "\"cmd\":\"m\",\"app\":\"web\",\"retry_after\":0,\"message\":null",
        /* a message with a control byte */
        "{\"v\":1,\"type\":\"maintenance\",\"seq\":3,\"time\":5,\"uid\":0,\"pid\":1,"
        "\"cmd\":\"m\",\"app\":\"web\",\"on\":true,\"retry_after\":0,\"message\":\"a\\tb\"",
        /* no app */
        "{\"v\":1,\"type\":\"maintenance\",\"seq\":3,\"time\":5,\"uid\":0,\"pid\":1,"
        "\"cmd\":\"m\",\"on\":false,\"retry_after\":0,\"message\":null",
    };
    char line[1024];
    struct sy_journal_record r;
    const char *why;
    snprintf(line, sizeof(line), "%s", good);
    size_t len = strlen(line);
    snprintf(line + len, sizeof(line) - len, ",\"crc\":\"%08x\"}", sy_journal_crc32(line, len));
    assert_int_equal(sy_journal_parse_line(line, strlen(line), &r, &why), 0);
    assert_true(r.maintenance);
    assert_true(r.maint.on);
    assert_string_equal(r.maint.app, "web");
    assert_null(r.maint.message);
    assert_int_equal(r.n_changes, 0);
    sy_journal_record_dispose(&r);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(line, sizeof(line), "%s", bad[i]);
        len = strlen(line);
        snprintf(line + len, sizeof(line) - len, ",\"crc\":\"%08x\"}", sy_journal_crc32(line, len));
        assert_int_equal(sy_journal_parse_line(line, strlen(line), &r, &why), SY_ERR_INVALID);
        assert_non_null(why);
    }
}

/* Line `i` (0-based) of `t` must be `want` followed by its checksum: ,"crc":"xxxxxxxx"}. */
static void assert_record(const char *t, size_t i, const char *want)
{
    const char *line = t;
    for (size_t k = 0; k < i; k++) {
        line = strchr(line, '\n');
        assert_non_null(line);
        line++;
    }
    const char *end = strchr(line, '\n');
    assert_non_null(end);
    size_t n = strlen(want);
    assert_true((size_t)(end - line) == n + 18);
    if (memcmp(line, want, n) != 0)
        fail_msg("record %zu:\n got %.*s\nwant %s", i, (int)n, line, want);
    char crc[32];
    snprintf(crc, sizeof(crc), ",\"crc\":\"%08x\"}", sy_journal_crc32(line, n));
    assert_memory_equal(line + n, crc, 18);
}

/* The bytes of the journal's records are a format on disk: pinned here, escapes included. */
static void test_records_are_written_byte_for_byte(void **state)
{
    struct fx *f = *state;
    struct sy_journal *j = open_ok(f->tmp.path, &create_opts);
    set(j, "chat", 90, 10, "weights chat \"q\" \\ \x01 \xc3\xa9");
    release(j, "web");
    maint(j, "chat", true, 300, "back at \"four\"", 2000);
    maint(j, "web", false, 0, NULL, 3000);
    sy_journal_close(j);
    size_t len;
    char *t = read_file(f->tmp.path, &len);
    assert_record(t, 0,
                  "{\"v\":1,\"type\":\"change\",\"seq\":1,\"time\":1700000000123,\"uid\":1000,"
                  "\"pid\":42,\"cmd\":\"weights chat \\\"q\\\" \\\\ \\u0001 \\u00c3\\u00a9\","
                  "\"changes\":[{\"app\":\"chat\",\"override\":{\"blue\":90,\"green\":10},"
                  "\"from\":{\"blue\":50,\"green\":50},\"to\":{\"blue\":90,\"green\":10}}]");
    assert_record(t, 1,
                  "{\"v\":1,\"type\":\"change\",\"seq\":2,\"time\":1700000000456,\"uid\":0,"
                  "\"pid\":7,\"cmd\":\"release\",\"changes\":[{\"app\":\"web\",\"override\":null,"
                  "\"from\":{},\"to\":{}}]");
    assert_record(t, 2,
                  "{\"v\":1,\"type\":\"maintenance\",\"seq\":3,\"time\":2000,\"uid\":1000,"
                  "\"pid\":42,\"cmd\":\"maintenance on\",\"app\":\"chat\",\"on\":true,"
                  "\"retry_after\":300,\"message\":\"back at \\\"four\\\"\"");
    assert_record(t, 3,
                  "{\"v\":1,\"type\":\"maintenance\",\"seq\":4,\"time\":3000,\"uid\":1000,"
                  "\"pid\":42,\"cmd\":\"maintenance off\",\"app\":\"web\",\"on\":false,"
                  "\"retry_after\":0,\"message\":null");
    free(t);
}

/* A snapshot's bytes after its head (whose time, uid and pid are the compacting process's). */
static void test_snapshot_record_is_written_byte_for_byte(void **state)
{
    struct fx *f = *state;
    struct sy_journal_opts o = create_opts;
    o.compact_after = 2;
    struct sy_journal *j = open_ok(f->tmp.path, &o);
    set(j, "chat", 100, 0, "revert chat");
    maint(j, "web", true, 5, "soon", 2000);
    maint(j, "api", true, 0, NULL, 2500);
    sy_journal_close(j);
    size_t len;
    char *t = read_file(f->tmp.path, &len);
    const char *set_at = strstr(t, ",\"set\":[");
    assert_non_null(strstr(t, "\"type\":\"compact\""));
    assert_non_null(set_at);
    const char *want =
        ",\"set\":[{\"app\":\"chat\",\"override\":{\"blue\":100},\"seq\":1,\"time\":1700000000123,"
        "\"uid\":1000,\"pid\":42,\"cmd\":\"revert chat\"}],\"maintenance\":[{\"app\":\"web\","
        "\"retry_after\":5,\"message\":\"soon\",\"since\":2000,\"seq\":2,\"time\":2000,"
        "\"uid\":1000,\"pid\":42,\"cmd\":\"maintenance on\"}";
    if (strncmp(set_at, want, strlen(want)) != 0)
        fail_msg("snapshot:\n got %s\nwant %s", set_at, want);
    free(t);
}

static void test_history_returns_the_last_n_oldest_first(void **state)
{
    struct fx *f = *state;
    struct sy_journal *j = open_ok(f->tmp.path, &create_opts);
    for (unsigned i = 0; i < 5; i++)
        set(j, "chat", 100, 0, "x");
    struct seen s = {0};
    assert_int_equal(sy_journal_history(j, 3, seen_cb, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.seqs[0], 3);
    assert_int_equal(s.seqs[2], 5);
    s.n = 0;
    assert_int_equal(sy_journal_history(j, 50, seen_cb, &s), 0);
    assert_int_equal(s.n, 5);
    sy_journal_close(j);
}

/* -- the record parser ---------------------------------------------------------------------- */

/* A line with a correct checksum around `body` ("{...": without the crc member). */
static char *signed_line(const char *body)
{
    /* The journal's own checksum, recomputed here from its definition (CRC-32, zlib's). */
    uint32_t c = 0xFFFFFFFFu;
    for (const char *p = body; *p; p++) {
        c ^= (unsigned char)*p;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    c ^= 0xFFFFFFFFu;
    char *out = malloc(strlen(body) + 32);
    sprintf(out, "%s,\"crc\":\"%08x\"}", body, c);
    return out;
}

/* -- the guard switch and ramps -------------------------------------------------------------- */

static void guard_switch(struct sy_journal *j, bool paused)
{
    struct sy_actor who = {5000, 1000, 42, paused ? "guard pause" : "guard resume"};
    char err[256];
    assert_int_equal(sy_journal_append_guard(j, &who, paused, err, sizeof(err)), 0);
}

static void ramp_rec(struct sy_journal *j, const char *app, enum sy_ramp_state st, unsigned taken,
                     uint64_t start_seq)
{
    struct sy_ramp r = {.app = (char *)app,
                        .cluster = (char *)"green",
                        .steps = {10, 50, 100},
                        .n_steps = 3,
                        .every_ms = 1000,
                        .state = st,
                        .start_seq = start_seq,
                        .taken = taken,
                        .why = st == SY_RAMP_ABORTED ? (char *)"aborted by uid 0" : NULL};
    struct sy_actor who = {6000, 0, 7, "ramp"};
    char err[256];
    assert_int_equal(sy_journal_append_ramp(j, &who, &r, err, sizeof(err)), 0);
}

static void test_guard_pause_replays_and_survives_compaction(void **state)
{
    struct fx *f = *state;
    struct sy_journal_opts o = create_opts;
    o.compact_after = 3;
    struct sy_journal *j = open_ok(f->tmp.path, &o);
    assert_false(sy_journal_guard_pause(j)->paused);
    guard_switch(j, true);
    sy_journal_close(j);
    j = open_ok(f->tmp.path, &o);
    const struct sy_guard_pause *g = sy_journal_guard_pause(j);
    assert_true(g->paused);
    assert_int_equal(g->seq, 1);
    assert_int_equal(g->uid, 1000);
    assert_string_equal(g->command, "guard pause");
    for (unsigned i = 0; i < 6; i++) /* past compact_after: a snapshot record carries it */
        set(j, "chat", 100 - i, i, "weights");
    sy_journal_close(j);
    assert_true(count_lines(f->tmp.path) <= 4);
    j = open_ok(f->tmp.path, &o);
    g = sy_journal_guard_pause(j);
    assert_true(g->paused);
    assert_int_equal(g->seq, 1);
    assert_string_equal(g->command, "guard pause");
    guard_switch(j, false);
    sy_journal_close(j);
    j = open_ok(f->tmp.path, &o);
    assert_false(sy_journal_guard_pause(j)->paused);
    sy_journal_close(j);
}

static void test_ramps_replay_end_and_survive_compaction(void **state)
{
    struct fx *f = *state;
    struct sy_journal_opts o = create_opts;
    o.compact_after = 4;
    struct sy_journal *j = open_ok(f->tmp.path, &o);
    ramp_rec(j, "chat", SY_RAMP_RUNNING, 0, 0); /* seq 1: begins it */
    ramp_rec(j, "web", SY_RAMP_RUNNING, 0, 0);  /* seq 2 */
    ramp_rec(j, "chat", SY_RAMP_RUNNING, 1, 1);
    ramp_rec(j, "chat", SY_RAMP_PAUSED, 2, 1);
    ramp_rec(j, "web", SY_RAMP_ABORTED, 1, 2); /* ends it */
    for (unsigned i = 0; i < 5; i++)
        set(j, "api", 100 - i, i, "weights");
    sy_journal_close(j);
    assert_true(count_lines(f->tmp.path) <= 5);
    j = open_ok(f->tmp.path, &o);
    const struct sy_ramps *rs = sy_journal_ramps(j);
    assert_int_equal(rs->n, 1);
    assert_null(sy_ramps_find(rs, "web"));
    const struct sy_ramp *r = sy_ramps_find(rs, "chat");
    assert_non_null(r);
    assert_int_equal(r->state, SY_RAMP_PAUSED);
    assert_int_equal(r->start_seq, 1);
    assert_int_equal(r->taken, 2);
    assert_int_equal(r->n_steps, 3);
    assert_int_equal(r->steps[2], 100);
    assert_int_equal(r->every_ms, 1000);
    assert_string_equal(r->cluster, "green");
    assert_int_equal(r->seq, 4);
    sy_journal_close(j);
}

static void test_parser_refuses_bad_ramp_and_guard_records(void **state)
{
    static const char *bad[] = {
        /* steps not increasing */
        "{\"v\":1,\"type\":\"ramp\",\"seq\":3,\"time\":5,\"uid\":0,\"pid\":1,\"cmd\":\"r\","
        "\"app\":\"web\",\"cluster\":\"green\",\"steps\":[50,10,100],\"every_ms\":1000,"
        "\"state\":\"running\",\"start_seq\":3,\"taken\":0,\"why\":null",
        /* a step above 100 */
        "{\"v\":1,\"type\":\"ramp\",\"seq\":3,\"time\":5,\"uid\":0,\"pid\":1,\"cmd\":\"r\","
        "\"app\":\"web\",\"cluster\":\"green\",\"steps\":[10,101],\"every_ms\":1000,"
        "\"state\":\"running\",\"start_seq\":3,\"taken\":0,\"why\":null",
        /* an unknown state */
        "{\"v\":1,\"type\":\"ramp\",\"seq\":3,\"time\":5,\"uid\":0,\"pid\":1,\"cmd\":\"r\","
        "\"app\":\"web\",\"cluster\":\"green\",\"steps\":[10,100],\"every_ms\":1000,"
        "\"state\":\"flying\",\"start_seq\":3,\"taken\":0,\"why\":null",
        /* more steps taken than it has */
        "{\"v\":1,\"type\":\"ramp\",\"seq\":3,\"time\":5,\"uid\":0,\"pid\":1,\"cmd\":\"r\","
        "\"app\":\"web\",\"cluster\":\"green\",\"steps\":[10,100],\"every_ms\":1000,"
        "\"state\":\"running\",\"start_seq\":3,\"taken\":3,\"why\":null",
        /* a guard record without `paused` */
        "{\"v\":1,\"type\":\"guard\",\"seq\":3,\"time\":5,\"uid\":0,\"pid\":1,\"cmd\":\"g\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *line = signed_line(bad[i]);
        struct sy_journal_record r;
        const char *why = NULL;
        if (sy_journal_parse_line(line, strlen(line), &r, &why) != SY_ERR_INVALID)
            fail_msg("case %zu was accepted", i);
        assert_non_null(why);
        free(line);
    }
    char *good = signed_line("{\"v\":1,\"type\":\"guard\",\"seq\":3,\"time\":5,\"uid\":0,"
                             "\"pid\":1,\"cmd\":\"guard pause\",\"paused\":true");
    struct sy_journal_record r;
    const char *why = NULL;
    assert_int_equal(sy_journal_parse_line(good, strlen(good), &r, &why), 0);
    assert_true(r.guard);
    assert_true(r.guard_pause.paused);
    sy_journal_record_dispose(&r);
    free(good);
}

/* sy_overrides_apply finds apps by hash: sets, releases and sets again among thousands keep
 * one override per app, in the order they were first set (a release and a new set append). */
static void test_apply_keeps_one_override_per_app_in_order_at_scale(void **state)
{
    enum { N = 3000 };
    struct sy_overrides s;
    sy_overrides_init(&s);
    struct sy_actor who = {1, 0, 1, "revert --all"};
    static char names[N][16];
    struct sy_override_change *ch = calloc(N, sizeof(*ch));
    const struct sy_route_weight w[] = {{"blue", 100}};
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "app%d", i);
        ch[i] = (struct sy_override_change){.app = names[i], .weights = w, .n_weights = 1};
    }
    sy_overrides_apply(&s, ch, N, 1, &who);
    assert_int_equal(s.n, N);
    /* One change: release every third app (app0 among them) and set app0 again, release app1
     * and set it again: both are appended, as a release and a new set always were. */
    size_t n = 0;
    for (int i = 0; i < N; i += 3)
        ch[n++] = (struct sy_override_change){.app = names[i], .release = true};
    ch[n++] = (struct sy_override_change){.app = names[0], .weights = w, .n_weights = 1};
    ch[n++] = (struct sy_override_change){.app = names[1], .release = true};
    ch[n++] = (struct sy_override_change){.app = names[1], .weights = w, .n_weights = 1};
    sy_overrides_apply(&s, ch, n, 2, &who);
    assert_int_equal(s.n, N - N / 3 - 1 + 2);
    for (int i = 0; i < N; i++) {
        const struct sy_override *o = sy_overrides_find(&s, names[i]);
        bool want = i % 3 != 0 || i == 0;
        assert_int_equal(o != NULL, want);
        if (o)
            assert_int_equal(o->seq, i < 2 ? 2 : 1);
    }
    assert_string_equal(s.v[0].app, "app2");
    assert_string_equal(s.v[s.n - 2].app, "app0");
    assert_string_equal(s.v[s.n - 1].app, "app1");
    free(ch);
    sy_overrides_dispose(&s);
}

static void test_parser_accepts_a_well_formed_change(void **state)
{
    char *line =
        signed_line("{\"v\":1,\"type\":\"change\",\"seq\":7,\"time\":5,\"uid\":0,\"pid\":1,"
                    "\"cmd\":\"revert --all\",\"changes\":[{\"app\":\"chat\",\"override\":"
                    "{\"blue\":100},\"from\":{\"blue\":50,\"green\":50},\"to\":{\"blue\":"
                    "100,\"green\":0}}]");
    struct sy_journal_record r;
    const char *why = NULL;
    assert_int_equal(sy_journal_parse_line(line, strlen(line), &r, &why), 0);
    assert_int_equal(r.seq, 7);
    assert_false(r.compact);
    assert_int_equal(r.changes[0].n_weights, 1);
    assert_int_equal(r.changes[0].weights[0].weight, 100);
    sy_journal_record_dispose(&r);
    free(line);
}

static void test_parser_refuses_what_it_did_not_write(void **state)
{
    static const struct {
        const char *body; /* signed with a correct checksum */
        const char *why;  /* part of the reason */
    } cases[] = {
        {"{\"v\":2,\"type\":\"change\",\"seq\":1,\"time\":5,\"uid\":0,\"pid\":1,\"cmd\":\"x\","
         "\"changes\":[]",
         "version"},
        {"{\"v\":1,\"type\":\"other\",\"seq\":1,\"time\":5,\"uid\":0,\"pid\":1,\"cmd\":\"x\"",
         "type"},
        {"{\"v\":1,\"type\":\"change\",\"seq\":1,\"time\":5,\"uid\":0,\"pid\":1,\"cmd\":\"x\","
         "\"changes\":[]",
         "change something"},
        {"{\"v\":1,\"type\":\"change\",\"seq\":-1,\"time\":5,\"uid\":0,\"pid\":1,\"cmd\":\"x\","
         "\"changes\":[]",
         "negative"},
        {"{\"v\":1,\"type\":\"change\",\"seq\":1,\"time\":5,\"uid\":0,\"pid\":1,\"cmd\":\"x\","
         "\"changes\":[{\"app\":\"a\",\"override\":{\"blue\":101},\"from\":{},\"to\":{}}]",
         "0..100"},
        {"{\"v\":1,\"type\":\"change\",\"seq\":1,\"time\":5,\"uid\":0,\"pid\":1,\"cmd\":\"x\","
         "\"changes\":[{\"app\":\"a b\",\"override\":null,\"from\":{},\"to\":{}}]",
         "app name"},
        {"{\"v\":1,\"type\":\"change\",\"seq\":1,\"time\":5,\"uid\":0,\"pid\":1,\"changes\":[]",
         "cmd"},
        {"{\"v\":1,\"v\":1", "duplicate key"},
        {"{\"v\":1.5", "integers"},
        {"{\"v\":1,\"x\":\"\\u0100\"", "\\u"},
        {"{\"v\":1,\"x\":[[[[[[[[[[1]]]]]]]]]]", "deeply"},
        {"[1", "expected"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *line = signed_line(cases[i].body);
        struct sy_journal_record r;
        const char *why = NULL;
        int rc = sy_journal_parse_line(line, strlen(line), &r, &why);
        if (rc != SY_ERR_INVALID || !why || !strstr(why, cases[i].why))
            fail_msg("case %zu: rc %d why '%s', want '%s'", i, rc, why ? why : "(null)",
                     cases[i].why);
        free(line);
    }
    /* Unsigned or badly signed lines. */
    static const char *const raw[] = {
        "",
        "{}",
        "{\"v\":1,\"crc\":\"00000000\"}",
        "{\"v\":1,\"crc\":\"ZZZZZZZZ\"}",
        "{\"v\":1,\"crc\":\"0000000\"}",
    };
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
        struct sy_journal_record r;
        const char *why = NULL;
        assert_int_equal(sy_journal_parse_line(raw[i], strlen(raw[i]), &r, &why), SY_ERR_INVALID);
        assert_non_null(why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_missing_journal_is_not_found_unless_created, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_replay_restores_overrides_with_who_and_when, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fleet_origin_survives_replay_and_compaction, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_each_record_is_one_checksummed_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_are_written_byte_for_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_record_is_written_byte_for_byte, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_revert_of_many_apps_is_one_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_last_line_is_ignored_and_cut_off, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nul_filled_tail_is_a_torn_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_record_stops_the_open_with_file_and_line,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard_moves_a_damaged_journal_aside, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sequence_gap_is_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_open_of_a_locked_journal_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_leaves_no_trace, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_released_journal_is_unlocked_refuses_appends_and_is_taken_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction_keeps_the_overrides_and_bounds_the_file,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_returns_the_last_n_oldest_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_state_dir_writable_by_others_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_check_dir_any_owner_names_the_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction_does_not_follow_a_symlink_at_the_temp_path,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_temp_file_of_a_crash_does_not_stop_compaction,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_failed_directory_fsync_after_compaction_refuses_the_next_change, setup, teardown),
        cmocka_unit_test(test_apply_keeps_one_override_per_app_in_order_at_scale),
        cmocka_unit_test(test_parser_accepts_a_well_formed_change),
        cmocka_unit_test(test_parser_refuses_what_it_did_not_write),
        cmocka_unit_test_setup_teardown(
            test_maintenance_records_replay_with_their_start_and_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_pause_replays_and_survives_compaction, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ramps_replay_end_and_survive_compaction, setup,
                                        teardown),
        cmocka_unit_test(test_parser_refuses_bad_ramp_and_guard_records),
        cmocka_unit_test_setup_teardown(test_compaction_keeps_the_apps_in_maintenance, setup,
                                        teardown),
        cmocka_unit_test(test_parser_reads_a_maintenance_record_and_refuses_a_bad_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
