/* INCRBYFLOAT / HINCRBYFLOAT arithmetic as Redis does it: parse both
 * operands with strtold, add in long double, print with "%.17Lf" and cut
 * trailing zeros (Redis's ld2string with LD_STR_HUMAN). Rust has no long
 * double, and the result Redis stores depends on it (40 + 94.455 is
 * 134.455 there, 134.45499999999998 in double). The platform's long
 * double is used, as Redis uses it. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Redis's MAX_LONG_DOUBLE_CHARS. */
#define MAX_CHARS (5 * 1024)

static int parse(const char *s, size_t len, long double *out) {
    char buf[MAX_CHARS];
    char *end;
    long double v;
    if (len == 0 || len >= sizeof(buf)) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (isspace((unsigned char)buf[0])) return -1;
    errno = 0;
    v = strtold(buf, &end);
    /* The whole input is the number (a NUL inside it is not its end). */
    if (*end != '\0' || (size_t)(end - buf) != len || isnan(v)) return -1;
    if (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || fpclassify(v) == FP_ZERO))
        return -1;
    *out = v;
    return 0;
}

/* Returns the length written to out, -1 when an operand is not a float,
 * -2 when the sum is NaN or infinite, -3 when out is too small. A NULL
 * current value counts as 0. */
int quire_ld_incr(const char *cur, size_t cur_len, const char *incr, size_t incr_len,
                  char *out, size_t out_len) {
    long double a = 0, b;
    int l;
    if (cur != NULL && parse(cur, cur_len, &a) != 0) return -1;
    if (parse(incr, incr_len, &b) != 0) return -1;
    a += b;
    if (isnan(a) || isinf(a)) return -2;
    l = snprintf(out, out_len, "%.17Lf", a);
    if (l < 0 || (size_t)l + 1 > out_len) return -3;
    if (strchr(out, '.') != NULL) {
        char *p = out + l - 1;
        while (*p == '0') { p--; l--; }
        if (*p == '.') l--;
    }
    if (l == 2 && out[0] == '-' && out[1] == '0') { out[0] = '0'; l = 1; }
    return l;
}
