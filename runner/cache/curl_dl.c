/* SPDX-License-Identifier: MIT */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>

#include "cache/curl_dl.h"

struct nb_curl_api nb_curl;

/* The ABI's soname: libcurl has kept .so.4 since 2006. */
#define LIBCURL "libcurl.so.4"

static const struct {
        const char *name;
        size_t offset;
} symbols[] = {
#define SYM(field, name) { name, offsetof(struct nb_curl_api, field) }
        SYM(global_init, "curl_global_init"),   SYM(easy_init, "curl_easy_init"),
        SYM(easy_setopt, "curl_easy_setopt"),   SYM(easy_perform, "curl_easy_perform"),
        SYM(easy_getinfo, "curl_easy_getinfo"), SYM(easy_cleanup, "curl_easy_cleanup"),
        SYM(easy_strerror, "curl_easy_strerror"), SYM(share_init, "curl_share_init"),
        SYM(share_setopt, "curl_share_setopt"), SYM(share_cleanup, "curl_share_cleanup"),
        SYM(slist_append, "curl_slist_append"), SYM(slist_free_all, "curl_slist_free_all"),
        SYM(url, "curl_url"),                   SYM(url_cleanup, "curl_url_cleanup"),
        SYM(url_set, "curl_url_set"),           SYM(url_get, "curl_url_get"),
        SYM(free, "curl_free"),
#undef SYM
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const char *failure = "not loaded";

static void load(void) {
        /* Never unloaded: its handles live as long as the process. */
        void *lib = dlopen(LIBCURL, RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
                failure = "cannot load " LIBCURL " (apt-get install libcurl4)";
                return;
        }
        for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
                void *fn = dlsym(lib, symbols[i].name);
                if (!fn) {
                        failure = LIBCURL " lacks a function nestbox needs (libcurl older than 7.62?)";
                        return;
                }
                *(void **) ((char *) &nb_curl + symbols[i].offset) = fn;
        }
        failure = NULL;
}

int nb_curl_load(const char **why) {
        pthread_once(&once, load);
        if (failure && why)
                *why = failure;
        return failure ? -ELIBACC : 0;
}
