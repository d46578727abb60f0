/*
 * output.c - how commands print: aligned tables, JSON, and a progress line.
 *
 * Tables look like `zfs list`: upper-case headers, columns two spaces apart, names to the
 * left and numbers to the right; -H drops the header and separates fields with a single tab
 * for scripts. JSON goes through json-c, pretty, sizes as integers of bytes.
 *
 * The progress line is for people only: it is drawn on stderr when stderr is a terminal,
 * at most ten times a second, and erased at the end so that it never mixes with output.
 */
#include "cli/cli.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct table {
    unsigned ncols;
    char *align;
    size_t nrows, cap;
    char **cells; /* row-major; row 0 is the header */
};

struct table *table_new(unsigned ncols, const char *const *headers, const char *align)
{
    struct table *t = calloc(1, sizeof *t);

    if (t == NULL)
        abort();
    t->ncols = ncols;
    t->align = strdup(align);
    if (t->align == NULL)
        abort();
    table_add(t, headers);
    return t;
}

void table_add(struct table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap == 0 ? 8 : t->cap * 2;
        t->cells = realloc(t->cells, t->cap * t->ncols * sizeof *t->cells);
        if (t->cells == NULL)
            abort();
    }
    for (unsigned c = 0; c < t->ncols; c++) {
        char *s = strdup(cells[c] != NULL ? cells[c] : "-");
        if (s == NULL)
            abort();
        t->cells[t->nrows * t->ncols + c] = s;
    }
    t->nrows++;
}

void table_print(const struct table *t, FILE *f, bool scripted)
{
    size_t *width = calloc(t->ncols, sizeof *width);

    if (width == NULL)
        abort();
    for (size_t r = 0; r < t->nrows; r++)
        for (unsigned c = 0; c < t->ncols; c++)
            width[c] = MAX(width[c], strlen(t->cells[r * t->ncols + c]));

    for (size_t r = scripted ? 1 : 0; r < t->nrows; r++) {
        for (unsigned c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            bool last = c + 1 == t->ncols;
            if (scripted)
                fprintf(f, "%s%s", s, last ? "" : "\t");
            else if (t->align[c] == 'r')
                fprintf(f, "%*s%s", (int)width[c], s, last ? "" : "  ");
            else if (last)
                fputs(s, f);
            else
                fprintf(f, "%-*s  ", (int)width[c], s);
        }
        fputc('\n', f);
    }
    free(width);
}

void table_free(struct table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->align);
    free(t);
}

const char *size_str(uint64_t bytes, bool exact, char buf[SIZE_BUF])
{
    if (exact)
        snprintf(buf, SIZE_BUF, "%" PRIu64, bytes);
    else
        format_size(bytes, buf, SIZE_BUF);
    return buf;
}

void json_print(struct json_object *o)
{
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                               JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

/* ---------------------------------------------------------------------------------------- */

#define PROGRESS_INTERVAL_NS 100000000ull /* at most ten updates a second */

void progress_start(struct progress *p, const char *what, uint64_t total, bool quiet)
{
    memset(p, 0, sizeof *p);
    p->on = !quiet && isatty(STDERR_FILENO);
    p->what = what;
    p->total = total;
    p->start_ns = now_ns();
}

void progress_update(struct progress *p, uint64_t done)
{
    char d[SIZE_BUF], t[SIZE_BUF], rate[SIZE_BUF];
    uint64_t now, elapsed;
    char bar[31];
    double frac;

    if (!p->on)
        return;
    now = now_ns();
    if (p->last_ns != 0 && now - p->last_ns < PROGRESS_INTERVAL_NS)
        return;
    p->last_ns = now;
    elapsed = now - p->start_ns;

    format_size(done, d, sizeof d);
    format_size(elapsed > 0 ? (uint64_t)((double)done * 1e9 / (double)elapsed) : 0, rate,
                sizeof rate);
    if (p->total > 0) {
        unsigned filled;
        frac = (double)MIN(done, p->total) / (double)p->total;
        filled = (unsigned)(frac * (sizeof bar - 1));
        memset(bar, '#', filled);
        memset(bar + filled, '.', sizeof bar - 1 - filled);
        bar[sizeof bar - 1] = '\0';
        format_size(p->total, t, sizeof t);
        fprintf(stderr, "\r\033[K%s [%s] %3u%% %s/%s %s/s", p->what, bar, (unsigned)(frac * 100.0),
                d, t, rate);
    } else {
        fprintf(stderr, "\r\033[K%s %s %s/s", p->what, d, rate);
    }
    fflush(stderr);
}

void progress_end(struct progress *p)
{
    if (!p->on)
        return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    p->on = false;
}
