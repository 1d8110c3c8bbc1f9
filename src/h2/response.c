/*
 * response.c - an HTTP/1.1 response head as an HTTP/2 header list (response.h).
 */
#include "h2/response.h"

#include <stdio.h>

/* Fields that belong to one HTTP/1.1 connection and have no meaning in HTTP/2. */
static int connection_specific(const struct http1_field *f)
{
    switch (f->id) {
    case HTTP1_FIELD_CONNECTION:
    case HTTP1_FIELD_KEEP_ALIVE:
    case HTTP1_FIELD_PROXY_CONNECTION:
    case HTTP1_FIELD_TRANSFER_ENCODING:
    case HTTP1_FIELD_UPGRADE:
    case HTTP1_FIELD_TE:
        return 1;
    default:
        return 0;
    }
}

static nghttp2_nv entry(const char *name, size_t name_len, const char *value, size_t value_len)
{
    return (nghttp2_nv){.name = (uint8_t *)name,
                        .namelen = name_len,
                        .value = (uint8_t *)value,
                        .valuelen = value_len,
                        .flags = NGHTTP2_NV_FLAG_NONE};
}

int h2_response_fields(const char *head, const struct http1_msg *msg, nghttp2_nv *nv, size_t max,
                       char status[H2_STATUS_TEXT], char *lower, size_t cap)
{
    if (max < 1 || msg->status < 100 || msg->status > 999)
        return -1;
    snprintf(status, H2_STATUS_TEXT, "%03u", msg->status);
    size_t n = 0, used = 0;
    nv[n++] = entry(":status", 7, status, 3);
    for (uint32_t i = 0; i < msg->nfields; i++) {
        const struct http1_field *f = &msg->fields[i];
        if (connection_specific(f))
            continue;
        if (n == max || f->name_len > cap - used)
            return -1;
        char *name = lower + used;
        for (uint16_t k = 0; k < f->name_len; k++) {
            char c = head[f->name_off + k];
            name[k] = c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
        }
        used += f->name_len;
        nv[n++] = entry(name, f->name_len, head + f->value_off, f->value_len);
    }
    return (int)n;
}
