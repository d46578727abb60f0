/*
 * common.h - what every layer of Cistern needs: small macros, crc32c, logging, size and
 * name parsing, UUIDs, a clock, zero detection and scoped cleanup.
 *
 * Error convention (the whole project follows it)
 * -----------------------------------------------
 * Every public function that can fail returns 0 on success or a negative errno value
 * (-EINVAL, -ENOMEM, -EIO, ...) on failure, never -1 with errno set. Results travel through
 * out-parameters. A negative value passes unchanged from an io_uring completion up to a
 * protocol reply, so the cause is never lost on the way. A function that returns a count or
 * an index (>= 0) on success follows the same rule for its failures. The cause is logged
 * once, where it is first known, naming the object; callers above add context only when
 * they know something the lower layer did not.
 *
 * Functions that cannot fail return void or a plain value and say so.
 *
 * Threading: everything here is safe to call from any thread, except log_set_prefix() and
 * log_set_syslog(), which a program calls once at start-up before it starts threads.
 */
#ifndef CISTERN_COMMON_H
#define CISTERN_COMMON_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/param.h>
#include <sys/types.h>

/*
 * <syslog.h> defines LOG_ERR, LOG_INFO and LOG_DEBUG as macros, which would silently turn
 * the log levels below into syslog priorities. Include it here, once, and drop those three
 * names, so that the levels keep their meaning in every file whatever the include order
 * (its include guard makes any later #include <syslog.h> a no-op). log.c maps levels to
 * syslog priorities itself.
 */
#include <syslog.h>
#undef LOG_ERR
#undef LOG_INFO
#undef LOG_DEBUG

/* ---------------------------------------------------------------------------------------- */
/* Macros                                                                                   */
/* ---------------------------------------------------------------------------------------- */

#define CS_CONCAT_(a, b) a##b
#define CS_CONCAT(a, b) CS_CONCAT_(a, b)
/* A fresh identifier on every expansion, for variables declared inside macros. */
#define CS_UNIQUE(prefix) CS_CONCAT(prefix, __COUNTER__)

/* 0, or a compile error when a is a pointer rather than an array. */
#define CS_ZERO_UNLESS_ARRAY(a)                                                                    \
    (0 * sizeof(struct {                                                                           \
         _Static_assert(!__builtin_types_compatible_p(__typeof__(a), __typeof__(&(a)[0])),         \
                        "ARRAY_SIZE of a pointer");                                                \
         char c;                                                                                   \
     }))

/* Number of elements of an array; fails to compile when given a pointer. */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]) + CS_ZERO_UNLESS_ARRAY(a))

/*
 * MIN and MAX evaluate each argument once. <sys/param.h> has its own versions that
 * evaluate twice; it is included above so that its include guard keeps it from coming back.
 */
#undef MIN
#undef MAX
#define CS_MIN_(a, b, ua, ub)                                                                      \
    __extension__({                                                                                \
        __auto_type ua = (a);                                                                      \
        __auto_type ub = (b);                                                                      \
        ua < ub ? ua : ub;                                                                         \
    })
#define CS_MAX_(a, b, ua, ub)                                                                      \
    __extension__({                                                                                \
        __auto_type ua = (a);                                                                      \
        __auto_type ub = (b);                                                                      \
        ua > ub ? ua : ub;                                                                         \
    })
#define MIN(a, b) CS_MIN_(a, b, CS_UNIQUE(min_a_), CS_UNIQUE(min_b_))
#define MAX(a, b) CS_MAX_(a, b, CS_UNIQUE(max_a_), CS_UNIQUE(max_b_))

/* a / b rounded up, without the overflow of (a + b - 1) / b near the type's maximum. */
#define DIV_ROUND_UP(a, b) ((a) / (b) + ((a) % (b) != 0))

/*
 * Round to a multiple of b, which must be a power of two. The mask is built in the common
 * type of a and b, so a 64-bit a with a 32-bit b keeps its high bits.
 */
/* (clang-format takes "(b) - 1" for a cast, hence the guard.) */
/* clang-format off */
#define ROUND_DOWN(a, b) ((a) & ~((__typeof__((a) + (b)))(b) - 1))
#define ROUND_UP(a, b) ROUND_DOWN((a) + (b) - 1, b)
/* clang-format on */

