/*
 * test_log.c - the logger's output format, levels, prefix, syslog switch, the environment
 * variable, long messages, errno preservation, and whole lines under concurrent writers.
 *
 * Standard error is redirected to a temporary file around each check. The environment is
 * read once per process, so those checks run this program again with a different
 * environment (see child_main).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"

static int saved_stderr = -1;
static FILE *capture_file;
static char captured[1 << 20];

static void capture_begin(void)
{
    capture_file = tmpfile();
    assert_non_null(capture_file);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

/* Restores stderr and returns what was written to it meanwhile. */
static const char *capture_end(void)
{
    size_t n;

    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    rewind(capture_file);
    n = fread(captured, 1, sizeof captured - 1, capture_file);
    assert_true(n < sizeof captured - 1);
    captured[n] = '\0';
    fclose(capture_file);
    return captured;
}

static int setup(void **state UNUSED)
{
    log_set_prefix(NULL);
    log_set_level(LOG_INFO);
    log_set_syslog(false);
    return 0;
}

static void test_format(void **state UNUSED)
{
    capture_begin();
    log_err("pool \"%s\": member %d: %s", "tank", 2, "I/O error");
    log_warn("cache is %d%% full", 95);
    log_info("pool %s opened", "tank");
    assert_string_equal(capture_end(), "cistern: error: pool \"tank\": member 2: I/O error\n"
                                       "cistern: warning: cache is 95% full\n"
                                       "cistern: pool tank opened\n");
}

static void test_levels(void **state UNUSED)
{
    assert_int_equal(log_get_level(), LOG_INFO);

    capture_begin();
    log_debug("hidden at info");
    assert_string_equal(capture_end(), "");

    log_set_level(LOG_DEBUG);
    assert_int_equal(log_get_level(), LOG_DEBUG);
    capture_begin();
    log_debug("shown at debug");
    assert_string_equal(capture_end(), "cistern: shown at debug\n");

    log_set_level(LOG_WARN);
    capture_begin();
    log_info("hidden");
    log_debug("hidden");
    log_warn("shown");
    assert_string_equal(capture_end(), "cistern: warning: shown\n");

    log_set_level(LOG_ERR);
    capture_begin();
    log_warn("hidden");
    log_err("shown");
    assert_string_equal(capture_end(), "cistern: error: shown\n");

    /* Out-of-range levels are clamped, not trusted. */
    log_set_level((enum log_level)99);
    assert_int_equal(log_get_level(), LOG_DEBUG);
    log_set_level((enum log_level) - 5);
    assert_int_equal(log_get_level(), LOG_ERR);
}

static void test_prefix(void **state UNUSED)
{
    char long_prog[200];

    capture_begin();
    log_set_prefix("/usr/local/sbin/cistern-test");
    log_err("boom");
    log_set_prefix("plain");
    log_info("hello");
    log_set_prefix(NULL);
    log_info("default");
    log_set_prefix("");
    log_info("default again");
    assert_string_equal(capture_end(), "cistern-test: error: boom\n"
                                       "plain: hello\n"
                                       "cistern: default\n"
                                       "cistern: default again\n");

    memset(long_prog, 'p', sizeof long_prog - 1);
    long_prog[sizeof long_prog - 1] = '\0';
    log_set_prefix(long_prog);
    capture_begin();
    log_info("x");
    const char *out = capture_end();
    assert_int_equal(strlen(out), 63 + strlen(": x\n"));
    log_set_prefix(NULL);
}

static void test_newline_not_doubled(void **state UNUSED)
{
    capture_begin();
    log_info("one\n");
    log_info("two");
    log_info("%s", "");
    assert_string_equal(capture_end(), "cistern: one\ncistern: two\ncistern: \n");
}

static void test_errno_preserved(void **state UNUSED)
{
    capture_begin();
    errno = ENOENT;
    log_err("open \"%s\": %m", "/nonexistent");
    assert_int_equal(errno, ENOENT);
    errno = EIO;
    log_debug("filtered out");
    assert_int_equal(errno, EIO);
    assert_string_equal(capture_end(),
                        "cistern: error: open \"/nonexistent\": No such file or directory\n");
}

static void test_long_message(void **state UNUSED)
{
    const size_t len = 100000;
    CLEANUP_FREE char *big = malloc(len + 1);
    const char *out;

    assert_non_null(big);
    memset(big, 'a', len);
    big[len] = '\0';
    capture_begin();
    errno = 0;
    log_warn("%s|%m", big);
    out = capture_end();
    assert_int_equal(strlen(out), strlen("cistern: warning: ") + len + strlen("|Success\n"));
    assert_memory_equal(out + strlen("cistern: warning: "), big, len);
}

