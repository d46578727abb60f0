/*
 * test_text.c - the key=value text of logins (iscsi-target/text.c): parsing untrusted data
 * segments, and the result function of every operational key (RFC 7143 6.2, 13): numbers
 * taking the minimum or maximum with ours, booleans AND and OR, digest lists, declarations,
 * values out of range (Reject), unknown and private keys (NotUnderstood), keys of normal
 * sessions in a discovery session (Irrelevant), a key offered twice (a failed login).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "iscsi-target/iscsi-priv.h"

/* Parses @text (with its NULs, @len bytes) in a buffer one byte longer. */
static int parse(const char *text, size_t len, struct kv *kv, int max, char **buf)
{
    *buf = malloc(len + 1);
    memcpy(*buf, text, len);
    return iscsi_kv_parse(*buf, len, kv, max);
}

static void test_parse(void **state)
{
    (void)state;
    struct kv kv[4];
    char *b;
    static const char ok[] = "A=1\0B=two\0\0C=\0";
    assert_int_equal(parse(ok, sizeof ok - 1, kv, 4, &b), 3);
    assert_string_equal(kv[0].key, "A");
    assert_string_equal(kv[0].value, "1");
    assert_string_equal(kv[1].value, "two");
    assert_string_equal(kv[2].key, "C");
    assert_string_equal(kv[2].value, "");
    free(b);
    /* The last pair without its NUL still ends at the segment's end. */
    assert_int_equal(parse("X=y", 3, kv, 4, &b), 1);
    assert_string_equal(kv[0].value, "y");
    free(b);
    assert_int_equal(parse("noequals\0", 9, kv, 4, &b), -EINVAL);
    free(b);
    assert_int_equal(parse("=v\0", 3, kv, 4, &b), -EINVAL);
    free(b);
    char longkey[100];
    memset(longkey, 'K', 64);
    memcpy(longkey + 64, "=v", 3);
    assert_int_equal(parse(longkey, 67, kv, 4, &b), -EINVAL);
    free(b);
    assert_int_equal(parse("a=1\0b=2\0c=3\0d=4\0e=5\0", 20, kv, 4, &b), -EINVAL);
    free(b);
    assert_int_equal(parse("", 0, kv, 4, &b), 0);
    free(b);
}

struct neg {
    struct iscsi_conn c;
    struct kvbuf rsp;
    uint32_t seen;
};

static struct neg *neg_new(bool discovery)
{
    struct neg *n = calloc(1, sizeof *n);
    iscsi_params_default(&n->c.p);
    n->c.discovery = discovery;
    strcpy(n->c.peer, "test");
    return n;
}

/* Negotiates KEY=VALUE; returns the answer ("" when none) in a static buffer. */
static const char *offer(struct neg *n, const char *key, const char *value, uint16_t *status)
{
    static char answer[256];
    struct kv kv = {key, value};
    size_t before = n->rsp.len;
    *status = iscsi_negotiate_key(&n->c, &kv, &n->rsp, &n->seen);
    answer[0] = '\0';
    if (n->rsp.len > before) {
        const char *p = n->rsp.buf + before;
        const char *eq = strchr(p, '=');
        snprintf(answer, sizeof answer, "%s", eq ? eq + 1 : p);
    }
    return answer;
}

static void neg_free(struct neg *n)
{
    kvbuf_free(&n->rsp);
    free(n);
}

static void test_numbers(void **state)
{
    (void)state;
    struct neg *n = neg_new(false);
    uint16_t st;
    assert_string_equal(offer(n, "MaxBurstLength", "16776192", &st), "1048576");
    assert_int_equal(n->c.p.max_burst, ISCSI_MAX_BURST);
    assert_string_equal(offer(n, "FirstBurstLength", "65536", &st), "65536");
    assert_int_equal(n->c.p.first_burst, 65536);
    assert_string_equal(offer(n, "MaxOutstandingR2T", "0x40", &st), "16");
    assert_string_equal(offer(n, "DefaultTime2Wait", "0", &st), "2"); /* maximum */
    assert_string_equal(offer(n, "DefaultTime2Retain", "0", &st), "0"); /* minimum */
    assert_string_equal(offer(n, "ErrorRecoveryLevel", "2", &st), "0");
    assert_string_equal(offer(n, "MaxConnections", "8", &st), "1");
    /* A declaration: no answer, but the value is taken. */
    assert_string_equal(offer(n, "MaxRecvDataSegmentLength", "65536", &st), "");
    assert_int_equal(n->c.p.mrdsl_out, 65536);
    assert_int_equal(st, LOGIN_OK);
    neg_free(n);
}