/* True when x is a power of two (zero is not). */
#define IS_POW2(x) ((x) != 0 && ((x) & ((x)-1)) == 0)

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* The structure of type `type` whose member `member` is at ptr. */
#define container_of(ptr, type, member)                                                            \
    __extension__({                                                                                \
        const __typeof__(((type *)0)->member) *cs_mptr_ = (ptr);                                   \
        (type *)((char *)cs_mptr_ - offsetof(type, member));                                       \
    })

/* Marks a parameter or variable that is deliberately unused: `int fn(void *arg UNUSED)`. */
#define UNUSED __attribute__((unused))

/* ---------------------------------------------------------------------------------------- */
/* CRC-32C (Castagnoli)                                                                     */
/* ---------------------------------------------------------------------------------------- */

/*
 * The CRC-32C of len bytes at buf, continuing from crc (0 to start). Standard semantics
 * (reflected, initial and final inversion handled inside): crc32c(0, "123456789", 9) ==
 * 0xE3069283, and crc32c(crc32c(0, a, n), b, m) equals the CRC of a followed by b.
 * Uses the SSE4.2 instruction when the CPU has it (about 8 bytes per cycle), else a
 * slice-by-8 table (about 1 byte per cycle). Cannot fail; buf may be NULL when len is 0.
 */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/*
 * The two implementations behind crc32c(), for tests and benchmarks. crc32c_hw() may be
 * called only when crc32c_hw_available() is true.
 */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);
bool crc32c_hw_available(void);

/* ---------------------------------------------------------------------------------------- */
/* Logging                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* A message is emitted when its level is at most the current level. */
enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/*
 * Writes "PREFIX: error: message\n" (the level word only for errors and warnings) to
 * standard error with a single write(2), so lines from different threads never interleave;
 * or, after log_set_syslog(true), sends the message to syslog instead. A trailing newline
 * in fmt is not doubled. Preserves errno. Cannot fail (a message that cannot be written
 * is dropped).
 */
void cs_log(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) cs_log(LOG_ERR, __VA_ARGS__)
#define log_warn(...) cs_log(LOG_WARN, __VA_ARGS__)
#define log_info(...) cs_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...) cs_log(LOG_DEBUG, __VA_ARGS__)

/*
 * The current level. On first use it comes from the environment variable CISTERN_LOG
 * (err, warn, info or debug; also error, warning; any case); it is LOG_INFO when that is
 * unset or not understood. An explicit log_set_level() always wins over the environment.
 */
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);

/* Sends messages to syslog (ident "cistern", facility daemon) instead of stderr, or back. */
void log_set_syslog(bool on);

/*
 * The program name that starts every line ("cistern" by default). Takes the last
 * component of a path, so log_set_prefix(argv[0]) works; NULL restores the default.
 * Names longer than 63 bytes are cut.
 */
void log_set_prefix(const char *prog);

/* ---------------------------------------------------------------------------------------- */
/* Sizes                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/*
 * Parses a size in bytes: a decimal integer, then optionally one of K, M, G, T, P (binary
 * multiples, any case), then optionally "B", or "iB" after a multiple: "4096", "64K",
 * "20G", "1GiB", "512kb", "100B". Nothing else is accepted: no sign, no spaces, no
 * fraction. Returns 0 and sets *out, -EINVAL when s is not a size, -ERANGE when the value
 * does not fit in 64 bits. *out is untouched on failure.
 */
int parse_size(const char *s, uint64_t *out);

/*
 * Writes a human form of bytes into buf (always NUL-terminated when len > 0, cut to fit):
 * "20G", "1.5G", "512K", "100B". Values below 1 KiB are exact; above, the largest unit
 * that leaves at least 1 is used (K, M, G, T, P, E), rounded to at most 3 significant
 * digits with trailing zeros of the fraction dropped (so 1000K..1023K keep 4 digits).
 * 16 bytes always suffice.
 */
void format_size(uint64_t bytes, char *buf, size_t len);

/* ---------------------------------------------------------------------------------------- */
/* Object names: POOL, POOL/VOLUME, POOL/VOLUME@SNAPSHOT                                   */
/* ---------------------------------------------------------------------------------------- */

