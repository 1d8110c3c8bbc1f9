/*
 * test_sni.c - the SNI name index (tls/sni.h): exact names before wildcards, the one-label
 * wildcard rule, case and trailing dots, the first group keeping a name, names that are refused,
 * client names that cannot match (NUL bytes, empty, too long), and sni_name_covers() agreeing
 * with the index.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tls/sni.h"

/* Adds a NUL-terminated name; the index itself never sees the terminator. */
static int add(struct sni_index *ix, const char *name, unsigned group)
{
    return sni_index_add(ix, name, strlen(name), group);
}

static int look(const struct sni_index *ix, const char *name)
{
    return sni_index_lookup(ix, name, strlen(name));
}

static bool covers(const char *name, const char *host)
{
    return sni_name_covers(name, strlen(name), host, strlen(host));
}

static struct sni_index *new_index(void)
{
    struct sni_index *ix = sni_index_new();
    assert_non_null(ix);
    return ix;
}

static void test_exact_and_wildcard(void **state)
{
    struct sni_index *ix = new_index();
    assert_int_equal(add(ix, "www.example.com", 1), 0);
    assert_int_equal(add(ix, "*.example.com", 2), 0);
    assert_int_equal(add(ix, "example.com", 3), 0);
    assert_int_equal(add(ix, "other.test", 4), 0);
    assert_int_equal(sni_index_finish(ix), 0);

    assert_int_equal(look(ix, "www.example.com"), 1);
    assert_int_equal(look(ix, "api.example.com"), 2);
    assert_int_equal(look(ix, "example.com"), 3);
    assert_int_equal(look(ix, "other.test"), 4);
    assert_int_equal(look(ix, "x.other.test"), -1);
    assert_int_equal(look(ix, "example.org"), -1);
    assert_int_equal(look(ix, "wwww.example.co"), -1);
    assert_int_equal(look(ix, "com"), -1);
    sni_index_free(ix);
}

static void test_exact_wins_whatever_the_order(void **state)
{
    /* the wildcard is added first and by a lower group: the exact name still wins */
    struct sni_index *ix = new_index();
    assert_int_equal(add(ix, "*.example.com", 0), 0);
    assert_int_equal(add(ix, "www.example.com", 5), 0);
    assert_int_equal(sni_index_finish(ix), 0);
    assert_int_equal(look(ix, "www.example.com"), 5);
    assert_int_equal(look(ix, "WWW.example.com."), 5);
    assert_int_equal(look(ix, "mail.example.com"), 0);
    sni_index_free(ix);
}

static void test_wildcard_covers_one_label(void **state)
{
    struct sni_index *ix = new_index();
    assert_int_equal(add(ix, "*.example.com", 7), 0);
    assert_int_equal(add(ix, "*.b.example.org", 8), 0);
    assert_int_equal(sni_index_finish(ix), 0);

    assert_int_equal(look(ix, "a.example.com"), 7);
    assert_int_equal(look(ix, "xn--bcher-kva.example.com"), 7);
    assert_int_equal(look(ix, "a-b.example.com"), 7);
    assert_int_equal(look(ix, "example.com"), -1);     /* no label for the '*' */
    assert_int_equal(look(ix, "a.b.example.com"), -1); /* two labels */
    assert_int_equal(look(ix, ".example.com"), -1);    /* an empty label */
    assert_int_equal(look(ix, "*.example.com"), -1);   /* a client does not send wildcards */
    assert_int_equal(look(ix, "aexample.com"), -1);    /* not on a label boundary */
    assert_int_equal(look(ix, "a.example.com.evil"), -1);
    assert_int_equal(look(ix, "a.b.example.org"), 8);
    assert_int_equal(look(ix, "b.example.org"), -1);
    assert_int_equal(look(ix, "a.a.b.example.org"), -1);
    sni_index_free(ix);
}

