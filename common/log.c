/*
 * log.c - the project's one way of reporting: leveled messages to stderr or syslog.
 *
 * A message is formatted completely in memory and written with one write(2), so lines
 * written by different threads never interleave (writes to a pipe up to PIPE_BUF bytes
 * are atomic, and Linux serialises writes to one open file).
 *
 * The level is an atomic read on every call; the environment is consulted once, on first
 * use. The prefix and the syslog switch are plain variables set at start-up.
 */
#include "common/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define PREFIX_MAX 64

/*
 * common.h drops syslog's LOG_ERR, LOG_INFO and LOG_DEBUG macros; their values are the
 * severities of RFC 5424, which every syslog implementation uses.
 */
static const int syslog_priority[] = {
    [LOG_ERR] = 3, /* error */
    [LOG_WARN] = LOG_WARNING,
    [LOG_INFO] = 6,  /* informational */
    [LOG_DEBUG] = 7, /* debug */
};
_Static_assert(LOG_WARNING == 4, "syslog severities are not those of RFC 5424");

static const char *const level_word[] = {
    [LOG_ERR] = "error: ",
    [LOG_WARN] = "warning: ",
    [LOG_INFO] = "",
    [LOG_DEBUG] = "",
};

static int current_level = LOG_INFO;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static char prefix[PREFIX_MAX] = "cistern";
static bool to_syslog;

static void read_env(void)
{
    static const struct {
        const char *name;
        enum log_level level;
    } names[] = {
        {"err", LOG_ERR},      {"error", LOG_ERR}, {"warn", LOG_WARN},
        {"warning", LOG_WARN}, {"info", LOG_INFO}, {"debug", LOG_DEBUG},
    };
    const char *v = getenv("CISTERN_LOG");

    if (v == NULL)
        return;
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (strcasecmp(v, names[i].name) == 0) {
            __atomic_store_n(&current_level, (int)names[i].level, __ATOMIC_RELAXED);
            return;
        }
    }
}

enum log_level log_get_level(void)
{
    pthread_once(&env_once, read_env);
    return (enum log_level)__atomic_load_n(&current_level, __ATOMIC_RELAXED);
}

void log_set_level(enum log_level lvl)
{
    /* Consult the environment first, so that it cannot override this call later. */
    pthread_once(&env_once, read_env);
    if ((int)lvl < LOG_ERR)
        lvl = LOG_ERR;
    if (lvl > LOG_DEBUG)
        lvl = LOG_DEBUG;
    __atomic_store_n(&current_level, (int)lvl, __ATOMIC_RELAXED);
}

void log_set_syslog(bool on)
{
    if (on == to_syslog)
        return;
    if (on)
        openlog("cistern", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    else
        closelog();
    to_syslog = on;
}

void log_set_prefix(const char *prog)
{
    const char *slash;

    if (prog == NULL || *prog == '\0')
        prog = "cistern";
    slash = strrchr(prog, '/');
    if (slash != NULL && slash[1] != '\0')
        prog = slash + 1;
    snprintf(prefix, sizeof prefix, "%s", prog);
}

/* Writes all of buf, retrying on EINTR and short writes; gives up silently on error. */
static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

void cs_log(enum log_level lvl, const char *fmt, ...)
{
    int saved_errno = errno;
    char stack_buf[512];
    char *msg = stack_buf;
    size_t head, body, total;
    va_list ap;
    int n;

    if ((int)lvl < LOG_ERR)
        lvl = LOG_ERR;
    if (lvl > LOG_DEBUG)
        lvl = LOG_DEBUG;
    if ((int)lvl > (int)log_get_level())
        return;

    /* Syslog carries the program and the level itself: send the bare message. */
    if (to_syslog) {
        head = 0;
    } else {
        n = snprintf(stack_buf, sizeof stack_buf, "%s: %s", prefix, level_word[lvl]);
        head = n > 0 ? MIN((size_t)n, sizeof stack_buf - 1) : 0;
    }

    va_start(ap, fmt);
    n = vsnprintf(stack_buf + head, sizeof stack_buf - head, fmt, ap);
    va_end(ap);
    if (n < 0)
        goto out;
    body = (size_t)n;

    /* Room for the newline and the NUL; otherwise format again into the heap. */
    if (head + body + 2 > sizeof stack_buf) {
        msg = malloc(head + body + 2);
        if (msg == NULL) {
            msg = stack_buf;
            body = sizeof stack_buf - head - 2;
        } else {
            memcpy(msg, stack_buf, head);
            errno = saved_errno; /* for %m */
            va_start(ap, fmt);
            vsnprintf(msg + head, body + 1, fmt, ap);
            va_end(ap);
        }
    }

    total = head + body;
    if (total > head && msg[total - 1] == '\n')
        total--;

    if (to_syslog) {
        msg[total] = '\0';
        syslog(syslog_priority[lvl], "%s", msg);
    } else {
        msg[total++] = '\n';
        write_all(STDERR_FILENO, msg, total);
    }

    if (msg != stack_buf)
        free(msg);
out:
    errno = saved_errno;
}