#define NAME_MAX_LEN 64

/*
 * Checks one component of an object name: 1 to NAME_MAX_LEN bytes of [A-Za-z0-9_.:+-],
 * not starting with '.' or '-'. Returns 0, or -EINVAL and, when why is not NULL, points
 * *why at a static English reason suitable after "invalid name \"%s\": ".
 */
int name_check(const char *s, const char **why);

struct obj_name {
    char pool[NAME_MAX_LEN + 1];
    char vol[NAME_MAX_LEN + 1];  /* "" when absent */
    char snap[NAME_MAX_LEN + 1]; /* "" when absent */
};

/*
 * Parses "POOL", "POOL/VOL" or "POOL/VOL@SNAP" into out, checking every present part
 * with name_check(). Returns 0, or -EINVAL with *why (when why is not NULL) set to a
 * static reason that names the part at fault ("volume name: empty"). out is zeroed on
 * failure.
 */
int obj_name_parse(const char *s, struct obj_name *out, const char **why);

/* ---------------------------------------------------------------------------------------- */
/* UUIDs                                                                                    */
/* ---------------------------------------------------------------------------------------- */

#define UUID_STR_LEN 37 /* 36 characters and the NUL */

/* Fills out with a random (version 4) UUID from getrandom(2). Cannot fail. */
void uuid_generate_random16(uint8_t out[16]);

/* Writes the 8-4-4-4-12 lowercase hexadecimal form and a NUL into out. */
void uuid_format(const uint8_t u[16], char out[UUID_STR_LEN]);

/* Parses the 8-4-4-4-12 form (either case). Returns 0, or -EINVAL leaving out untouched. */
int uuid_parse(const char *s, uint8_t out[16]);

/* ---------------------------------------------------------------------------------------- */
/* State files                                                                              */
/* ---------------------------------------------------------------------------------------- */

/* Replaces the file @path with @len bytes of @data, atomically and durably: a temporary file
 * beside it is written, synced, renamed over @path, and the directory synced. Returns 0, or
 * a negative errno with the old file left as it was. */
int file_replace(const char *path, const void *data, size_t len, mode_t mode);

/* Removes @path durably (the directory synced). 0 also when there was no such file. */
int file_remove(const char *path);

/* ---------------------------------------------------------------------------------------- */
/* Time and buffers                                                                         */
/* ---------------------------------------------------------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds: for intervals and timeouts, never for dates. */
uint64_t now_ns(void);

/* True when all len bytes at buf are zero (true for len 0). Reads whole words. */
bool buf_is_zero(const void *buf, size_t len);

/* ---------------------------------------------------------------------------------------- */
/* Scoped cleanup                                                                           */
/* ---------------------------------------------------------------------------------------- */

/*
 * Variables that release what they hold when they go out of scope, on every path out:
 *
 *     CLEANUP_FREE char *buf = malloc(n);     free(buf) at scope exit
 *     CLEANUP_CLOSE int fd = open(...);       close(fd) at scope exit when fd >= 0
 *     SCOPED_LOCK(&pool->lock);               locked now, unlocked at scope exit
 *
 * To hand ownership on, set the variable to NULL (or -1) after copying it out. The
 * cleanups preserve errno. SCOPED_LOCK aborts if the mutex cannot be locked or unlocked,
 * which only happens when the program is already broken (EDEADLK, EINVAL).
 */
void cleanup_free(void *ptr);
void cleanup_close(int *fd);
pthread_mutex_t *cleanup_mutex_lock(pthread_mutex_t *mutex);
void cleanup_mutex_unlock(pthread_mutex_t **mutex);

#define CLEANUP_FREE __attribute__((cleanup(cleanup_free)))
#define CLEANUP_CLOSE __attribute__((cleanup(cleanup_close)))
#define SCOPED_LOCK(mutex_ptr)                                                                     \
    __attribute__((cleanup(cleanup_mutex_unlock), unused)) pthread_mutex_t *CS_UNIQUE(             \
        scoped_lock_) = cleanup_mutex_lock(mutex_ptr)

#endif /* CISTERN_COMMON_H */