static void test_case_is_ignored(void **state)
{
    struct sni_index *ix = new_index();
    assert_int_equal(add(ix, "WwW.ExAmPlE.CoM", 1), 0);
    assert_int_equal(add(ix, "*.EXAMPLE.net", 2), 0);
    assert_int_equal(sni_index_finish(ix), 0);
    assert_int_equal(look(ix, "www.example.com"), 1);
    assert_int_equal(look(ix, "WWW.EXAMPLE.COM"), 1);
    assert_int_equal(look(ix, "wWw.eXaMpLe.cOm"), 1);
    assert_int_equal(look(ix, "Foo.Example.NET"), 2);
    assert_int_equal(look(ix, "foo.example.net"), 2);
    sni_index_free(ix);
}

static void test_trailing_dot(void **state)
{
    struct sni_index *ix = new_index();
    assert_int_equal(add(ix, "example.com.", 1), 0);
    assert_int_equal(add(ix, "foo.org", 2), 0);
    assert_int_equal(add(ix, "*.wild.test.", 3), 0);
    /* only one dot is a root: two are an empty label */
    assert_int_equal(add(ix, "bar.org..", 9), 1);
    assert_int_equal(add(ix, ".", 9), 1);
    assert_int_equal(add(ix, "..", 9), 1);
    assert_int_equal(sni_index_finish(ix), 0);

    assert_int_equal(look(ix, "example.com"), 1);
    assert_int_equal(look(ix, "example.com."), 1);
    assert_int_equal(look(ix, "foo.org."), 2);
    assert_int_equal(look(ix, "foo.org"), 2);
    assert_int_equal(look(ix, "foo.org.."), -1);
    assert_int_equal(look(ix, "a.wild.test"), 3);
    assert_int_equal(look(ix, "a.wild.test."), 3);
    assert_int_equal(look(ix, "bar.org"), -1);
    assert_int_equal(look(ix, "."), -1);
    sni_index_free(ix);
}

static void test_first_group_keeps_a_name(void **state)
{
    struct sni_index *ix = new_index();
    assert_int_equal(add(ix, "a.com", 3), 0);
    assert_int_equal(add(ix, "A.COM.", 1), 0);
    assert_int_equal(add(ix, "a.com", 0), 0);
    assert_int_equal(add(ix, "*.w.com", 6), 0);
    assert_int_equal(add(ix, "*.W.Com", 2), 0);
    /* many groups for one name: an unstable sort must not let a later one win */
    for (unsigned g = 100; g < 400; g++)
        assert_int_equal(add(ix, "busy.example", g), 0);
    for (unsigned g = 10; g < 90; g++) {
        char name[32];
        snprintf(name, sizeof(name), "n%u.example", g % 8);
        assert_int_equal(add(ix, name, g), 0);
    }
    assert_int_equal(sni_index_finish(ix), 0);
    assert_int_equal(look(ix, "a.com"), 3);
    assert_int_equal(look(ix, "x.w.com"), 6);
    assert_int_equal(look(ix, "busy.example"), 100);
    for (unsigned i = 0; i < 8; i++) {
        char name[32];
        snprintf(name, sizeof(name), "n%u.example", i);
        /* the first g in 10..89 with g % 8 == i */
        unsigned first = 10 + (i + 8 - 10 % 8) % 8;
        assert_int_equal(look(ix, name), (int)first);
    }
    sni_index_free(ix);
}