static void test_syslog(void **state UNUSED)
{
    /* With syslog on nothing reaches stderr (whether or not a syslog daemon listens). */
    capture_begin();
    log_set_syslog(true);
    log_set_syslog(true);
    log_err("to syslog");
    log_set_syslog(false);
    log_err("to stderr");
    log_set_syslog(false);
    assert_string_equal(capture_end(), "cistern: error: to stderr\n");
}

#define THREADS 8
#define PER_THREAD 200

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    char payload[301];

    memset(payload, 'a' + id, 300);
    payload[300] = '\0';
    for (int i = 0; i < PER_THREAD; i++)
        log_info("thread %d message %d %s end", id, i, payload);
    return NULL;
}

/* Every line written by concurrent threads arrives whole. */
static void test_threads_do_not_interleave(void **state UNUSED)
{
    pthread_t threads[THREADS];
    int count[THREADS] = {0};
    int lines = 0;
    char *line, *save = NULL;

    capture_begin();
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, writer, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);
    capture_end();

    for (line = strtok_r(captured, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int id, i, n = 0;
        char expect[400];

        assert_int_equal(sscanf(line, "cistern: thread %d message %d %n", &id, &i, &n), 2);
        assert_true(id >= 0 && id < THREADS);
        memset(expect, 'a' + id, 300);
        strcpy(expect + 300, " end");
        assert_string_equal(line + n, expect);
        assert_int_equal(i, count[id]); /* in order within a thread */
        count[id]++;
        lines++;
    }
    assert_int_equal(lines, THREADS * PER_THREAD);
}

/* ---- The environment: checked in a fresh process ---- */

/* Runs this program as "child MODE" with CISTERN_LOG=value (unset when NULL). */
static const char *run_child(const char *mode, const char *value)
{
    int fds[2];
    pid_t pid;
    int status;
    ssize_t n;
    size_t got = 0;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        if (value != NULL)
            setenv("CISTERN_LOG", value, 1);
        else
            unsetenv("CISTERN_LOG");
        execl("/proc/self/exe", "test_common_log", "child", mode, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    while ((n = read(fds[0], captured + got, sizeof captured - 1 - got)) > 0)
        got += (size_t)n;
    captured[got] = '\0';
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    return captured;
}

static int child_main(const char *mode)
{
    if (strcmp(mode, "level") == 0) {
        printf("%d\n", (int)log_get_level());
    } else if (strcmp(mode, "set-wins") == 0) {
        log_set_level(LOG_WARN);
        printf("%d\n", (int)log_get_level());
    } else if (strcmp(mode, "messages") == 0) {
        log_debug("d");
        log_info("i");
        log_warn("w");
        log_err("e");
    } else {
        return 2;
    }
    fflush(stdout);
    return 0;
}

static void test_env(void **state UNUSED)
{
    assert_string_equal(run_child("level", NULL), "2\n");
    assert_string_equal(run_child("level", "err"), "0\n");
    assert_string_equal(run_child("level", "warn"), "1\n");
    assert_string_equal(run_child("level", "info"), "2\n");
    assert_string_equal(run_child("level", "debug"), "3\n");
    assert_string_equal(run_child("level", "DEBUG"), "3\n");
    assert_string_equal(run_child("level", "error"), "0\n");
    assert_string_equal(run_child("level", "nonsense"), "2\n");
    assert_string_equal(run_child("level", ""), "2\n");
    assert_string_equal(run_child("set-wins", "debug"), "1\n");

    assert_string_equal(run_child("messages", "debug"),
                        "cistern: d\ncistern: i\ncistern: warning: w\ncistern: error: e\n");
    assert_string_equal(run_child("messages", "warn"), "cistern: warning: w\ncistern: error: e\n");
    assert_string_equal(run_child("messages", "err"), "cistern: error: e\n");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_format, setup),
        cmocka_unit_test_setup(test_levels, setup),
        cmocka_unit_test_setup(test_prefix, setup),
        cmocka_unit_test_setup(test_newline_not_doubled, setup),
        cmocka_unit_test_setup(test_errno_preserved, setup),
        cmocka_unit_test_setup(test_long_message, setup),
        cmocka_unit_test_setup(test_syslog, setup),
        cmocka_unit_test_setup(test_threads_do_not_interleave, setup),
        cmocka_unit_test_setup(test_env, setup),
    };

    if (argc == 3 && strcmp(argv[1], "child") == 0)
        return child_main(argv[2]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
