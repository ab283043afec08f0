// Name resolution.  glibc's resolver waits for its UDP/TCP answers in its
// own poll(), which no interposer sees: a green thread looking up a name
// would hold its worker for the whole round trip, and lookups from many
// green threads would queue behind each other until sysmon moved them and
// added workers (which then stay for good), the other threads slowed
// meanwhile.  So each lookup runs on the helper pool (helpers.cpp) while
// the green thread parks, as Go's cgo resolver takes an OS thread per
// lookup; so do getaddrinfo_a(GAI_WAIT) (gai.cpp) and the other NSS
// lookups (nss.cpp).
//
// What moves to the helper thread is only the call; what the caller sees
// stays its own: errno and h_errno are carried over both ways; results are
// malloc'ed by libc on the helper and freed by the program as ever
// (freeaddrinfo), which any thread-safe malloc allows; gethostbyname's
// static buffer is the process's in glibc anyway.  The one piece of
// per-thread state a lookup reads is the thread's resolver state (_res).
// A helper's _res is glibc's default for the process (resolv.conf,
// RES_OPTIONS, reloaded when the file changes), which is what an untouched
// _res of the caller would become; when the caller has touched its own
// (res_init, _res.options or the server list set by hand), the call runs
// on the caller's thread as before, with exactly that state: a kernel_call
// that hands the worker's queue on.
#include <cstdio>
#include <cstring>
#include <netdb.h>
#include <arpa/inet.h>
#include <resolv.h>
#include <sys/socket.h>

#include "helpers.hpp"

namespace shim {

namespace {

// The caller's own _res as a fresh thread has it: all zero bytes.
bool own_res_untouched() {
    const unsigned char *p = reinterpret_cast<const unsigned char *>(__res_state());
    for (size_t i = 0; i < sizeof(struct __res_state); i++)
        if (p[i]) return false;
    return true;
}

// f() on a helper while the green thread parks.  own_res: f reads the
// thread's implicit _res (all but the res_n* calls, which are given theirs).
template <class F> auto lookup(F f, bool own_res) -> decltype(f()) {
    using R = decltype(f());
    Thread *t = green() ? self() : nullptr;
    if (!t) return f();
    if (own_res && !own_res_untouched()) return kernel_call(f, R{}, true);
    return helper_call(t, f);
}

// A lookup glibc answers from the strings alone, without a source to ask:
// an address literal (or none: the wildcard or loopback) and a port
// number.  It runs right here, as fast as a parse: a server that calls
// getaddrinfo per connection on its peer's address pays no hand-off.
bool numeric_lookup(const char *node, const char *service, const struct addrinfo *hints) {
    int flags = hints ? hints->ai_flags : 0;
    if (flags & AI_CANONNAME) return false; // may ask for the name of the address
    if (service) {
        bool digits = *service != 0;
        for (const char *c = service; *c; c++) digits = digits && *c >= '0' && *c <= '9';
        if (!digits) return false;
    }
    if (!node || (flags & AI_NUMERICHOST)) return true;
    unsigned char a[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, node, a) == 1 || inet_pton(AF_INET6, node, a) == 1;
}

// res_query or __res_query, whichever this glibc has (the same function).
template <class T> T next_res(const char *name) {
    if (void *f = dlsym(RTLD_NEXT, name)) return reinterpret_cast<T>(f);
    char alt[64];
    if (name[0] == '_') snprintf(alt, sizeof alt, "%s", name + 2);
    else snprintf(alt, sizeof alt, "__%s", name);
    return reinterpret_cast<T>(dlsym(RTLD_NEXT, alt));
}

} // namespace

} // namespace shim

using namespace shim;

extern "C" {

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
    static auto fn = next_fn<decltype(&getaddrinfo)>("getaddrinfo");
    if (numeric_lookup(node, service, hints)) return fn(node, service, hints, res);
    return lookup([&] { return fn(node, service, hints, res); }, true);
}

int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                char *serv, socklen_t servlen, int flags) {
    static auto fn = next_fn<decltype(&getnameinfo)>("getnameinfo");
    // Numbers only (a server logging its peer's address): nothing to ask.
    if ((!host || !hostlen || (flags & NI_NUMERICHOST)) && (!serv || !servlen || (flags & NI_NUMERICSERV)))
        return fn(sa, salen, host, hostlen, serv, servlen, flags);
    return lookup([&] { return fn(sa, salen, host, hostlen, serv, servlen, flags); }, true);
}

struct hostent *gethostbyname(const char *name) {
    static auto fn = next_fn<decltype(&gethostbyname)>("gethostbyname");
    return lookup([&] { return fn(name); }, true);
}

struct hostent *gethostbyname2(const char *name, int af) {
    static auto fn = next_fn<decltype(&gethostbyname2)>("gethostbyname2");
    return lookup([&] { return fn(name, af); }, true);
}

struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type) {
    static auto fn = next_fn<decltype(&gethostbyaddr)>("gethostbyaddr");
    return lookup([&] { return fn(addr, len, type); }, true);
}

int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
                    struct hostent **result, int *h_errnop) {
    static auto fn = next_fn<decltype(&gethostbyname_r)>("gethostbyname_r");
    return lookup([&] { return fn(name, ret, buf, buflen, result, h_errnop); }, true);
}

int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                     struct hostent **result, int *h_errnop) {
    static auto fn = next_fn<decltype(&gethostbyname2_r)>("gethostbyname2_r");
    return lookup([&] { return fn(name, af, ret, buf, buflen, result, h_errnop); }, true);
}

int gethostbyaddr_r(const void *addr, socklen_t len, int type, struct hostent *ret, char *buf,
                    size_t buflen, struct hostent **result, int *h_errnop) {
    static auto fn = next_fn<decltype(&gethostbyaddr_r)>("gethostbyaddr_r");
    return lookup([&] { return fn(addr, len, type, ret, buf, buflen, result, h_errnop); }, true);
}

// The res_* calls: glibc 2.34+ links new programs to res_query@GLIBC_2.34,
// older ones to __res_query@GLIBC_2.2.5 (once libresolv's); both land here.
#define NP_RES_QUERY(name)                                                                      \
    int name(const char *dname, int cls, int type, unsigned char *answer, int anslen) {        \
        static auto fn = next_res<int (*)(const char *, int, int, unsigned char *, int)>(#name); \
        return lookup([&] { return fn(dname, cls, type, answer, anslen); }, true);             \
    }
NP_RES_QUERY(res_query)
NP_RES_QUERY(__res_query)
NP_RES_QUERY(res_search)
NP_RES_QUERY(__res_search)
#undef NP_RES_QUERY

#define NP_RES_QUERYDOMAIN(name)                                                               \
    int name(const char *dname, const char *domain, int cls, int type, unsigned char *answer, \
             int anslen) {                                                                     \
        static auto fn =                                                                       \
            next_res<int (*)(const char *, const char *, int, int, unsigned char *, int)>(#name); \
        return lookup([&] { return fn(dname, domain, cls, type, answer, anslen); }, true);    \
    }
NP_RES_QUERYDOMAIN(res_querydomain)
NP_RES_QUERYDOMAIN(__res_querydomain)
#undef NP_RES_QUERYDOMAIN

#define NP_RES_SEND(name)                                                                      \
    int name(const unsigned char *msg, int msglen, unsigned char *answer, int anslen) {       \
        static auto fn = next_res<int (*)(const unsigned char *, int, unsigned char *, int)>(#name); \
        return lookup([&] { return fn(msg, msglen, answer, anslen); }, true);                 \
    }
NP_RES_SEND(res_send)
NP_RES_SEND(__res_send)
#undef NP_RES_SEND

// The res_n* calls are given their state: it goes with the call, whatever
// the caller did to it.
#define NP_RES_NQUERY(name)                                                                     \
    int name(res_state st, const char *dname, int cls, int type, unsigned char *answer,        \
             int anslen) {                                                                      \
        static auto fn =                                                                        \
            next_res<int (*)(res_state, const char *, int, int, unsigned char *, int)>(#name);   \
        return lookup([&] { return fn(st, dname, cls, type, answer, anslen); }, false);        \
    }
NP_RES_NQUERY(res_nquery)
NP_RES_NQUERY(__res_nquery)
NP_RES_NQUERY(res_nsearch)
NP_RES_NQUERY(__res_nsearch)
#undef NP_RES_NQUERY

#define NP_RES_NQUERYDOMAIN(name)                                                              \
    int name(res_state st, const char *dname, const char *domain, int cls, int type,          \
             unsigned char *answer, int anslen) {                                              \
        static auto fn = next_res<int (*)(res_state, const char *, const char *, int, int,     \
                                         unsigned char *, int)>(#name);                        \
        return lookup([&] { return fn(st, dname, domain, cls, type, answer, anslen); }, false); \
    }
NP_RES_NQUERYDOMAIN(res_nquerydomain)
NP_RES_NQUERYDOMAIN(__res_nquerydomain)
#undef NP_RES_NQUERYDOMAIN

#define NP_RES_NSEND(name)                                                                     \
    int name(res_state st, const unsigned char *msg, int msglen, unsigned char *answer,       \
             int anslen) {                                                                     \
        static auto fn =                                                                       \
            next_res<int (*)(res_state, const unsigned char *, int, unsigned char *, int)>(#name); \
        return lookup([&] { return fn(st, msg, msglen, answer, anslen); }, false);            \
    }
NP_RES_NSEND(res_nsend)
NP_RES_NSEND(__res_nsend)
#undef NP_RES_NSEND

} // extern "C"
