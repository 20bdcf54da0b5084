/* SPDX-License-Identifier: MIT */
/* What nestbox's driver records in /out as the tests run (python/driver.py): the
 * order they ran in, the one running, the node ids that failed, faulthandler's stack
 * on a timeout. The test can write these files too, so they are untrusted like the
 * rest of /out: read through nb_open_beneath with a size cap, split in linear time,
 * capped in count, and a line that is not UTF-8 (it could not be a node id pytest
 * made) is dropped. A file that is missing or too big is simply not known. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "action/run.h"
#include "nestbox/cleanup.h"
#include "nestbox/fs.h"
#include "nestbox/text.h"

static bool valid_utf8(const char *s, size_t n) {
        for (size_t i = 0; i < n;) {
                uint32_t c;
                size_t k = nb_utf8_decode((const unsigned char *) s + i, &c);
                if (k == 0 || i + k > n || c < 0x20)
                        return false;
                i += k;
        }
        return true;
}

int nb_run_read_text(int out_fd, const char *name, size_t max_bytes, char **ret) {
        *ret = NULL;
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = nb_read_file_beneath(out_fd, name, max_bytes, &data, &len);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || len == 0)
                return 0;
        /* A NUL ends it: the text goes into messages, XML and argv, all strings. */
        *ret = strndup(data, len);
        return *ret ? 0 : -ENOMEM;
}

int nb_run_read_ids(int out_fd, const char *name, size_t max_bytes, size_t max_ids, char ***ret) {
        *ret = NULL;
        _cleanup_free_ char *data = NULL;
        int r = nb_run_read_text(out_fd, name, max_bytes, &data);
        if (r < 0 || !data)
                return r;
        size_t len = strlen(data), lines = 1;
        for (size_t i = 0; i < len; i++)
                lines += data[i] == '\n';
        if (lines > max_ids + 1)
                return 0; /* more than the cap: not known, rather than cut */
        _cleanup_strv_free_ char **v = calloc(lines + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        size_t n = 0;
        for (size_t i = 0; i < len;) {
                size_t k = strcspn(data + i, "\n");
                if (k > 0 && valid_utf8(data + i, k) && !(v[n++] = strndup(data + i, k)))
                        return -ENOMEM;
                i += k + 1;
        }
        if (n == 0)
                return 0;
        *ret = TAKE_PTR(v);
        return 0;
}

int nb_nodeid_split(const char *nodeid, char **ret_classname, char **ret_name) {
        /* As pytest's mangle_test_address: "::" inside the parameters "[...]" is
         * part of the name. */
        size_t bracket = strcspn(nodeid, "[");
        const char *last = NULL;
        for (const char *p = strstr(nodeid, "::"); p && (size_t) (p - nodeid) < bracket; p = strstr(p + 2, "::"))
                last = p;
        const char *name = last ? last + 2 : nodeid;
        size_t head = last ? (size_t) (last - nodeid) : 0;
        /* pytest's junitxml: the path with "/" as "." and without ".py", then the
         * classes, joined by "." */
        _cleanup_free_ char *cls = malloc(head + 1);
        if (!cls)
                return -ENOMEM;
        size_t o = 0;
        size_t file_end = strstr(nodeid, "::") ? (size_t) (strstr(nodeid, "::") - nodeid) : head;
        for (size_t i = 0; i < head; i++) {
                if (i + 3 == file_end && strncmp(nodeid + i, ".py", 3) == 0) {
                        i += 2;
                        continue;
                }
                if (nodeid[i] == ':' && i + 1 < head && nodeid[i + 1] == ':') {
                        cls[o++] = '.';
                        i++;
                        continue;
                }
                cls[o++] = nodeid[i] == '/' ? '.' : nodeid[i];
        }
        cls[o] = 0;
        char *n = strdup(name);
        if (!n)
                return -ENOMEM;
        *ret_classname = TAKE_PTR(cls);
        *ret_name = n;
        return 0;
}