static void test_invalid_names_are_ignored(void **state)
{
    static const char *const bad[] = {
        "",
        "*",
        "*.",
        "*.com",
        "*.com.",
        "a..b",
        ".a.com",
        "a.com..",
        "a*.b.com",
        "*a.b.com",
        "*.*.b.com",
        "a.*.com",
        "foo_bar.com",
        "foo bar.com",
        "foo.com/x",
        "foo:443.com",
        "xn--\xc3\xbc.de",
        "\xc3\xbcml.de",
        "a.b\t",
        "**.a.b",
        "*..a.b",
        "@.com",
        "a,b.com",
        "a.b.com\n",
        "*.a..b",
    };
    struct sni_index *ix = new_index();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (add(ix, bad[i], 1) != 1)
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_false(covers(bad[i], "a.b.com"));
    }
    /* a NUL byte inside the name, counted in its length */
    static const char nul[] = "exa\0mple.com";
    assert_int_equal(sni_index_add(ix, nul, sizeof(nul) - 1, 1), 1);
    assert_int_equal(sni_index_add(ix, "a.com\0", 6, 1), 1);
    /* a group that a lookup could not return */
    assert_int_equal(add(ix, "fine.example", (unsigned)INT32_MAX + 1u), 1);
    assert_int_equal(add(ix, "fine.example", UINT32_MAX), 1);
    assert_int_equal(add(ix, "max.example", INT32_MAX), 0);
    assert_int_equal(sni_index_finish(ix), 0);
    /* nothing of the refused names went in */
    assert_int_equal(look(ix, "exa"), -1);
    assert_int_equal(look(ix, "a.com"), -1);
    assert_int_equal(look(ix, "fine.example"), -1);
    assert_int_equal(look(ix, "x.com"), -1);
    assert_int_equal(look(ix, "foo_bar.com"), -1);
    assert_int_equal(look(ix, "max.example"), INT32_MAX);
    sni_index_free(ix);
}

static void test_empty_index(void **state)
{
    struct sni_index *ix = new_index();
    /* not finished yet: nothing to find */
    assert_int_equal(look(ix, "a.com"), -1);
    assert_int_equal(sni_index_finish(ix), 0);
    assert_int_equal(look(ix, "a.com"), -1);
    assert_int_equal(look(ix, ""), -1);
    assert_int_equal(sni_index_lookup(ix, NULL, 0), -1);
    /* finishing twice changes nothing */
    assert_int_equal(sni_index_finish(ix), 0);
    assert_int_equal(look(ix, "a.com"), -1);
    sni_index_free(ix);
    sni_index_free(NULL);
}

static void test_add_after_finish(void **state)
{
    struct sni_index *ix = new_index();
    assert_int_equal(add(ix, "a.com", 1), 0);
    assert_int_equal(sni_index_finish(ix), 0);
    assert_int_equal(look(ix, "a.com"), 1);
    assert_int_equal(add(ix, "b.com", 2), 0);
    assert_int_equal(add(ix, "a.com", 3), 0);
    /* an unsorted index answers nothing rather than something wrong */
    assert_int_equal(look(ix, "a.com"), -1);
    assert_int_equal(sni_index_finish(ix), 0);
    assert_int_equal(look(ix, "a.com"), 1);
    assert_int_equal(look(ix, "b.com"), 2);
    sni_index_free(ix);
}

/* A name of total characters: labels of label_len letters and dots, ending in a letter. */
static void long_name(char *out, size_t total, size_t label_len)
{
    for (size_t i = 0; i < total; i++)
        out[i] = (i + 1) % (label_len + 1) == 0 ? '.' : (char)('a' + i % 26);
    if (out[total - 1] == '.')
        out[total - 1] = 'z';
    out[total] = '\0';
}