static void test_bad_values(void **state)
{
    (void)state;
    struct neg *n = neg_new(false);
    uint16_t st;
    assert_string_equal(offer(n, "MaxBurstLength", "511", &st), "Reject");
    assert_string_equal(offer(n, "FirstBurstLength", "16777216", &st), "Reject");
    assert_string_equal(offer(n, "MaxRecvDataSegmentLength", "12ab", &st), "Reject");
    assert_string_equal(offer(n, "DefaultTime2Wait", "-1", &st), "Reject");
    assert_string_equal(offer(n, "MaxOutstandingR2T", "", &st), "Reject");
    assert_string_equal(offer(n, "ErrorRecoveryLevel", "99999999999999999999", &st), "Reject");
    assert_string_equal(offer(n, "InitialR2T", "yes", &st), "Reject");
    assert_string_equal(offer(n, "HeaderDigest", "MD5,SHA1", &st), "Reject");
    assert_int_equal(st, LOGIN_OK);
    assert_int_equal(n->c.p.max_burst, 262144); /* untouched */
    neg_free(n);
}

static void test_booleans_and_lists(void **state)
{
    (void)state;
    struct neg *n = neg_new(false);
    uint16_t st;
    assert_string_equal(offer(n, "InitialR2T", "No", &st), "No"); /* OR with our No */
    assert_false(n->c.p.initial_r2t);
    assert_string_equal(offer(n, "ImmediateData", "No", &st), "No"); /* AND */
    assert_false(n->c.p.immediate_data);
    assert_string_equal(offer(n, "DataPDUInOrder", "No", &st), "Yes"); /* OR with Yes */
    assert_string_equal(offer(n, "DataSequenceInOrder", "No", &st), "Yes");
    assert_string_equal(offer(n, "IFMarker", "Yes", &st), "No");
    assert_string_equal(offer(n, "HeaderDigest", "CRC32C,None", &st), "CRC32C");
    assert_true(n->c.p.header_digest);
    assert_string_equal(offer(n, "DataDigest", "None,CRC32C", &st), "None");
    assert_false(n->c.p.data_digest);
    assert_string_equal(offer(n, "TaskReporting", "ResponseFence,RFC3720", &st), "RFC3720");
    neg_free(n);
}

static void test_unknown_and_discovery(void **state)
{
    (void)state;
    struct neg *n = neg_new(true);
    uint16_t st;
    assert_string_equal(offer(n, "X-com.example.Key", "1", &st), "NotUnderstood");
    assert_string_equal(offer(n, "X#org.example", "1", &st), "NotUnderstood");
    assert_string_equal(offer(n, "RDMAExtensions", "Yes", &st), "NotUnderstood");
    assert_string_equal(offer(n, "MaxBurstLength", "65536", &st), "Irrelevant");
    assert_string_equal(offer(n, "ImmediateData", "Yes", &st), "Irrelevant");
    assert_string_equal(offer(n, "HeaderDigest", "None", &st), "None"); /* applies here too */
    assert_string_equal(offer(n, "TargetAddress", "1.2.3.4", &st), "Reject");
    assert_string_equal(offer(n, "InitiatorAlias", "host", &st), "");
    neg_free(n);
}

static void test_twice(void **state)
{
    (void)state;
    struct neg *n = neg_new(false);
    uint16_t st;
    offer(n, "MaxBurstLength", "65536", &st);
    assert_int_equal(st, LOGIN_OK);
    offer(n, "MaxBurstLength", "65536", &st);
    assert_int_equal(st, LOGIN_INITIATOR_ERROR);
    neg_free(n);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(iscsi_name_valid("iqn.2026-11.org.cistern:tank"));
    assert_true(iscsi_name_valid("eui.0123456789ABCDEF"));
    assert_false(iscsi_name_valid("iqn"));
    assert_false(iscsi_name_valid("host1"));
    assert_false(iscsi_name_valid("iqn.2026-11.org.example:a b"));
    char big[300];
    memset(big, 'a', sizeof big - 1);
    memcpy(big, "iqn.", 4);
    big[sizeof big - 1] = '\0';
    assert_false(iscsi_name_valid(big));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_booleans_and_lists),
        cmocka_unit_test(test_unknown_and_discovery),
        cmocka_unit_test(test_twice),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
