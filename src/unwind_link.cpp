// The unwinder's entry points that the static C++ runtime's personality
// routine and throw name, reached in the shared libgcc_s only when an
// unwind runs, instead of through a DT_NEEDED on it.  Loading libgcc_s costs
// every process the shim is preloaded into its constructor, which asks the
// CPU for its features (a trap each under virtualisation): most programs a
// shell runs are C and never unwind.  An unwind through our frames is run
// by the libgcc_s that glibc's pthread_exit and cancellation load, or a C++
// program's: that one is found here (RTLD_NOLOAD), so our cleanups and its
// unwind share one unwinder, as they must.  Only our own throw (an
// allocation failure) may have to load it.
//
// Standalone (system headers only): linked into libnetpoll.so.1 and into
// libnetpoll-preload.so alike, hidden in each.
#include <cstdlib>
#include <dlfcn.h>
// Declared hidden: defined here, they must not interpose a program's.
#pragma GCC visibility push(hidden)
#include <unwind.h>
#pragma GCC visibility pop

namespace {

struct Fns {
    _Unwind_Reason_Code (*raise)(_Unwind_Exception *);
    void (*resume)(_Unwind_Exception *);
    _Unwind_Reason_Code (*resume_or_rethrow)(_Unwind_Exception *);
    void (*delete_exception)(_Unwind_Exception *);
    _Unwind_Ptr (*get_data_rel_base)(_Unwind_Context *);
    _Unwind_Ptr (*get_text_rel_base)(_Unwind_Context *);
    _Unwind_Ptr (*get_ip_info)(_Unwind_Context *, int *);
    void *(*get_lsda)(_Unwind_Context *);
    _Unwind_Ptr (*get_region_start)(_Unwind_Context *);
    void (*set_gr)(_Unwind_Context *, int, _Unwind_Word);
    void (*set_ip)(_Unwind_Context *, _Unwind_Ptr);
};

Fns fns;
bool linked; // written once, whole, before it is set

template <typename F> void pick(void *h, const char *name, F *slot) {
    *slot = reinterpret_cast<F>(dlsym(h, name));
    if (!*slot) abort(); // not libgcc_s's
}

// Racing first calls both look the same names up and store the same values.
const Fns &unwinder() {
    if (__atomic_load_n(&linked, __ATOMIC_ACQUIRE)) return fns;
    void *h = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (!h) h = dlopen("libgcc_s.so.1", RTLD_NOW);
    if (!h) abort(); // an essential package, gone: as an uncaught throw would
    Fns f;
    pick(h, "_Unwind_RaiseException", &f.raise);
    pick(h, "_Unwind_Resume", &f.resume);
    pick(h, "_Unwind_Resume_or_Rethrow", &f.resume_or_rethrow);
    pick(h, "_Unwind_DeleteException", &f.delete_exception);
    pick(h, "_Unwind_GetDataRelBase", &f.get_data_rel_base);
    pick(h, "_Unwind_GetTextRelBase", &f.get_text_rel_base);
    pick(h, "_Unwind_GetIPInfo", &f.get_ip_info);
    pick(h, "_Unwind_GetLanguageSpecificData", &f.get_lsda);
    pick(h, "_Unwind_GetRegionStart", &f.get_region_start);
    pick(h, "_Unwind_SetGR", &f.set_gr);
    pick(h, "_Unwind_SetIP", &f.set_ip);
    fns = f;
    __atomic_store_n(&linked, true, __ATOMIC_RELEASE);
    return fns;
}

} // namespace

// Each a tail call: the unwinder sees its caller's frame as it would have.
#define HIDDEN extern "C"

HIDDEN _Unwind_Reason_Code _Unwind_RaiseException(_Unwind_Exception *e) { return unwinder().raise(e); }
HIDDEN void _Unwind_Resume(_Unwind_Exception *e) { unwinder().resume(e); }
HIDDEN _Unwind_Reason_Code _Unwind_Resume_or_Rethrow(_Unwind_Exception *e) { return unwinder().resume_or_rethrow(e); }
HIDDEN void _Unwind_DeleteException(_Unwind_Exception *e) { unwinder().delete_exception(e); }
HIDDEN _Unwind_Ptr _Unwind_GetDataRelBase(_Unwind_Context *c) { return unwinder().get_data_rel_base(c); }
HIDDEN _Unwind_Ptr _Unwind_GetTextRelBase(_Unwind_Context *c) { return unwinder().get_text_rel_base(c); }
HIDDEN _Unwind_Ptr _Unwind_GetIPInfo(_Unwind_Context *c, int *before) { return unwinder().get_ip_info(c, before); }
HIDDEN void *_Unwind_GetLanguageSpecificData(_Unwind_Context *c) { return unwinder().get_lsda(c); }
HIDDEN _Unwind_Ptr _Unwind_GetRegionStart(_Unwind_Context *c) { return unwinder().get_region_start(c); }
HIDDEN void _Unwind_SetGR(_Unwind_Context *c, int i, _Unwind_Word v) { unwinder().set_gr(c, i, v); }
HIDDEN void _Unwind_SetIP(_Unwind_Context *c, _Unwind_Ptr ip) { unwinder().set_ip(c, ip); }