static void test_long_names(void **state)
{
    char n253[256], n254[256], label63[80], label64[80], wild253[300], tail[256];
    long_name(n253, 253, 63);
    long_name(n254, 254, 63);
    memset(label63, 'q', 63);
    strcpy(label63 + 63, ".example");
    memset(label64, 'q', 64);
    strcpy(label64 + 64, ".example");
    /* "*." plus 251 characters is 253 in all */
    long_name(tail, 251, 50);
    snprintf(wild253, sizeof(wild253), "*.%s", tail);

    struct sni_index *ix = new_index();
    assert_int_equal(add(ix, n253, 1), 0);
    assert_int_equal(add(ix, n254, 2), 1);
    assert_int_equal(add(ix, label63, 3), 0);
    assert_int_equal(add(ix, label64, 4), 1);
    assert_int_equal(add(ix, wild253, 5), 0);
    char dotted[300];
    snprintf(dotted, sizeof(dotted), "%s.", n253); /* 254 characters with the root's dot */
    assert_int_equal(add(ix, dotted, 6), 0);
    assert_int_equal(sni_index_finish(ix), 0);

    assert_int_equal(look(ix, n253), 1);
    assert_int_equal(look(ix, dotted), 1);
    assert_int_equal(look(ix, n254), -1);
    assert_int_equal(look(ix, label63), 3);
    assert_int_equal(look(ix, label64), -1);
    /* the host for the long wildcard: one letter in place of the '*', 253 characters */
    char host[300];
    snprintf(host, sizeof(host), "h.%s", tail);
    assert_int_equal(look(ix, host), 5);
    snprintf(host, sizeof(host), "h.%s.", tail);
    assert_int_equal(look(ix, host), 5);
    /* one more letter is still one label, but 254 characters: too long for any name */
    snprintf(host, sizeof(host), "hh.%s", tail);
    assert_int_equal(look(ix, host), -1);

    /* a huge client name is refused without reading past it */
    size_t big = 100000;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, 'a', big);
    assert_int_equal(sni_index_lookup(ix, huge, big), -1);
    assert_int_equal(sni_index_add(ix, huge, big, 7), 1);
    assert_false(sni_name_covers(huge, big, huge, big));
    free(huge);
    sni_index_free(ix);
}

static void test_lookup_bad_bytes(void **state)
{
    struct sni_index *ix = new_index();
    assert_int_equal(add(ix, "www.example.com", 1), 0);
    assert_int_equal(add(ix, "*.example.com", 2), 0);
    assert_int_equal(sni_index_finish(ix), 0);

    /* a NUL byte inside the name must not make "www.example.com" of it */
    static const char nul_tail[] = "www.example.com\0.evil";
    assert_int_equal(sni_index_lookup(ix, nul_tail, sizeof(nul_tail) - 1), -1);
    static const char nul_end[] = "www.example.com";
    assert_int_equal(sni_index_lookup(ix, nul_end, sizeof(nul_end)), -1); /* with its NUL */
    static const char nul_label[] = "a\0b.example.com";
    assert_int_equal(sni_index_lookup(ix, nul_label, sizeof(nul_label) - 1), -1);
    static const char nul_only[] = "\0";
    assert_int_equal(sni_index_lookup(ix, nul_only, 1), -1);
    /* the length decides, not the terminator */
    assert_int_equal(sni_index_lookup(ix, "www.example.com", 14), -1);
    assert_int_equal(sni_index_lookup(ix, "www.example.comX", 15), 1);
    assert_int_equal(sni_index_lookup(ix, "x.example.comX", 13), 2);
    /* empty */
    assert_int_equal(sni_index_lookup(ix, "", 0), -1);
    assert_int_equal(sni_index_lookup(ix, NULL, 0), -1);
    /* characters no DNS name has, in the label a wildcard would cover */
    assert_int_equal(look(ix, "a_b.example.com"), -1);
    assert_int_equal(look(ix, "a b.example.com"), -1);
    assert_int_equal(look(ix, "\xff.example.com"), -1);
    assert_int_equal(look(ix, "a/b.example.com"), -1);
    assert_int_equal(look(ix, "*.example.com"), -1);
    assert_int_equal(look(ix, "www.example.com "), -1);
    assert_int_equal(look(ix, " www.example.com"), -1);
    sni_index_free(ix);
}

