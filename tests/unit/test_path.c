/*
 * test_path.c - the normalised request path that routing compares (http/path.h): every way of
 * spelling a path that RFC 3986 says means the same, the refusals, and the properties that keep
 * a rule from being bypassed (the result is stable, has no dot-segments left, and is never
 * longer than the path). Each input is placed right before an unreadable page, so a read past
 * its end crashes the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "http/path.h"

/* A copy of s whose last byte is the last one before a PROT_NONE page. */
static const char *fenced(const char *s, size_t len)
{
    static char *region;
    static size_t page;
    if (!region) {
        page = (size_t)sysconf(_SC_PAGESIZE);
        region = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert_true(region != MAP_FAILED);
        assert_int_equal(mprotect(region + page, page, PROT_NONE), 0);
    }
    assert_true(len <= page);
    char *p = region + page - len;
    memcpy(p, s, len);
    return p;
}

static enum path_status norm(const char *in, bool merge, char *out, size_t *len)
{
    return path_normalize(fenced(in, strlen(in)), strlen(in), merge, out, 4096, len);
}

static void expect(const char *in, bool merge, const char *want)
{
    char out[4096];
    size_t len;
    enum path_status st = norm(in, merge, out, &len);
    if (st != PATH_OK)
        fail_msg("%s: status %d", in, st);
    if (len != strlen(want) || memcmp(out, want, len) != 0)
        fail_msg("%s: got \"%.*s\", want \"%s\"", in, (int)len, out, want);
}

static void expect_status(const char *in, enum path_status want)
{
    char out[4096];
    size_t len;
    assert_int_equal(norm(in, true, out, &len), want);
    assert_non_null(path_status_text(want));
}

static void test_unchanged(void **state)
{
    const char *same[] = {
        "/",    "/a",     "/a/",     "/a/b/c",     "/v1/users/42", "/a.b/c..d/...",
        "/%2F", "/a%20b", "/%C3%A9", "/~user/-_.x"};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
        expect(same[i], true, same[i]);
}

static void test_dot_segments(void **state)
{
    expect("/a/./b", true, "/a/b");
    expect("/a/../b", true, "/b");
    expect("/v1/../admin", true, "/admin");
    expect("/a/b/c/../../d", true, "/a/d");
    expect("/a/.", true, "/a/");
    expect("/a/..", true, "/");
    expect("/a/b/..", true, "/a/");
    expect("/.", true, "/");
    expect("/./", true, "/");
    expect("/a/./", true, "/a/");
    expect("/a/../", true, "/");
    expect("/./a", true, "/a");
    expect("/a/.b/..c", true, "/a/.b/..c"); /* not dot-segments */
}

static void test_escapes(void **state)
{
    expect("/v1/%2e%2e/admin", true, "/admin");
    expect("/v1/%2E%2E/admin", true, "/admin");
    expect("/v1/.%2e/admin", true, "/admin");
    expect("/%2e/a", true, "/a");
    expect("/%61%62c", true, "/abc");                   /* unreserved letters */
    expect("/%7euser%2D%5f", true, "/~user-_");         /* unreserved marks */
    expect("/a%2fb", true, "/a%2Fb");                   /* reserved: kept, upper-cased */
    expect("/a%2F..%2Fadmin", true, "/a%2F..%2Fadmin"); /* %2F is no separator */
    expect("/%e2%82%ac", true, "/%E2%82%AC");
    expect("/%20", true, "/%20");
}

static void test_slashes(void **state)
{
    expect("//admin", true, "/admin");
    expect("/a//b///c", true, "/a/b/c");
    expect("/a//", true, "/a/");
    expect("//", true, "/");
    expect("//admin", false, "//admin");
    expect("/a//b", false, "/a//b");
    expect("/a//../b", true, "/b");    /* merged first: a, .., b */
    expect("/a//../b", false, "/a/b"); /* RFC 3986: the empty segment goes */
    expect("/a//..", false, "/a/");
}

static void test_refused(void **state)
{
    expect_status("/..", PATH_ABOVE_ROOT);
    expect_status("/../admin", PATH_ABOVE_ROOT);
    expect_status("/a/../../admin", PATH_ABOVE_ROOT);
    expect_status("/%2e%2e/admin", PATH_ABOVE_ROOT);
    expect_status("/./..", PATH_ABOVE_ROOT);
    expect_status("//..", PATH_ABOVE_ROOT);
    expect_status("/a%", PATH_BAD_ESCAPE);
    expect_status("/a%2", PATH_BAD_ESCAPE);
    expect_status("/a%zz", PATH_BAD_ESCAPE);
    expect_status("/a%2/b", PATH_BAD_ESCAPE);
    expect_status("/%%41", PATH_BAD_ESCAPE);
    expect_status("a/b", PATH_NOT_ABSOLUTE);
    expect_status("*", PATH_NOT_ABSOLUTE);
    char out[8];
    size_t len;
    assert_int_equal(path_normalize("", 0, true, out, sizeof(out), &len), PATH_NOT_ABSOLUTE);
    assert_int_equal(path_normalize("/abcdefghij", 11, true, out, sizeof(out), &len),
                     PATH_TOO_LONG);
}

/* Every path over a small alphabet up to 7 characters: the result is stable, shorter or equal,
 * starts with '/', and has no dot-segment or empty segment left (with merging). */
static void test_properties(void **state)
{
    static const char alphabet[] = {'/', '.', 'a', '%', '2', 'e'};
    char in[8], out[16], again[16];
    size_t total = 0;
    for (size_t n = 1; n <= 7; n++) {
        size_t combos = 1;
        for (size_t k = 0; k < n; k++)
            combos *= sizeof(alphabet);
        for (size_t c = 0; c < combos; c++) {
            size_t x = c;
            for (size_t k = 0; k < n; k++, x /= sizeof(alphabet))
                in[k] = alphabet[x % sizeof(alphabet)];
            size_t len, len2;
            if (path_normalize(fenced(in, n), n, true, out, sizeof(out), &len) != PATH_OK)
                continue;
            total++;
            assert_true(len >= 1 && len <= n);
            assert_int_equal(out[0], '/');
            assert_int_equal(path_normalize(out, len, true, again, sizeof(again), &len2), PATH_OK);
            assert_int_equal(len2, len);
            assert_memory_equal(again, out, len);
            for (size_t k = 0; k + 1 < len; k++)
                assert_false(out[k] == '/' && out[k + 1] == '/');
            char padded[20];
            memcpy(padded, out, len);
            padded[len] = '/';
            padded[len + 1] = '\0';
            assert_null(strstr(padded, "/./"));
            assert_null(strstr(padded, "/../"));
        }
    }
    assert_true(total > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unchanged), cmocka_unit_test(test_dot_segments),
        cmocka_unit_test(test_escapes),   cmocka_unit_test(test_slashes),
        cmocka_unit_test(test_refused),   cmocka_unit_test(test_properties),
    };
    return cmocka_run_group_tests_name("path", tests, NULL, NULL);
}
