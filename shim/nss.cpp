// The other NSS lookups: users, groups, group lists, shadow entries,
// services and protocols.  Their sources may wait on a network (sssd,
// LDAP, NIS, nscd's socket) in calls glibc makes from inside itself, which
// no interposer sees, so on a green thread each runs on the helper pool
// (helpers.cpp) while the thread parks, as the host lookups do (dns.cpp).
//
// What the caller sees stays its own.  The _r forms write only into the
// caller's buffers, which the helper fills while the caller waits.  The
// other forms return glibc's static result for that function, one for the
// whole process under a lock of glibc's, not a per-thread one: made on the
// helper, the call returns the very pointer, valid until the next call of
// that function from any thread, that it returns on the caller's thread.
// The enumerations (getpwent, getgrent) keep their position in glibc's
// process-wide state, which any thread moves on.  initgroups sets the
// groups of every thread, as it does from any thread.
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <shadow.h>

#include "helpers.hpp"

using namespace shim;

// NP_NSS(return type, name, (parameters), (arguments)): name run on a
// helper when called on a green thread.
#define NP_NSS(R, name, params, args)                                          \
    R name params {                                                            \
        static auto fn = next_fn<decltype(&::name)>(#name);                    \
        return offload([&] { return fn args; });                               \
    }
// The same for a function with no result.
#define NP_NSS_VOID(name)                                                      \
    void name() {                                                              \
        static auto fn = next_fn<decltype(&::name)>(#name);                    \
        offload([&] {                                                          \
            fn();                                                              \
            return 0;                                                          \
        });                                                                    \
    }

extern "C" {

NP_NSS(struct passwd *, getpwnam, (const char *name), (name))
NP_NSS(struct passwd *, getpwuid, (uid_t uid), (uid))
NP_NSS(int, getpwnam_r, (const char *name, struct passwd *pw, char *buf, size_t len, struct passwd **res),
       (name, pw, buf, len, res))
NP_NSS(int, getpwuid_r, (uid_t uid, struct passwd *pw, char *buf, size_t len, struct passwd **res),
       (uid, pw, buf, len, res))
NP_NSS(struct passwd *, getpwent, (), ())
NP_NSS(int, getpwent_r, (struct passwd *pw, char *buf, size_t len, struct passwd **res), (pw, buf, len, res))
NP_NSS_VOID(setpwent)
NP_NSS_VOID(endpwent)

NP_NSS(struct group *, getgrnam, (const char *name), (name))
NP_NSS(struct group *, getgrgid, (gid_t gid), (gid))
NP_NSS(int, getgrnam_r, (const char *name, struct group *gr, char *buf, size_t len, struct group **res),
       (name, gr, buf, len, res))
NP_NSS(int, getgrgid_r, (gid_t gid, struct group *gr, char *buf, size_t len, struct group **res),
       (gid, gr, buf, len, res))
NP_NSS(struct group *, getgrent, (), ())
NP_NSS(int, getgrent_r, (struct group *gr, char *buf, size_t len, struct group **res), (gr, buf, len, res))
NP_NSS_VOID(setgrent)
NP_NSS_VOID(endgrent)
NP_NSS(int, getgrouplist, (const char *user, gid_t group, gid_t *groups, int *ngroups),
       (user, group, groups, ngroups))
NP_NSS(int, initgroups, (const char *user, gid_t group), (user, group))

NP_NSS(struct spwd *, getspnam, (const char *name), (name))
NP_NSS(int, getspnam_r, (const char *name, struct spwd *sp, char *buf, size_t len, struct spwd **res),
       (name, sp, buf, len, res))

NP_NSS(struct servent *, getservbyname, (const char *name, const char *proto), (name, proto))
NP_NSS(struct servent *, getservbyport, (int port, const char *proto), (port, proto))
NP_NSS(int, getservbyname_r,
       (const char *name, const char *proto, struct servent *se, char *buf, size_t len, struct servent **res),
       (name, proto, se, buf, len, res))
NP_NSS(int, getservbyport_r,
       (int port, const char *proto, struct servent *se, char *buf, size_t len, struct servent **res),
       (port, proto, se, buf, len, res))

NP_NSS(struct protoent *, getprotobyname, (const char *name), (name))
NP_NSS(struct protoent *, getprotobynumber, (int proto), (proto))
NP_NSS(int, getprotobyname_r, (const char *name, struct protoent *pe, char *buf, size_t len, struct protoent **res),
       (name, pe, buf, len, res))
NP_NSS(int, getprotobynumber_r, (int proto, struct protoent *pe, char *buf, size_t len, struct protoent **res),
       (proto, pe, buf, len, res))

} // extern "C"
