/* The library as an FFI language uses it: loaded with dlopen, functions
 * found with dlsym and called through libffi, the green thread's entry a
 * libffi closure (as ctypes and friends build them). */
#include <dlfcn.h>
#include <ffi.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int (*p_np_sleep)(int64_t);
static int64_t (*p_np_now)(void);
static int (*p_np_in_green)(void);

/* The closure body: int entry(void *arg). */
static void entry_body(ffi_cif *cif, void *ret, void **args, void *user) {
    (void)cif;
    (void)user;
    int64_t t0 = p_np_now();
    p_np_sleep(2000000);
    int ok = p_np_in_green() && p_np_now() - t0 >= 2000000;
    int *value = *(int **)args[0];
    *(ffi_arg *)ret = ok ? (ffi_arg)*value : 0;
}

int main(int argc, char **argv) {
    const char *lib = argc > 1 ? argv[1] : "libnetpoll.so.1";
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("ffi: dlopen failed: %s\n", dlerror());
        return 1;
    }
    int (*p_np_main)(int (*)(void *), void *) = (int (*)(int (*)(void *), void *))dlsym(h, "np_main");
    p_np_sleep = (int (*)(int64_t))dlsym(h, "np_sleep");
    p_np_now = (int64_t(*)(void))dlsym(h, "np_now");
    p_np_in_green = (int (*)(void))dlsym(h, "np_in_green");
    if (!p_np_main || !p_np_sleep || !p_np_now || !p_np_in_green) {
        printf("ffi: missing symbols\n");
        return 1;
    }
    if (dlsym(h, "mallocx")) { /* the engine's jemalloc stays private */
        printf("ffi: the private allocator leaks a symbol\n");
        return 1;
    }
    /* Closure for the green thread's entry. */
    ffi_cif entry_cif;
    ffi_type *entry_args[] = {&ffi_type_pointer};
    ffi_prep_cif(&entry_cif, FFI_DEFAULT_ABI, 1, &ffi_type_sint, entry_args);
    void *code;
    ffi_closure *cl = ffi_closure_alloc(sizeof(ffi_closure), &code);
    if (!cl || ffi_prep_closure_loc(cl, &entry_cif, entry_body, NULL, code) != FFI_OK) {
        printf("ffi: closure failed\n");
        return 1;
    }
    /* np_main(code, &value) through ffi_call. */
    ffi_cif main_cif;
    ffi_type *main_args[] = {&ffi_type_pointer, &ffi_type_pointer};
    ffi_prep_cif(&main_cif, FFI_DEFAULT_ABI, 2, &ffi_type_sint, main_args);
    int value = 41;
    void *a0 = code, *a1 = &value;
    void *avals[] = {&a0, &a1};
    ffi_arg rc;
    ffi_call(&main_cif, FFI_FN(p_np_main), &rc, avals);
    ffi_closure_free(cl);
    if ((int)rc != 41) {
        printf("ffi: np_main returned %d\n", (int)rc);
        return 1;
    }
    printf("ffi: dlopen + libffi call + closure as green entry: ok\n");
    return 0;
}