static void test_many_names(void **state)
{
    enum { N = 2000 };
    struct sni_index *ix = new_index();
    char name[64];
    /* added in an order that is not sorted by either length or text */
    for (unsigned i = 0; i < N; i++) {
        unsigned k = (i * 7919u) % N;
        snprintf(name, sizeof(name), "host%u.example.com", k);
        assert_int_equal(add(ix, name, k), 0);
        snprintf(name, sizeof(name), "*.zone%u.test", k);
        assert_int_equal(add(ix, name, N + k), 0);
    }
    assert_int_equal(sni_index_finish(ix), 0);
    for (unsigned k = 0; k < N; k++) {
        snprintf(name, sizeof(name), "HOST%u.example.com", k);
        assert_int_equal(look(ix, name), (int)k);
        snprintf(name, sizeof(name), "www.zone%u.test.", k);
        assert_int_equal(look(ix, name), (int)(N + k));
        snprintf(name, sizeof(name), "zone%u.test", k);
        assert_int_equal(look(ix, name), -1);
    }
    snprintf(name, sizeof(name), "host%u.example.com", (unsigned)N);
    assert_int_equal(look(ix, name), -1);
    sni_index_free(ix);
}

static void test_name_covers(void **state)
{
    assert_true(covers("www.example.com", "www.example.com"));
    assert_true(covers("WWW.Example.com.", "www.EXAMPLE.com"));
    assert_true(covers("www.example.com", "www.example.com."));
    assert_false(covers("www.example.com", "example.com"));
    assert_false(covers("www.example.com", "www.example.co"));
    assert_true(covers("*.example.com", "a.example.com"));
    assert_true(covers("*.Example.COM", "A.example.com."));
    assert_false(covers("*.example.com", "example.com"));
    assert_false(covers("*.example.com", "a.b.example.com"));
    assert_false(covers("*.example.com", "*.example.com"));
    assert_false(covers("*.example.com", ".example.com"));
    assert_false(covers("*.com", "example.com"));
    assert_false(covers("a*.example.com", "ab.example.com"));
    assert_false(covers("", ""));
    assert_false(covers("a.com", ""));
    assert_false(covers("", "a.com"));
    assert_false(sni_name_covers(NULL, 0, NULL, 0));
    static const char nul[] = "a.com\0x";
    assert_false(sni_name_covers("a.com", 5, nul, sizeof(nul) - 1));
    assert_false(sni_name_covers(nul, sizeof(nul) - 1, "a.com", 5));
    assert_true(sni_name_covers(nul, 5, "a.com", 5));
}

/* For any one name, an index holding only that name answers as sni_name_covers() does. */
static void test_covers_agrees_with_index(void **state)
{
    static const char *const names[] = {
        "a.com", "*.a.com", "*.com", "A.Com.", "*.b.a.com", "a..com", "x_y.a.com", "", "*", "com",
    };
    static const char *const hosts[] = {
        "a.com", "b.a.com", "B.A.COM.", "c.b.a.com", "com",    "a.com.",    "*.a.com",
        "x.com", "",        ".",        "a..com",    "a.com.", "x_y.a.com", "-.a.com",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct sni_index *ix = new_index();
        int added = add(ix, names[i], 4);
        assert_true(added == 0 || added == 1);
        assert_int_equal(sni_index_finish(ix), 0);
        for (size_t j = 0; j < sizeof(hosts) / sizeof(hosts[0]); j++) {
            bool in_index = look(ix, hosts[j]) == 4;
            if (in_index != covers(names[i], hosts[j]))
                fail_msg("\"%s\" for \"%s\": index %d, covers %d", names[i], hosts[j], in_index,
                         !in_index);
        }
        sni_index_free(ix);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_and_wildcard),
        cmocka_unit_test(test_exact_wins_whatever_the_order),
        cmocka_unit_test(test_wildcard_covers_one_label),
        cmocka_unit_test(test_case_is_ignored),
        cmocka_unit_test(test_trailing_dot),
        cmocka_unit_test(test_first_group_keeps_a_name),
        cmocka_unit_test(test_invalid_names_are_ignored),
        cmocka_unit_test(test_empty_index),
        cmocka_unit_test(test_add_after_finish),
        cmocka_unit_test(test_long_names),
        cmocka_unit_test(test_lookup_bad_bytes),
        cmocka_unit_test(test_many_names),
        cmocka_unit_test(test_name_covers),
        cmocka_unit_test(test_covers_agrees_with_index),
    };
    return cmocka_run_group_tests_name("sni", tests, NULL, NULL);
}
