/* SPDX-License-Identifier: MIT */
/* Growing an array, one way everywhere (systemd's GREEDY_REALLOC, src/basic/alloc-util.h):
 * the capacity doubles, so n appends cost O(n) copies in all whatever the input says,
 * and every size on the way is checked for overflow. */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/* Room in *v, an array of elements of `size` bytes with room for *cap of them, for
 * `more` after the first `len`: at least `first` elements when it grows from nothing,
 * doubling from there. 0, or -ENOMEM (also when the count or the bytes would overflow
 * a size_t); *v and *cap are left as they were on failure. */
static inline int nb_reserve(void **v, size_t *cap, size_t len, size_t more, size_t size, size_t first) {
        if (more > SIZE_MAX - len)
                return -ENOMEM;
        size_t need = len + more;
        if (need <= *cap)
                return 0;
        size_t c = *cap ? *cap : first ? first : 1;
        while (c < need) {
                if (c > SIZE_MAX / 2)
                        return -ENOMEM;
                c *= 2;
        }
        /* Checked here, not left to reallocarray: a sanitizer's allocator aborts on
         * a size that wraps instead of failing. */
        if (size && c > SIZE_MAX / size)
                return -ENOMEM;
        void *g = realloc(*v, c * size);
        if (!g)
                return -ENOMEM;
        *v = g;
        *cap = c;
        return 0;
}

/* NB_RESERVE(p, cap, len, more, first) for a typed p (its element size from *p) and
 * a size_t cap: a cap of another type does not compile. */
#define NB_RESERVE(p, cap, len, more, first)                                                                   \
        nb_reserve((void **) &(p), &(cap), (len), (more), sizeof(*(p)), (first))
